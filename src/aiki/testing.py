"""A ready Aiki environment for tests and examples (as ``temporalio.testing`` does).

``open_test_environment(...)`` starts a private embedded Redis, the engine's daemons
(durable timers, schedules, retention: what a server runs besides its HTTP API) and a
worker for the given workflows, and yields a client connected to Redis::

    async with aiki.testing.open_test_environment(order_processing) as env:
        handle = await order_processing_v1.start(env.client, payload)
        assert (await handle.wait_for_completion(timeout=10))["success"]

Everything is stopped and removed when the block ends.

With ``time_skipping=True`` the environment's clock is virtual (``aiki._time_skipping``):
durable sleeps, event timeouts, retry delays, workflow timeouts, delayed starts and
schedules are due on it, and it jumps to the next due time whenever no execution is
outstanding, so a workflow that sleeps 30 days ends in milliseconds; ``await
env.sleep(seconds)`` moves it explicitly, ``env.now()`` reads it. Task code still runs
in real time::

    async with aiki.testing.open_test_environment(billing, time_skipping=True) as env:
        handle = await billing_v1.start(env.client, {"plan": "monthly"})
        await handle.wait_for_completion(timeout=10)   # 30 virtual days later

Why no HTTP server by default: the SDK never imports the server (``aiki_server``), and
nothing in the SDK needs one; the daemons come from the engine itself. A test that wants
the HTTP API too passes ``http_server``, a trio-style ``serve_*`` function started as
``await nursery.start(http_server, redis_url)`` whose ``task_status.started(handle)``
value has a ``base_url``; with ``aiki_server``::

    def http_server(redis_url, *, task_status):
        settings = Settings(redis_url=redis_url, host="127.0.0.1", port=0, daemons=False)
        return serve_server(settings, task_status=task_status)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio

from ._client import Client, client
from ._clock import wall_ms
from ._daemons import serve_retention, serve_schedules, serve_timers
from ._errors import ConfigurationError
from ._replay import replay
from ._serde import canonical_hash
from ._task import Task, TaskContext, _current_task
from ._time_skipping import TimeSkipper, check_sleep
from ._worker import Worker, worker
from ._workflow import Workflow, WorkflowVersion
from .embedded import RedisServerProcess, open_embedded_redis
from .subscribers import RedisStreams

__all__ = ["TestEnvironment", "mock_task", "open_test_environment", "replay", "run_task"]


@dataclass
class TestEnvironment:
    """What ``open_test_environment`` yields. ``base_url`` and ``server`` are set when an
    ``http_server`` was given (its handle), else None; ``time_skipper`` when the
    environment skips time (``time_skipping=True``), else None."""

    client: Client
    worker: Worker
    redis_url: str
    redis_server: RedisServerProcess
    base_url: str | None = None
    server: Any = None
    time_skipper: TimeSkipper | None = None

    def now(self) -> datetime:
        """The environment's clock (virtual when it skips time), timezone-aware UTC."""
        ms = self.time_skipper.now_ms() if self.time_skipper is not None else wall_ms()
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass: with time skipping, move the virtual clock that far at
        once, firing the timers and schedule occurrences due on the way in order, each
        one's effects settled before the next (returns when the last ones settled);
        without, sleep in real time."""
        seconds = check_sleep(seconds)
        if self.time_skipper is None:
            await trio.sleep(seconds)
        else:
            await self.time_skipper.sleep(seconds)

    @contextlib.asynccontextmanager
    async def auto_time_skipping_disabled(self) -> AsyncIterator[None]:
        """``async with``: inside the block the virtual clock moves only by :meth:`sleep`
        (e.g. to send an event into a wait before its timeout, or to count a schedule's
        occurrences). Needs ``time_skipping=True``."""
        if self.time_skipper is None:
            raise RuntimeError(
                "this environment does not skip time: open it with time_skipping=True"
            )
        async with self.time_skipper.auto_skipping_disabled():
            yield


@contextlib.asynccontextmanager
async def open_test_environment(
    *workflows: Workflow | WorkflowVersion,
    max_concurrent_workflow_runs: int = 10,
    claim_min_idle_time: float = 5.0,
    block_time: float = 0.2,
    shutdown_grace: float = 1.0,
    appendonly: bool = False,
    http_server: Callable[..., Awaitable[Any]] | None = None,
    time_skipping: bool = False,
) -> AsyncIterator[TestEnvironment]:
    """Embedded Redis + daemons + one worker for ``workflows`` (+ the HTTP server
    ``http_server`` if given; + a virtual clock with ``time_skipping``); yields a
    TestEnvironment."""
    if not isinstance(time_skipping, bool):
        raise TypeError(f"time_skipping must be True or False, got {time_skipping!r}")
    if not workflows:  # the worker would refuse too, but only after Redis started
        raise ConfigurationError(
            "open_test_environment needs the workflows its worker serves: pass them "
            "(with the aiki_env fixture: @pytest.mark.aiki_workflows(my_workflow))",
            field="workflows",
        )
    async with (
        open_embedded_redis(appendonly=appendonly) as redis_server,
        trio.open_nursery() as nursery,
    ):
        server = None
        if http_server is not None:
            server = await nursery.start(http_server, redis_server.url)
        base_url = getattr(server, "base_url", None)
        async with (
            client(redis_url=redis_server.url, base_url=base_url) as c,
            trio.open_nursery() as daemons,
        ):
            # The daemons a server would run: safe next to any number of others.
            await daemons.start(serve_timers, c.store)
            await daemons.start(serve_schedules, c.store)
            await daemons.start(serve_retention, c.store, None)
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
            skipper = None
            if time_skipping:
                skipper = TimeSkipper(c.store)
                await daemons.start(skipper.serve)
            async with trio.open_nursery() as workers:
                await workers.start(w.run)
                try:
                    yield TestEnvironment(
                        c,
                        w,
                        redis_server.url,
                        redis_server,
                        base_url=base_url,
                        server=server,
                        time_skipper=skipper,
                    )
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(10):
                        await w.stop()
            daemons.cancel_scope.cancel()  # before the client's connection closes
        nursery.cancel_scope.cancel()


async def run_task(
    task: Task[Any],
    payload: Any = None,
    *,
    run_id: str = "test-run",
    workflow: str = "test",
    version: str = "test",
) -> Any:
    """Unit-test a task: run its code once, here, with no Redis and no workflow, with an
    ``aiki.task_context()`` as a worker would give it (the idempotency key is
    ``<run_id>:<task>:<input hash>:0``). Retries are not applied: the task's exception
    is raised as is."""
    if task.asyncio:
        raise TypeError(f"task {task.name!r} is asyncio code: call it under trio-asyncio")
    address = f"{task.name}:{canonical_hash(payload)}:0"
    token = _current_task.set(TaskContext(run_id, workflow, version, task.name, address))
    try:
        return await task.fn(payload)
    finally:
        _current_task.reset(token)


@contextlib.contextmanager
def mock_task(task: Task[Any], fn: Callable[[Any], Awaitable[Any]]) -> Iterator[Task[Any]]:
    """Replace ``task``'s code by ``fn`` (an async function of the payload) inside the
    block, for every worker in this process: test a workflow without the task's real
    effects. The task keeps its name, so addresses and recorded results are as in
    production; ``fn`` runs as trio code."""
    original = task.fn, task.asyncio
    object.__setattr__(task, "fn", fn)
    object.__setattr__(task, "asyncio", False)
    try:
        yield task
    finally:
        object.__setattr__(task, "fn", original[0])
        object.__setattr__(task, "asyncio", original[1])
