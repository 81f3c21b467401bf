"""Crash and stop faults: completed tasks are never executed again.

The acceptance test: a run whose worker process is killed with SIGKILL after two of four
tasks completes on another worker, and the first two tasks executed exactly once in
total (counted with a side effect outside the worker processes: INCR in Redis).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import TESTS, running_worker, subprocess_env, wait_until
from _resp import acommand
from workers.four_steps import expected_result, four_steps_v1

import aiki

WORKER_SCRIPT = TESTS / "workers" / "four_steps.py"


@asynccontextmanager
async def worker_process(url: str, worker_id: str, log_dir: Path) -> AsyncIterator[trio.Process]:
    """A worker running ``tests/workers/four_steps.py`` in a child process; yields once
    it printed ``ready`` (subscribed). Killed and reaped on exit if still alive."""
    stderr_path = log_dir / f"{worker_id}.stderr"
    with open(stderr_path, "wb") as stderr:  # noqa: ASYNC230 (a local file, opened once)
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(WORKER_SCRIPT), url, worker_id],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=subprocess_env(),
        )
    try:
        assert proc.stdout is not None
        seen = b""
        with trio.move_on_after(30):
            while b"ready" not in seen:
                chunk = await proc.stdout.receive_some(1024)
                if not chunk:
                    break
                seen += chunk
        if b"ready" not in seen:
            proc.kill()
            await proc.wait()
            pytest.fail(
                f"worker {worker_id} did not become ready (exit {proc.returncode}):\n"
                + stderr_path.read_text(errors="replace")[-3000:]
            )
        yield proc
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()


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
        await worker_a.wait()
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
