"""Workflows for the Redis Cluster tests, and a worker process serving them.

``charge-order`` (``shards=3``: its runs spread over three hash slots) reserves stock,
charges, ships, then starts a ``receipt`` child (which lives in its parent's shard,
whatever its own ``shards``). Every task counts its executions with INCR in a separate,
standalone Redis (``COUNTER_PORT``), so a test counts executions across processes,
including the ones it kills. ``charge`` blocks until that Redis has the key ``release``,
so a test can kill the worker inside it.

Run: ``python tests/workers/cluster_worker.py CLUSTER_URL WORKER_ID COUNTER_PORT``; it
prints ``ready`` once subscribed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # make `_resp` (in tests/) and `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import trio
from _resp import acommand

import aiki
from examples.order_processing import order_processing

counter_port: int | None = None


async def _count(run_id: str, task: str) -> None:
    assert counter_port is not None, "cluster_worker.counter_port is not set"
    await acommand(counter_port, "INCR", f"count:{run_id}:{task}")


@aiki.task("reserve")
async def reserve(payload: Any) -> Any:
    await _count(payload["run"], "reserve")
    return {"reserved": payload["units"]}


@aiki.task("charge")
async def charge(payload: Any) -> Any:
    await _count(payload["run"], "charge")
    assert counter_port is not None
    while not await acommand(counter_port, "EXISTS", "release"):  # noqa: ASYNC110
        await trio.sleep(0.02)
    return {"charged": payload["units"] * 10}


@aiki.task("ship")
async def ship(payload: Any) -> Any:
    await _count(payload["run"], "ship")
    return {"shipped": True}


receipt = aiki.workflow("receipt")


@receipt.v("1")
async def receipt_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return {"receipt_for": payload["order"], "amount": payload["amount"]}


charge_order = aiki.workflow("charge-order")


@charge_order.v("1", shards=3)
async def charge_order_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    run = ctx.run_id
    reserved = await reserve.start(ctx, {"run": run, "units": payload["units"]})
    charged = await charge.start(ctx, {"run": run, "units": reserved["reserved"]})
    shipped = await ship.start(ctx, {"run": run})
    child = await receipt_v1.start_as_child(
        ctx, {"order": payload["order"], "amount": charged["charged"]}
    )
    return {
        "order": payload["order"],
        **charged,
        **shipped,
        "receipt": await child.wait_for_completion(),
    }


async def serve(url: str, worker_id: str) -> None:
    async with aiki.client(redis_url=url) as client:
        worker = aiki.worker(
            client,
            id=worker_id,
            max_concurrent_workflow_runs=20,
            subscriber=aiki.RedisStreams(claim_min_idle_time=1.0, block_time=0.2),
        )
        worker.workflow_registry.add(charge_order).add(receipt).add(order_processing)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            print("ready", flush=True)


if __name__ == "__main__":
    counter_port = int(sys.argv[3])
    trio.run(serve, sys.argv[1], sys.argv[2])
