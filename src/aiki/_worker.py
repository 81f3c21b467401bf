"""The worker: executes workflow runs from Redis Streams in your own trio program.

Everything it does is a task in one nursery under ``worker.start``: the read loop, the
claim loop, the heartbeat loop and every execution. ``worker.stop()`` stops reading,
lets executions finish within ``shutdown_grace`` seconds, cancels the rest and hands
their runs straight back to the queue.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from . import _serde, _task
from ._client import Client
from ._context import Suspend, WorkflowContext
from ._errors import ConfigurationError, ConnectionFailed, TaskFailed, WorkflowTimeout
from ._log import bind_run
from ._redis import Redis, ScriptRefused, connect, open_asyncio_bridge
from ._retry import NonRetryableError, Retry
from ._store import Store, TakenRun
from ._store._store import TakeRefused
from ._workflow import WorkflowRegistry
from .subscribers import Message, RedisStreams, StreamReader

log = logging.getLogger("aiki.worker")

T = TypeVar("T")

REGISTRY_INTERVAL = 2.0
"""Seconds between two entries in the worker registry (``Keys.workers``), which the
dashboard and ``/metrics`` read. Independent of claims and message heartbeats."""


class _StaleExecution(BaseException):
    """This execution lost its claim on the run: stop quietly, write nothing more.

    A BaseException so that workflow code's ``except Exception`` cannot swallow it."""


class Worker:
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
    ) -> None:
        if max_concurrent_workflow_runs < 1:
            raise ConfigurationError("max_concurrent_workflow_runs must be at least 1")
        if shutdown_grace < 0:
            raise ConfigurationError("shutdown_grace must be >= 0 seconds")
        self.client = client
        self.id = id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.max_concurrent_workflow_runs = max_concurrent_workflow_runs
        self.subscriber = subscriber or RedisStreams()
        self.shutdown_grace = shutdown_grace
        self.transition_retry_for = transition_retry_for
        self.inline_retry_max_delay = inline_retry_max_delay
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

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def free_slots(self) -> int:
        return self.max_concurrent_workflow_runs - len(self._in_flight)

    # -- lifecycle ------------------------------------------------------------------

    async def start(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run the worker until :meth:`stop`. With ``nursery.start(worker.start)`` it
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
        shard_count = await store.register_workflows(
            versions,
            self.id,
            {(wv.name, wv.version): wv.timeout for wv in self.workflow_registry},
            {(wv.name, wv.version): wv.shards for wv in self.workflow_registry},
        )
        sub = self.subscriber
        implementation = self.client.redis_client
        try:
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
                reader = StreamReader(
                    store.redis, blocking, self.id, self._streams(store, shard_count)
                )
                log.info(
                    "worker %s serving %s", self.id, ", ".join(f"{w}@{v}" for w, v in versions)
                )
                executions = await stack.enter_async_context(trio.open_nursery())
                async with trio.open_nursery() as loops:
                    for message in await reader.read_own_pending(self.free_slots):
                        self._spawn(executions, store, message)
                    loops.start_soon(self._read_loop, reader, executions, store)
                    loops.start_soon(self._heartbeat_loop, reader)
                    loops.start_soon(self._registry_loop, store, reader, shard_count)
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
            self._running = False
            self._stopped.set()
            log.info("worker %s stopped", self.id)

    async def stop(self) -> None:
        """Stop gracefully and wait until the worker has stopped."""
        self._stop_requested.set()
        if self._running:
            await self._stopped.wait()

    # -- loops ----------------------------------------------------------------------

    async def _wait_for_slot(self) -> None:
        while self.free_slots <= 0:
            await self._slot_freed.wait()

    async def _read_loop(
        self, reader: StreamReader, executions: trio.Nursery, store: Store
    ) -> None:
        """Read new messages and, every claim interval, take over abandoned ones.

        Both happen in this one loop so that together they never take more messages
        than the worker has free slots."""
        sub = self.subscriber
        failures = 0
        # After a read that found more than one message, the next one reads and takes in
        # one call; a worker that is keeping up waits in a blocking read instead.
        backlog = False
        next_claim = trio.current_time() + sub.effective_claim_interval
        while True:
            await self._wait_for_slot()
            if trio.current_time() >= next_claim:
                next_claim = trio.current_time() + sub.effective_claim_interval * (
                    random.uniform(0.8, 1.2)
                )
                await self._claim(reader, executions, store)
                continue
            try:
                if backlog:
                    # Work is waiting: read AND take runs in one call (no blocking).
                    # Shielded: once the script ran, its runs are ours and must reach an
                    # execution (a stopping worker then requeues them at once) rather
                    # than wait for a claim.
                    with trio.CancelScope(shield=True):
                        backlog = await self._read_and_take(reader, executions, store) > 0
                    messages = []
                else:
                    messages = await reader.read(self.free_slots, sub.block_time)
                    backlog = len(messages) > 1
            except ConnectionFailed as exc:
                failures += 1
                if failures == 1:
                    log.warning("worker %s cannot read from Redis (%s); retrying", self.id, exc)
                await trio.sleep(min(5.0, 0.05 * 2**failures) * random.uniform(0.8, 1.2))
                continue
            except Exception:
                # An unexpected reply must not stop the worker: read one by one for now
                # (what an aborted script delivered is claimed back after the idle time).
                log.exception("worker %s: reading and taking runs failed", self.id)
                backlog = False
                await trio.sleep(0.1)
                continue
            if failures:
                log.warning("worker %s reads from Redis again", self.id)
                failures = 0
            for message in messages:
                self._spawn(executions, store, message)

    async def _read_and_take(
        self, reader: StreamReader, executions: trio.Nursery, store: Store
    ) -> int:
        """Read new messages and take their runs (one script per shard's slot), and
        start executing each shard's at once; returns how many were read."""
        streams, count = reader.plan(self.free_slots)
        found = 0
        for shard, in_shard in reader.by_shard(streams).items():
            for stream, message_id, fields, outcome in await store.read_and_take(
                in_shard, shard, count, self.id
            ):
                self._spawn(executions, store, Message(stream, message_id, fields), outcome)
                found += 1
        self.taken_with_read += found
        return found

    async def _claim(self, reader: StreamReader, executions: trio.Nursery, store: Store) -> None:
        """Take over messages idle longer than claim_min_idle_time (dead workers')."""
        try:
            claimed = await reader.autoclaim(self.free_slots, self.subscriber.claim_min_idle_time)
        except ConnectionFailed:
            return  # the read reports outages
        for message in claimed:
            if message.key in self._in_flight:
                continue
            self.claims_taken_over += 1
            log.info("worker %s took over message %s (run %s)", self.id, message.id, message.run_id)
            self._spawn(executions, store, message)

    async def _heartbeat_loop(self, reader: StreamReader) -> None:
        while True:
            await trio.sleep(self.subscriber.effective_heartbeat_interval)
            by_stream: dict[str, list[str]] = {}
            for message, _scope in self._in_flight.values():
                by_stream.setdefault(message.stream, []).append(message.id)
            if not by_stream:
                continue
            try:
                lost = await reader.heartbeat(by_stream)
            except ConnectionFailed:
                continue
            for key, (message, scope) in list(self._in_flight.items()):
                if key in lost:
                    # Another worker claimed it: we lost the run. Stop quietly.
                    self._abandoned.add(key)
                    log.warning(
                        "worker %s lost message %s to another worker; abandoning",
                        self.id,
                        message.id,
                    )
                    scope.cancel()

    def _streams(self, store: Store, shard_count: int) -> list[list[str]]:
        """Per shard, the streams of this worker's versions in it."""
        return [
            [store.keys.stream(wv.name, wv.version, shard) for wv in self.workflow_registry]
            for shard in range(shard_count)
        ]

    async def _follow_shards(self, store: Store, reader: StreamReader, current: int) -> int:
        """Start reading the shards a version registered since uses (a child run of
        such a version's run lives in its parent's shard, whatever its own version)."""
        count = await store.shard_count()
        if count > current:
            versions = [(wv.name, wv.version) for wv in self.workflow_registry]
            await store.create_groups(versions, range(current, count))
            reader.set_shards(self._streams(store, count))
            log.info("worker %s now reads %d shards", self.id, count)
            return count
        return current

    async def _registry_loop(self, store: Store, reader: StreamReader, shard_count: int) -> None:
        """Publish this worker in the worker registry every REGISTRY_INTERVAL seconds
        (one HSET; the entry is removed when the worker stops), and follow the
        deployment's shard count."""
        started_ms = _now_ms()
        host, pid = socket.gethostname(), os.getpid()
        workflows = [f"{wv.name}@{wv.version}" for wv in self.workflow_registry]
        try:
            while True:
                entry = {
                    "id": self.id,
                    "workflows": workflows,
                    "in_flight": self.in_flight,
                    "max": self.max_concurrent_workflow_runs,
                    "last_heartbeat_ms": _now_ms(),
                    "started_at_ms": started_ms,
                    "host": host,
                    "pid": pid,
                    "claims_taken_over": self.claims_taken_over,
                    "executions_finished": self.executions_finished,
                }
                with contextlib.suppress(ConnectionFailed, ScriptRefused):
                    await store.redis.command(
                        "HSET", store.keys.workers, self.id, json.dumps(entry)
                    )
                    shard_count = await self._follow_shards(store, reader, shard_count)
                await trio.sleep(REGISTRY_INTERVAL)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                with contextlib.suppress(ConnectionFailed, ScriptRefused):
                    await store.redis.command("HDEL", store.keys.workers, self.id)

    async def _control_loop(
        self, store: Store, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Cancel executions whose run was cancelled or paused elsewhere, promptly."""
        redis = await connect(
            self.client.redis_url or "",
            name=f"aiki-worker-control:{self.id}",
            implementation=self.client.redis_client,
        )
        try:
            await redis.subscribe(store.keys.control_channel)
            task_status.started()
            while True:
                try:
                    _channel, data = await redis.next_message()
                    order = json.loads(data)
                    run_id, action = order["run"], order["action"]
                except ConnectionFailed:
                    await trio.sleep(0.5 * random.uniform(0.8, 1.2))
                    continue
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring malformed control message %r", data[:200])
                    continue
                for key, (message, scope) in list(self._in_flight.items()):
                    if message.run_id == run_id:
                        log.info(
                            "worker %s: run %s was %s; stopping its execution",
                            self.id,
                            run_id,
                            "cancelled" if action == "cancel" else "paused",
                        )
                        self._abandoned.add(key)
                        scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await redis.aclose()

    # -- executions -----------------------------------------------------------------

    def _spawn(
        self,
        nursery: trio.Nursery,
        store: Store,
        message: Message,
        taken: TakenRun | TakeRefused | None = None,
    ) -> None:
        """Execute ``message``'s run in ``nursery`` (``taken``: the run, or the refusal,
        when the read already took it)."""
        scope = trio.CancelScope()
        self._in_flight[message.key] = (message, scope)
        nursery.start_soon(self._execute, store, message, scope, taken)

    def _release(self, message: Message) -> None:
        self._in_flight.pop(message.key, None)
        self._slot_freed.set()
        self._slot_freed = trio.Event()

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry a transition through a Redis outage (capped backoff with jitter).

        Safe because transitions are fenced: a repeat of one that did apply is refused
        as stale, never applied twice."""
        deadline = trio.current_time() + self.transition_retry_for
        delay = 0.05
        while True:
            try:
                return await call()
            except ConnectionFailed as exc:
                if trio.current_time() + delay > deadline:
                    raise
                log.warning(
                    "worker %s: %s failed (%s); retrying in %.2fs", self.id, what, exc, delay
                )
                await trio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 2.0)

    async def _execute(
        self,
        store: Store,
        message: Message,
        scope: trio.CancelScope,
        pre_taken: TakenRun | TakeRefused | None = None,
    ) -> None:
        taken: TakenRun | None = None
        finished = False
        try:
            with scope:
                run_id = message.run_id
                if not run_id:
                    await store.dead_letter(
                        message.stream, message.id, message.fields, "message has no 'run' field"
                    )
                    return
                try:
                    if isinstance(pre_taken, TakeRefused):
                        raise pre_taken
                    if pre_taken is None:
                        pre_taken = await self._retrying(
                            "take run", lambda: store.take_run(run_id, self.id, message.id)
                        )
                    run: TakenRun = pre_taken
                    taken = run
                except TakeRefused as refused:
                    if refused.reason in ("missing", "bad-run"):
                        why = (
                            f"run {run_id} does not exist"
                            if refused.reason == "missing"
                            else f"run {run_id}: {refused.status}"
                        )
                        log.warning("message %s dead-lettered: %s", message.id, why)
                        await store.dead_letter(message.stream, message.id, message.fields, why)
                    else:
                        await store.ack(message.stream, message.id)
                    finished = True
                    return
                finished = await self._run_workflow(store, message, run)
        except ConnectionFailed as exc:
            # The message stays pending; a claim will retry the run once Redis is back.
            log.warning("worker %s gave up on run %s for now: %s", self.id, message.run_id, exc)
            finished = True
        except Exception:
            # A bug or an unexpected Redis reply must not take the worker (and every other
            # execution) down: the message stays pending and a claim retries the run.
            log.exception("worker %s: unexpected error executing run %s", self.id, message.run_id)
            finished = True
        finally:
            if message.key in self._abandoned:
                self._abandoned.discard(message.key)
            elif taken is not None and not finished:
                # Cancelled (worker stopping) before an outcome: hand the run back now.
                with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                    try:
                        await store.requeue_run(taken, message.id)
                        log.info("worker %s requeued run %s", self.id, taken.id)
                    except (ScriptRefused, ConnectionFailed) as exc:
                        log.info("worker %s could not requeue run %s: %s", self.id, taken.id, exc)
            self.executions_finished += 1
            self._release(message)

    async def _run_workflow(self, store: Store, message: Message, taken: TakenRun) -> bool:
        """Run the workflow function; True when an outcome was recorded (or we lost
        the run to another executor), False when cancelled before an outcome."""
        # Log records of this execution carry the run (see aiki.RunContextFilter).
        bind_run(taken.id, taken.workflow, taken.version)
        version = self.workflow_registry.get(taken.workflow, taken.version)
        if version is None:
            await store.dead_letter(
                message.stream,
                message.id,
                message.fields,
                f"no worker code for {taken.workflow}@{taken.version}",
            )
            return True

        async def record_task(address: str, record: dict[str, Any]) -> None:
            try:
                await self._retrying(
                    "record task",
                    lambda: store.record_task(taken.id, taken.revision, address, record),
                )
            except ScriptRefused as refused:
                raise _StaleExecution(str(refused)) from None

        async def start_child(workflow: str, ver: str, payload_json: str, child_id: str) -> str:
            child_def = self.workflow_registry.get(workflow, ver)
            timeout = child_def.timeout if child_def is not None else None
            return await self._retrying(
                "start child",
                lambda: store.start_run(
                    workflow,
                    ver,
                    payload_json,
                    run_id=child_id,
                    parent_id=taken.id,
                    timeout=timeout,
                ),
            )

        ctx = WorkflowContext(
            run_id=taken.id,
            workflow=taken.workflow,
            version=taken.version,
            attempt=len(taken.errors) + 1,
            memo=taken.tasks,
            record_task=record_task,
            inline_retry_max_delay=self.inline_retry_max_delay,
            events=taken.events,
            now_ms=taken.now_ms,
            start_child=start_child,
            get_run=store.get_run,
        )
        deadline = taken.deadline_ms
        timed_out = False
        result_json = "null"
        try:
            if deadline is not None and taken.now_ms >= deadline:
                timed_out = True
            elif deadline is None:  # no cancel scope on the hot path when not needed
                result = await version.fn(ctx, taken.payload)
                result_json = _serde.dumps(result, what="workflow result")
            else:
                # Our own scope, so a user's trio.TooSlowError is not taken for ours.
                with trio.move_on_after((deadline - taken.now_ms) / 1000) as limit:
                    result = await version.fn(ctx, taken.payload)
                timed_out = limit.cancelled_caught
                if not timed_out:
                    result_json = _serde.dumps(result, what="workflow result")
        except BaseException as exc:  # noqa: BLE001 - sorted below; the rest re-raised
            kind, detail = _classify(exc, taken.now_ms)
            if kind == "reraise":
                raise
            if kind == "suspend":
                await self._park(store, message, taken, detail, deadline)
            elif kind == "stale":
                self._lost(taken, detail)
            else:
                try:
                    await self._workflow_failed(store, message, taken, version.retry, ctx, detail)
                except (_StaleExecution, ScriptRefused) as stale:
                    self._lost(taken, stale)
            return True
        try:
            if timed_out:
                error = _serde.error_record(WorkflowTimeout(taken.timeout_ms))
                error["non_retryable"] = True
                await self._retrying(
                    "record timeout", lambda: store.finish_run(taken, message.id, error=error)
                )
            else:
                await self._retrying(
                    "record result",
                    lambda: store.finish_run(taken, message.id, result_json=result_json),
                )
        except ScriptRefused as stale:
            self._lost(taken, stale)
        return True

    def _lost(self, taken: TakenRun, why: BaseException) -> None:
        """Another executor took the run (its revision moved on): stop quietly."""
        log.warning(
            "worker %s lost run %s (%s); abandoning this execution quietly", self.id, taken.id, why
        )

    async def _park(
        self,
        store: Store,
        message: Message,
        taken: TakenRun,
        suspend: Suspend,
        deadline: int | None,
    ) -> None:
        status, wake_at = suspend.status, suspend.wake_at_ms
        if deadline is not None and (wake_at is None or wake_at > deadline):
            wake_at = deadline  # wake at the deadline to end the run as timed out
        event, child_id, sleep = suspend.event, suspend.child_id, suspend.sleep_address
        try:
            await self._retrying(
                "park run",
                lambda: store.park_run(
                    taken,
                    message.id,
                    status=status,
                    wake_at_ms=wake_at,
                    event=event,
                    child_id=child_id,
                    sleep_address=sleep,
                ),
            )
        except ScriptRefused as stale:
            self._lost(taken, stale)

    async def _workflow_failed(
        self,
        store: Store,
        message: Message,
        taken: TakenRun,
        policy: Retry,
        ctx: WorkflowContext,
        exc: Exception,
    ) -> None:
        """Retry the workflow per its policy, or record the run as failed."""
        error = _serde.error_record(exc)
        attempt = len(taken.errors) + 1
        error.update(attempt=attempt)
        non_retryable = isinstance(exc, NonRetryableError) or error.get("non_retryable")
        if non_retryable or not policy.should_retry(attempt, exc):
            log.info(
                "run %s (%s@%s) failed: %s: %s",
                taken.id,
                taken.workflow,
                taken.version,
                error["type"],
                error["message"],
            )
            error["attempts"] = [*taken.errors, {k: v for k, v in error.items()}]
            await self._retrying(
                "record failure", lambda: store.finish_run(taken, message.id, error=error)
            )
            return
        delay = policy.delay(attempt)
        error["retry_in"] = delay
        errors = [*taken.errors, error]
        # Failed task records are dropped so that the retry runs those tasks again;
        # completed ones stay memoized.
        failed = [a for a, r in ctx._memo.items() if r.get("status") == "failed"]
        log.info(
            "run %s (%s@%s) attempt %d failed (%s); retrying in %.3fs",
            taken.id,
            taken.workflow,
            taken.version,
            attempt,
            error["type"],
            delay,
        )
        if delay <= self.inline_retry_max_delay:
            await trio.sleep(delay)
            status, wake_at = "queued", None
        else:
            status = "awaiting_retry"
            wake_at = _now_ms() + int(delay * 1000)
        await self._retrying(
            "park run",
            lambda: store.park_run(
                taken,
                message.id,
                status=status,
                wake_at_ms=wake_at,
                errors=errors,
                drop_tasks=failed,
            ),
        )


def _classify(exc: BaseException, now_ms: int) -> tuple[str, Any]:
    """What a workflow function's exception means: ``("suspend", Suspend)``,
    ``("stale", exc)``, ``("failed", Exception)`` or ``("reraise", None)``.

    Workflow code fans out in trio nurseries, so suspensions, lost claims and task
    failures may arrive wrapped in exception groups; cancellation is always re-raised."""
    if isinstance(exc, trio.Cancelled | KeyboardInterrupt | SystemExit | GeneratorExit):
        return "reraise", None
    if isinstance(exc, _StaleExecution):
        return "stale", exc
    if isinstance(exc, ScriptRefused):
        return "stale", exc
    if isinstance(exc, Suspend):
        return "suspend", exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = list(_leaves(exc))
        if any(isinstance(e, trio.Cancelled | KeyboardInterrupt | SystemExit) for e in leaves):
            return "reraise", None
        stale = [e for e in leaves if isinstance(e, _StaleExecution | ScriptRefused)]
        if stale:
            return "stale", stale[0]
        suspends = [e for e in leaves if isinstance(e, Suspend)]
        if suspends:
            # Parallel branches wait for different things: park until the earliest
            # timer, and re-check at least every second when several conditions mix;
            # the replay parks again for whatever is still awaited.
            chosen = min(suspends, key=lambda s: s.wake_at_ms or 2**62)
            if len(suspends) > 1:
                wake = min(chosen.wake_at_ms or 2**62, now_ms + 1000)
                return "suspend", Suspend(chosen.status, wake)
            return "suspend", chosen
        failures = [e for e in leaves if isinstance(e, TaskFailed)]
        if failures and len(failures) == len(leaves):
            return "failed", failures[0]  # record the task's own error, not the group
        if isinstance(exc, Exception):
            return "failed", exc
        return "reraise", None
    if isinstance(exc, Exception):
        return "failed", exc
    return "reraise", None


def _leaves(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


async def _close_shielded(redis: Redis) -> None:
    with trio.CancelScope(shield=True):
        await redis.aclose()


def _now_ms() -> int:
    return int(time.time() * 1000)


def worker(
    client: Client,
    *,
    id: str | None = None,
    max_concurrent_workflow_runs: int = 10,
    subscriber: RedisStreams | None = None,
    shutdown_grace: float = 5.0,
) -> Worker:
    """Make a worker (nothing starts until ``await worker.start()``)."""
    return Worker(
        client,
        id=id,
        max_concurrent_workflow_runs=max_concurrent_workflow_runs,
        subscriber=subscriber,
        shutdown_grace=shutdown_grace,
    )


__all__ = ["Worker", "worker"]
