"""A four-task workflow for fault tests, and a worker process to run it.

Every task increments ``count:<task>`` in the test's Redis before returning: a side
effect outside the worker process, so a test can count executions across processes
(including ones it SIGKILLs). ``task3`` then blocks until the key ``release`` exists,
so the test can kill the worker while it is inside task 3, after tasks 1 and 2 were
recorded. Each execution of ``task3`` also RPUSHes its idempotency key to
``idempotency:task3``, and ``task4`` returns its own.

Run as a worker: ``python tests/workers/four_steps.py redis://127.0.0.1:PORT [worker-id]``.
It prints ``ready`` once subscribed and runs until killed (or SIGTERM/SIGINT).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

if __name__ == "__main__":  # make `_resp` (in tests/) importable when run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio
from _resp import acommand

import aiki
from workers._serve import run_worker

WORKFLOW = "four-steps"

# Set by the worker's __main__ (or by a test running tasks in-process).
redis_port: int | None = None


async def _incr(name: str) -> int:
    assert redis_port is not None, "four_steps.redis_port is not set"
    return int(await acommand(redis_port, "INCR", f"count:{name}"))


@aiki.task("task1")
async def task1(payload: Any) -> Any:
    await _incr("task1")
    return payload["x"] + 1


@aiki.task("task2")
async def task2(payload: Any) -> Any:
    await _incr("task2")
    return payload["x"] * 10


@aiki.task("task3")
async def task3(payload: Any) -> Any:
    await _incr("task3")
    assert redis_port is not None
    # One entry per execution: a re-execution after a crash must see the same key.
    await acommand(redis_port, "RPUSH", "idempotency:task3", aiki.task_context().idempotency_key)
    # Polls Redis: the release comes from another process, so no trio.Event can carry it.
    while not await acommand(redis_port, "EXISTS", "release"):  # noqa: ASYNC110
        await trio.sleep(0.02)
    return payload["x"] - 3


@aiki.task("task4")
async def task4(payload: Any) -> Any:
    await _incr("task4")
    return {"total": payload["x"], "idempotency_key": aiki.task_context().idempotency_key}


four_steps = aiki.workflow(WORKFLOW)


@four_steps.v("1.0.0")
async def four_steps_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    a = await task1.start(ctx, {"x": payload["x"]})
    b = await task2.start(ctx, {"x": a})
    c = await task3.start(ctx, {"x": b})
    d = await task4.start(ctx, {"x": a + b + c})
    return {"a": a, "b": b, "c": c, "d": d["total"]}


def expected_result(x: int) -> dict[str, int]:
    a = x + 1
    b = a * 10
    c = b - 3
    return {"a": a, "b": b, "c": c, "d": a + b + c}


async def serve(url: str, worker_id: str) -> None:
    global redis_port
    redis_port = urlparse(url).port
    await run_worker(url, worker_id, four_steps)


if __name__ == "__main__":
    trio.run(serve, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "four-steps-worker")
