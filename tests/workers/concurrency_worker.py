"""Workflows for the concurrency-key tests (docs/flow-control.md), and a worker process
to run them: ``python tests/workers/concurrency_worker.py redis://... worker-id [slots]
[claim_min_idle_time]``. It prints ``ready`` once subscribed and runs until killed.

Each execution logs ``<start|end> <wall time> <run id> <key>`` to the Redis list
``executions`` (one machine: one clock), so a test can check from the recorded
intervals that executions of one key never overlap, never how long anything took.
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

redis_port: int | None = None  # set by serve()


async def _log(what: str, run_id: str, key: str) -> None:
    assert redis_port is not None
    await acommand(redis_port, "RPUSH", "executions", f"{what} {time.time():.6f} {run_id} {key}")


async def _work(ctx: aiki.WorkflowContext, payload: Any, key: str) -> Any:
    await _log("start", ctx.run_id, key)
    seconds = payload.get("seconds", 0.05)
    if payload.get("hang_once"):
        # The first execution (the one a test kills with its worker) hangs.
        assert redis_port is not None
        if await acommand(redis_port, "SET", f"hung:{ctx.run_id}", "1", "NX"):
            seconds = 3600
    await trio.sleep(seconds)
    await _log("end", ctx.run_id, key)
    return payload.get("n")


per_key = aiki.workflow("conc-per-key")


@per_key.v("1", concurrency=aiki.Concurrency(1, key=lambda p: p["key"]))
async def per_key_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await _work(ctx, payload, payload["key"])


global_three = aiki.workflow("conc-global-three")


@global_three.v("1", concurrency=aiki.Concurrency(3))
async def global_three_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await _work(ctx, payload, "all")


WORKFLOWS = [per_key, global_three]


async def serve(url: str, worker_id: str, slots: int, claim_min_idle_time: float) -> None:
    global redis_port
    redis_port = urlparse(url).port
    async with aiki.client(redis_url=url) as client:
        worker = aiki.worker(
            client,
            id=worker_id,
            max_concurrent_workflow_runs=slots,
            subscriber=aiki.RedisStreams(
                block_time=0.2, claim_min_idle_time=claim_min_idle_time
            ),
            shutdown_grace=0.2,
        )
        for wf in WORKFLOWS:
            worker.workflow_registry.add(wf)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            print("ready", flush=True)


if __name__ == "__main__":
    trio.run(
        serve,
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]) if len(sys.argv) > 3 else 10,
        float(sys.argv[4]) if len(sys.argv) > 4 else 60.0,
    )
