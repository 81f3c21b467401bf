"""A workflow's last task record rides on its finish script (one round trip saved per
run), without weakening "every completed step is recorded before the next begins".

What is held back and when it is written (aiki._context.WorkflowContext._record_completed):
the record of a task completed in sequential code waits only while the code runs plain
Python; the code's next step, park, failure, cancellation or first checkpoint writes it.
"""

from __future__ import annotations

import redis
import trio
from _helpers import running_worker, wait_until

import aiki

RUNS = 20


@aiki.task("fused.echo")
async def echo(n: int) -> int:
    return n


@aiki.task("fused.boom")
async def boom(n: int) -> int:
    raise ValueError(f"boom {n}")


fused = aiki.workflow("fused")


@fused.v("one-task")
async def one_task(ctx: aiki.WorkflowContext, n: int) -> int:
    return await echo.start(ctx, n)


@fused.v("then-waits")
async def then_waits(ctx: aiki.WorkflowContext, n: int) -> int:
    value = await echo.start(ctx, n)
    await trio.sleep_forever()  # a checkpoint: the held record must be written now
    return value  # pragma: no cover


@fused.v("then-fails")
async def then_fails(ctx: aiki.WorkflowContext, n: int) -> int:
    value = await echo.start(ctx, n)
    raise RuntimeError(f"failed after the task with {value}")


@fused.v("then-sleeps")
async def then_sleeps(ctx: aiki.WorkflowContext, n: int) -> int:
    value = await echo.start(ctx, n)
    await ctx.sleep("pause", 3600)
    return value  # pragma: no cover


@fused.v("then-a-failing-task")
async def then_a_failing_task(ctx: aiki.WorkflowContext, n: int) -> int:
    value = await echo.start(ctx, n)
    return await boom.start(ctx, value)


def _evalsha_calls(port: int) -> int:
    with redis.Redis(port=port, socket_timeout=5) as r:
        stats = r.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _task_records(client: aiki.Client, handle: aiki.RunHandle) -> dict[str, dict]:
    run = await client.get_run(handle.id, with_tasks=True)
    return {a: r for a, r in (run.tasks or {}).items() if a.startswith("fused.echo:")}


async def test_a_one_task_run_costs_three_scripts_and_keeps_its_task_record(
    client: aiki.Client, redis_port: int
) -> None:
    """start, take, finish (+ the worker's own periodic scripts): not four. The record
    written by the finish is the same a record_task writes: replay finds it."""
    async with running_worker(client, fused):
        warm = await one_task.start(client, -1)
        assert await warm.wait_for_completion(timeout=20) == -1
        before = _evalsha_calls(redis_port)
        handles = []
        for n in range(RUNS):
            handle = await one_task.start(client, n)
            assert await handle.wait_for_completion(timeout=20) == n
            handles.append(handle)
        calls = _evalsha_calls(redis_port) - before
    # 3 per run; the slack covers the worker's registry, heartbeat and timer scripts.
    assert calls <= 3 * RUNS + 10, f"{calls} scripts for {RUNS} one-task runs"
    for n, handle in enumerate(handles):
        (record,) = (await _task_records(client, handle)).values()
        assert record["status"] == "completed" and record["result"] == n
        assert record["seq"] == 0 and record["task"] == "fused.echo"


async def test_a_held_record_is_written_at_the_codes_first_checkpoint(
    client: aiki.Client,
) -> None:
    async with running_worker(client, fused):
        handle = await then_waits.start(client, 7)

        async def recorded() -> bool:
            return bool(await _task_records(client, handle))

        await wait_until(recorded, what="the task's record, while the code waits")
        assert await handle.status() == "running"
        (record,) = (await _task_records(client, handle)).values()
        assert record["result"] == 7
        await handle.cancel("done looking")


async def test_a_held_record_is_written_before_a_failure_a_park_and_the_next_task(
    client: aiki.Client,
) -> None:
    async with running_worker(client, fused):
        failed = await then_fails.start(client, 1)
        sleeping = await then_sleeps.start(client, 2)
        chained = await then_a_failing_task.start(client, 3)
        try:
            await failed.wait_for_completion(timeout=20)
        except aiki.WorkflowFailed as exc:
            assert "failed after the task with 1" in str(exc)
        else:  # pragma: no cover
            raise AssertionError("then-fails completed")

        async def parked() -> bool:
            return await sleeping.status() == "sleeping"

        await wait_until(parked, what="the run parked on its sleep")
        try:
            await chained.wait_for_completion(timeout=20)
        except aiki.WorkflowFailed as exc:
            assert "boom 3" in str(exc)
        else:  # pragma: no cover
            raise AssertionError("then-a-failing-task completed")
    for handle, n in ((failed, 1), (sleeping, 2), (chained, 3)):
        (record,) = (await _task_records(client, handle)).values()
        assert record["status"] == "completed" and record["result"] == n


async def test_a_stopping_worker_records_the_held_task_before_it_hands_the_run_back(
    client: aiki.Client,
) -> None:
    """Cancelled while it holds a record (its code awaits forever after the task): the
    worker's stop still records the completed step, so no later execution repeats it."""
    async with running_worker(client, fused, shutdown_grace=0.1):
        handle = await then_waits.start(client, 9)

        async def running() -> bool:
            return await handle.status() == "running"

        await wait_until(running, what="the run executing")
    (record,) = (await _task_records(client, handle)).values()
    assert record["status"] == "completed" and record["result"] == 9


async def test_a_failed_background_write_is_raised_at_the_codes_next_step() -> None:
    """The executor's background write of a held record fails (the run was lost, or
    Redis stayed away): the code's next step must raise that failure, not run on with
    the record never written (a later replay would find a step missing)."""
    from aiki._context import WorkflowContext
    from aiki._outcome import _StaleExecution

    written: list[str] = []

    async def record_task(address: str, record: dict[str, object]) -> None:
        written.append(address)
        if len(written) == 1:
            raise _StaleExecution("revision moved on")

    async with trio.open_nursery() as nursery:
        ctx = WorkflowContext(
            run_id="r1", workflow="fused", version="1", attempt=1, memo={},
            record_task=record_task, flush_soon=nursery.start_soon,
        )  # fmt: skip
        await ctx._record_completed("fused.echo:x:0", {"status": "completed", "result": 1})
        # The code's first checkpoints: the background write runs, and fails.
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        assert written == ["fused.echo:x:0"]
        try:
            await ctx.sleep("next", 0)
        except _StaleExecution:
            pass
        else:  # pragma: no cover
            raise AssertionError("the next step ran on after the held record's write failed")
    assert written == ["fused.echo:x:0"]  # the next step wrote nothing
