"""Workflows for the flow-control tests (docs/flow-control.md), and a worker process to
run them: ``python tests/workers/flow_worker.py redis://... worker-id [slots]``. It
prints ``ready`` once subscribed and runs until killed.

Its subscriber keeps the default claim idle time (60 s), so a run it holds is only
taken from it by the flow-control mechanisms under test, never by a stream claim.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

if __name__ == "__main__":  # make tests/ importable when run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio
from _resp import acommand

import aiki

redis_port: int | None = None  # set by serve(): the tasks log their calls there

# -- task timeouts and heartbeats ---------------------------------------------------------


@aiki.task("flow-sleepy", timeout=1.0, retry=aiki.Retry.fixed(3, 0.1))
async def sleepy(payload: Any) -> Any:
    """Sleeps 10 s: every attempt is cancelled by its 1 s timeout."""
    await trio.sleep(10)
    return "woke up"


@aiki.task("flow-silent", heartbeat_timeout=1.0, retry=aiki.Retry.fixed(2, 0.1))
async def silent(payload: Any) -> Any:
    """Attempt 1 heartbeats twice, then goes silent (awaiting); attempt 2 returns."""
    ctx = aiki.task_context()
    if ctx.attempt == 1:
        for n in range(2):
            ctx.heartbeat({"done": n + 1})
            await trio.sleep(0.1)
        await trio.sleep(30)
    return {"attempt": ctx.attempt, "resumed_from": ctx.last_heartbeat}


@aiki.task("flow-stuck", heartbeat_timeout=1.0, retry=aiki.Retry.fixed(2, 0.1))
async def stuck(payload: Any) -> Any:
    """Attempt 1 heartbeats, then blocks its worker's event loop (no await) for
    ``payload['block']`` seconds: only another process can notice."""
    ctx = aiki.task_context()
    if ctx.attempt == 1:
        ctx.heartbeat({"step": "before blocking"})
        await trio.sleep(0.3)  # the heartbeat reaches Redis
        time.sleep(payload["block"])  # noqa: ASYNC251 (blocking on purpose)
    return {"attempt": ctx.attempt, "resumed_from": ctx.last_heartbeat}


TIMEOUT_TASKS = {t.name: t for t in (sleepy, silent, stuck)}
guarded = aiki.workflow("flow-guarded")


@guarded.v("1")
async def guarded_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    try:
        return await TIMEOUT_TASKS[payload["task"]].start(ctx, payload)
    except aiki.TaskFailed as failed:
        return {"failed": failed.error_type, "message": failed.error_message}


# -- rate limits ---------------------------------------------------------------------------

SHARED = aiki.RateLimit(20, per=1.0, name="flow-shared")
SLOW = aiki.RateLimit(1, per=60.0, name="flow-slow")


async def _log_call(what: str) -> None:
    """Log when the limit let this call go (Redis's clock): a loaded machine may run the
    code late, bunching calls that the limit spaced out; the limit is what is checked."""
    assert redis_port is not None
    granted = aiki.task_context().rate_limit_granted_at
    assert granted is not None
    await acommand(redis_port, "RPUSH", "calls", f"{granted:.6f} {what}")


@aiki.task("flow-rate-a", rate_limit=SHARED)
async def rate_a(payload: Any) -> Any:
    await _log_call("a")
    return "a"


@aiki.task("flow-rate-b", rate_limit=SHARED)
async def rate_b(payload: Any) -> Any:
    await _log_call("b")
    return "b"


@aiki.task("flow-slow-call", rate_limit=SLOW)
async def slow_call(payload: Any) -> Any:
    await _log_call("slow")
    return "slow"


RATED_TASKS = {t.name: t for t in (rate_a, rate_b, slow_call)}
rated = aiki.workflow("flow-rated")


@rated.v("1")
async def rated_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await RATED_TASKS[payload["task"]].start(ctx, payload)


plain = aiki.workflow("flow-plain")


@plain.v("1")
async def plain_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return "plain"


# -- priorities --------------------------------------------------------------------------


@aiki.task("flow-work")
async def work(payload: Any) -> Any:
    """Takes ``payload['work']`` seconds, then logs the run's label to the list ``done``
    (the order of completion, across processes)."""
    await trio.sleep(payload.get("work", 0))
    assert redis_port is not None
    await acommand(redis_port, "RPUSH", "done", payload["label"])
    return payload["label"]


@aiki.task("flow-held")
async def held(payload: Any) -> Any:
    """Waits until the key ``release`` exists (a worker killed in here loses the run)."""
    assert redis_port is not None
    await acommand(redis_port, "RPUSH", "holding", aiki.task_context().run_id)
    while not await acommand(redis_port, "EXISTS", "release"):  # noqa: ASYNC110
        await trio.sleep(0.05)
    return "released"


prioritized = aiki.workflow("flow-prioritized")


@prioritized.v("1", retry=aiki.Retry.fixed(2, 1.0))
async def prioritized_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    """``hold``: a task that waits for a release first; ``fail_once``: the first attempt
    fails (the run parks ``awaiting_retry`` for 1 s); ``nap``: a durable sleep; then the
    ``work`` task logs the label."""
    if payload.get("hold"):
        await held.start(ctx, {})
    if payload.get("fail_once") and ctx.attempt == 1:
        raise RuntimeError("the first attempt fails")
    if payload.get("nap"):
        await ctx.sleep("nap", payload["nap"])
    return await work.start(ctx, payload)


WORKFLOWS = [guarded, rated, plain, prioritized]


async def serve(url: str, worker_id: str, slots: int) -> None:
    global redis_port
    redis_port = urlparse(url).port
    async with aiki.client(redis_url=url) as client:
        worker = aiki.worker(
            client,
            id=worker_id,
            max_concurrent_workflow_runs=slots,
            subscriber=aiki.RedisStreams(block_time=0.2),
            shutdown_grace=0.2,
        )
        for wf in WORKFLOWS:
            worker.workflow_registry.add(wf)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            print("ready", flush=True)


if __name__ == "__main__":
    trio.run(serve, sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10)
