"""What a workflow function's exception means for its run.

Workflow code fans out in trio nurseries, so a suspension (a durable sleep, an event
wait), a lost claim or a task failure may reach the worker wrapped in exception groups.
Sorting them is a concept of its own, kept apart from the execution that acts on it.
"""

from __future__ import annotations

import traceback
from typing import Any

import trio

from . import _serde
from ._errors import TaskFailed
from ._redis import ScriptRefused
from ._suspend import Suspend


class _StaleExecution(BaseException):
    """This execution lost its claim on the run: stop quietly, write nothing more.

    A BaseException so that workflow code's ``except Exception`` cannot swallow it."""


def classify(exc: BaseException, now_ms: int) -> tuple[str, Any]:
    """What a workflow function's exception means: ``("suspend", Suspend)``,
    ``("stale", exc)``, ``("failed", Exception)`` or ``("reraise", None)``.

    Workflow code fans out in trio nurseries, so suspensions, lost claims and task
    failures may arrive wrapped in exception groups; cancellation is always re-raised."""
    if isinstance(exc, trio.Cancelled | KeyboardInterrupt | SystemExit | GeneratorExit):
        return "reraise", None
    if isinstance(exc, _StaleExecution):
        return "stale", exc
    if isinstance(exc, ScriptRefused):
        return "stale", exc
    if isinstance(exc, Suspend):
        return "suspend", exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = list(_leaves(exc))
        if any(isinstance(e, trio.Cancelled | KeyboardInterrupt | SystemExit) for e in leaves):
            return "reraise", None
        stale = [e for e in leaves if isinstance(e, _StaleExecution | ScriptRefused)]
        if stale:
            return "stale", stale[0]
        suspends = [e for e in leaves if isinstance(e, Suspend)]
        if suspends:
            # Parallel branches wait for different things: park until the earliest
            # timer, and re-check at least every second when several conditions mix;
            # the replay parks again for whatever is still awaited.
            chosen = min(suspends, key=lambda s: s.wake_at_ms or 2**62)
            if len(suspends) > 1:
                wake = min(chosen.wake_at_ms or 2**62, now_ms + 1000)
                return "suspend", Suspend(chosen.status, wake)
            return "suspend", chosen
        failures = [e for e in leaves if isinstance(e, TaskFailed)]
        if failures and len(failures) == len(leaves):
            return "failed", failures[0]  # record the task's own error, not the group
        if isinstance(exc, Exception):
            return "failed", exc  # the group: failure_record() names its leaves
        return "reraise", None
    if isinstance(exc, Exception):
        return "failed", exc
    return "reraise", None


def first_failure(exc: BaseException) -> BaseException:
    """The error that decides a failed run's retry: the first leaf of a group (whose
    ``NonRetryableError`` must count as such), else ``exc`` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return next(iter(_leaves(exc)), exc)
    return exc


def failure_record(exc: BaseException) -> dict[str, Any]:
    """What a failed run records about ``exc``: its own type, message and traceback, or,
    for an exception group (workflow code failing inside a nursery), its first leaf's
    type and message with the others named after it, and the whole group's traceback
    (which shows every leaf). Recording "ExceptionGroup: Exceptions from Trio nursery (1
    sub-exception)" would hide the one thing the operator needs."""
    if not isinstance(exc, BaseExceptionGroup):
        return _serde.error_record(exc)
    leaves = list(_leaves(exc))
    record = _serde.error_record(leaves[0]) if leaves else _serde.error_record(exc)
    others = leaves[1:]
    if others:
        named = "; ".join(f"{type(e).__qualname__}: {e}" for e in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        record["message"] = f"{record['message']} (also raised: {named}{more})"
    record["traceback"] = "".join(traceback.format_exception(exc))
    return record


def _leaves(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
