"""The workflows the scenarios run. Module level, so worker subprocesses import them.

Every task is a no-op returning its input: the benchmark measures the engine, not work.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from pydantic import BaseModel

import aiki


@aiki.task("bench.noop")
async def noop(payload: Any) -> Any:
    return payload


# One task: the unit of the throughput, latency, round-trip and memory scenarios.
one_task = aiki.workflow("bench-one-task")


@one_task.v("1")
async def one_task_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await noop.start(ctx, payload)


# Twenty tasks: the per-step overhead is (t20 - t1) / 19.
twenty_tasks = aiki.workflow("bench-twenty-tasks")


@twenty_tasks.v("1")
async def twenty_tasks_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    for i in range(20):
        await noop.start(ctx, i)
    return payload


REPLAY_TASKS = 100

# A hundred tasks, then an ordinary exception on the first execution only. The
# workflow's retry policy (two attempts, no delay) re-runs it at once: the second
# execution replays the hundred recorded tasks and completes.
replay_once = aiki.workflow("bench-replay-once")


class FailOnce(Exception):
    """Raised by the first execution of ``bench-replay-once``."""


# When this process's first execution of a run raised (perf_counter, a system-wide
# monotonic clock on Linux): the second execution, in the same worker process, measures
# the whole resume from there.
_raised_at: dict[str, float] = {}


@replay_once.v("1", retry=aiki.Retry.fixed(2, 0.0))
async def replay_once_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    entered = time.perf_counter()
    for i in range(REPLAY_TASKS):
        await noop.start(ctx, i)
    replayed = time.perf_counter()
    if ctx.replayed_tasks == 0:  # the first execution: every task ran here
        _raised_at[ctx.run_id] = time.perf_counter()
        raise FailOnce("fail once, so that the retry replays the recorded tasks")
    raised = _raised_at.pop(ctx.run_id, None)
    return {
        "replayed_tasks": ctx.replayed_tasks,
        "executed_tasks": ctx.executed_tasks,
        "replay_ms": (replayed - entered) * 1000.0,
        # None when the first execution ran in another process (or this is a replay
        # outside a worker).
        "raise_to_entry_ms": None if raised is None else (entered - raised) * 1000.0,
        "raise_to_replayed_ms": None if raised is None else (replayed - raised) * 1000.0,
    }


# The same hundred tasks without the failure: the baseline the resume is measured against.
hundred_tasks = aiki.workflow("bench-hundred-tasks")


@hundred_tasks.v("1")
async def hundred_tasks_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    for i in range(REPLAY_TASKS):
        await noop.start(ctx, i)
    return {"replayed_tasks": ctx.replayed_tasks, "executed_tasks": ctx.executed_tasks}


# The one-task workflow with typed data (the "typed" scenario): a pydantic model in,
# validated by the start, loaded by the worker, passed to and returned by the task.
class BenchItem(BaseModel):
    sku: str
    quantity: int


class BenchOrder(BaseModel):
    order_id: str
    items: list[BenchItem]


@aiki.task("bench.typed-noop")
async def typed_noop(order: BenchOrder) -> BenchOrder:
    return order


typed_one_task = aiki.workflow("bench-typed-one-task")


@typed_one_task.v("1")
async def typed_one_task_v1(ctx: aiki.WorkflowContext, order: BenchOrder) -> BenchOrder:
    return await typed_noop.start(ctx, order)


# The "concurrency" scenario: the one-task workflow with a concurrency key on every run
# (limit 1 per key), and a keyed run that is busy for a while (the acceptance round).
keyed_one_task = aiki.workflow("bench-keyed-one-task")


@keyed_one_task.v("1", concurrency=aiki.Concurrency(1, key=lambda p: p["key"]))
async def keyed_one_task_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await noop.start(ctx, payload)


keyed_busy = aiki.workflow("bench-keyed-busy")


@keyed_busy.v("1", concurrency=aiki.Concurrency(1, key=lambda p: p["key"]))
async def keyed_busy_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    """Busy for ``payload['seconds']``; returns when it ran (wall clock, one machine)."""
    started = time.time()
    await trio.sleep(payload["seconds"])
    return {"key": payload["key"], "started": started, "ended": time.time()}


ALL = [one_task, twenty_tasks, replay_once, hundred_tasks, typed_one_task]
# Served instead of ALL when AIKI_BENCH_WORKFLOWS=concurrency (its own streams, so the
# other scenarios' workers read exactly what they read before).
CONCURRENCY = [one_task, keyed_one_task, keyed_busy]


# Flow control (#17): a task timeout cancels each attempt; a task that stops
# heartbeating is cancelled and retried. The "flow_timeouts" scenario times both.
@aiki.task("bench.sleepy", timeout=1.0, retry=aiki.Retry.fixed(3, 0.0))
async def sleepy(payload: Any) -> Any:
    await trio.sleep(10)  # each attempt is cancelled by its 1 s timeout
    return payload  # pragma: no cover


@aiki.task("bench.silent", heartbeat_timeout=1.0, retry=aiki.Retry.fixed(2, 0.0))
async def silent(payload: Any) -> Any:
    ctx = aiki.task_context()
    if ctx.attempt == 1:
        ctx.heartbeat({"beat": 1})
        await trio.sleep(30)  # silent: the heartbeat deadline ends this attempt
    return payload


flow_timeouts = aiki.workflow("bench-flow-timeouts")


@flow_timeouts.v("1")
async def flow_timeouts_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    try:
        return await (silent if payload["kind"] == "heartbeat" else sleepy).start(ctx, payload)
    except aiki.TaskFailed as failed:
        return {"failed": failed.error_type}


# Served instead of ALL when AIKI_BENCH_WORKFLOWS=flow.
FLOW = [flow_timeouts]
