"""The Redis interface and the store's transitions, on EVERY implementation (native,
valkey-glide, and redis-py through trio-asyncio): same inputs, same outcomes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio
from _helpers import running_worker, take

import aiki
from aiki._redis import ScriptRefused, resolve_implementation
from aiki._store import Store, TakeRefused
from examples.order_processing import EXAMPLE_ORDER, order_processing, order_processing_v1

IMPLEMENTATIONS = ["glide", "native", "redis-py"]


@pytest.fixture(params=IMPLEMENTATIONS)
async def impl_client(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[aiki.Client]:
    async with aiki.client(redis_url=redis_url, redis_client=request.param) as c:
        assert c.redis_client == request.param
        yield c


def _text(v: object) -> object:
    return v.decode() if isinstance(v, bytes) else v


async def test_commands_batches_and_errors(impl_client: aiki.Client) -> None:
    redis = impl_client.store.redis
    assert _text(await redis.command("SET", "k", "v")) == "OK"
    assert _text(await redis.command("GET", "k")) == "v"
    replies = await redis.batch([["INCR", "n"], ["INCR", "k"], ["GET", "n"]])
    assert replies[0] == 1
    assert isinstance(replies[1], Exception)  # INCR on a string fails in its own slot
    assert _text(replies[2]) == "1"
    assert await redis.command("GET", "missing") is None


async def test_script_refusal_maps_to_code(impl_client: aiki.Client) -> None:
    from aiki._redis import Lua

    lua = Lua("refuse", "return redis.error_reply('STALE run is queued at revision 3')")
    with pytest.raises(ScriptRefused) as info:
        await impl_client.store.redis.script(lua, ["x"], [])
    assert info.value.code == "STALE"
    assert "revision 3" in info.value.detail
    echo = Lua("echo", "return {KEYS[1], ARGV[1]}")
    assert [_text(v) for v in await impl_client.store.redis.script(echo, ["a"], [7])] == ["a", "7"]


async def test_pubsub_roundtrip(impl_client: aiki.Client, redis_url: str) -> None:
    from aiki._redis import connect

    sub = await connect(redis_url, implementation=impl_client.redis_client)
    try:
        await sub.subscribe("conformance")
        got: list[tuple[str, bytes]] = []

        async def receive() -> None:
            got.append(await sub.next_message())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            while not got:
                await impl_client.store.redis.command("PUBLISH", "conformance", "hello")
                await trio.sleep(0.05)
        assert got[0] == ("conformance", b"hello")
    finally:
        await sub.aclose()


async def test_fenced_transitions(impl_client: aiki.Client) -> None:
    store: Store = impl_client.store
    run_id = await store.start_run("wf", "1", json.dumps({"x": 1}))
    first = await take(store, "wf", "1", run_id, "worker-a", "1-0")
    assert first.revision == 1 and first.payload == {"x": 1} and first.tasks == {}
    await store.record_task(first, "t:0", {"status": "completed", "result": 1})
    second = await take(store, "wf", "1", run_id, "worker-b", "1-0")  # a claim: fences out A
    assert second.revision == 2
    assert second.tasks == {"t:0": {"status": "completed", "result": 1}}
    with pytest.raises(ScriptRefused) as stale:
        await store.record_task(first, "t:1", {"status": "completed"})
    assert stale.value.code == "STALE"
    with pytest.raises(ScriptRefused):
        await store.finish_run(first, "1-0", result_json='"from A"')
    await store.finish_run(second, "1-0", result_json='"from B"')
    run = await store.get_run(run_id, with_tasks=True)
    assert run is not None and run.status == "completed" and run.result == "from B"
    assert list(run.tasks or {}) == ["t:0"]
    with pytest.raises(TakeRefused) as ended:
        await take(store, "wf", "1", run_id, "worker-c", "1-0")
    assert ended.value.reason == "ended"


async def test_park_timers_events_and_references(impl_client: aiki.Client) -> None:
    store: Store = impl_client.store
    run_id = await store.start_run("wf", "1", "null")
    taken = await take(store, "wf", "1", run_id, "w", "1-0")
    status = await store.park_run(taken, "1-0", status="sleeping", wake_at_ms=1)
    assert status == "sleeping"
    fired, due, _next = await store.fire_timers()
    assert (fired, due) == (1, 1)
    assert (await store.get_run(run_id)).status == "queued"  # type: ignore[union-attr]
    taken = await take(store, "wf", "1", run_id, "w", "2-0")
    assert await store.send_event(run_id, "paid", '{"n":1}', reference_id="r") is True
    assert await store.send_event(run_id, "paid", '{"n":1}', reference_id="r") is False
    # The event came while the run was running: parking for it re-queues at once.
    status = await store.park_run(taken, "2-0", status="awaiting_event", event=("paid", 0))
    assert status == "queued"
    a = await store.start_run("wf", "1", '{"a":1}', reference_id="order-42")
    assert await store.start_run("wf", "1", '{"a":1}', reference_id="order-42") == a
    with pytest.raises(aiki.RunConflict):
        await store.start_run("wf", "1", '{"a":2}', reference_id="order-42")
    assert (
        await store.start_run(
            "wf", "1", '{"a":2}', reference_id="order-42", on_conflict="return_existing"
        )
        == a
    )


async def test_order_workflow_end_to_end(impl_client: aiki.Client) -> None:
    async with running_worker(impl_client, order_processing):
        handle = await order_processing_v1.start(impl_client, EXAMPLE_ORDER)
        result = await handle.wait_for_completion(timeout=30)
    assert result["charged"] == 29.0 and result["units_reserved"] == 3


async def test_native_is_the_default_under_trio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIKI_REDIS_CLIENT", raising=False)
    assert resolve_implementation() == "native"


def test_implementation_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIKI_REDIS_CLIENT", raising=False)
    assert resolve_implementation() == "glide"  # no trio loop running: asyncio's default
    monkeypatch.setenv("AIKI_REDIS_CLIENT", "redis-py")
    assert resolve_implementation() == "redis-py"
    assert resolve_implementation("glide") == "glide"
    monkeypatch.setenv("AIKI_REDIS_CLIENT", "hiredis")
    with pytest.raises(aiki.ConfigurationError, match="AIKI_REDIS_CLIENT"):
        resolve_implementation()
