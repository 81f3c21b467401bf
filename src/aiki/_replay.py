"""Replaying a run's history against workflow code, with no Redis and no side effects.

``aiki.testing.replay(version, history)`` runs ``version``'s function with a context
whose memo is the history's step records, exactly as a worker's replay would, except
that nothing is ever executed or written: a step the history does not answer ends the
replay. A CI job can so check a new deploy against real histories before it ships.
"""

from __future__ import annotations

import os
from typing import Any

from ._context import WorkflowContext
from ._determinism import Diverged, ReachedFrontier, describe
from ._errors import ConfigurationError, NonDeterminismError
from ._history import load_history
from ._workflow import WorkflowVersion


async def replay(
    version: WorkflowVersion,
    history: dict[str, Any] | str | bytes | os.PathLike[str],
) -> Any:
    """Re-execute ``version``'s code against ``history`` (a document from
    ``aiki runs export`` / ``GET /api/v1/runs/{id}/history``, as a dict, JSON text or a
    path). Returns the workflow's return value when the code ran to its end, or None
    when it reached the end of the history of a run that was still going.

    Raises :class:`aiki.NonDeterminismError` when the code asks for other steps than the
    history recorded, or, for a run that ended ``completed``, asks for a step it never
    recorded or skips one. An exception of the workflow code itself is raised as is when
    the run had completed (the new code fails where the old one did not)."""
    if not isinstance(version, WorkflowVersion):
        raise TypeError(
            f"replay needs a workflow version (what @workflow.v(...) returns), "
            f"got {type(version).__name__}"
        )
    doc = load_history(history)
    run, tasks = doc["run"], doc["tasks"]
    # A run only ever executes its own version: another's history cannot be checked.
    for field, code, recorded in (
        ("workflow", version.name, run["workflow"]),
        ("version", version.version, run["version"]),
    ):
        if code != recorded:
            raise ConfigurationError(
                f"history is of {run['workflow']!r} version {run['version']!r}, but the "
                f"code given is {version.name!r} version {version.version!r}",
                field=f"run.{field}",
            )
    completed = run["status"] == "completed"

    async def no_writes(address: str, record: dict[str, Any]) -> None:
        raise RuntimeError(f"replay tried to record step {address!r}")  # pragma: no cover

    ctx = WorkflowContext(
        run_id=run["id"],
        workflow=run["workflow"],
        version=run["version"],
        attempt=len(run.get("errors") or []) + 1,
        memo={address: dict(record) for address, record in tasks.items()},
        record_task=no_writes,
        now_ms=run.get("ended_at") or run.get("created_at") or 0,
        replay_only=True,
    )
    try:
        result = await version.fn(ctx, run.get("payload"))
        ctx.end_of_code()
        return result
    except BaseException as exc:  # noqa: BLE001 - sorted below; the rest re-raised
        diverged, frontier = _find(exc, Diverged), _find(exc, ReachedFrontier)
        if diverged is not None:
            raise diverged.error from None
        if ctx.diverged is not None:
            raise ctx.diverged from None
        if frontier is not None:
            if not completed:
                return None
            address = str(frontier.args[0])
            position = ctx._positions.get(address, len(ctx._positions))
            raise NonDeterminismError(
                run["id"], position, None, describe(address, tasks.get(address))
            ) from None
        if isinstance(exc, Exception) and not completed:
            return None  # the run failed (or is retrying) here too
        raise


def _find(exc: BaseException, kind: type[BaseException]) -> Any:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None
