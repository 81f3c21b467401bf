"""A worker process for the order-processing example: ``python order_worker.py URL``."""

from __future__ import annotations

import sys

import trio

import aiki
from examples.order_processing import order_processing


async def serve(url: str) -> None:
    async with aiki.client(redis_url=url) as client:
        worker = aiki.worker(client, id="order-worker", max_concurrent_workflow_runs=5)
        worker.workflow_registry.add(order_processing)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            print("ready", flush=True)


if __name__ == "__main__":
    trio.run(serve, sys.argv[1])
