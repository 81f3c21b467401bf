"""A run's history as a JSON document: what ``aiki runs export`` and
``GET /api/v1/runs/{id}/history`` write and what ``aiki.testing.replay`` reads.

The document is the run (id, workflow, version, status, payload, result or error,
workflow-level attempt errors) and its step records keyed by address, exactly as stored:
their ``seq``/``par``/``att`` fields are what the replay checks the code against.
It is plain JSON so that a CI job can keep real histories as files next to the code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._errors import ConfigurationError
from ._store import RunRecord

FORMAT = "aiki.history/1"

_RUN_FIELDS = (
    "id",
    "workflow",
    "version",
    "status",
    "payload",
    "result",
    "error",
    "errors",
    "sensitive",
    "created_at",
    "ended_at",
)


def history_of(run: RunRecord, *, reveal: bool = False) -> dict[str, Any]:
    """The history document of ``run`` (read with its tasks). A ``sensitive`` run has its
    payload, results and task inputs redacted unless ``reveal``, as everywhere else;
    such a history cannot be replayed."""
    data = run.to_json(reveal=reveal)
    tasks = data.pop("tasks", None) or []
    return {
        "format": FORMAT,
        "run": {k: data.get(k) for k in _RUN_FIELDS},
        "tasks": {t["address"]: {k: v for k, v in t.items() if k != "address"} for t in tasks},
    }


def load_history(source: dict[str, Any] | str | bytes | os.PathLike[str]) -> dict[str, Any]:
    """A history document from a dict, JSON text, or a file path (a ``PathLike``, or a
    str that is not a JSON object: a document always starts with ``{``). Raises
    ConfigurationError naming what is wrong with it."""
    if isinstance(source, str) and not source.lstrip().startswith("{"):
        source = Path(source)  # "run.json", as `aiki runs export --help` suggests
    if isinstance(source, os.PathLike):
        source = Path(source).read_text(encoding="utf-8")
    if isinstance(source, str | bytes):
        try:
            source = json.loads(source)
        except ValueError as exc:
            raise ConfigurationError(f"history is not JSON: {exc}", field="history") from None
    if not isinstance(source, dict):
        raise ConfigurationError("history must be a JSON object", field="history")
    if source.get("format") != FORMAT:
        raise ConfigurationError(
            f"history format must be {FORMAT!r}, got {source.get('format')!r}",
            field="format",
        )
    run, tasks = source.get("run"), source.get("tasks")
    if not isinstance(run, dict) or not isinstance(tasks, dict):
        raise ConfigurationError("history needs a 'run' object and a 'tasks' object")
    for name in ("id", "workflow", "version", "status"):
        if not isinstance(run.get(name), str):
            raise ConfigurationError(f"history run.{name} must be a string", field=f"run.{name}")
    if run.get("sensitive") and run.get("payload") == "[redacted]":
        raise ConfigurationError(
            "this history is redacted (a sensitive run): it cannot be replayed",
            field="run.payload",
        )
    return source
