"""The worker: executes workflow runs from Redis Streams in your own trio program.

Everything it does is a task in one nursery under ``worker.run``: the read loop, the
claim loop, the heartbeat loop and every execution. ``worker.stop()`` stops reading,
lets executions finish within ``shutdown_grace`` seconds, cancels the rest and hands
their runs straight back to the queue.

The worker is three concepts in three modules: its lifecycle here, its loops (read,
claim, heartbeat, registry, control: :mod:`aiki._worker_loops`) and the execution of one
run (:mod:`aiki._execution`), with what a workflow's exception means in
:mod:`aiki._outcome`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import uuid
from typing import Any

import trio

from . import _task
from ._checks import integer, seconds
from ._client import Client
from ._daemons import serve_timers
from ._errors import ConfigurationError, ConnectionFailed
from ._redis import Redis, ScriptRefused, connect, open_asyncio_bridge
from ._serde import DEFAULT_MAX_RESULT_BYTES
from ._store import Store, check_durability, open_fsync_barrier
from ._worker_loops import REGISTRY_INTERVAL, WORKER_TIMER_INTERVAL, Loops
from ._workflow import WorkflowRegistry
from .subscribers import Message, RedisStreams

log = logging.getLogger("aiki.worker")

__all__ = ["REGISTRY_INTERVAL", "Worker", "worker"]


class Worker(Loops):
    """Executes the workflow versions in ``workflow_registry``. See ``aiki.worker()``."""

    def __init__(
        self,
        client: Client,
        *,
        id: str | None = None,
        max_concurrent_workflow_runs: int = 10,
        subscriber: RedisStreams | None = None,
        shutdown_grace: float = 5.0,
        transition_retry_for: float = 30.0,
        inline_retry_max_delay: float = 0.5,
        fire_timers: bool = True,
        durability: str | None = None,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        integer("worker", "max_concurrent_workflow_runs", max_concurrent_workflow_runs, minimum=1)
        seconds("worker", "shutdown_grace", shutdown_grace, zero_ok=True)
        seconds("worker", "transition_retry_for", transition_retry_for, zero_ok=True)
        seconds("worker", "inline_retry_max_delay", inline_retry_max_delay, zero_ok=True)
        integer("worker", "max_result_bytes", max_result_bytes, minimum=1)
        if not isinstance(fire_timers, bool):
            raise ConfigurationError(
                f"worker(fire_timers=) must be True or False, got {fire_timers!r}",
                field="fire_timers",
            )
        self.fire_timers = fire_timers
        if durability is not None:
            check_durability("worker", durability)
        self.durability = durability or client.durability
        if id is not None and (not isinstance(id, str) or not id or len(id) > 200):
            raise ConfigurationError(
                f"worker(id=) must be a non-empty string of at most 200 characters, got {id!r}",
                field="id",
            )
        self.client = client
        self.id = id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.max_concurrent_workflow_runs = max_concurrent_workflow_runs
        self.subscriber = subscriber or RedisStreams()
        self.shutdown_grace = shutdown_grace
        self.transition_retry_for = transition_retry_for
        self.inline_retry_max_delay = inline_retry_max_delay
        self.max_result_bytes = max_result_bytes
        self.workflow_registry = WorkflowRegistry()
        # Keyed by (stream, message id): ids are unique per stream only, and two streams
        # (workflow versions) hand out the same id for messages added in the same ms.
        self._in_flight: dict[tuple[str, str], tuple[Message, trio.CancelScope]] = {}
        self._abandoned: set[tuple[str, str]] = set()
        self._slot_freed = trio.Event()
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()
        self._running = False
        self.executions_finished = 0
        self.claims_taken_over = 0
        self.taken_with_read = 0  # runs read and taken in one call (a backlog)
        self._init_loops()

    # -- lifecycle ------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the worker until :meth:`stop`. With ``nursery.start(worker.run)`` it
        returns once the worker is subscribed to its streams."""
        if self._running:
            raise ConfigurationError(f"worker {self.id!r} is already running")
        if not self.client.uses_redis:
            raise ConfigurationError("a worker needs a client opened with redis_url=")
        if not len(self.workflow_registry):
            raise ConfigurationError(
                "the worker has no workflows: call worker.workflow_registry.add(...) first"
            )
        self._running = True
        store = self.client.store
        versions = [(wv.name, wv.version) for wv in self.workflow_registry]
        sub = self.subscriber
        implementation = self.client.redis_client
        claimed = False
        try:
            await self._claim_id(store)  # refuses a second live worker with this id
            claimed = True
            self.shard_count = shard_count = await self._register(store)
            async with contextlib.AsyncExitStack() as stack:
                # One trio-asyncio loop for the worker's lifetime, opened only when some
                # task is asyncio code or Redis goes through redis-py; executions inherit it.
                await stack.enter_async_context(
                    open_asyncio_bridge(implementation, force=_task.asyncio_tasks_defined)
                )
                blocking = await connect(
                    self.client.redis_url or "",
                    name=f"aiki-worker-read:{self.id}",
                    blocking=True,
                    request_timeout=sub.block_time + 5.0,
                    implementation=implementation,
                )
                stack.push_async_callback(_close_shielded, blocking)
                if self.durability != self.client.durability:
                    store = await self._durable_store(stack, store)
                reader = store.stream_reader(blocking, self.id, self._streams(store, shard_count))
                log.info(
                    "worker %s serving %s", self.id, ", ".join(f"{w}@{v}" for w, v in versions)
                )
                executions = await stack.enter_async_context(trio.open_nursery())
                async with trio.open_nursery() as loops:
                    for message in await reader.read_own_pending(self.free_slots):
                        self._spawn(executions, store, message)
                    loops.start_soon(self._read_loop, reader, executions, store)
                    loops.start_soon(self._heartbeat_loop, reader)
                    loops.start_soon(self._registry_loop, store, reader)
                    if self.fire_timers:
                        # Durable timers fire without a server too (the firing script is
                        # atomic: any number of workers and servers may share the duty).
                        loops.start_soon(
                            functools.partial(serve_timers, store, interval=WORKER_TIMER_INTERVAL)
                        )
                    await loops.start(self._control_loop, store)
                    task_status.started()
                    await self._stop_requested.wait()
                    loops.cancel_scope.cancel()
                # Reading has stopped: give executions their grace, then cancel them.
                with trio.move_on_after(self.shutdown_grace):
                    while self._in_flight:
                        await self._slot_freed.wait()
                for _message, scope in list(self._in_flight.values()):
                    scope.cancel()
        finally:
            if claimed:
                # The registry loop removes the entry when it stops; this covers a start
                # that failed before it ran, so the id is free again at once.
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    with contextlib.suppress(ConnectionFailed, ScriptRefused):
                        await store.remove_workers(self.id)
            self._running = False
            self._stopped.set()
            log.info("worker %s stopped", self.id)

    async def _durable_store(self, stack: contextlib.AsyncExitStack[Any], store: Store) -> Store:
        """The client's store, acknowledging as this worker's ``durability`` asks where it
        differs from the client's (an fsync barrier of the worker's own, or none)."""
        if self.durability != "fsync":
            return store.with_fsync(None)
        barrier = await stack.enter_async_context(
            open_fsync_barrier(
                self.client.redis_url or "",
                store.keys.fsync_mark,
                implementation=self.client.redis_client,
            )
        )
        return store.with_fsync(barrier)

    async def start(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The same as :meth:`run` (its earlier name, kept for existing code)."""
        await self.run(task_status=task_status)

    async def stop(self) -> None:
        """Stop gracefully and wait until the worker has stopped."""
        self._stop_requested.set()
        if self._running:
            await self._stopped.wait()


async def _close_shielded(redis: Redis) -> None:
    with trio.CancelScope(shield=True):
        await redis.aclose()


def worker(
    client: Client,
    *,
    id: str | None = None,
    max_concurrent_workflow_runs: int = 10,
    subscriber: RedisStreams | None = None,
    shutdown_grace: float = 5.0,
    transition_retry_for: float = 30.0,
    inline_retry_max_delay: float = 0.5,
    fire_timers: bool = True,
    durability: str | None = None,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
) -> Worker:
    """Make a worker (nothing starts until ``await worker.run()``). Settings are checked
    here: a wrong one raises ``ConfigurationError`` naming it (``field``).

    ``transition_retry_for``: how long a run's state change is retried while Redis is
    away before the execution gives up (the run is then claimed again later).
    ``inline_retry_max_delay``: retry delays up to this are waited out in the worker;
    longer ones park the run on a durable timer. ``fire_timers``: also fire due timers
    (durable sleeps, retry delays, event timeouts, delayed starts), so they fire without
    an ``aiki server``; safe with any number of workers and servers (one atomic script
    fires each timer once). Turn it off only when servers run the timer daemon.
    ``durability``: ``"fsync"`` makes task results, parked runs and run ends wait until
    Redis has fsynced them (``"none"``: do not wait); ``None`` follows the client's.
    ``max_result_bytes``: the largest task or workflow result recorded (compact JSON,
    UTF-8; default ``aiki.engine.DEFAULT_MAX_RESULT_BYTES``, 1 MB like payloads); a larger
    one fails its attempt with PayloadTooLarge, and the retry policy applies."""
    return Worker(
        client,
        id=id,
        max_concurrent_workflow_runs=max_concurrent_workflow_runs,
        subscriber=subscriber,
        shutdown_grace=shutdown_grace,
        transition_retry_for=transition_retry_for,
        inline_retry_max_delay=inline_retry_max_delay,
        fire_timers=fire_timers,
        durability=durability,
        max_result_bytes=max_result_bytes,
    )
