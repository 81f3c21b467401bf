"""Bad and excess stream messages: poison entries are acked and dead-lettered without
stopping the worker, and a worker never takes more messages than it has free slots."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from _helpers import all_slots_free, running_worker, wait_until

import aiki
from aiki._store._keys import GROUP


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@aiki.task("echo")
async def echo(payload: Any) -> Any:
    return {"echo": payload}


sturdy = aiki.workflow("sturdy")


@sturdy.v("1")
async def sturdy_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await echo.start(ctx, payload)


async def pending_count(client: aiki.Client, stream: str, consumer: str | None = None) -> int:
    redis = client.store.redis
    if consumer is None:
        summary = await redis.command("XPENDING", stream, GROUP)
        return int(summary[0])
    entries = await redis.command("XPENDING", stream, GROUP, "-", "+", "1000", consumer)
    return len(entries or [])


async def dead_letters(client: aiki.Client) -> dict[str, dict[str, str]]:
    """Dead letters by the id of the message they hold."""
    raw = await client.store.redis.command("XRANGE", client.store.keys.dead_letters, "-", "+")
    out: dict[str, dict[str, str]] = {}
    entries = raw.items() if isinstance(raw, dict) else raw or []
    for _id, fields in entries:
        if isinstance(fields, dict):
            data = {_text(k): _text(v) for k, v in fields.items()}
        elif fields and isinstance(fields[0], list | tuple):
            data = {_text(k): _text(v) for k, v in fields}
        else:
            data = {_text(fields[i]): _text(fields[i + 1]) for i in range(0, len(fields), 2)}
        out[data["message"]] = data
    return out


# -- poison messages ----------------------------------------------------------------------


async def test_poison_messages_are_acked_dead_lettered_and_the_worker_goes_on(
    client: aiki.Client,
) -> None:
    redis = client.store.redis
    stream = client.store.keys.stream("sturdy", "1")
    async with running_worker(client, sturdy, id="sturdy-worker") as worker:
        done = await sturdy_v1.start(client, {"n": 0})
        assert await done.wait_for_completion(timeout=30) == {"echo": {"n": 0}}

        no_run = _text(await redis.command("XADD", stream, "*", "garbage", "1"))
        ghost = _text(await redis.command("XADD", stream, "*", "run", "no-such-run-42"))
        # A duplicate message for a run that already ended: acked, nothing to keep.
        ended = _text(await redis.command("XADD", stream, "*", "run", done.id))

        async def all_handled() -> bool:
            return await pending_count(client, stream) == 0 and (
                int(await redis.command("XLEN", stream)) == 0
            )

        await wait_until(all_handled, timeout=30, what="the three messages acked and deleted")
        assert await pending_count(client, stream, "sturdy-worker") == 0

        letters = await dead_letters(client)
        assert set(letters) == {no_run, ghost}  # the ended run's duplicate is no poison
        assert letters[no_run]["reason"] == "message has no 'run' field"
        assert letters[no_run]["stream"] == stream
        assert json.loads(letters[no_run]["fields"]) == {"garbage": "1"}
        assert letters[ghost]["reason"] == "run no-such-run-42 does not exist"
        assert json.loads(letters[ghost]["fields"]) == {"run": "no-such-run-42"}
        assert ended not in letters

        # The ended run is untouched, and the worker keeps working.
        run = await client.get_run(done.id)
        assert (run.status, run.attempts, run.result) == ("completed", 1, {"echo": {"n": 0}})
        after = await sturdy_v1.start(client, {"n": 1})
        assert await after.wait_for_completion(timeout=30) == {"echo": {"n": 1}}
        await all_slots_free(worker)
    assert await pending_count(client, stream) == 0


async def test_poison_messages_queued_before_the_worker_starts(client: aiki.Client) -> None:
    """Poison entries already in the stream when the worker subscribes (its group reads
    from the stream's start) are handled the same way, around a real run."""
    redis = client.store.redis
    stream = client.store.keys.stream("sturdy", "1")
    await redis.command("XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM")
    no_run = _text(await redis.command("XADD", stream, "*", "hello", "world"))
    handle = await sturdy_v1.start(client, {"n": 2})
    ghost = _text(await redis.command("XADD", stream, "*", "run", "missing-too"))
    async with running_worker(client, sturdy):
        assert await handle.wait_for_completion(timeout=30) == {"echo": {"n": 2}}
        await wait_until(
            lambda: _all_acked(client, stream), timeout=30, what="poison messages acked"
        )
    assert set(await dead_letters(client)) == {no_run, ghost}


async def _all_acked(client: aiki.Client, stream: str) -> bool:
    return await pending_count(client, stream) == 0 and (
        int(await client.store.redis.command("XLEN", stream)) == 0
    )


# -- reads never exceed the free slots ----------------------------------------------------

gate: trio.Event = trio.Event()
entered: list[Any] = []


@aiki.task("gated")
async def gated(n: Any) -> Any:
    entered.append(n)
    await gate.wait()
    return n


gated_wf = aiki.workflow("gated")


@gated_wf.v("a")
async def gated_a(ctx: aiki.WorkflowContext, n: Any) -> Any:
    return await gated.start(ctx, n)


@gated_wf.v("b")
async def gated_b(ctx: aiki.WorkflowContext, n: Any) -> Any:
    return await gated.start(ctx, n)


@pytest.mark.parametrize(
    "versions", [(gated_a,), (gated_a, gated_b)], ids=["1-stream", "2-streams"]
)
async def test_worker_never_holds_more_messages_than_free_slots(
    client: aiki.Client, versions: tuple[aiki.WorkflowVersion, ...]
) -> None:
    global gate
    gate = trio.Event()
    entered.clear()
    streams = [client.store.keys.stream("gated", v.version) for v in versions]
    async with running_worker(client, *versions, id="two-slots", max_concurrent_workflow_runs=2):
        handles = [await versions[i % len(versions)].start(client, i) for i in range(10)]
        await wait_until(lambda: len(entered) >= 2, timeout=30, what="two runs executing")

        # Watch over many read, claim and heartbeat rounds (block 0.2 s, claim every
        # ~0.5 s, heartbeat every 0.25 s) while both slots are blocked.
        samples = []
        for _ in range(40):
            mine = [await pending_count(client, s, "two-slots") for s in streams]
            group = [await pending_count(client, s) for s in streams]
            samples.append((sum(mine), sum(group)))
            await trio.sleep(0.05)
        assert max(m for m, _ in samples) <= 2
        assert max(g for _, g in samples) <= 2
        assert samples[-1] == (2, 2)
        assert len(entered) == 2
        statuses = [await h.status() for h in handles]
        assert statuses.count("running") == 2 and statuses.count("queued") == 8

        # Released, the rest go through two at a time.
        gate.set()
        results = [await h.wait_for_completion(timeout=60) for h in handles]
    assert results == list(range(10))
    assert sorted(entered) == list(range(10))
    for s in streams:
        assert await pending_count(client, s) == 0


async def test_equal_message_ids_on_two_streams_take_two_slots(client: aiki.Client) -> None:
    """Stream ids are unique per stream only: two workflow versions hand out the same id
    to messages added in the same millisecond. The worker must count, heartbeat and
    release them as two messages (it once keyed executions by id alone, and then ran more
    runs at once than it had slots)."""
    global gate
    gate = trio.Event()
    entered.clear()
    redis = client.store.redis
    keys = client.store.keys
    first = await gated_a.start(client, 100)
    second = await gated_b.start(client, 200)
    # Replace both runs' messages with messages that share one id, in the future so that
    # it is above every id either stream has given out.
    seconds, micros = await redis.command("TIME")
    same_id = f"{int(seconds) * 1000 + int(micros) // 1000 + 60_000}-0"
    for handle, version in ((first, "a"), (second, "b")):
        stream = keys.stream("gated", version)
        run = await client.get_run(handle.id)
        assert int(await redis.command("XLEN", stream)) == 1
        await redis.command("DEL", stream)
        assert _text(await redis.command("XADD", stream, same_id, "run", handle.id)) == same_id
        assert run.status == "queued"
    later = [await (gated_a if i % 2 else gated_b).start(client, i) for i in range(4)]

    async with running_worker(client, gated_wf, id="two-slots", max_concurrent_workflow_runs=2):
        await wait_until(lambda: len(entered) >= 2, timeout=30, what="two runs executing")
        # Longer than claim_min_idle_time (1 s): both messages must be kept alive by the
        # heartbeat, and no third run may start.
        for _ in range(30):
            mine = [await pending_count(client, keys.stream("gated", v), "two-slots") for v in "ab"]
            assert mine == [1, 1]
            await trio.sleep(0.05)
        assert sorted(entered) == [100, 200]
        for handle in (first, second):
            run = await client.get_run(handle.id)
            assert (run.status, run.attempts) == ("running", 1)

        gate.set()
        assert [await h.wait_for_completion(timeout=30) for h in (first, second)] == [100, 200]
        assert [await h.wait_for_completion(timeout=30) for h in later] == [0, 1, 2, 3]
    assert sorted(entered) == [0, 1, 2, 3, 100, 200]


async def test_heartbeat_tells_a_claimed_message_from_a_finished_one(
    client: aiki.Client,
) -> None:
    """Only a message now pending with ANOTHER consumer is lost; one acked meanwhile (its
    execution is finishing) is not, so no execution is cancelled for having ended."""
    from aiki._store._keys import GROUP
    from aiki.subscribers import StreamReader

    redis = client.store.redis
    stream = client.store.keys.stream("beats", "1")
    await redis.command("XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM")
    ids = [await redis.command("XADD", stream, "*", "run", f"r{i}") for i in range(3)]
    ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
    reader = StreamReader(redis, redis, "me", [[stream]])
    assert len(await reader.read(3, 0.1)) == 3
    await redis.command("XACK", stream, GROUP, ids[0])  # finished meanwhile
    await redis.command("XCLAIM", stream, GROUP, "other", "0", ids[1], "JUSTID")  # taken
    assert await reader.heartbeat({stream: ids}) == {(stream, ids[1])}


async def test_a_backlog_is_read_and_taken_in_one_call_with_poison_mixed_in(
    client: aiki.Client,
) -> None:
    """With work waiting, a worker reads messages and takes their runs in one script
    (READ_AND_TAKE): the runs complete once each, and poison among them is handled as
    when read one by one (dead-lettered with its fields, or acked for an ended run)."""
    redis = client.store.redis
    stream = client.store.keys.stream("sturdy", "1")
    async with running_worker(client, sturdy) as worker:
        done = await sturdy_v1.start(client, {"n": -1})
        assert await done.wait_for_completion(timeout=30) == {"echo": {"n": -1}}
    handles = []
    poison: list[str] = []
    for i in range(40):
        handles.append(await sturdy_v1.start(client, {"n": i}))
        if i % 10 == 5:
            poison.append(_text(await redis.command("XADD", stream, "*", "junk", str(i))))
            poison.append(_text(await redis.command("XADD", stream, "*", "run", f"gone-{i}")))
            await redis.command("XADD", stream, "*", "run", done.id)  # ended: acked
    async with running_worker(client, sturdy, max_concurrent_workflow_runs=4) as worker:
        with trio.fail_after(60):
            results = [await h.wait_for_completion() for h in handles]

        async def drained() -> bool:
            return int(await redis.command("XLEN", stream)) == 0

        await wait_until(drained, what="every message handled")
        assert worker.taken_with_read > 0  # the backlog went through READ_AND_TAKE
    assert results == [{"echo": {"n": i}} for i in range(40)]
    for handle in handles:
        assert (await client.get_run(handle.id)).attempts == 1
    letters = await dead_letters(client)
    assert set(letters) == set(poison)
    junk = [letters[m] for m in poison if "junk" in letters[m]["fields"]]
    assert [json.loads(j["fields"]) for j in junk] == [
        {"junk": "5"},
        {"junk": "15"},
        {"junk": "25"},
        {"junk": "35"},
    ]
    assert all(j["reason"] == "message has no 'run' field" for j in junk)


async def test_a_message_naming_a_key_of_another_type_is_dead_lettered(
    client: aiki.Client,
) -> None:
    """A message whose run key holds something other than a hash (WRONGTYPE inside the
    take script) is dead-lettered, alone or in a backlog, and the runs around it run."""
    redis = client.store.redis
    stream = client.store.keys.stream("sturdy", "1")
    await redis.command("SET", client.store.keys.run("00notahash"), "just a string")
    await redis.command("XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM")
    handles = [await sturdy_v1.start(client, {"n": i}) for i in range(6)]
    odd = _text(await redis.command("XADD", stream, "*", "run", "00notahash"))
    handles += [await sturdy_v1.start(client, {"n": i}) for i in range(6, 12)]
    async with running_worker(client, sturdy, max_concurrent_workflow_runs=3) as worker:
        with trio.fail_after(60):
            results = [await h.wait_for_completion() for h in handles]
        assert worker.taken_with_read > 0
    assert results == [{"echo": {"n": i}} for i in range(12)]
    letters = await dead_letters(client)
    assert set(letters) == {odd}
    assert "is a string, not a hash" in letters[odd]["reason"]
    # Taken one by one (no backlog), the same message gets the same treatment.
    again = _text(await redis.command("XADD", stream, "*", "run", "00notahash"))
    async with running_worker(client, sturdy):
        await wait_until(lambda: _has_letter(client, again), what="the repeat dead-lettered")


async def _has_letter(client: aiki.Client, message_id: str) -> bool:
    return message_id in await dead_letters(client)
