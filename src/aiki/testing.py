"""A ready Aiki environment for tests and examples (as ``temporalio.testing`` does).

``open_test_environment(...)`` starts a private embedded Redis, an Aiki server (with its
timer and schedule daemons) and a worker for the given workflows, and yields a client
that talks to both::

    async with aiki.testing.open_test_environment(order_processing) as env:
        handle = await order_processing_v1.start(env.client, payload)
        assert (await handle.wait_for_completion(timeout=10))["success"]

Everything is stopped and removed when the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import trio

from ._client import Client, client
from ._worker import Worker, worker
from ._workflow import Workflow, WorkflowVersion
from .subscribers import RedisStreams

__all__ = ["TestEnvironment", "open_test_environment"]


@dataclass
class TestEnvironment:
    """What ``open_test_environment`` yields."""

    client: Client
    worker: Worker
    redis_url: str
    base_url: str
    redis_server: Any
    server: Any


@contextlib.asynccontextmanager
async def open_test_environment(
    *workflows: Workflow | WorkflowVersion,
    max_concurrent_workflow_runs: int = 10,
    claim_min_idle_time: float = 5.0,
    block_time: float = 0.2,
    shutdown_grace: float = 1.0,
    appendonly: bool = False,
) -> AsyncIterator[TestEnvironment]:
    """Embedded Redis + server + one worker for ``workflows``; yields a TestEnvironment."""
    from aiki_server import Settings, serve_server
    from aiki_server._embedded_redis import open_embedded_redis

    async with (
        open_embedded_redis(appendonly=appendonly) as redis_server,
        trio.open_nursery() as nursery,
    ):
        server = await nursery.start(
            serve_server, Settings(redis_url=redis_server.url, host="127.0.0.1", port=0)
        )
        async with client(redis_url=redis_server.url, base_url=server.base_url) as c:
            w = worker(
                c,
                id="test-worker",
                max_concurrent_workflow_runs=max_concurrent_workflow_runs,
                subscriber=RedisStreams(
                    claim_min_idle_time=claim_min_idle_time, block_time=block_time
                ),
                shutdown_grace=shutdown_grace,
            )
            for wf in workflows:
                w.workflow_registry.add(wf)
            async with trio.open_nursery() as workers:
                await workers.start(w.start)
                try:
                    yield TestEnvironment(
                        c, w, redis_server.url, server.base_url, redis_server, server
                    )
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(10):
                        await w.stop()
        nursery.cancel_scope.cancel()
