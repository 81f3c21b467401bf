"""One task step of a workflow run: its recorded outcome, or attempts under its policy.

A task step is answered from the run's records when it has an outcome; otherwise its
attempts run here, under the task's retry policy, ``timeout=`` (one attempt, start to
close) and ``heartbeat_timeout=`` (the longest silence between two
``task_context().heartbeat()`` calls). Both deadlines are enforced twice, for two
different failures:

* locally, by a cancel scope around the attempt: the attempt is cancelled at its
  deadline and fails with :class:`aiki.TaskTimeout`, retried like any failure;
* in Redis, for a worker that cannot cancel anything (its event loop blocked by code
  that never awaits) or that is gone: a guarded attempt is recorded ``running`` with its
  deadline, kept in the shard's ``task-deadlines`` set (moved by heartbeats, dropped
  with the outcome). The timer firing that every worker and server runs reclaims a run
  whose deadline passed (``fire_timers.lua``); its next execution finds the attempt
  still ``running`` past its deadline and counts it as timed out.

The Redis deadline lies ``REDIS_GRACE`` after the local one, so a live worker always
cancels first. A task without either option costs nothing more than before: no cancel
scope, no extra write.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from . import _serde, _tracing
from ._errors import TaskFailed, TaskTimeout
from ._rate_limit import park_for
from ._suspend import Suspend
from ._task import Task, TaskContext, _current_task

if TYPE_CHECKING:
    from ._context import WorkflowContext

log = logging.getLogger("aiki.worker")

REDIS_GRACE = 0.5
"""Seconds between an attempt's local deadline and the one kept in Redis."""

HEARTBEAT_WRITES_PER_TIMEOUT = 4
"""A heartbeating attempt writes its heartbeat to Redis at most this many times per
``heartbeat_timeout`` (the local deadline moves on every call, the Redis one with each
write; REDIS_GRACE covers the difference)."""


async def _run_asyncio(fn: Any, payload: Any) -> Any:
    """Run asyncio task code on the worker's trio-asyncio loop (see Worker.start)."""
    import trio_asyncio

    try:
        return await trio_asyncio.aio_as_trio(fn)(payload)
    except RuntimeError as exc:
        if "loop" in str(exc).lower() and "asyncio" not in str(type(exc)):
            raise RuntimeError(
                "an asyncio task ran outside a worker's trio-asyncio loop: "
                "asyncio tasks run inside aiki workers only"
            ) from exc
        raise


async def _call(task: Task[Any], payload: Any, max_result_bytes: int) -> str:
    """Run the task's code once; its result as the JSON that will be recorded (a result
    over the worker's ``max_result_bytes`` fails the attempt: PayloadTooLarge)."""
    if task.asyncio:
        result = await _run_asyncio(task.fn, payload)
    else:
        result = await task.fn(payload)
    what = f"result of task {task.name!r}"
    out_type = task.types.output
    if out_type.typed:  # validated and dumped by the return annotation (aiki._types)
        result = out_type.dump(result, where=what)
    return _serde.check_size(_serde.dumps(result, what=what), max_result_bytes, what)


class _Attempt:
    """One guarded attempt: its deadlines (local and in Redis) and its heartbeats."""

    def __init__(self, ctx: WorkflowContext, task: Task[Any], address: str) -> None:
        self.ctx, self.task, self.address = ctx, task, address
        self.started = trio.current_time()
        self.limit = self.started + task.timeout if task.timeout is not None else float("inf")
        start_ms = ctx.now_ms()
        self.limit_ms = start_ms + int(task.timeout * 1000) if task.timeout else None
        self.scope = trio.CancelScope(deadline=self._local_deadline(self.started))
        self.redis_deadline = self._redis_deadline(start_ms)
        self.record: dict[str, Any] = {}
        self.details: Any = None
        self.beat_at: int | None = None
        self.wake = trio.Event()

    def _local_deadline(self, now: float) -> float:
        hb = self.task.heartbeat_timeout
        return min(self.limit, now + hb) if hb is not None else self.limit

    def _redis_deadline(self, now_ms: int) -> int:
        hb = self.task.heartbeat_timeout
        ends = [now_ms + int(hb * 1000)] if hb is not None else []
        if self.limit_ms is not None:
            ends.append(self.limit_ms)
        return min(ends) + int(REDIS_GRACE * 1000)

    def beat(self, details: Any) -> None:
        """``task_context().heartbeat(details)``: move the local deadline now, the one in
        Redis with the next write (at most HEARTBEAT_WRITES_PER_TIMEOUT per timeout)."""
        _serde.dumps(details, what="heartbeat details")  # refused here, not in the writer
        self.details, self.beat_at = details, self.ctx.now_ms()
        self.scope.deadline = self._local_deadline(trio.current_time())
        self.wake.set()

    def kind(self) -> tuple[str, float]:
        """Which deadline cancelled the attempt: ("timeout" | "heartbeat", seconds)."""
        if self.task.timeout is not None and trio.current_time() >= self.limit:
            return "timeout", self.task.timeout
        return "heartbeat", float(self.task.heartbeat_timeout or 0)

    async def write_heartbeats(self) -> None:
        assert self.task.heartbeat_timeout is not None
        pause = self.task.heartbeat_timeout / HEARTBEAT_WRITES_PER_TIMEOUT
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            self.redis_deadline = self._redis_deadline(self.ctx.now_ms())
            self.record.update(
                heartbeat={"details": self.ctx._codecs.wrap(self.details), "at": self.beat_at},
                deadline_at=self.redis_deadline,
            )
            try:
                await self.ctx._record_attempt(self.address, self.record, self.redis_deadline)
            except Exception as exc:  # best effort: the local deadline still holds
                log.warning("run %s: heartbeat of task %s not written: %s",
                            self.ctx.run_id, self.task.name, exc)  # fmt: skip
            await trio.sleep(pause)


async def _run_guarded(attempt: _Attempt, payload: Any) -> tuple[str | None, Exception | None]:
    """Run one attempt under its deadlines: (result JSON, None) or (None, failure)."""
    result_json: str | None = None
    failure: Exception | None = None
    with attempt.scope:
        if attempt.task.heartbeat_timeout is None:
            try:
                result_json = await _call(attempt.task, payload, attempt.ctx._max_result_bytes)
            except Exception as exc:  # a task's own failure; BaseExceptions propagate
                failure = exc
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(attempt.write_heartbeats)
                try:
                    result_json = await _call(attempt.task, payload, attempt.ctx._max_result_bytes)
                except Exception as exc:
                    failure = exc
                nursery.cancel_scope.cancel()
    if attempt.scope.cancelled_caught:
        kind, seconds = attempt.kind()
        return None, TaskTimeout(attempt.task.name, seconds, kind)
    return result_json, failure


def _lost_attempt(task: Task[Any], recorded: dict[str, Any], now_ms: int) -> TaskTimeout | None:
    """A record still ``running``: an attempt that never ended (its worker was stopped,
    died, or was reclaimed while stuck). Past its deadline it counts as timed out; before
    it, the same attempt simply runs again (None)."""
    if now_ms < int(recorded.get("deadline_at") or 0):
        return None
    kind = str(recorded.get("deadline_kind") or "timeout")
    seconds = recorded.get("timeout") if kind == "timeout" else recorded.get("heartbeat_timeout")
    return TaskTimeout(task.name, float(seconds or 0), kind)


async def _take_units(
    ctx: WorkflowContext,
    task: Task[Any],
    payload: Any,
    address: str,
    errors: list[dict[str, Any]],
) -> float | None:
    """Take this attempt's units from each of the task's rate limits (see
    :mod:`aiki._rate_limit`): wait a short while here, or park the run. Returns when
    the last limit granted them (seconds since the epoch, Redis's clock)."""
    if ctx._acquire_rate is None:
        return None
    last: float | None = None
    for limit in task.rate_limits:
        key, cost = limit.key_of(payload), limit.cost_of(payload)
        reserved, wait, granted = await ctx._acquire_rate(limit, key, cost)
        if reserved:
            last = granted if last is None else max(last, granted)
            if wait > 0:
                await trio.sleep(wait)
            continue
        # A long wait: park (holding no slot) and ask again when it is nearly over.
        now = ctx.now_ms()
        if errors:  # attempts that failed inline before: keep them
            stored = ctx._codecs.wrap(payload)
            record = {"task": task.name, "input": stored, "attempts": len(errors),
                      "status": "awaiting_retry", "errors": errors, "retry_at": now}  # fmt: skip
            await ctx._record_task(address, record)
            ctx._memo[address] = record
        raise Suspend("awaiting_rate_limit", now + int(park_for(wait) * 1000))
    return last


async def run_task(ctx: WorkflowContext, task: Task[Any], payload: Any) -> Any:
    """``task.start(ctx, payload)``: see the module's docstring. With annotations the
    input is validated and dumped before its address is computed (a bad input records
    nothing), the task gets it loaded into its type, and the result (first execution
    or replay) comes back as the return annotation (see aiki._types)."""
    in_type, out_type = task.types.input, task.types.output
    if in_type.typed:
        payload = in_type.dump(payload, where=f"input of task {task.name!r}")
    address = ctx._address(task.name, payload)
    stored = ctx._codecs.wrap(payload)  # what Redis holds; the address hashed the plaintext
    recorded = ctx._memo.get(address)
    errors: list[dict[str, Any]] = []
    heartbeat: Any = None
    lost: TaskTimeout | None = None
    if recorded is not None:
        status = recorded.get("status")
        if status == "completed":
            ctx.replayed_tasks += 1
            result = ctx._codecs.unwrap(recorded.get("result"))
            return out_type.load(result, where=f"result of task {task.name!r}")
        if status == "failed":
            ctx.replayed_tasks += 1
            raise TaskFailed(task.name, ctx._codecs.open_error(recorded.get("error") or {}))
        errors = list(recorded.get("errors") or [])  # awaiting_retry: go on trying
        heartbeat = recorded.get("heartbeat")
        if status == "running":
            lost = _lost_attempt(task, recorded, ctx.now_ms())

    guarded = task.timeout is not None or task.heartbeat_timeout is not None
    policy = task.retry
    argument = payload  # what the task's code gets: its type, made from the recorded JSON
    if in_type.typed:
        argument = in_type.load(payload, where=f"input of task {task.name!r}")
    while True:
        attempt = len(errors) + 1
        record: dict[str, Any] = {"task": task.name, "input": stored, "attempts": attempt}
        if heartbeat is not None:
            record["heartbeat"] = heartbeat
        if lost is not None:
            failure: Exception | None = lost
            lost = None
            result_json = None
            record.update(started_at=ctx.now_ms(), ended_at=ctx.now_ms())
        else:
            granted = None
            if task.rate_limits:
                granted = await _take_units(ctx, task, payload, address, errors)
            ctx.executed_tasks += 1
            started = ctx.now_ms()  # Redis's clock, as the retry's timer fires on
            guard = _Attempt(ctx, task, address) if guarded else None
            details = ctx._codecs.unwrap((heartbeat or {}).get("details"))
            context = TaskContext(ctx.run_id, ctx.workflow, ctx.version, task.name, address,
                                  attempt, details, granted,
                                  guard.beat if guard else None)  # fmt: skip
            with _tracing.task_span(task.name, address, attempt) as span:
                token = _current_task.set(context)
                try:
                    if guard is None:
                        failure = None
                        try:
                            result_json = await _call(task, argument, ctx._max_result_bytes)
                        except Exception as exc:  # a task's own failure; BaseExceptions propagate
                            failure = exc
                    else:
                        guard.record = {
                            "status": "running",  # first: fire_timers.lua looks for it there
                            **record,
                            "started_at": started,
                            "errors": errors,
                            "deadline_at": guard.redis_deadline,
                            "deadline_kind": "timeout" if task.heartbeat_timeout is None
                            or (task.timeout or 1e18) <= task.heartbeat_timeout else "heartbeat",
                            "timeout": task.timeout,
                            "heartbeat_timeout": task.heartbeat_timeout,
                        }  # fmt: skip
                        await ctx._record_attempt(address, guard.record, guard.redis_deadline)
                        result_json, failure = await _run_guarded(guard, argument)
                        if guard.beat_at is not None:  # stored as Redis holds it
                            details = ctx._codecs.wrap(guard.details)
                            heartbeat = {"details": details, "at": guard.beat_at}
                            record["heartbeat"] = heartbeat
                finally:
                    _current_task.reset(token)
                if failure is not None:
                    _tracing.fail(span, failure)
            record.update(started_at=started, ended_at=ctx.now_ms())

        async def write(record: dict[str, Any]) -> None:
            if guarded:
                await ctx._record_attempt(address, record, None)  # drops the deadline
            else:
                await ctx._record_task(address, record)
            ctx._memo[address] = record

        if failure is None:
            assert result_json is not None  # an attempt without a failure has its result
            value = _serde.loads(result_json)  # what a replay would return, exactly
            stored = ctx._codecs.wrap_json(result_json) if ctx._codecs else value
            record.update(status="completed", result=stored, errors=errors)
            if guarded:
                await write(record)
            else:  # may ride on the run's finish (see WorkflowContext._record_completed)
                await ctx._record_completed(address, record)
            return out_type.load(value, where=f"result of task {task.name!r}")

        error = _serde.error_record(failure)
        error.update(attempt=attempt, at=record["ended_at"])
        sealed = ctx._codecs.seal_error(error)  # what Redis holds (encode_errors=True)
        if not policy.should_retry(attempt, failure):
            record.update(status="failed", error=sealed, errors=[*errors, sealed])
            await write(record)
            raise TaskFailed(task.name, error) from failure
        delay = policy.delay(attempt)
        sealed["retry_in"] = delay
        errors.append(sealed)
        _tracing.event("aiki.task_retry", task=task.name, attempt=attempt, delay=delay)
        log.info(
            "run %s: task %s attempt %d failed (%s); retrying in %.3fs",
            ctx.run_id,
            task.name,
            attempt,
            error["type"],
            delay,
        )
        if delay <= ctx._inline_retry_max_delay:
            await trio.sleep(delay)
            continue
        # A longer delay: park the run with a durable timer; no worker slot waits.
        wake_at = record["ended_at"] + int(delay * 1000)
        record.update(status="awaiting_retry", errors=errors, retry_at=wake_at)
        await write(record)
        raise Suspend("awaiting_retry", wake_at)
