"""Logging set-up for the ``aiki`` commands: text for people, JSON lines for machines.

Everything logs through the standard :mod:`logging` module (the SDK's ``aiki.*``
loggers, ``aiki_server``, Hypercorn's ``hypercorn.error`` / ``hypercorn.access``); the
CLI puts one handler on the root logger, on stderr, with one of two formatters:

* ``text``: ``2024-05-01 12:00:00,123 INFO    aiki.worker: worker w1 serving ...``
* ``json``: one JSON object per line, ``{"ts", "level", "logger", "message", ...}``,
  with ``exc_info`` (the formatted traceback) when there is one and any ``extra=``
  fields given to the log call. Access-log lines carry an ``http`` object.

:class:`JsonFormatter` is a plain :class:`logging.Formatter`, usable in any logging
configuration (``dictConfig`` included) of a program that embeds Aiki.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiki import RunContextFilter

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
# Hypercorn access-log atoms worth a field of their own (the rest stays in "message").
_ACCESS_ATOMS = {
    "h": "remote",
    "m": "method",
    "U": "path",
    "q": "query",
    "s": "status",
    "D": "duration_us",
    "a": "user_agent",
}


class JsonFormatter(logging.Formatter):
    """Formats each record as one line of JSON (UTC timestamps with milliseconds)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC)
        out: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        if record.name == "hypercorn.access" and isinstance(record.args, Mapping):
            http = {}
            for atom, name in _ACCESS_ATOMS.items():
                value = record.args.get(atom)
                if value not in (None, "", "-"):
                    http[name] = _number(value) if name in ("status", "duration_us") else value
            out["http"] = http
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        return json.dumps(out, default=repr, ensure_ascii=False)


def _number(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def setup_logging(level: str = "info", fmt: str = "text", stream: Any = None) -> logging.Handler:
    """Log everything at ``level`` and above to ``stream`` (stderr) in format ``fmt``.

    Replaces the root logger's handlers (so calling it twice does not log twice) and
    routes :mod:`warnings` through logging too. Returns the handler it installed.
    """
    if level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    # Records from workflow executions carry run_id, workflow, version and task.
    handler.addFilter(RunContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.captureWarnings(True)
    return handler
