"""Crash and stop faults: completed tasks are never executed again.

The acceptance test: a run whose worker process is killed with SIGKILL after two of four
tasks completes on another worker, and the first two tasks executed exactly once in
total (counted with a side effect outside the worker processes: INCR in Redis).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from _helpers import FAST_CLAIM, running_worker, wait_until
from _resp import acommand
from workers import processes
from workers.four_steps import expected_result, four_steps_v1
from workers.processes import WorkerProcess

import aiki


@asynccontextmanager
async def worker_process(url: str, worker_id: str, log_dir: Path) -> AsyncIterator[WorkerProcess]:
    """A worker running ``tests/workers/four_steps.py`` in a child process; yields once
    it printed ``ready`` (subscribed). Killed and reaped on exit if still alive."""
    async with processes.worker_process(
        url, worker_id, log_dir, script=processes.FOUR_STEPS_WORKER
    ) as worker:
        yield worker


async def counts(port: int) -> dict[str, int]:
    out = {}
    for name in ("task1", "task2", "task3", "task4"):
        value = await acommand(port, "GET", f"count:{name}")
        out[name] = int(value) if value is not None else 0
    return out


async def completed_tasks(client: aiki.Client, run_id: str) -> list[str]:
    run = await client.get_run(run_id, with_tasks=True)
    return sorted(r["task"] for r in (run.tasks or {}).values() if r["status"] == "completed")


async def test_sigkilled_worker_run_completes_elsewhere_and_tasks_run_once(
    redis_url: str, redis_port: int, client: aiki.Client, tmp_path: Path
) -> None:
    async with worker_process(redis_url, "worker-a", tmp_path) as worker_a:
        handle = await four_steps_v1.start(client, {"x": 4})

        async def inside_task3() -> bool:
            done = await completed_tasks(client, handle.id)
            return done == ["task1", "task2"] and (await counts(redis_port))["task3"] == 1

        await wait_until(inside_task3, timeout=30, what="worker A inside task 3")
        run = await client.get_run(handle.id)
        assert run.status == "running" and run.worker == "worker-a"

        worker_a.send_signal(signal.SIGKILL)
        await worker_a.proc.wait()
        assert worker_a.returncode == -signal.SIGKILL

    # Worker A is gone for good, its message still pending in the consumer group.
    assert await counts(redis_port) == {"task1": 1, "task2": 1, "task3": 1, "task4": 0}
    assert await acommand(redis_port, "SET", "release", "1") == "OK"

    async with worker_process(redis_url, "worker-b", tmp_path):
        result = await handle.wait_for_completion(timeout=30)

    assert result == expected_result(4)
    assert await counts(redis_port) == {
        "task1": 1,  # exactly once: recorded before the crash, replayed from the record
        "task2": 1,
        "task3": 2,  # interrupted before its result was recorded: at-least-once
        "task4": 1,
    }
    run = await client.get_run(handle.id, with_tasks=True)
    assert run.status == "completed"
    assert run.attempts == 2
    assert run.worker == "worker-b"
    assert run.tasks is not None and len(run.tasks) == 4
    assert all(r["status"] == "completed" for r in run.tasks.values())


async def test_sigkill_mid_task_completes_on_a_running_worker_within_claim_bound(
    redis_url: str, redis_port: int, client: aiki.Client, tmp_path: Path
) -> None:
    """Issue #4, acceptance 1 and 9: worker A is SIGKILLed inside task 3 while worker B
    is already running; B takes the run over and completes it within
    ``claim_min_idle_time + 2 s`` of the kill. Tasks recorded before the crash never run
    again; the interrupted task runs again with the same idempotency key."""
    async with worker_process(redis_url, "worker-a", tmp_path) as worker_a:
        handle = await four_steps_v1.start(client, {"x": 7})

        async def inside_task3() -> bool:
            done = await completed_tasks(client, handle.id)
            return done == ["task1", "task2"] and (await counts(redis_port))["task3"] == 1

        await wait_until(inside_task3, timeout=30, what="worker A inside task 3")

        async with worker_process(redis_url, "worker-b", tmp_path) as worker_b:
            # B is subscribed and claiming, yet cannot take the run while A heartbeats it.
            await trio.sleep(FAST_CLAIM * 1.5)
            run = await client.get_run(handle.id)
            assert (run.status, run.worker, run.attempts) == ("running", "worker-a", 1)

            worker_a.send_signal(signal.SIGKILL)
            killed_at = trio.current_time()
            await worker_a.proc.wait()
            assert worker_a.returncode == -signal.SIGKILL
            # Task 3 blocks until `release`: set it now so B's re-execution returns.
            assert await acommand(redis_port, "SET", "release", "1") == "OK"

            result = await handle.wait_for_completion(timeout=30)
            elapsed = trio.current_time() - killed_at
            assert worker_b.alive

    # The acceptance bound, as the issue states it (claim_min_idle_time is 1 s in
    # tests/workers/four_steps.py).
    assert elapsed < FAST_CLAIM + 2.0, f"completed {elapsed:.2f} s after the kill"
    assert result == expected_result(7)
    assert await counts(redis_port) == {"task1": 1, "task2": 1, "task3": 2, "task4": 1}
    run = await client.get_run(handle.id, with_tasks=True)
    assert (run.status, run.worker, run.attempts) == ("completed", "worker-b", 2)

    # The idempotency key: the same for both executions of the interrupted task 3 (one
    # on A, one on B), and different from task 4's.
    keys = [k.decode() for k in await acommand(redis_port, "LRANGE", "idempotency:task3", 0, -1)]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert run.tasks is not None
    records = {r["task"]: (address, r) for address, r in run.tasks.items()}
    task3_address = records["task3"][0]
    assert keys[0] == f"{handle.id}:{task3_address}"
    task4_address, task4_record = records["task4"]
    assert task4_record["result"]["idempotency_key"] == f"{handle.id}:{task4_address}"
    assert task4_record["result"]["idempotency_key"] != keys[0]


# -- graceful stop ------------------------------------------------------------------------

long_task_calls = 0
long_task_entered = trio.Event()


@aiki.task("long-task")
async def long_task(payload: Any) -> Any:
    global long_task_calls
    long_task_calls += 1
    long_task_entered.set()
    if long_task_calls == 1:
        await trio.sleep_forever()  # the first execution never finishes by itself
    return {"done": payload["n"] * 3}


@aiki.task("quick-task")
async def quick_task(payload: Any) -> Any:
    quick_task_inputs.append(payload)
    return payload["n"] + 1


quick_task_inputs: list[Any] = []

stoppable = aiki.workflow("stoppable")


@stoppable.v("1.0.0")
async def stoppable_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    first = await quick_task.start(ctx, payload)
    second = await long_task.start(ctx, payload)
    return {"first": first, "second": second["done"]}


async def test_graceful_stop_requeues_the_run_at_once(client: aiki.Client) -> None:
    global long_task_calls, long_task_entered
    long_task_calls, long_task_entered = 0, trio.Event()
    quick_task_inputs.clear()

    async with running_worker(client, stoppable, id="stopping", shutdown_grace=0.2) as first:
        handle = await stoppable_v1.start(client, {"n": 5})
        await long_task_entered.wait()
        assert await handle.status() == "running"
        await first.stop()
        # Right after stop() returns, the run is back in the queue: no claim timeout.
        run = await client.get_run(handle.id)
        assert run.status == "queued"
        assert first.in_flight == 0

    # A second worker that would claim abandoned messages only after a minute: it can
    # only pick the run up because it was requeued as a fresh message.
    async with running_worker(client, stoppable, id="second", claim_min_idle_time=60.0):
        result = await handle.wait_for_completion(timeout=30)

    assert result == {"first": 6, "second": 15}
    assert long_task_calls == 2  # interrupted, so run again
    assert quick_task_inputs == [{"n": 5}]  # recorded before the stop: never again
    run = await client.get_run(handle.id, with_tasks=True)
    assert run.status == "completed"
    assert run.attempts == 2
    assert run.worker == "second"
