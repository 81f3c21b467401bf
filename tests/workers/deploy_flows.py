"""One workflow version in three deploys, for the non-determinism and patching tests.

``deploy-flow@1`` runs task ``a``, task ``b``, a durable sleep ``pause``, then task ``c``.
The deploys differ in what comes before the sleep:

* ``old``: ``a`` then ``b``;
* ``swapped``: ``b`` then ``a`` (a changed deploy under runs in flight);
* ``patched``: ``if ctx.patched("swap-a-b")`` the new order, else the old one.

Every task INCRs ``count:<task>`` in the test's Redis (a side effect outside the worker
process: the test counts executions across processes).

Run as a worker: ``python tests/workers/deploy_flows.py URL WORKER_ID DEPLOY``; prints
``ready`` once subscribed.
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

redis_port: int | None = None


async def _count(name: str) -> None:
    if redis_port is not None:
        await acommand(redis_port, "INCR", f"count:{name}")


@aiki.task("a")
async def task_a(payload: Any) -> Any:
    await _count("a")
    return payload["x"] + 1


@aiki.task("b")
async def task_b(payload: Any) -> Any:
    await _count("b")
    return payload["x"] * 2


@aiki.task("c")
async def task_c(payload: Any) -> Any:
    await _count("c")
    return payload["a"] + payload["b"]


async def _finish(ctx: aiki.WorkflowContext, a: int, b: int) -> Any:
    await ctx.sleep("pause", 3600)
    return {"sum": await task_c.start(ctx, {"a": a, "b": b})}


def build(deploy: str) -> aiki.Workflow:
    """The ``deploy-flow`` workflow as deploy ``deploy`` writes it."""
    flow = aiki.workflow("deploy-flow")

    @flow.v("1")
    async def run(ctx: aiki.WorkflowContext, payload: Any) -> Any:
        x = payload["x"]
        if deploy == "old" or (deploy == "patched" and not ctx.patched("swap-a-b")):
            a = await task_a.start(ctx, {"x": x})
            b = await task_b.start(ctx, {"x": x})
        else:
            b = await task_b.start(ctx, {"x": x})
            a = await task_a.start(ctx, {"x": x})
        return await _finish(ctx, a, b)

    return flow


async def serve(url: str, worker_id: str, deploy: str) -> None:
    global redis_port
    redis_port = urlparse(url).port
    async with aiki.client(redis_url=url) as client:
        worker = aiki.worker(
            client,
            id=worker_id,
            subscriber=aiki.RedisStreams(claim_min_idle_time=1.0, block_time=0.2),
            shutdown_grace=0.2,
        )
        worker.workflow_registry.add(build(deploy))
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            print("ready", flush=True)


if __name__ == "__main__":
    trio.run(serve, sys.argv[1], sys.argv[2], sys.argv[3])
