"""The worker's loops: read and claim messages, heartbeat them, keep the worker's
registry entry, and follow cancel/pause orders.

They run side by side in the worker's loops nursery and share its state through
:class:`Executor` (the in-flight executions and their slots); each starts executions
with ``_spawn`` and never takes more messages than there are free slots.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from typing import Any

import trio

from ._backoff import Backoff, jittered
from ._clock import wall_ms
from ._errors import ConfigurationError, ConnectionFailed
from ._execution import Executor
from ._redis import GroupMissing, ScriptRefused
from ._store import Store
from .subscribers import Message, RedisStreams, StreamReader

log = logging.getLogger("aiki.worker")

REGISTRY_INTERVAL = 2.0
"""Seconds between two entries in the worker registry (``Keys.workers``), which the
dashboard and ``/metrics`` read. Independent of claims and message heartbeats."""

REGISTRY_STALE = 3 * REGISTRY_INTERVAL
"""An entry whose heartbeat is older than this belongs to a worker that is gone: its id
may be claimed by a new worker (see :meth:`Loops._claim_id`)."""

SCHEDULES_CHECK = 30.0
SCHEDULES_OVERDUE = 30.0
"""A worker warns (once) when a schedule occurrence is this overdue (see
:meth:`Loops._check_schedules`), looking every SCHEDULES_CHECK seconds."""

RECOVERY_QUIET = 60.0
"""A missing stream group this long after the last recovery counts as a new outage."""

WORKER_TIMER_INTERVAL = 1.0
"""How often, at most, a worker looks for due timers it does not know of yet (it sleeps
until the next known one): timers fire without a server, at a small idle cost."""


_DONE_TO_RUN = {
    "cancel": "cancelled",
    "pause": "paused",
    "reclaim": "reclaimed (a task attempt passed its deadline)",
}


class Loops(Executor):
    """The worker's loops (a base of :class:`aiki.Worker`)."""

    max_concurrent_workflow_runs: int
    subscriber: RedisStreams
    claims_taken_over: int
    taken_with_read: int
    client: Any  # the worker's aiki.Client
    id: str
    redis_resets: int  # times this worker found Redis emptied and registered again

    def _init_loops(self) -> None:
        """The loops' own state (called by the worker's ``__init__``)."""
        self.instance = uuid.uuid4().hex  # tells this process from another with our id
        self.redis_resets = 0
        self.rate_limit_waits = {}  # limit name -> [inline waits, seconds, parks]
        self.concurrency_waits = {}  # "workflow@version" -> key -> [waits, seconds]
        self.shard_count = 1
        self._generation: str | None = None
        self._started_ms = wall_ms()
        self._recovering = trio.Lock()
        self._recovered_at = -1e9
        self._schedules_check_at = 0.0
        self._schedules_warned = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def free_slots(self) -> int:
        return self.max_concurrent_workflow_runs - len(self._in_flight)

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
        outage = Backoff(initial=0.1, maximum=5.0)  # between reads while Redis is away
        # After a read that found more than one message, the next one reads and takes in
        # one call; a worker that is keeping up waits in a blocking read instead.
        backlog = False
        next_claim = trio.current_time() + sub.effective_claim_interval
        unexpected = Backoff(initial=0.1, maximum=5.0)  # after an unexpected reply
        while True:
            await self._wait_for_slot()
            messages: list[Message] = []
            try:
                if trio.current_time() >= next_claim:
                    next_claim = trio.current_time() + jittered(sub.effective_claim_interval)
                    await self._claim(reader, executions, store)
                elif backlog:
                    # Work is waiting: read AND take runs in one call (no blocking).
                    # Shielded: once the script ran, its runs are ours and must reach an
                    # execution (a stopping worker then requeues them at once) rather
                    # than wait for a claim.
                    with trio.CancelScope(shield=True):
                        backlog = await self._read_and_take(reader, executions, store) > 0
                else:
                    messages = await reader.read(self.free_slots, sub.block_time)
                    backlog = len(messages) > 1
            except GroupMissing:
                # Redis lost our streams (emptied, or failed over to an empty replica):
                # register again (logged once per outage) and go on reading.
                backlog = False
                try:
                    await self._recover_state(store, reader)
                except ConnectionFailed:
                    await outage.sleep()
                continue
            except ConnectionFailed as exc:
                if not outage.failures:  # logged once per outage
                    log.warning("worker %s cannot read from Redis (%s); retrying", self.id, exc)
                await outage.sleep()
                continue
            except Exception:
                # An unexpected reply must not stop the worker: read one by one for now
                # (what an aborted script delivered is claimed back after the idle time);
                # logged with its traceback once per streak, not on every retry.
                if not unexpected.failures:
                    log.exception("worker %s: reading and taking runs failed", self.id)
                backlog = False
                await unexpected.sleep()
                continue
            unexpected.reset()
            if outage.failures:
                log.warning("worker %s reads from Redis again", self.id)
                outage.reset()
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
        except GroupMissing:
            raise  # the read loop registers again
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

    async def _follow_shards(self, store: Store, reader: StreamReader) -> None:
        """Start reading the shards a version registered since uses (a child run of
        such a version's run lives in its parent's shard, whatever its own version)."""
        count = await store.shard_count()
        if count > self.shard_count:
            versions = [(wv.name, wv.version) for wv in self.workflow_registry]
            await store.create_groups(versions, range(self.shard_count, count))
            self._read_shards(store, reader, count)

    def _read_shards(self, store: Store, reader: StreamReader, count: int) -> None:
        if count != self.shard_count:
            reader.set_shards(self._streams(store, count))
            log.info("worker %s now reads %d shards", self.id, count)
            self.shard_count = count

    async def _register(self, store: Store) -> int:
        """Register this worker's versions (idempotent: registrations, shard count,
        stream groups); returns the deployment's shard count."""
        return await store.register_workflows(
            [(wv.name, wv.version) for wv in self.workflow_registry],
            self.id,
            {(wv.name, wv.version): wv.timeout for wv in self.workflow_registry},
            {(wv.name, wv.version): wv.shards for wv in self.workflow_registry},
            {(wv.name, wv.version): wv.types.schemas() for wv in self.workflow_registry},
            concurrency={
                (wv.name, wv.version): wv.concurrency.registration() if wv.concurrency else None
                for wv in self.workflow_registry
            },
        )

    async def _recover_state(self, store: Store, reader: StreamReader) -> None:
        """Redis lost what this worker registered (a stream group is missing, or the
        deployment's generation token changed): register everything again and go on.

        Logged once per outage (a new generation, or a missing group long after the last
        recovery) and counted in ``redis_resets`` (the registry entry, hence
        ``/metrics``); the loops that notice it at once share one recovery."""
        async with self._recovering:
            if trio.current_time() - self._recovered_at < 1.0:
                return  # another loop recovered just now
            generation = await store.generation()
            new_outage = (
                generation != self._generation
                or trio.current_time() - self._recovered_at > RECOVERY_QUIET
            )
            if new_outage:
                self.redis_resets += 1
                log.warning(
                    "worker %s: Redis lost this deployment's state (emptied, restarted "
                    "without persistence or failed over?); registering %d workflow "
                    "versions again (reset #%d)",
                    self.id,
                    len(self.workflow_registry),
                    self.redis_resets,
                )
            self._read_shards(store, reader, await self._register(store))
            await store.publish_worker(self.id, self._registry_entry())
            self._generation = generation
            self._recovered_at = trio.current_time()

    def _registry_entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instance": self.instance,
            "workflows": [f"{wv.name}@{wv.version}" for wv in self.workflow_registry],
            "in_flight": self.in_flight,
            "max": self.max_concurrent_workflow_runs,
            "last_heartbeat_ms": wall_ms(),
            "started_at_ms": self._started_ms,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "claims_taken_over": self.claims_taken_over,
            "executions_finished": self.executions_finished,
            "redis_resets": self.redis_resets,
            "rate_limit_waits": self.rate_limit_waits,
            "concurrency_waits": self.concurrency_waits,
        }

    async def _claim_id(self, store: Store) -> None:
        """Take this worker's id in the registry, refusing to start while another live
        process holds it (two workers with one id would execute runs twice: a message
        pending with "its" consumer is taken by both).

        The check and the write are one script. An entry left by a worker that died
        without removing it frees itself once its heartbeat is older than
        REGISTRY_STALE, so a supervisor restarting a crashed worker at once only waits
        those few seconds; a holder whose heartbeat moves while we wait is alive."""
        self._started_ms = wall_ms()
        deadline = trio.current_time() + REGISTRY_STALE + 2 * REGISTRY_INTERVAL
        first_beat: Any = None
        while True:
            held = await store.claim_worker(
                self.id,
                self.instance,
                self._registry_entry(),
                stale_ms=int(REGISTRY_STALE * 1000),
            )
            if held is None:
                self._generation = await store.generation()
                return
            beat = held.get("last_heartbeat_ms")
            if first_beat is None:
                first_beat = beat
                log.info(
                    "worker id %r is held by host %s pid %s; waiting up to %.0fs for it to "
                    "go stale",
                    self.id,
                    held.get("host"),
                    held.get("pid"),
                    REGISTRY_STALE,
                )
            elif beat != first_beat or trio.current_time() > deadline:
                raise ConfigurationError(
                    f"a live worker with id {self.id!r} is already running (host "
                    f"{held.get('host')}, pid {held.get('pid')}); give each worker its own "
                    "id, or stop that one first",
                    field="id",
                )
            await trio.sleep(0.25)

    async def _check_schedules(self, store: Store) -> None:
        """Warn once when a schedule occurrence is long overdue: workers fire timers but
        never schedules (a server feature), so with no ``aiki server`` running, or all
        started with daemons off, schedules silently stop. Looked at every
        SCHEDULES_CHECK seconds, one small read."""
        now = trio.current_time()
        if self._schedules_warned or now < self._schedules_check_at:
            return
        self._schedules_check_at = now + SCHEDULES_CHECK
        overdue = await store.due_schedules(wall_ms() - int(SCHEDULES_OVERDUE * 1000), limit=1)
        if overdue:
            schedule_id, due_ms = overdue[0]
            self._schedules_warned = True
            log.warning(
                "schedule %r is overdue by %.0fs: schedules are fired by an `aiki server` "
                "(with its daemons on), never by workers; is one running?",
                schedule_id,
                (wall_ms() - due_ms) / 1000,
            )

    async def _registry_loop(self, store: Store, reader: StreamReader) -> None:
        """Publish this worker in the worker registry every REGISTRY_INTERVAL seconds
        (one HSET; the entry is removed when the worker stops), follow the deployment's
        shard count, and notice when Redis lost the deployment's state (its generation
        token changed) even while no read fails: an idle worker registers its versions
        again within REGISTRY_INTERVAL, so HTTP starts find them."""
        try:
            while True:
                with contextlib.suppress(ConnectionFailed, ScriptRefused):
                    if await store.generation() != self._generation:
                        await self._recover_state(store, reader)
                    await store.publish_worker(self.id, self._registry_entry())
                    await self._follow_shards(store, reader)
                    await self._check_schedules(store)
                await trio.sleep(REGISTRY_INTERVAL)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                with contextlib.suppress(ConnectionFailed, ScriptRefused):
                    await store.remove_workers(self.id)

    async def _control_loop(
        self, store: Store, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Cancel executions whose run was cancelled or paused elsewhere, promptly."""
        subscription = await store.open_subscription(
            self.client.redis_url or "",
            store.keys.control_channel,
            name=f"aiki-worker-control:{self.id}",
            implementation=self.client.redis_client,
        )
        async with subscription:
            task_status.started()
            while True:
                try:
                    data = await subscription.receive()
                    order = json.loads(data)
                    run_id, action = order["run"], order["action"]
                except ConnectionFailed:
                    await trio.sleep(jittered(0.5))
                    continue
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring malformed control message %r", data[:200])
                    continue
                only = order.get("message")  # a reclaim stops the old execution only
                for key, (message, scope) in list(self._in_flight.items()):
                    if message.run_id == run_id and only in (None, message.id):
                        log.info(
                            "worker %s: run %s was %s; stopping its execution",
                            self.id,
                            run_id,
                            _DONE_TO_RUN.get(action, action),
                        )
                        self._abandoned.add(key)
                        scope.cancel()
