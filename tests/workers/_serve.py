"""The worker loop of the fault-test worker scripts: one fast-claiming worker process.

A script sets what its tasks need (e.g. its ``redis_port``), then awaits
:func:`run_worker`, which prints ``ready`` once subscribed (``processes.start_worker``
waits for it) and runs until the process is killed or signalled.
"""

from __future__ import annotations

import trio

import aiki


async def run_worker(
    url: str, worker_id: str, *workflows: aiki.Workflow | aiki.WorkflowVersion
) -> None:
    async with aiki.client(redis_url=url) as client:
        worker = aiki.worker(
            client,
            id=worker_id,
            max_concurrent_workflow_runs=4,
            subscriber=aiki.RedisStreams(claim_min_idle_time=1.0, block_time=0.2),
            shutdown_grace=0.2,
        )
        for workflow in workflows:
            worker.workflow_registry.add(workflow)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            print("ready", flush=True)
