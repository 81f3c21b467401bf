"""Run context on log records: which run, workflow, version and task a line is about.

The worker binds the run for the duration of each execution (a context variable, so
concurrent executions never mix) and the task context is bound while a task runs.
``aiki.RunContextFilter`` copies them onto every record that passes a handler, as the
attributes ``run_id``, ``workflow``, ``version`` and ``task`` (the task address), and,
when a span is current (OpenTelemetry, see ``aiki._tracing``), ``trace_id`` and
``span_id`` in hex, so log lines can be joined to traces; the JSON log format shows them
as fields, and a text format can use ``%(run_id)s``.
"""

from __future__ import annotations

import contextvars
import logging

from ._task import _current_task
from ._tracing import current_ids

_current_run: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar(
    "aiki_current_run", default=None
)


def bind_run(
    run_id: str, workflow: str, version: str
) -> contextvars.Token[tuple[str, str, str] | None]:
    """Mark the current task (an execution) as working on this run."""
    return _current_run.set((run_id, workflow, version))


class RunContextFilter(logging.Filter):
    """A logging filter that adds ``run_id``, ``workflow``, ``version`` and ``task`` to
    records emitted while a workflow execution (or a task of it) runs, and ``trace_id``
    and ``span_id`` while a span is current."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current_ids()
        if ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = ids
        run = _current_run.get()
        if run is not None and not hasattr(record, "run_id"):
            record.run_id, record.workflow, record.version = run
        task = _current_task.get()
        if task is not None and not hasattr(record, "task"):
            record.task = task.address
            if not hasattr(record, "run_id"):
                record.run_id, record.workflow, record.version = (
                    task.run_id,
                    task.workflow,
                    task.version,
                )
        return True
