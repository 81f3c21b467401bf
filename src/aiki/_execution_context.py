"""The WorkflowContext of one execution: the callbacks through which workflow code
records its steps, each a fenced store transition retried through Redis outages (a
refusal means the run was lost to another execution: :class:`_StaleExecution`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _tracing
from ._context import WorkflowContext
from ._errors import ConfigurationError
from ._outcome import _StaleExecution
from ._rate_limit import INLINE_WAIT, RateLimit
from ._redis import ScriptRefused
from ._store import Store, TakenRun

if TYPE_CHECKING:
    from ._execution import Executor


def workflow_context(executor: Executor, store: Store, taken: TakenRun) -> WorkflowContext:
    """The context ``executor`` runs ``taken``'s workflow code with."""

    async def record_task(address: str, record: dict[str, Any]) -> None:
        try:
            await executor._retrying(
                "record task",
                lambda: store.record_task(taken, address, record),
            )
        except ScriptRefused as refused:
            raise _StaleExecution(str(refused)) from None

    async def set_attributes(changes: dict[str, str | None]) -> None:
        try:
            await executor._retrying("set attributes", lambda: store.set_attributes(taken, changes))
        except ScriptRefused as refused:
            if refused.code == "LIMIT":
                raise ConfigurationError(refused.detail, field="attributes") from None
            raise _StaleExecution(str(refused)) from None

    async def task_attempt(address: str, record: dict[str, Any], deadline: int | None) -> None:
        try:
            await executor._retrying(
                "record task attempt",
                lambda: store.task_attempt(taken, address, record, deadline),
            )
        except ScriptRefused as refused:
            raise _StaleExecution(str(refused)) from None

    async def acquire_rate(
        limit: RateLimit, key: str | None, cost: int
    ) -> tuple[bool, float, float]:
        assert limit.name is not None
        reserved, wait, granted = await executor._retrying(
            "acquire rate limit",
            lambda: store.acquire_rate(
                limit.name or "",
                key,
                interval_ms=limit.interval_ms,
                burst=limit.burst,
                cost=cost,
                max_wait=INLINE_WAIT,
            ),
        )
        # Per limit: [waits in the worker, seconds waited there, runs parked].
        counts = executor.rate_limit_waits.setdefault(limit.name, [0, 0.0, 0])
        if not reserved:
            counts[2] += 1
        elif wait > 0:
            counts[0] += 1
            counts[1] += wait
        return reserved, wait, granted

    async def start_child(
        workflow: str,
        ver: str,
        payload_json: str,
        child_id: str,
        concurrency: tuple[str | None, int | None],
    ) -> str:
        child_def = executor.workflow_registry.get(workflow, ver)
        timeout = child_def.timeout if child_def is not None else None
        trace = _tracing.trace_carrier()  # the child's executions join this trace
        return await executor._retrying(
            "start child",
            lambda: store.start_run(
                workflow,
                ver,
                payload_json,
                run_id=child_id,
                parent_id=taken.id,
                timeout=timeout,
                trace=trace,
                concurrency_key=concurrency[0],
                concurrency_limit=concurrency[1],
            ),
        )

    return WorkflowContext(
        run_id=taken.id,
        workflow=taken.workflow,
        version=taken.version,
        attempt=len(taken.errors) + 1,
        memo=taken.tasks,
        record_task=record_task,
        inline_retry_max_delay=executor.inline_retry_max_delay,
        max_result_bytes=executor.max_result_bytes,
        events=taken.events,
        now_ms=taken.now_ms,
        start_child=start_child,
        get_run=store.get_run,
        set_attributes=set_attributes,
        task_attempt=task_attempt,
        acquire_rate=acquire_rate,
        codecs=executor.client.codecs,
        flush_soon=executor._flush_soon,
    )
