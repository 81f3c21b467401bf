"""Executing one run: take it, replay its workflow function, record the outcome.

An execution is one task in the worker's executions nursery with its own cancel scope
(a cancel, a pause or a lost claim stops it alone). Every transition it writes is
fenced by the run's revision and retried through a Redis outage; whatever happens, the
message's slot is released and a run taken but not finished goes back to the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from . import _serde, _tracing
from ._backoff import retrying
from ._concurrency import count_wait
from ._context import Suspend, WorkflowContext
from ._determinism import ends_in_divergence
from ._errors import (
    ConnectionFailed,
    InvalidPayload,
    NonDeterminismError,
    NonRetryableError,
    WorkflowTimeout,
)
from ._execution_context import workflow_context
from ._log import bind_run
from ._outcome import _StaleExecution, classify, failure_record, first_failure
from ._redis import ScriptRefused
from ._retry import Retry
from ._store import Store, TakenRun, TakeRefused
from ._workflow import WorkflowRegistry
from .codecs import CodecError
from .subscribers import Message

if TYPE_CHECKING:
    from ._client import Client

log = logging.getLogger("aiki.worker")

T = TypeVar("T")


class Executor:
    """The worker's executions (a base of :class:`aiki.Worker`): its state that the
    loops and executions share, and how one run is executed."""

    id: str
    client: Client
    inline_retry_max_delay: float
    max_result_bytes: int
    transition_retry_for: float
    workflow_registry: WorkflowRegistry
    executions_finished: int
    rate_limit_waits: dict[str, list[float]]
    concurrency_waits: dict[str, dict[str, list[float]]]
    _executions: trio.Nursery  # where executions run (set by the first _spawn)
    # Keyed by (stream, message id): ids are unique per stream only, and two streams
    # (workflow versions) hand out the same id for messages added in the same ms.
    _in_flight: dict[tuple[str, str], tuple[Message, trio.CancelScope]]
    _abandoned: set[tuple[str, str]]
    _slot_freed: trio.Event

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
        self._executions = nursery  # executions' held task records are written here too
        nursery.start_soon(self._execute, store, message, scope, taken)

    def _flush_soon(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Run ``flush`` as a task of its own: trio starts it only once the workflow's
        code yields, so a record held back is written at the code's first checkpoint
        unless the code ended before (then the finish script writes it)."""
        self._executions.start_soon(flush)

    def _holds(self, read: Message, held: Message, scope: trio.CancelScope) -> None:
        """The execution of the message ``read`` holds ``held`` instead (it took a run
        with a priority in its place): track that one (heartbeats, control orders)."""
        if held.key != read.key:
            self._in_flight.pop(read.key, None)
            self._in_flight[held.key] = (held, scope)
            if read.key in self._abandoned:
                self._abandoned.discard(read.key)
                self._abandoned.add(held.key)

    def _release(self, message: Message) -> None:
        self._in_flight.pop(message.key, None)
        self._slot_freed.set()
        self._slot_freed = trio.Event()

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry a transition through a Redis outage (capped backoff with jitter), for
        ``transition_retry_for`` seconds; logged once per outage.

        Safe because transitions are fenced: a repeat of one that did apply is refused
        as stale, never applied twice."""
        retried = False

        def on_retry(exc: BaseException, delay: float) -> None:
            nonlocal retried
            if not retried:
                retried = True
                log.warning(
                    "worker %s: %s failed (%s); retrying in %.2fs", self.id, what, exc, delay
                )

        return await retrying(call, retry_for=self.transition_retry_for, on_retry=on_retry)

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
                if not message.run_id and not message.is_doorbell:
                    await store.dead_letter(
                        message.stream, message.id, message.fields, "message has no 'run' field"
                    )
                    return
                try:
                    outcome = pre_taken
                    if outcome is None:
                        read = message
                        message, took = await self._retrying(
                            "take run", lambda: store.take_run(read, self.id)
                        )
                        self._holds(read, message, scope)
                        outcome = took
                    if isinstance(outcome, TakeRefused):
                        raise outcome
                    run: TakenRun = outcome
                    taken = run
                    if run.concurrency_waited_ms is not None:
                        count_wait(self.concurrency_waits, run, run.concurrency_waited_ms)
                except TakeRefused as refused:
                    run_id = message.run_id
                    if refused.reason in ("missing", "bad-run"):
                        why = (
                            f"run {run_id} does not exist"
                            if refused.reason == "missing"
                            else f"run {run_id}: {refused.status}"
                        )
                        log.warning("message %s dead-lettered: %s", message.id, why)
                        await store.dead_letter(message.stream, message.id, message.fields, why)
                    elif refused.reason != "spare":  # (a spare doorbell is acked already)
                        await store.ack(message.stream, message.id)
                    finished = True
                    return
                finished = await self._run_workflow(store, message, run)
        except ConnectionFailed as exc:
            # The message stays pending; a claim will retry the run once Redis is back.
            log.warning("worker %s gave up on run %s for now: %s", self.id, message.run_id, exc)
            finished = True
        except Exception as exc:
            # A bug or an unexpected Redis reply must not take the worker (and every other
            # execution) down. The run ends failed, saying why: left pending, it would be
            # claimed and fail the same way forever (an outcome Redis refuses to store).
            log.exception("worker %s: unexpected error executing run %s", self.id, message.run_id)
            finished = True
            if taken is not None:
                await self._fail_unrecordable(store, message, taken, exc)
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
        with _tracing.run_span(
            taken.id,
            taken.workflow,
            taken.version,
            carrier=taken.trace,
            revision=taken.revision,
            attempt=len(taken.errors) + 1,
            claimed=message.claimed,
        ) as span:
            return await self._execute_workflow(store, message, taken, span)

    async def _execute_workflow(
        self, store: Store, message: Message, taken: TakenRun, span: _tracing.Span | None
    ) -> bool:
        version = self.workflow_registry.get(taken.workflow, taken.version)
        if version is None:
            await store.dead_letter(
                message.stream,
                message.id,
                message.fields,
                f"no worker code for {taken.workflow}@{taken.version}",
            )
            return True

        ctx = workflow_context(self, store, taken)
        deadline = taken.deadline_ms
        timed_out = False
        result_json = "null"
        # Annotated types: the payload is validated again here (a start over HTTP, or
        # by another version's code, may not fit); a misfit fails the run, not retried.
        in_type, out_type = version.types.input, version.types.output
        payload = taken.payload
        try:
            if deadline is not None and taken.now_ms >= deadline:
                timed_out = True
            elif deadline is None:  # no cancel scope on the hot path when not needed
                result = await version.fn(ctx, self._argument(in_type, payload))
                ctx.end_of_code()
                result_json = self._result_json(out_type, result)
            else:
                # Our own scope, so a user's trio.TooSlowError is not taken for ours.
                with trio.move_on_after((deadline - taken.now_ms) / 1000) as limit:
                    result = await version.fn(ctx, self._argument(in_type, payload))
                    ctx.end_of_code()
                timed_out = limit.cancelled_caught
                if not timed_out:
                    result_json = self._result_json(out_type, result)
        except BaseException as exc:  # noqa: BLE001 - sorted below; the rest re-raised
            # A task record held back is written first, whatever comes next (a park, a
            # failure, a requeue when cancelled): it is the run's latest completed step.
            stale = await self._flush_held(ctx, shielded=isinstance(exc, trio.Cancelled))
            kind, detail = classify(exc, taken.now_ms)
            if stale is not None and kind != "reraise":
                kind, detail = "stale", stale
            if ctx.diverged is not None and (kind != "stale" and kind != "reraise"
                                             or ends_in_divergence(exc)):  # fmt: skip
                kind, detail = "failed", ctx.diverged  # never parked, never retried
            if kind == "reraise":
                raise
            if kind == "suspend":
                _tracing.event("aiki.suspended", status=detail.status)
                await self._park(store, message, taken, detail, deadline)
            elif kind == "stale":
                _tracing.event("aiki.lost")
                self._lost(taken, detail)
            else:
                _tracing.fail(span, detail)
                try:
                    await self._workflow_failed(store, message, taken, version.retry, ctx, detail)
                except (_StaleExecution, ScriptRefused) as stale:
                    self._lost(taken, stale)
            return True
        _tracing.event("aiki.timed_out" if timed_out else "aiki.completed")
        held = None if timed_out else ctx.take_held()  # rides on the finish script
        try:
            if held is None:
                await ctx.flush()  # one on its way (or the timeout's): written first
            if timed_out:
                timeout = WorkflowTimeout(taken.timeout_ms)
                _tracing.fail(span, timeout)  # the run fails: its span says so too
                error = _serde.error_record(timeout)
                error["non_retryable"] = True
                error = self.client.codecs.seal_error(error)
                await self._retrying(
                    "record timeout", lambda: store.finish_run(taken, message.id, error=error)
                )
            else:
                await self._retrying(
                    "record result",
                    lambda: store.finish_run(taken, message.id, result_json=result_json, task=held),
                )
        except (ScriptRefused, _StaleExecution) as stale:
            self._lost(taken, stale)
        return True

    async def _flush_held(
        self, ctx: WorkflowContext, *, shielded: bool
    ) -> _StaleExecution | ScriptRefused | None:
        """Write the task record ``ctx`` holds back (see WorkflowContext._record_completed);
        returns the refusal if the run was lost meanwhile. ``shielded``: the execution is
        being cancelled (a stopping worker, a cancelled run): the completed step is still
        recorded, briefly, before the run is handed back."""
        try:
            if not shielded:
                await ctx.flush()
                return None
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await ctx.flush()
        except (_StaleExecution, ScriptRefused) as stale:
            return stale
        except ConnectionFailed:
            if not shielded:
                raise
        return None

    async def _fail_unrecordable(
        self, store: Store, message: Message, taken: TakenRun, exc: Exception
    ) -> None:
        """End a run whose outcome could not be recorded as failed (not retried)."""
        error = _serde.error_record(exc)
        error.update(
            message=f"the run's outcome could not be recorded: {error['message']}"[:2000],
            non_retryable=True,
        )
        error = self.client.codecs.seal_error(error)
        try:
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                await store.finish_run(taken, message.id, error=error)
        except Exception as again:  # the message stays pending; a claim retries it
            log.warning("worker %s could not fail run %s: %s", self.id, taken.id, again)

    def _result_json(self, out_type: Any, result: Any) -> str:
        """The workflow's result as the JSON to record: typed, within the depth limit
        and the worker's ``max_result_bytes`` (else InvalidPayload: the attempt fails)."""
        what = "workflow result"
        text = _serde.dumps(out_type.dump(result, where=what), what=what)
        text = _serde.check_size(text, self.max_result_bytes, what)
        codecs = self.client.codecs
        return _serde.dumps(codecs.wrap_json(text)) if codecs else text

    def _argument(self, in_type: Any, payload: Any) -> Any:
        """The run function's payload: decoded by the client's codecs (a CodecError —
        a missing or wrong key — fails the run clearly), then loaded into its type."""
        payload = self.client.codecs.unwrap(payload)
        return in_type.load(payload) if in_type.typed else payload

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
        error = failure_record(exc)
        attempt = len(taken.errors) + 1
        error.update(attempt=attempt)
        decisive = first_failure(exc)  # a group's first leaf decides
        non_retryable = isinstance(
            decisive, NonRetryableError | NonDeterminismError | InvalidPayload | CodecError
        )
        non_retryable = non_retryable or bool(error.get("non_retryable"))
        # An operator's retry (``retried_at`` on the attempt it ended) gives the policy
        # its attempts afresh: count those since the last one.
        since_retry = attempt - max(
            (i + 1 for i, e in enumerate(taken.errors) if e.get("retried_at")), default=0
        )
        plain_message = error["message"]
        if not isinstance(decisive, CodecError):
            # What Redis holds (encode_errors=True). A worker that cannot decode the
            # run's data records why in clear (key ids only, no data): else the starter,
            # whose key is not this worker's, could not read why its run failed.
            error = self.client.codecs.seal_error(error)
        if non_retryable or not policy.should_retry(since_retry, decisive):
            log.info(
                "run %s (%s@%s) failed: %s: %s",
                taken.id,
                taken.workflow,
                taken.version,
                error["type"],
                plain_message,
            )
            error["attempts"] = [*taken.errors, {k: v for k, v in error.items()}]
            await self._retrying(
                "record failure", lambda: store.finish_run(taken, message.id, error=error)
            )
            return
        delay = policy.delay(since_retry)
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
        _tracing.event("aiki.retry", attempt=attempt, delay=delay)
        if delay <= self.inline_retry_max_delay:
            await trio.sleep(delay)
            status, wake_at = "queued", None
        else:
            status = "awaiting_retry"
            wake_at = ctx.now_ms() + int(delay * 1000)  # on Redis's clock, as timers fire
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
