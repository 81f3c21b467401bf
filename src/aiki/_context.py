"""The workflow context: replay with memoized task results.

A workflow's ``run(ctx, payload)`` runs from the top on every delivery. Each
``task.start(ctx, input)`` computes the task's *address* — task name, a hash of the
canonical JSON input, and an occurrence counter for repeats of the same name and input —
and looks it up in the results this run has recorded. A recorded result is returned at
once (the task is not run again); otherwise the task runs here and its outcome is
recorded, fenced by the run's revision, before ``start`` returns.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from . import _serde, _tracing
from ._child import ChildHandle
from ._clock import RedisClock
from ._determinism import RESOLVED, Diverged, ReachedFrontier, StepMatcher, is_branch
from ._errors import (
    EventTimeout,
    NonDeterminismError,
)
from ._outcome import _StaleExecution
from ._rate_limit import RateLimit
from ._store import check_attributes, shard_of, with_shard
from ._suspend import Suspend
from ._task import Task
from ._types import UNTYPED, Signature, payload_type
from .codecs import NO_CODECS, Chain

log = logging.getLogger("aiki.worker")

RecordTask = Callable[[str, dict[str, Any]], Awaitable[None]]
TaskAttempt = Callable[[str, dict[str, Any], int | None], Awaitable[None]]
AcquireRate = Callable[[RateLimit, str | None, int], Awaitable[tuple[bool, float, float]]]
#: (workflow, version, payload JSON, child id, (concurrency key, limit)) -> child id
StartChild = Callable[[str, str, str, str, tuple[str | None, int | None]], Awaitable[str]]
GetRun = Callable[[str], Awaitable[Any]]
SetAttributes = Callable[[dict[str, str | None]], Awaitable[None]]
FlushSoon = Callable[[Callable[[], Awaitable[None]]], None]


def _current_trio_task() -> trio.lowlevel.Task | None:
    try:
        return trio.lowlevel.current_task()
    except RuntimeError:  # built outside trio (a unit test): no parallel branches
        return None


class WorkflowContext:
    """Passed to a workflow version's run function as ``ctx``."""

    def __init__(
        self,
        *,
        run_id: str,
        workflow: str,
        version: str,
        attempt: int,
        memo: dict[str, dict[str, Any]],
        record_task: RecordTask,
        inline_retry_max_delay: float = 0.5,
        max_result_bytes: int = _serde.DEFAULT_MAX_RESULT_BYTES,
        events: dict[str, list[dict[str, Any]]] | None = None,
        now_ms: int | None = None,
        start_child: StartChild | None = None,
        get_run: GetRun | None = None,
        replay_only: bool = False,
        codecs: Chain = NO_CODECS,
        set_attributes: SetAttributes | None = None,
        task_attempt: TaskAttempt | None = None,
        acquire_rate: AcquireRate | None = None,
        flush_soon: FlushSoon | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.version = version
        self.attempt = attempt  # 1 on the first execution; +1 per workflow-level retry
        self._memo = memo
        # Each record carries "seq", its address's position in the workflow's call order
        # (the same on every replay): it orders records that start in the same ms; and
        # "par", whether it was a parallel branch: the replay check (aiki._determinism).
        self._positions: dict[str, int] = {}
        self._parallel: dict[str, int] = {}
        self._steps = StepMatcher(run_id, memo, attempt)
        self._recorded = frozenset(memo)
        self._root = _current_trio_task()
        self._patches: dict[str, bool] = {}
        self._new_patches: list[str] = []
        self._replay_only = replay_only
        self._codecs = codecs  # the client's (aiki.codecs): data is stored encoded
        self.diverged: NonDeterminismError | None = None

        async def record_in_order(address: str, record: dict[str, Any]) -> None:
            self._stamp(address, record)
            await record_task(address, record)

        self._record_task = record_in_order
        self._raw_record_task = record_task
        # A completed task's record held back (see _record_completed): the executor's
        # ``flush_soon`` writes it at the code's next checkpoint, else it rides on the finish.
        self._flush_soon = None if replay_only else flush_soon
        self._held: tuple[str, dict[str, Any]] | None = None
        self._flushing: trio.Event | None = None
        self._flush_error: Exception | _StaleExecution | None = None
        self._task_attempt = task_attempt
        self._acquire_rate = acquire_rate  # None: rate limits are not enforced (tests)
        self._inline_retry_max_delay = inline_retry_max_delay
        self._max_result_bytes = max_result_bytes
        self._events = events or {}
        # Redis's clock when the run was taken, advanced by the local monotonic clock:
        # timers fire on Redis time (virtual in a time-skipping test), so sleeps, event
        # timeouts and retry delays are computed on it too (aiki._clock).
        self._clock = RedisClock(now_ms or None)
        self._start_child = start_child
        self._get_run = get_run
        self._set_attributes = set_attributes
        self._occurrences: dict[tuple[str, str], int] = {}
        self.replayed_tasks = 0
        self.executed_tasks = 0

    def _stamp(self, address: str, record: dict[str, Any]) -> None:
        if address in self._positions:
            record.setdefault("seq", self._positions[address])
            record.setdefault("par", self._parallel[address])
            if self.attempt > 1:
                record.setdefault("att", self.attempt)
            if self._new_patches and address not in self._recorded:
                # Patches taken since the last new step ride on this one (no write
                # of their own): a replay that finds them ahead knows it took them.
                record["patches"] = [*record.get("patches", ()), *self._new_patches]
                self._new_patches = []

    def now_ms(self) -> int:
        """Milliseconds since the epoch on Redis's clock (what timers use)."""
        return self._clock.now_ms()

    def _named_address(self, kind: str, name: str) -> str:
        key = (kind, name)
        n = self._occurrences.get(key, 0)
        self._occurrences[key] = n + 1
        address = f"{kind}:{name}:{n}"
        self._step(address)
        return address

    def _step(self, address: str) -> None:
        """The code asks for the step ``address``: give it its position and check it
        against the history (before the step does anything)."""
        if self.diverged is not None:
            raise Diverged(self.diverged)
        if address in self._positions:
            return
        position = len(self._positions)
        self._positions[address] = position
        parallel = is_branch(self._root)
        self._parallel[address] = int(parallel)
        try:
            self._steps.check(position, address, parallel)
        except NonDeterminismError as error:
            self.diverged = error
            raise Diverged(error) from None
        if self._replay_only:
            recorded = self._memo.get(address)
            if recorded is None or recorded.get("status") not in RESOLVED:
                raise ReachedFrontier(address)

    def end_of_code(self) -> None:
        """The workflow function returned: every recorded step must have been asked for
        (else the code skipped one). Raises Diverged."""
        if self.diverged is None:
            try:
                self._steps.check_end(len(self._positions))
            except NonDeterminismError as error:
                self.diverged = error
        if self.diverged is not None:
            raise Diverged(self.diverged)

    def patched(self, name: str) -> bool:
        """Whether this run takes the code path of patch ``name`` (see docs/determinism.md).

        ``if ctx.patched("fraud-check"): <new code> else: <old code>`` changes a version's
        code under runs in flight: True for a run that reaches this point under the new
        code (or took the patch before), False for a run whose history shows it went past
        this point without it. The answer is the same on every replay of the run. Once no
        run that went past it the old way remains, drop the ``if`` and keep the new code.
        """
        if not isinstance(name, str) or not name:
            raise ValueError("ctx.patched(name): name must be a non-empty string")
        if name in self._patches:
            return self._patches[name]
        pending = self._steps.pending() if self._steps.enabled else [
            a for a in self._memo if a not in self._steps.requested
        ]  # fmt: skip
        if any(name in (self._memo[a].get("patches") or ()) for a in pending):
            taken = True  # this run took the patch: a later step says so
        elif pending:
            taken = False  # the run went on past this point without the patch
        else:
            taken = True  # the run is here for the first time, under the new code
            self._new_patches.append(name)
        self._patches[name] = taken
        return taken

    async def set_attributes(
        self, attributes: Mapping[str, Any] | None = None, /, **more: Any
    ) -> None:
        """Tag this run with search attributes (``customer="42"``) that listings
        filter by (``client.list_runs(attributes=...)``, the API, CLI and dashboard; see
        docs/search.md). Values are stored as strings, None removes one, at most 32 per
        run; one fenced, indexed write (none when a replay sets the same values)."""
        changes = check_attributes({**(attributes or {}), **more}, allow_none=True)
        if self._set_attributes is not None and not self._replay_only and changes:
            if self._unwritten:
                await self.flush()
            await self._set_attributes(changes)

    async def _record(self, address: str, record: dict[str, Any]) -> None:
        if self._unwritten:
            await self.flush()
        await self._record_task(address, record)
        self._memo[address] = record

    async def _record_completed(self, address: str, record: dict[str, Any]) -> None:
        """Record a task that completed. Why it may be held back: a workflow whose code
        ends right after its last task would write that record and then, one round trip
        later, its outcome; held, the record rides on the finish script (one fenced
        script, a round trip saved on every run of a one-task workflow).

        What keeps the guarantees: only in sequential code (no parallel branch runs, so
        this is the run's latest step), and only until the code does anything but plain
        Python: every next step, attribute write or park writes it first (:meth:`flush`),
        and at the code's first checkpoint (a ``trio.sleep``, an HTTP call, anything that
        yields) the executor's ``flush_soon`` task writes it. So no step begins, and no
        time passes, before it is recorded; a crash in between is a crash before the
        record, as it always could be: the task runs again, as at-least-once tasks do."""
        if self._flush_soon is None or self._unwritten or is_branch(self._root):
            await self._record(address, record)
            return
        self._stamp(address, record)  # now: patches taken after it ride on the next step
        self._held = (address, record)
        self._memo[address] = record
        self._flush_soon(self._flush_quietly)

    @property
    def _unwritten(self) -> bool:
        """A held record not written yet: held, on its way, or its write failed (then
        :meth:`flush` raises why). Every next step, attribute write or park flushes first."""
        return self._held is not None or self._flushing is not None or self._flush_error is not None

    def take_held(self) -> tuple[str, dict[str, Any]] | None:
        """The record held back, for the finish script to write (None if there is none,
        or a write of it is already on its way: then :meth:`flush` waits for it)."""
        held, self._held = self._held, None
        return held

    async def flush(self) -> None:
        """Write the record held back, or wait for the write on its way; raises what
        that write raised (a lost claim: the execution is stale)."""
        if self._held is not None:
            address, record = self._held
            self._held = None
            done = self._flushing = trio.Event()
            try:
                await self._raw_record_task(address, record)
            except (Exception, _StaleExecution) as exc:  # an outage, a lost claim: kept
                self._flush_error = exc
            except BaseException:
                self._held = (address, record)  # cancelled mid-write: a rewrite is harmless
                raise
            finally:
                self._flushing = None
                done.set()
        elif self._flushing is not None:
            await self._flushing.wait()
        if self._flush_error is not None:
            raise self._flush_error

    async def _flush_quietly(self) -> None:
        """``flush`` for the executor's background task: an error is kept for the code's
        next step (or the executor) to raise, where it belongs."""
        with contextlib.suppress(Exception, _StaleExecution):
            await self.flush()

    async def sleep(self, name: str, seconds: float) -> None:
        """Sleep durably: the run is ``sleeping`` and holds no worker slot until the time
        has passed (or ``handle.wakeup(name)``), even across worker and server restarts."""
        if not isinstance(name, str) or not name:
            raise ValueError("ctx.sleep(name, seconds): name must be a non-empty string")
        address = self._named_address("sleep", name)
        recorded = self._memo.get(address)
        now = self.now_ms()
        if recorded is not None:
            if recorded.get("status") == "completed":
                return
            wake_at = int(recorded["wake_at"])
            if now >= wake_at:
                await self._record(address, {**recorded, "status": "completed", "ended_at": now})
                return
            raise Suspend("sleeping", wake_at, sleep_address=address)
        if seconds <= 0:
            await self._record(
                address,
                {
                    "kind": "sleep",
                    "name": name,
                    "status": "completed",
                    "started_at": now,
                    "ended_at": now,
                    "seconds": 0,
                },
            )
            return
        wake_at = now + int(seconds * 1000)
        _tracing.event("aiki.sleep", name=name, seconds=float(seconds))
        await self._record(
            address,
            {
                "kind": "sleep",
                "name": name,
                "status": "sleeping",
                "started_at": now,
                "wake_at": wake_at,
                "seconds": seconds,
            },
        )
        raise Suspend("sleeping", wake_at, sleep_address=address)

    async def wait_for_event(
        self, name: str, *, timeout: float | None = None, type: Any = None
    ) -> Any:
        """Wait durably for the event ``name`` sent to this run and return its data.

        The n-th wait for a name receives the n-th event of that name, including events
        sent before the wait began. Raises :class:`aiki.EventTimeout` after ``timeout``
        seconds (the same way on every replay). ``type`` (a pydantic model, dataclass,
        ...) returns the data as that type; data that does not fit raises
        :class:`aiki.InvalidPayload` naming the path."""
        if not isinstance(name, str) or not name:
            raise ValueError("ctx.wait_for_event(name): name must be a non-empty string")
        if type is not None:
            as_type = payload_type(type)
            data = await self.wait_for_event(name, timeout=timeout)
            return as_type.load(data, where=f"event {name!r}")
        address = self._named_address("event", name)
        index = int(address.rsplit(":", 1)[1])
        recorded = self._memo.get(address)
        if recorded is not None:
            if recorded.get("status") == "completed":
                return self._codecs.unwrap(recorded.get("result"))
            if recorded.get("status") == "timed_out":
                raise EventTimeout(name, recorded.get("timeout"))
        now = self.now_ms()
        received = self._events.get(name, [])
        if len(received) > index:
            data = received[index].get("data")
            await self._record(
                address,
                {
                    "kind": "event",
                    "name": name,
                    "status": "completed",
                    "result": data,
                    "started_at": (recorded or {}).get("started_at", now),
                    "ended_at": now,
                },
            )
            return self._codecs.unwrap(data)
        timeout_at = (recorded or {}).get("timeout_at")
        if recorded is None:
            timeout_at = None if timeout is None else now + int(timeout * 1000)
            _tracing.event("aiki.wait_for_event", name=name)
            await self._record(
                address,
                {
                    "kind": "event",
                    "name": name,
                    "status": "waiting",
                    "started_at": now,
                    "timeout": timeout,
                    "timeout_at": timeout_at,
                },
            )
        if timeout_at is not None and now >= int(timeout_at):
            await self._record(
                address,
                {**(recorded or self._memo[address]), "status": "timed_out", "ended_at": now},
            )
            raise EventTimeout(name, (recorded or self._memo[address]).get("timeout"))
        raise Suspend("awaiting_event", timeout_at, event=(name, index))

    async def _child(
        self,
        workflow: str,
        version: str,
        payload: Any,
        types: Signature | None = None,
        concurrency: tuple[str | None, int | None] = (None, None),
    ) -> ChildHandle:
        if self._start_child is None:
            raise RuntimeError("child workflows need a worker-run context")
        result_type = UNTYPED
        if types is not None:
            payload = types.input.dump(payload, where=f"payload of child {workflow!r}")
            result_type = types.output
        address = self._address(f"child:{workflow}@{version}", payload)
        recorded = self._memo.get(address)
        if recorded is not None:
            return ChildHandle(self, recorded["child_id"], workflow, version, result_type)
        # Deterministic (a replay starts the same child), and in the parent's shard.
        child_id = with_shard(
            uuid.uuid5(uuid.NAMESPACE_URL, f"aiki:{self.run_id}:{address}").hex,
            shard_of(self.run_id),
        )
        stored = self._codecs.wrap(payload)  # the address above hashed the plaintext
        payload_json = _serde.dumps(stored, what="child payload")
        _tracing.event("aiki.child_started", workflow=workflow, child_id=child_id)
        if self._unwritten:
            await self.flush()
        await self._start_child(workflow, version, payload_json, child_id, concurrency)
        now = self.now_ms()
        await self._record(
            address,
            {
                "kind": "child",
                "status": "completed",
                "child_id": child_id,
                "workflow": workflow,
                "version": version,
                "input": stored,
                "started_at": now,
                "ended_at": now,
            },
        )
        return ChildHandle(self, child_id, workflow, version, result_type)

    def _address(self, name: str, payload: Any) -> str:
        digest = _serde.canonical_hash(payload)
        key = (name, digest)
        n = self._occurrences.get(key, 0)
        self._occurrences[key] = n + 1
        address = f"{name}:{digest}:{n}"
        self._step(address)
        return address

    async def _run_task(self, task: Task[Any], payload: Any) -> Any:
        from ._task_run import run_task  # it builds on this module

        if self._unwritten:
            await self.flush()
        return await run_task(self, task, payload)

    async def _record_attempt(
        self, address: str, record: dict[str, Any], deadline_ms: int | None
    ) -> None:
        """Record an attempt of a task with a deadline, keeping the deadline in Redis
        (``None``: drop it); see :mod:`aiki._task_run`."""
        if self._unwritten:
            await self.flush()
        self._stamp(address, record)
        if self._task_attempt is None:  # no Redis deadlines here (tests, replays)
            await self._raw_record_task(address, record)
        else:
            await self._task_attempt(address, record, deadline_ms)
