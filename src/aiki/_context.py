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

import trio

from . import _serde
from ._errors import TaskFailed
from ._task import Task, TaskContext, _current_task

log = logging.getLogger("aiki.worker")

RecordTask = Callable[[str, dict[str, Any]], Awaitable[None]]


class Suspend(BaseException):
    """Ends this execution without an outcome: the run waits (a timer) and resumes later.

    A BaseException so that workflow code's ``except Exception`` cannot swallow it."""

    def __init__(self, status: str, wake_at_ms: int) -> None:
        self.status = status
        self.wake_at_ms = wake_at_ms
        super().__init__(f"{status} until {wake_at_ms}")


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
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.version = version
        self.attempt = attempt
        self._memo = memo
        self._record_task = record_task
        self._inline_retry_max_delay = inline_retry_max_delay
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
        errors: list[dict[str, Any]] = []
        if recorded is not None:
            status = recorded.get("status")
            if status == "completed":
                self.replayed_tasks += 1
                return recorded.get("result")
            if status == "failed":
                self.replayed_tasks += 1
                raise TaskFailed(task.name, recorded.get("error") or {})
            errors = list(recorded.get("errors") or [])  # awaiting_retry: go on trying

        policy = task.retry
        context = TaskContext(self.run_id, self.workflow, self.version, task.name, address)
        while True:
            attempt = len(errors) + 1
            self.executed_tasks += 1
            started = time.time()
            token = _current_task.set(context)
            failure: Exception | None = None
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
                "attempts": attempt,
                "started_at": int(started * 1000),
                "ended_at": int(time.time() * 1000),
            }
            if failure is None:
                value = _serde.loads(result_json)  # what a replay would return, exactly
                record.update(status="completed", result=value, errors=errors)
                await self._record_task(address, record)
                self._memo[address] = record
                return value

            error = _serde.error_record(failure)
            error.update(attempt=attempt, at=record["ended_at"])
            if not policy.should_retry(attempt, failure):
                record.update(status="failed", error=error, errors=[*errors, error])
                await self._record_task(address, record)
                self._memo[address] = record
                raise TaskFailed(task.name, error) from failure
            delay = policy.delay(attempt)
            error["retry_in"] = delay
            errors.append(error)
            log.info(
                "run %s: task %s attempt %d failed (%s); retrying in %.3fs",
                self.run_id,
                task.name,
                attempt,
                error["type"],
                delay,
            )
            if delay <= self._inline_retry_max_delay:
                await trio.sleep(delay)
                continue
            # A longer delay: park the run with a durable timer; no worker slot waits.
            wake_at = record["ended_at"] + int(delay * 1000)
            record.update(status="awaiting_retry", errors=errors, retry_at=wake_at)
            await self._record_task(address, record)
            self._memo[address] = record
            raise Suspend("awaiting_retry", wake_at)
