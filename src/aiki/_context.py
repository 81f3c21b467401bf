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
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from . import _serde
from ._errors import EventTimeout, RunNotFound, TaskFailed, WorkflowCancelled, WorkflowFailed
from ._store._keys import shard_of, with_shard
from ._task import Task, TaskContext, _current_task

log = logging.getLogger("aiki.worker")

RecordTask = Callable[[str, dict[str, Any]], Awaitable[None]]
StartChild = Callable[[str, str, str, str], Awaitable[str]]
GetRun = Callable[[str], Awaitable[Any]]


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


class Suspend(BaseException):
    """Ends this execution without an outcome: the run waits (a timer) and resumes later.

    A BaseException so that workflow code's ``except Exception`` cannot swallow it."""

    def __init__(
        self,
        status: str,
        wake_at_ms: int | None,
        *,
        event: tuple[str, int] | None = None,
        child_id: str | None = None,
        sleep_address: str | None = None,
    ) -> None:
        self.sleep_address = sleep_address
        self.status = status
        self.wake_at_ms = wake_at_ms
        self.event = event
        self.child_id = child_id
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
        events: dict[str, list[dict[str, Any]]] | None = None,
        now_ms: int | None = None,
        start_child: StartChild | None = None,
        get_run: GetRun | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.version = version
        self.attempt = attempt  # 1 on the first execution; +1 per workflow-level retry
        self._memo = memo
        # Each record carries "seq", its address's position in the workflow's call order
        # (the same on every replay): it orders records that start in the same ms.
        self._positions: dict[str, int] = {}

        async def record_in_order(address: str, record: dict[str, Any]) -> None:
            if address in self._positions:
                record.setdefault("seq", self._positions[address])
            await record_task(address, record)

        self._record_task = record_in_order
        self._inline_retry_max_delay = inline_retry_max_delay
        self._events = events or {}
        # Redis's clock when the run was taken, advanced by the local monotonic clock:
        # timers fire on Redis time, so sleeps are judged on it too.
        self._now_base = (now_ms or int(time.time() * 1000), time.monotonic())
        self._start_child = start_child
        self._get_run = get_run
        self._occurrences: dict[tuple[str, str], int] = {}
        self.replayed_tasks = 0
        self.executed_tasks = 0

    def now_ms(self) -> int:
        """Milliseconds since the epoch on Redis's clock (what timers use)."""
        base, mono = self._now_base
        return base + int((time.monotonic() - mono) * 1000)

    def _named_address(self, kind: str, name: str) -> str:
        key = (kind, name)
        n = self._occurrences.get(key, 0)
        self._occurrences[key] = n + 1
        address = f"{kind}:{name}:{n}"
        self._positions.setdefault(address, len(self._positions))
        return address

    async def _record(self, address: str, record: dict[str, Any]) -> None:
        await self._record_task(address, record)
        self._memo[address] = record

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

    async def wait_for_event(self, name: str, *, timeout: float | None = None) -> Any:
        """Wait durably for the event ``name`` sent to this run and return its data.

        The n-th wait for a name receives the n-th event of that name, including events
        sent before the wait began. Raises :class:`aiki.EventTimeout` after ``timeout``
        seconds (the same way on every replay)."""
        if not isinstance(name, str) or not name:
            raise ValueError("ctx.wait_for_event(name): name must be a non-empty string")
        address = self._named_address("event", name)
        index = int(address.rsplit(":", 1)[1])
        recorded = self._memo.get(address)
        if recorded is not None:
            if recorded.get("status") == "completed":
                return recorded.get("result")
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
            return data
        timeout_at = (recorded or {}).get("timeout_at")
        if recorded is None:
            timeout_at = None if timeout is None else now + int(timeout * 1000)
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

    async def _child(self, workflow: str, version: str, payload: Any) -> ChildHandle:
        if self._start_child is None:
            raise RuntimeError("child workflows need a worker-run context")
        address = self._address(f"child:{workflow}@{version}", payload)
        recorded = self._memo.get(address)
        if recorded is not None:
            return ChildHandle(self, recorded["child_id"], workflow, version)
        # Deterministic (a replay starts the same child), and in the parent's shard.
        child_id = with_shard(
            uuid.uuid5(uuid.NAMESPACE_URL, f"aiki:{self.run_id}:{address}").hex,
            shard_of(self.run_id),
        )
        payload_json = _serde.dumps(payload, what="child payload")
        await self._start_child(workflow, version, payload_json, child_id)
        now = self.now_ms()
        await self._record(
            address,
            {
                "kind": "child",
                "status": "completed",
                "child_id": child_id,
                "workflow": workflow,
                "version": version,
                "input": payload,
                "started_at": now,
                "ended_at": now,
            },
        )
        return ChildHandle(self, child_id, workflow, version)

    def _address(self, name: str, payload: Any) -> str:
        digest = _serde.canonical_hash(payload)
        key = (name, digest)
        n = self._occurrences.get(key, 0)
        self._occurrences[key] = n + 1
        address = f"{name}:{digest}:{n}"
        self._positions.setdefault(address, len(self._positions))
        return address

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
                if task.asyncio:
                    result = await _run_asyncio(task.fn, payload)
                else:
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


class ChildHandle:
    """A child run started with ``version.start_as_child(ctx, payload)``."""

    def __init__(self, ctx: WorkflowContext, run_id: str, workflow: str, version: str) -> None:
        self._ctx = ctx
        self.id = run_id
        self.workflow = workflow
        self.version = version

    async def wait_for_completion(self) -> Any:
        """Wait durably for the child to end: the parent is ``awaiting_child_workflow``
        (holding no worker slot) and resumes when the child ends. Returns the child's
        result, or raises WorkflowFailed / WorkflowCancelled as the child ended."""
        ctx = self._ctx
        address = ctx._named_address("child-wait", self.id)
        recorded = ctx._memo.get(address)
        if recorded is None:
            assert ctx._get_run is not None
            run = await ctx._get_run(self.id)
            if run is None:
                # Its record is gone (retention expired it, or Redis lost its start):
                # waiting would never end, so the wait fails, the same on every replay.
                now = ctx.now_ms()
                await ctx._record(
                    address,
                    {
                        "kind": "child-wait",
                        "status": "completed",
                        "child_id": self.id,
                        "child_status": "missing",
                        "started_at": now,
                        "ended_at": now,
                    },
                )
                raise RunNotFound(self.id)
            if not run.ended:
                raise Suspend("awaiting_child_workflow", None, child_id=self.id)
            now = ctx.now_ms()
            recorded = {
                "kind": "child-wait",
                "status": "completed",
                "child_id": self.id,
                "child_status": run.status,
                "result": run.result,
                "error": run.error,
                "started_at": now,
                "ended_at": now,
            }
            await ctx._record(address, recorded)
        if recorded["child_status"] == "missing":
            raise RunNotFound(self.id)
        if recorded["child_status"] == "completed":
            return recorded.get("result")
        if recorded["child_status"] == "cancelled":
            raise WorkflowCancelled(self.id, (recorded.get("error") or {}).get("message"))
        raise WorkflowFailed(self.id, recorded.get("error") or {})
