"""The workflow context: replay with memoized task results.

A workflow's ``run(ctx, payload)`` runs from the top on every delivery. Each
``task.start(ctx, input)`` computes the task's *address* — task name, a hash of the
canonical JSON input, and an occurrence counter for repeats of the same name and input —
and looks it up in the results this run has recorded. A recorded result is returned at
once (the task is not run again); otherwise the task runs here and its outcome is
recorded, fenced by the run's revision, before ``start`` returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import _serde
from ._errors import TaskFailed
from ._task import Task, TaskContext, _current_task

log = logging.getLogger("aiki.worker")

RecordTask = Callable[[str, dict[str, Any]], Awaitable[None]]


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
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.version = version
        self.attempt = attempt
        self._memo = memo
        self._record_task = record_task
        self._occurrences: dict[tuple[str, str], int] = {}
        self.replayed_tasks = 0
        self.executed_tasks = 0

    def _address(self, name: str, payload: Any) -> str:
        digest = _serde.canonical_hash(payload)
        key = (name, digest)
        n = self._occurrences.get(key, 0)
        self._occurrences[key] = n + 1
        return f"{name}:{digest}:{n}"

    async def _run_task(self, task: Task[Any], payload: Any) -> Any:
        address = self._address(task.name, payload)
        recorded = self._memo.get(address)
        if recorded is not None:
            self.replayed_tasks += 1
            if recorded.get("status") == "completed":
                return recorded.get("result")
            raise TaskFailed(task.name, recorded.get("error") or {})

        self.executed_tasks += 1
        started = time.time()
        token = _current_task.set(
            TaskContext(self.run_id, self.workflow, self.version, task.name, address)
        )
        failure: BaseException | None = None
        try:
            result = await task.fn(payload)
            result_json = _serde.dumps(result, what=f"result of task {task.name!r}")
        except Exception as exc:  # a task's own failure; BaseExceptions propagate
            failure = exc
        finally:
            _current_task.reset(token)
        record: dict[str, Any] = {
            "task": task.name,
            "input": payload,
            "started_at": int(started * 1000),
            "ended_at": int(time.time() * 1000),
        }
        if failure is not None:
            error = _serde.error_record(failure)
            record.update(status="failed", error=error)
            await self._record_task(address, record)
            self._memo[address] = record
            raise TaskFailed(task.name, error) from failure
        value = _serde.loads(result_json)  # what a replay would return, exactly
        record.update(status="completed", result=value)
        await self._record_task(address, record)
        self._memo[address] = record
        return value
