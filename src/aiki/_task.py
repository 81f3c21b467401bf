"""Tasks: the units of work a workflow calls, each memoized by its address."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._checks import seconds
from ._errors import ConfigurationError
from ._rate_limit import RateLimit, rate_limits
from ._retry import Retry
from ._types import Signature

if TYPE_CHECKING:
    from ._context import WorkflowContext

R = TypeVar("R")

TaskFunction = Callable[[Any], Awaitable[R]]


@dataclass(frozen=True)
class TaskContext:
    """What task code can learn about the execution it runs in (``aiki.task_context()``).

    ``idempotency_key`` is stable across every re-execution of this task in this run
    (run id + task address): pass it to external APIs so a task that is run again after a
    crash, before its result was recorded, does not charge twice.
    """

    run_id: str
    workflow: str
    version: str
    task: str
    address: str
    attempt: int = 1
    last_heartbeat: Any = None  # details of an earlier attempt's last heartbeat
    rate_limit_granted_at: float | None = None
    """When the task's rate limits let this attempt go (seconds since the epoch, Redis's
    clock; the latest if it has several), None without limits. The moment the limit
    counted, whatever the worker's scheduling delay before the code ran: what to log
    to check a limit from outside."""
    _beat: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.address}"

    def heartbeat(self, details: Any = None) -> None:
        """Say that this attempt is alive (for a task with ``heartbeat_timeout=``).

        An attempt that does not heartbeat for ``heartbeat_timeout`` seconds is cancelled
        and retried under the task's retry policy; if its worker is stuck (a blocked event
        loop), another process reclaims the run from the deadline kept in Redis.
        ``details`` (JSON) is kept with the task's record, visible in the API, ``aiki runs
        show`` and the dashboard, and given to the next attempt as
        ``task_context().last_heartbeat``. A no-op for tasks without a heartbeat timeout.
        """
        if self._beat is not None:
            self._beat(details)


asyncio_tasks_defined = False
"""Set once any ``@aiki.task(..., asyncio=True)`` exists: workers then open the loop."""

_current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "aiki_current_task", default=None
)


def task_context() -> TaskContext:
    """The context of the task that is running now. Raises if called outside a task."""
    current = _current_task.get()
    if current is None:
        raise RuntimeError("aiki.task_context() called outside a running task")
    return current


class Task(Generic[R]):
    """A task definition, made by ``@aiki.task(name)``. Frozen once defined."""

    name: str
    fn: TaskFunction[R]
    retry: Retry
    asyncio: bool
    types: Signature
    timeout: float | None
    heartbeat_timeout: float | None
    rate_limits: tuple[RateLimit, ...]

    def __init__(
        self,
        name: str,
        fn: TaskFunction[R],
        retry: Retry | None = None,
        asyncio: bool = False,
        *,
        timeout: float | None = None,
        heartbeat_timeout: float | None = None,
        rate_limits: tuple[RateLimit, ...] = (),
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "retry", retry or Retry.never())
        object.__setattr__(self, "asyncio", asyncio)
        # The payload parameter's and the return annotation (see aiki._types): the
        # input is validated by task.start, the result loaded on every replay.
        object.__setattr__(self, "types", Signature(fn, 0, f"task {name!r}"))
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "heartbeat_timeout", heartbeat_timeout)
        object.__setattr__(self, "rate_limits", rate_limits)
        object.__setattr__(self, "__doc__", fn.__doc__)
        object.__setattr__(self, "__wrapped__", fn)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("task definitions are frozen")

    async def start(self, ctx: WorkflowContext, payload: Any = None) -> R:
        """Run this task as a step of the workflow run ``ctx`` and return its result.

        If this run already recorded a result for the same task address, that result is
        returned without running the task again. With annotations, ``payload`` is
        validated against the function's parameter type (InvalidPayload naming the path
        of a bad field) and the result is returned as the return type, on the first
        execution and on replays alike.
        """
        return await ctx._run_task(self, payload)

    def __repr__(self) -> str:
        return f"<aiki.Task {self.name!r}>"


def task(
    name: str,
    *,
    retry: Retry | None = None,
    asyncio: bool = False,
    timeout: float | None = None,
    heartbeat_timeout: float | None = None,
    rate_limit: RateLimit | list[RateLimit] | tuple[RateLimit, ...] | None = None,
) -> Callable[[TaskFunction[R]], Task[R]]:
    """Declare an async function ``fn(payload)`` as the task called ``name``.

    ``retry`` (an :class:`aiki.Retry`) says whether and when a failed attempt is tried
    again; by default a task is not retried. ``asyncio=True`` declares asyncio code
    (aiohttp, asyncpg, ...): the trio worker runs it on a trio-asyncio loop that it opens
    once, only when such tasks exist; trio cancellation cancels the asyncio task.

    ``timeout`` (seconds) bounds one attempt, start to close: the attempt is cancelled
    and fails with :class:`aiki.TaskTimeout`, which counts under ``retry`` like any
    failure. ``heartbeat_timeout`` (seconds): an attempt must call
    ``aiki.task_context().heartbeat(details)`` at least this often, else it is cancelled
    the same way. Both deadlines are also kept in Redis, so a run whose worker is stuck
    or gone is reclaimed by another process (see docs/flow-control.md).

    ``rate_limit`` (an :class:`aiki.RateLimit`, or a list): each attempt first takes its
    units from the limit, across every worker process; a short wait happens in the
    worker, a longer one parks the run ``awaiting_rate_limit`` (no worker slot).
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError("aiki.task(name): name must be a non-empty string")
    if retry is not None and not isinstance(retry, Retry):
        raise ConfigurationError(f"task {name!r}: retry must be an aiki.Retry, got {retry!r}")
    limits = rate_limits(name, rate_limit)
    if timeout is not None:
        timeout = seconds(f"aiki.task({name!r})", "timeout", timeout)
    if heartbeat_timeout is not None:
        heartbeat_timeout = seconds(f"aiki.task({name!r})", "heartbeat_timeout", heartbeat_timeout)

    def decorate(fn: TaskFunction[R]) -> Task[R]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(f"task {name!r} must be an async function")
        if asyncio:
            global asyncio_tasks_defined
            asyncio_tasks_defined = True
        return Task(
            name,
            fn,
            retry,
            asyncio,
            timeout=timeout,
            heartbeat_timeout=heartbeat_timeout,
            rate_limits=limits,
        )

    return decorate
