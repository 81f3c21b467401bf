"""Durable primitives: sleeps, events, child workflows, cancel/pause/resume, timeouts,
delayed starts — each against a real Redis, most with the worker restarted while the
run is suspended."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import trio
from _helpers import all_slots_free, running_worker, wait_until

import aiki
from aiki.engine import serve_schedules, serve_timers


@contextlib.asynccontextmanager
async def daemons(client: aiki.Client) -> AsyncIterator[None]:
    """The server's timer and schedule daemons, run in-process."""
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_timers, client.store)
        await nursery.start(serve_schedules, client.store)
        yield
        nursery.cancel_scope.cancel()


EXECUTIONS: dict[str, int] = {}


@aiki.task("double")
async def double(n: int) -> int:
    EXECUTIONS["double"] = EXECUTIONS.get("double", 0) + 1
    return n * 2


@aiki.task("hang")
async def hang(n: int) -> int:
    await trio.sleep_forever()
    return n  # pragma: no cover


prims = aiki.workflow("prims")


@prims.v("sleep")
async def sleeper(ctx: aiki.WorkflowContext, seconds: float) -> int:
    first = await double.start(ctx, 1)
    await ctx.sleep("cool-off", seconds)
    return first + await double.start(ctx, 2)


@prims.v("event")
async def event_waiter(ctx: aiki.WorkflowContext, timeout: float) -> object:
    try:
        first = await ctx.wait_for_event("payment-confirmed", timeout=timeout)
        second = await ctx.wait_for_event("payment-confirmed", timeout=timeout)
    except aiki.EventTimeout:
        return "timed out"
    return [first, second]


@prims.v("child")
async def child(ctx: aiki.WorkflowContext, n: int) -> int:
    await ctx.sleep("child-nap", 0.3)
    return await double.start(ctx, n)


@prims.v("parent")
async def parent(ctx: aiki.WorkflowContext, n: int) -> dict[str, int]:
    handle = await child.start_as_child(ctx, n)
    return {"child": await handle.wait_for_completion(), "own": await double.start(ctx, 100)}


@prims.v("hanging-child")
async def hanging_child(ctx: aiki.WorkflowContext, n: int) -> int:
    return await hang.start(ctx, n)


@prims.v("parent-of-hanging")
async def parent_of_hanging(ctx: aiki.WorkflowContext, n: int) -> int:
    handle = await hanging_child.start_as_child(ctx, n)
    return int(await handle.wait_for_completion())


@prims.v("hanging")
async def hanging(ctx: aiki.WorkflowContext, n: int) -> int:
    return await hang.start(ctx, n)


@prims.v("limited", timeout=0.5)
async def limited(ctx: aiki.WorkflowContext, n: int) -> int:
    return await hang.start(ctx, n)


@prims.v("fan-out")
async def fan_out(ctx: aiki.WorkflowContext, n: int) -> list[int]:
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await double.start(ctx, i)

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return [results[i] for i in range(n)]


async def test_sleep_survives_worker_restart_and_holds_no_slot(client: aiki.Client) -> None:
    async with daemons(client):
        async with running_worker(client, prims, max_concurrent_workflow_runs=1) as worker:
            handle = await sleeper.start(client, 2.0)
            await wait_until(lambda: handle.status(), what="run started")
            await wait_until(lambda: _status_is(handle, "sleeping"), what="run sleeping")
            await all_slots_free(worker)  # the sleep holds no slot
            # A second run completes on the single slot while the first one sleeps.
            other = await sleeper.start(client, 0.0)
            assert await other.wait_for_completion(timeout=20) == 6
            assert await handle.status() == "sleeping"
        # Worker gone while the run sleeps; a new worker finishes it after the delay.
        async with running_worker(client, prims):
            assert await handle.wait_for_completion(timeout=20) == 6
    run = await handle.describe(with_tasks=True)
    sleep_record = next(r for a, r in (run.tasks or {}).items() if a.startswith("sleep:"))
    assert sleep_record["status"] == "completed"
    assert sleep_record["ended_at"] >= sleep_record["wake_at"]


async def _status_is(handle: aiki.RunHandle, status: str) -> bool:
    return await handle.status() == status


async def test_wakeup_ends_a_long_sleep_early(client: aiki.Client) -> None:
    async with daemons(client), running_worker(client, prims):
        handle = await sleeper.start(client, 3600.0)
        await wait_until(lambda: _status_is(handle, "sleeping"), what="sleeping")
        assert await handle.wakeup("cool-off") == 1
        assert await handle.wait_for_completion(timeout=20) == 6
        assert await handle.wakeup("cool-off") == 0  # nothing left to wake


async def test_event_sent_before_wait_and_duplicate_reference(client: aiki.Client) -> None:
    async with daemons(client):
        handle = await event_waiter.start(client, 60.0)
        # Sent before any worker ran the workflow: kept until it waits.
        assert await handle.send_event("payment-confirmed", {"n": 1}, reference_id="ref-1")
        assert not await handle.send_event("payment-confirmed", {"n": 1}, reference_id="ref-1")
        async with running_worker(client, prims):
            await wait_until(lambda: _status_is(handle, "awaiting_event"), what="waiting")
        # Worker restarted while the run waits for its second event.
        async with running_worker(client, prims):
            assert await handle.send_event("payment-confirmed", {"n": 2}, reference_id="ref-2")
            assert await handle.wait_for_completion(timeout=20) == [{"n": 1}, {"n": 2}]


async def test_webhook_retried_after_the_run_ended_counts_as_a_duplicate(
    client: aiki.Client,
) -> None:
    """A payment webhook retried after its first delivery ended the run is a duplicate
    (False), not an error: the sender cannot know the run has moved on meanwhile."""
    async with daemons(client), running_worker(client, prims):
        handle = await event_waiter.start(client, 60.0)
        assert await handle.send_event("payment-confirmed", {"n": 1}, reference_id="ref-1")
        assert await handle.send_event("payment-confirmed", {"n": 2}, reference_id="ref-2")
        assert await handle.wait_for_completion(timeout=20) == [{"n": 1}, {"n": 2}]
        assert not await handle.send_event("payment-confirmed", {"n": 2}, reference_id="ref-2")
        with pytest.raises(aiki.InvalidState, match="completed"):  # a new one is refused
            await handle.send_event("payment-confirmed", {"n": 3}, reference_id="ref-3")


async def test_event_timeout(client: aiki.Client) -> None:
    async with daemons(client), running_worker(client, prims):
        handle = await event_waiter.start(client, 0.3)
        assert await handle.wait_for_completion(timeout=20) == "timed out"
        with pytest.raises(aiki.InvalidState):
            await handle.send_event("payment-confirmed", {"late": True})


async def test_child_workflow_parent_waits_without_slot(client: aiki.Client) -> None:
    async with daemons(client):
        async with running_worker(client, prims, max_concurrent_workflow_runs=1):
            handle = await parent.start(client, 21)
            await wait_until(
                lambda: _status_is(handle, "awaiting_child_workflow"), what="parent waits"
            )
        async with running_worker(client, prims):  # restarted while the parent waits
            assert await handle.wait_for_completion(timeout=20) == {"child": 42, "own": 200}
    runs = await client.store.list_runs(limit=10)
    children = [r for r in runs if r.version == "child"]
    assert len(children) == 1  # a replay never starts a second child


async def test_cancel_parent_cancels_running_child(client: aiki.Client) -> None:
    async with daemons(client), running_worker(client, prims) as worker:
        handle = await parent_of_hanging.start(client, 1)
        await wait_until(lambda: _status_is(handle, "awaiting_child_workflow"), what="parent waits")
        await wait_until(lambda: worker.in_flight == 1, what="child running")
        assert await handle.cancel("customer cancelled") == "cancelled"
        with pytest.raises(aiki.WorkflowCancelled, match="customer cancelled"):
            await handle.wait_for_completion(timeout=10)
        runs = await client.store.list_runs(limit=10)
        child_run = next(r for r in runs if r.version == "hanging-child")
        assert child_run.status == "cancelled"
        await wait_until(lambda: worker.in_flight == 0, what="child execution interrupted")


async def test_cancel_interrupts_running_execution(client: aiki.Client) -> None:
    async with running_worker(client, prims) as worker:
        handle = await hanging.start(client, 1)
        await wait_until(lambda: worker.in_flight == 1, what="running")
        await handle.cancel("stop it")
        with pytest.raises(aiki.WorkflowCancelled) as info:
            await handle.wait_for_completion(timeout=10)
        assert info.value.reason == "stop it"
        await wait_until(lambda: worker.in_flight == 0, what="interrupted")
        run = await handle.describe()
        assert run.status == "cancelled" and run.error == {
            "type": "Cancelled",
            "message": "stop it",
        }


async def test_pause_keeps_run_from_being_picked_until_resume(client: aiki.Client) -> None:
    handle = await sleeper.start(client, 0.0)
    assert await handle.pause() == "paused"
    async with daemons(client), running_worker(client, prims):
        await trio.sleep(0.5)  # give the worker every chance to (wrongly) pick it up
        assert await handle.status() == "paused"
        assert await handle.resume() == "queued"
        assert await handle.wait_for_completion(timeout=20) == 6


async def test_pause_interrupts_running_execution_and_resume_continues(
    client: aiki.Client,
) -> None:
    async with daemons(client), running_worker(client, prims) as worker:
        handle = await sleeper.start(client, 1.0)
        await wait_until(lambda: _status_is(handle, "sleeping"), what="sleeping")
        assert await handle.pause() == "paused"
        await trio.sleep(1.5)  # the sleep's time passes while paused
        assert await handle.status() == "paused"
        await handle.resume()
        assert await handle.wait_for_completion(timeout=20) == 6
        await all_slots_free(worker)


async def test_workflow_timeout_fails_run(client: aiki.Client) -> None:
    async with running_worker(client, prims):
        handle = await limited.start(client, 1)
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=20)
        assert info.value.error_type == "WorkflowTimeout"


async def test_delayed_start_is_scheduled_until_then(client: aiki.Client) -> None:
    async with daemons(client), running_worker(client, prims):
        handle = await sleeper.start(client, 0.0, delay=1.0)
        assert await handle.status() == "scheduled"
        assert await handle.wait_for_completion(timeout=20) == 6
        at = datetime.now(UTC) + timedelta(seconds=0.5)
        later = await sleeper.start(client, 0.0, start_at=at)
        assert await later.wait_for_completion(timeout=20) == 6
        run = await later.describe()
        assert run.started_at is not None and run.started_at >= int(at.timestamp() * 1000) - 5


async def test_parallel_tasks_memoized_independently(client: aiki.Client) -> None:
    async with running_worker(client, prims):
        handle = await fan_out.start(client, 8)
        assert await handle.wait_for_completion(timeout=20) == [i * 2 for i in range(8)]
    run = await handle.describe(with_tasks=True)
    assert len([a for a in run.tasks or {} if a.startswith("double:")]) == 8


async def test_interval_schedule_two_daemons_fire_each_occurrence_once(
    client: aiki.Client,
) -> None:
    async with running_worker(client, prims):
        async with trio.open_nursery() as nursery:
            for _ in range(2):  # two servers' schedule daemons
                await nursery.start(serve_schedules, client.store)
            await sleeper.schedule(client, "tick", 0.0, every=0.5)
            await trio.sleep(3.2)
            await client.delete_schedule("tick")
            nursery.cancel_scope.cancel()
    runs = [r for r in await client.store.list_runs(limit=100) if r.version == "sleep"]
    occurrences = sorted(
        [
            int(await client.store.redis.command("HGET", client.store.keys.run(r.id), "occurrence"))
            for r in runs
        ]
    )
    assert len(occurrences) >= 3
    # One run per occurrence, none missing between the first and the last, none doubled:
    # consecutive occurrences are exactly one interval apart.
    assert [b - a for a, b in zip(occurrences, occurrences[1:], strict=False)] == [500] * (
        len(runs) - 1
    )
