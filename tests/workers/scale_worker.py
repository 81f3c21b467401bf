"""A worker process for the scale-out test: ``python scale_worker.py URL WORKER_ID``.

Its workflow sleeps durably (a timer fired by whichever server's daemon gets it first),
then counts its own completion in Redis (INCR done:<run id>) so the test can check that
every run completed exactly once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio
from _resp import acommand

import aiki

redis_port: int | None = None


@aiki.task("count-done")
async def count_done(payload: Any) -> int:
    assert redis_port is not None
    return int(await acommand(redis_port, "INCR", f"done:{payload['run']}"))


scale = aiki.workflow("scale")


@scale.v("1")
async def scale_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    await ctx.sleep("pause", payload["sleep"])
    await count_done.start(ctx, {"run": ctx.run_id})
    return payload["n"] * 2


async def serve(url: str, worker_id: str) -> None:
    global redis_port
    redis_port = urlparse(url).port
    async with aiki.client(redis_url=url) as client:
        worker = aiki.worker(
            client,
            id=worker_id,
            max_concurrent_workflow_runs=50,
            subscriber=aiki.RedisStreams(claim_min_idle_time=5.0, block_time=0.2),
        )
        worker.workflow_registry.add(scale)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            print("ready", flush=True)


if __name__ == "__main__":
    trio.run(serve, sys.argv[1], sys.argv[2])
