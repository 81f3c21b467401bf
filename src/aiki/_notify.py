"""One listener per process for "run ended" notifications, shared by every wait.

Waiting must not cost a connection per waiter: 200 concurrent ``wait_for_completion``
calls share ONE subscribed connection. Pub/sub is fire-and-forget (a message published
while the connection is down is gone), so pending waits are re-checked against the
stored status: periodically for waits that have lasted a while, and at once after the
listener reconnects.

A client's listener subscribes at its first wait (``serve(lazy=True)``), not when the
client opens: a worker process or a producer that never waits does not receive every
run's end (with many workers, that fan-out would be most of the pub/sub traffic). A watch
made before the subscription is live (at a start) is not trusted to see its notification:
its first wait reads the run's status once after subscribing.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from typing import Any

import anyio
import anyio.lowlevel

from ._backoff import Backoff
from ._errors import ConnectionFailed, RunNotFound
from ._store import RunRecord, Store, Subscription

log = logging.getLogger("aiki.notify")


def _outage_backoff() -> Backoff:
    """0.1 s, 0.2 s, ... up to 5 s between tries while Redis is away."""
    return Backoff(initial=0.1, maximum=5.0)


class _Watch:
    # The event is made by the first wait: a watch made at start, for a run nobody
    # waits on (or one that has ended before its wait began), never needs one.
    __slots__ = ("_event", "outcome", "waiters", "since", "covered")

    def __init__(self, covered: bool) -> None:
        self._event: anyio.Event | None = None
        self.outcome: dict[str, Any] | None = None
        self.waiters = 0
        self.since = anyio.current_time()
        # Made while the listener was subscribed: its run's end cannot be missed.
        self.covered = covered

    def deliver(self, outcome: dict[str, Any]) -> None:
        if self.outcome is None:
            self.outcome = outcome
            if self._event is not None:
                self._event.set()

    def reopen(self) -> None:
        """The run was retried: forget the end delivered before (waits already told of
        it have it; a wait that begins now waits for the next end)."""
        self.outcome = None
        if self._event is not None and self._event.is_set():
            self._event = None  # it fired for the old end; waiting now makes a new one

    async def wait(self) -> None:
        """Until an outcome is delivered (a checkpoint either way)."""
        if self.outcome is not None:
            await anyio.lowlevel.checkpoint()
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


class RunEndedListener:
    """Delivers run-ended notifications to the waits registered with :meth:`watch`."""

    def __init__(
        self,
        redis_url: str,
        store: Store,
        *,
        recheck_interval: float = 1.0,
        max_unwaited: int = 10_000,
        name: str = "aiki-notify",
        implementation: str | None = None,
    ) -> None:
        self._url = redis_url
        self._implementation = implementation
        self._store = store
        self._recheck_interval = recheck_interval
        self._max_unwaited = max_unwaited
        self._name = name
        self._watches: OrderedDict[str, _Watch] = OrderedDict()
        self._redis: Subscription | None = None
        self._wake_recheck = anyio.Event()
        self._wanted = anyio.Event()
        self._listening = anyio.Event()
        self.messages_received = 0

    # -- for waiters ----------------------------------------------------------------

    def watch(self, run_id: str) -> tuple[_Watch, bool]:
        """The watch for ``run_id``, and whether it already existed.

        A watch created before the run could end (at start) cannot miss its
        notification, so its waiter needs no initial status read.
        """
        existing = self._watches.get(run_id)
        if existing is not None:
            return existing, True
        # Trim first: trimming after the insert could drop the watch we hand out.
        self._trim()
        w = self._watches[run_id] = _Watch(covered=self._listening.is_set())
        return w, False

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    async def ensure_listening(self) -> None:
        """Until the listener is subscribed (a lazy listener subscribes now)."""
        if not self._listening.is_set():
            self._wanted.set()
            await self._listening.wait()

    def reopened(self, run_id: str) -> None:
        """``run_id`` was retried by this process: drop an end told before now, without
        waiting for the script's own notice to arrive."""
        w = self._watches.get(run_id)
        if w is not None:
            w.reopen()

    def forget(self, run_id: str) -> None:
        w = self._watches.get(run_id)
        if w is not None and w.waiters == 0:
            del self._watches[run_id]

    def _trim(self) -> None:
        # Watches made at start for runs nobody waits for are dropped oldest first; a
        # later wait on such a run simply reads its status once.
        # Amortized O(1) per start: pop from the old end; a watch someone waits on is
        # moved to the young end instead (at most once per pass over the dict).
        budget = len(self._watches)
        while len(self._watches) > self._max_unwaited and budget > 0:
            budget -= 1
            run_id, w = next(iter(self._watches.items()))
            if w.waiters == 0:
                del self._watches[run_id]
            else:
                self._watches.move_to_end(run_id)

    @property
    def pending(self) -> int:
        return sum(1 for w in self._watches.values() if w.outcome is None)

    # -- the listener ---------------------------------------------------------------

    async def serve(
        self, *, lazy: bool = False, task_status: Any = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the listener until cancelled; ``task_status.started()`` once subscribed,
        or at once with ``lazy`` (it then subscribes when :meth:`ensure_listening` is
        first called, retrying while Redis cannot be reached)."""
        if lazy:
            task_status.started()
            await self._wanted.wait()
            self._redis = await self._connect_retrying()
        else:
            self._redis = await self._connect()
        try:
            async with anyio.create_task_group() as nursery:
                nursery.start_soon(self._recheck_loop)
                self._listening.set()
                if not lazy:
                    task_status.started()
                await self._receive_loop()
        finally:
            with anyio.CancelScope(shield=True):
                await self._redis.aclose()

    async def _connect(self) -> Subscription:
        return await self._store.open_subscription(
            self._url,
            self._store.keys.run_ended_channel,
            name=self._name,
            request_timeout=5.0,
            implementation=self._implementation,
        )

    async def _connect_retrying(self) -> Subscription:
        backoff = _outage_backoff()
        while True:
            try:
                return await self._connect()
            except ConnectionFailed as exc:
                if not backoff.failures:  # logged once per outage
                    log.warning("notification listener cannot subscribe (%s); retrying", exc)
                await backoff.sleep()

    async def _receive_loop(self) -> None:
        assert self._redis is not None
        backoff = _outage_backoff()
        while True:
            try:
                data = await self._redis.receive()
            except ConnectionFailed as exc:
                if not backoff.failures:  # logged once per outage
                    log.warning("notification listener lost Redis (%s); retrying", exc)
                await backoff.sleep()
                continue
            if backoff.failures:
                log.warning("notification listener reconnected; re-checking pending waits")
                backoff.reset()
                self._wake_recheck.set()
            self.messages_received += 1
            try:
                outcome = json.loads(data)
                w = self._watches.get(outcome["id"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed run-ended notification: %r", data[:200])
                continue
            if w is None:
                continue
            if outcome.get("reopened"):  # retried: an end told before is no longer true
                w.reopen()
            else:
                w.deliver(outcome)

    async def _recheck_loop(self) -> None:
        """Re-read the status of waits that have gone on a while (pub/sub can drop)."""
        outage = False
        while True:
            with anyio.move_on_after(self._recheck_interval):
                await self._wake_recheck.wait()
            self._wake_recheck = anyio.Event()
            now = anyio.current_time()
            due = [
                run_id
                for run_id, w in self._watches.items()
                if w.outcome is None and w.waiters > 0 and now - w.since >= self._recheck_interval
            ]
            if not due:
                continue
            try:
                for i in range(0, len(due), 500):
                    chunk = due[i : i + 500]
                    runs = await self._store.get_statuses(chunk)
                    for run_id, run in runs.items():
                        w = self._watches.get(run_id)
                        if w is None:
                            continue
                        if run is None:
                            w.deliver({"id": run_id, "status": "missing"})
                        elif run.ended:
                            w.deliver(
                                {
                                    "id": run_id,
                                    "status": run.status,
                                    "result": run.result,
                                    "error": run.error,
                                }
                            )
                if outage:
                    log.warning("notification re-check reached Redis again")
                    outage = False
            except ConnectionFailed as exc:
                if not outage:
                    log.warning("notification re-check cannot reach Redis (%s); retrying", exc)
                    outage = True


def outcome_of(run: RunRecord) -> dict[str, Any]:
    """The outcome of an ended run, shaped like a run-ended notification."""
    return {"id": run.id, "status": run.status, "result": run.result, "error": run.error}


async def wait_for_end(
    listener: RunEndedListener, store: Store, run_id: str, timeout: float | None
) -> dict[str, Any] | None:
    """Wait until run ``run_id`` ends; its outcome, or ``None`` if ``timeout`` ran out.

    The outcome is ``{"id", "status", "result", "error"}`` (status ``missing`` if the
    run vanished meanwhile). Raises :class:`aiki.RunNotFound` if there is no such run.
    The one wait used by the Redis client and the server's long-poll: the watch is
    registered before the status is read, so an end between the two is not missed; a
    watch that already existed (made at start, before the run could end) while the
    listener was subscribed needs no read.
    """
    deadline = anyio.current_time() + (math.inf if timeout is None else timeout)
    if not listener.listening:
        # A lazy listener subscribes now; if it cannot (Redis down) within the wait's own
        # time, the run is looked at once (an outage raises ConnectionFailed) instead.
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            await listener.ensure_listening()
        if not listener.listening:
            run = await store.get_run(run_id)
            if run is None:
                raise RunNotFound(run_id)
            if not run.ended:
                return None
            await store.acknowledged()
            return outcome_of(run)
    w, existed = listener.watch(run_id)
    w.waiters += 1
    missing = False
    try:
        if not existed or not w.covered:
            w.covered = True  # read once now that the listener is subscribed
            run = await store.get_run(run_id)
            if run is None:
                missing = True
                raise RunNotFound(run_id)
            if run.ended:
                w.deliver(outcome_of(run))
        if w.outcome is None:
            with anyio.move_on_after(deadline - anyio.current_time()):
                await w.wait()
        else:  # ended already: no cancel scope needed
            await anyio.lowlevel.checkpoint()
        if w.outcome is not None:
            # With durability="fsync", an end is told only once it is on disk: the
            # worker's write is covered by this process's barrier too.
            await store.acknowledged()
        return w.outcome
    finally:
        w.waiters -= 1
        if w.waiters == 0 and (w.outcome is not None or missing):
            listener.forget(run_id)
