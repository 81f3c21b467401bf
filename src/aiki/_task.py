"""Tasks: the units of work a workflow calls, each memoized by its address."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._errors import ConfigurationError
from ._retry import Retry

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

    @property
    def idempotency_key(self) -> str:
        return f"{self.run_id}:{self.address}"


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

    def __init__(
        self,
        name: str,
        fn: TaskFunction[R],
        retry: Retry | None = None,
        asyncio: bool = False,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "retry", retry or Retry.never())
        object.__setattr__(self, "asyncio", asyncio)
        object.__setattr__(self, "__doc__", fn.__doc__)
        object.__setattr__(self, "__wrapped__", fn)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("task definitions are frozen")

    async def start(self, ctx: WorkflowContext, payload: Any = None) -> R:
        """Run this task as a step of the workflow run ``ctx`` and return its result.

        If this run already recorded a result for the same task address, that result is
        returned without running the task again.
        """
        return await ctx._run_task(self, payload)

    def __repr__(self) -> str:
        return f"<aiki.Task {self.name!r}>"


def task(
    name: str, *, retry: Retry | None = None, asyncio: bool = False
) -> Callable[[TaskFunction[R]], Task[R]]:
    """Declare an async function ``fn(payload)`` as the task called ``name``.

    ``retry`` (an :class:`aiki.Retry`) says whether and when a failed attempt is tried
    again; by default a task is not retried. ``asyncio=True`` declares asyncio code
    (aiohttp, asyncpg, ...): the trio worker runs it on a trio-asyncio loop that it opens
    once, only when such tasks exist; trio cancellation cancels the asyncio task.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError("aiki.task(name): name must be a non-empty string")
    if retry is not None and not isinstance(retry, Retry):
        raise ConfigurationError(f"task {name!r}: retry must be an aiki.Retry, got {retry!r}")

    def decorate(fn: TaskFunction[R]) -> Task[R]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(f"task {name!r} must be an async function")
        if asyncio:
            global asyncio_tasks_defined
            asyncio_tasks_defined = True
        return Task(name, fn, retry, asyncio)

    return decorate
