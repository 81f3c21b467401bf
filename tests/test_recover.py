"""Re-running failed and cancelled runs from the SDK and the HTTP API (``handle.retry()``,
``POST /runs/{id}/retry``, ``POST /runs/retry``), and the dead-letter routes' answers to
bad input. The CLI and the worker processes are ``test_cli_recover.py``'s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from _helpers import running_worker, wait_until

import aiki
from aiki_server import ServerHandle, Settings, serve_server

executed: dict[str, int] = {}
broken: set[str] = set()


@aiki.task("recover-step")
async def step(payload: dict[str, Any]) -> Any:
    name = payload["name"]
    executed[name] = executed.get(name, 0) + 1
    if name in broken:
        raise RuntimeError(f"{name} is broken")
    # A completed result that looks like a failure record must stay memoized.
    return {"status": "failed", "name": name}


flow = aiki.workflow("recover-flow")


@flow.v("1")
async def flow_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
    key = payload["key"]
    await step.start(ctx, {"name": f"{key}:a"})
    if payload.get("sleep"):
        await ctx.sleep("nap", 3600)
    await step.start(ctx, {"name": f"{key}:b"})
    return {"attempt": ctx.attempt}


@flow.v("retrying", retry=aiki.Retry.fixed(max_attempts=2, delay=0.0))
async def flow_retrying(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
    await step.start(ctx, {"name": payload["key"]})
    return {"attempt": ctx.attempt}


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(serve_server, Settings(redis_url=redis_url, port=0))
        yield handle
        nursery.cancel_scope.cancel()


async def _failed(handle: aiki.RunHandle) -> None:
    with pytest.raises(aiki.WorkflowFailed):
        await handle.wait_for_completion(timeout=30)


async def test_retry_keeps_completed_tasks_and_records_the_attempt(client: aiki.Client) -> None:
    broken.add("r1:b")
    async with running_worker(client, flow):
        handle = await flow_v1.start(client, {"key": "r1"})
        await _failed(handle)
        assert executed["r1:a"] == 1 and executed["r1:b"] == 1
        broken.discard("r1:b")
        with pytest.raises(aiki.InvalidState, match="only a failed or cancelled run"):
            await _retry_twice(handle)
        assert await handle.wait_for_completion(timeout=30) == {"attempt": 2}
    assert executed["r1:a"] == 1 and executed["r1:b"] == 2
    run = await handle.describe(with_tasks=True)
    assert run.status == "completed" and run.error is None and run.ended_at
    [attempt] = run.errors or []
    assert attempt["ended_as"] == "failed" and attempt["retried_at"]
    assert "attempts" not in attempt  # the list stays flat
    with pytest.raises(aiki.InvalidState):
        await handle.retry()
    with pytest.raises(aiki.RunNotFound):
        await client.get_handle("0" * 32).retry()


async def _retry_twice(handle: aiki.RunHandle) -> None:
    """The first retry queues the failed run; a second one, before it ended again, is
    refused (the run is queued or running now)."""
    await handle.retry()
    await handle.retry()


async def test_a_cancelled_run_is_retried_and_its_ended_state_cleared(
    client: aiki.Client,
) -> None:
    store = client.store
    await store.set_retention(3600.0)
    async with running_worker(client, flow):
        handle = await flow_v1.start(client, {"key": "c1", "sleep": True})
        await wait_until(lambda: _status_is(handle, "sleeping"), what="asleep")
        await handle.cancel("operator")
        with pytest.raises(aiki.WorkflowCancelled):
            await handle.wait_for_completion(timeout=30)
        assert int(await store.redis.command("PTTL", store.keys.run(handle.id))) > 0
        assert await handle.retry() == "queued"
        # It lives on: no expiry, out of the ended index, its timer gone.
        assert int(await store.redis.command("PTTL", store.keys.run(handle.id))) == -1
        assert await store.redis.command("ZSCORE", store.keys.ended(), handle.id) is None
        await wait_until(lambda: _status_is(handle, "sleeping"), what="asleep again")
        assert await handle.wakeup("nap") == 1
        assert await handle.wait_for_completion(timeout=30) == {"attempt": 2}
    assert executed["c1:a"] == 1 and executed["c1:b"] == 1
    [attempt] = (await handle.describe()).errors or []
    assert attempt["ended_as"] == "cancelled" and attempt["type"] == "Cancelled"


async def test_the_retry_policy_counts_afresh_after_an_operator_retry(
    client: aiki.Client,
) -> None:
    broken.add("p1")
    async with running_worker(client, flow):
        handle = await flow_retrying.start(client, {"key": "p1"})
        await _failed(handle)
        assert executed["p1"] == 2  # the policy's two attempts
        await handle.retry()
        await _failed(handle)
        assert executed["p1"] == 4  # two more, not one: the policy starts again
        broken.discard("p1")
        await handle.retry()
        assert await handle.wait_for_completion(timeout=30) == {"attempt": 5}
    errors = (await handle.describe()).errors or []
    assert [bool(e.get("retried_at")) for e in errors] == [False, True, False, True]


async def _status_is(handle: aiki.RunHandle, status: str) -> bool:
    return await handle.status() == status


async def test_retry_over_http_one_run_and_a_version_page_by_page(
    client: aiki.Client, server: ServerHandle
) -> None:
    async with running_worker(client, flow), aiki.client(base_url=server.base_url) as http:
        broken.update({"h0:b", "h1:b", "h2:b"})
        handles = [await flow_v1.start(http, {"key": f"h{n}"}) for n in range(3)]
        for handle in handles:
            await _failed(handle)
        broken.difference_update({"h0:b", "h1:b", "h2:b"})
        assert await handles[0].retry() == "queued"
        assert await handles[0].wait_for_completion(timeout=30) == {"attempt": 2}
        with pytest.raises(aiki.InvalidState):
            await handles[0].retry()

        api = httpx.AsyncClient(base_url=f"{server.base_url}/api/v1", timeout=30)
        async with api:
            body = {"workflow": "recover-flow", "version": "1", "limit": 1}
            retried: list[str] = []
            cursor = None
            while True:
                page = (await api.post("/runs/retry", json={**body, "cursor": cursor})).json()
                retried += page["retried"]
                assert page["examined"] <= 1
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert sorted(retried) == sorted(h.id for h in handles[1:])
            for handle in handles[1:]:
                assert await handle.wait_for_completion(timeout=30) == {"attempt": 2}

            # Bad input: the field is named; nothing is retried.
            for bad, field in (
                ({"version": "1"}, "workflow"),
                ({**body, "status": "completed"}, "status"),
                ({**body, "limit": 0}, "limit"),
                ({**body, "cursor": "yesterday"}, "cursor"),
            ):
                answer = await api.post("/runs/retry", json=bad)
                assert answer.status_code == 422, answer.text
                assert answer.json()["error"]["field"] == field, answer.text
            missing = await api.post(f"/runs/{'0' * 32}/retry")
            assert missing.status_code == 404 and missing.json()["error"]["type"] == "run_not_found"
            done = await api.post(f"/runs/{handles[0].id}/retry")
            assert done.status_code == 409 and "completed" in done.json()["error"]["message"]


async def test_dead_letter_routes_answer_bad_ids(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=f"{server.base_url}/api/v1", timeout=30) as api:
        listed = (await api.get("/dead-letters")).json()
        assert listed == {"dead_letters": [], "total": 0, "next_cursor": None}
        for method, path in (
            ("GET", "/dead-letters/1-0"),
            ("GET", "/dead-letters/nope"),
            ("DELETE", "/dead-letters/1-0"),
            ("POST", "/dead-letters/1-0/requeue"),
        ):
            answer = await api.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert "no dead letter with id" in answer.json()["error"]["message"]
        bad = await api.get("/dead-letters", params={"cursor": "x"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"


async def _told_of_end(client: aiki.Client, handle: aiki.RunHandle, since: int) -> bool:
    """The run ended AND this client's listener has received a notice since ``since``
    (the end's, delivered to the watch its start made: nobody waits on it)."""
    listener = client._backend.listener  # type: ignore[attr-defined]
    return await _status_is(handle, "failed") and listener.messages_received > since


async def test_a_wait_after_a_retry_waits_for_the_new_end_not_the_old_one(
    client: aiki.Client, redis_url: str
) -> None:
    """A run that failed while nobody waited on it: its client's listener was told of
    the end. After a retry (by this client, then by another process's), a wait returns
    the new outcome instead of the old failure it was told of."""
    listener = client._backend.listener  # type: ignore[attr-defined]
    async with running_worker(client, flow), aiki.client(redis_url=redis_url) as other:
        warm = await flow_v1.start(client, {"key": "w0"})
        assert await warm.wait_for_completion(timeout=30) == {"attempt": 1}  # subscribed
        for key, retrier in (("w1", client), ("w2", other)):
            broken.add(f"{key}:b")
            handle = await flow_v1.start(client, {"key": key})
            since = listener.messages_received
            await wait_until(lambda h=handle, s=since: _told_of_end(client, h, s), what="told")
            broken.discard(f"{key}:b")
            since = listener.messages_received
            assert await retrier.get_handle(handle.id).retry() == "queued"
            if retrier is other:  # this client learns of it from the retry's notice
                await wait_until(lambda s=since: listener.messages_received > s, what="notice")
            # The wait is woken by the new end (a hang would last its whole timeout).
            with trio.fail_after(15):
                assert await handle.wait_for_completion(timeout=30) == {"attempt": 2}
