"""Logging set-up for the ``aiki`` commands: text for people, JSON lines for machines.

Everything logs through the standard :mod:`logging` module (the SDK's ``aiki.*``
loggers, ``aiki_server``, Hypercorn's ``hypercorn.error`` / ``hypercorn.access``); the
CLI puts one handler on the root logger, on stderr, with one of two formatters:

* ``text``: ``2024-05-01 12:00:00,123 INFO    aiki.worker: worker w1 serving ...``;
  :class:`TextFormatter` escapes control characters (``\\r``, ``\\n``, ...) in messages,
  so a request path or a run id sent by a client can never forge a log line (#16);
  a traceback keeps its lines but each continuation line is indented.
* ``json``: one JSON object per line, ``{"ts", "level", "logger", "message", ...}``,
  with ``exc_info`` (the formatted traceback) when there is one and any ``extra=``
  fields given to the log call. Access-log lines carry an ``http`` object.

:class:`JsonFormatter` is a plain :class:`logging.Formatter`, usable in any logging
configuration (``dictConfig`` included) of a program that embeds Aiki.
"""

from __future__ import annotations

import json
import logging
import re
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


# C0 controls but tab, DEL, C1 controls, and the Unicode line/paragraph separators: what
# could end a line (or rewrite one on a terminal) when a client's text is logged.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def escape_controls(text: str) -> str:
    """``text`` on one line: control characters written as Python-style escapes."""
    return _CONTROL.sub(
        lambda m: _NAMED.get(m.group(), m.group().encode("unicode_escape").decode()), text
    )


class TextFormatter(logging.Formatter):
    """The ``text`` format: one line per record, whatever the message contains.

    Log messages carry text from outside (request paths, run ids, workflow names,
    exception messages); written raw, a ``\\r\\n`` in them would forge a line that looks
    like the server's own. The message is escaped; a traceback keeps its line breaks
    (that is how people read it) but each of its lines is indented, so no
    line of it can pass for a record of its own."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    """Every line of a traceback indented (it follows the record's own line)."""
    return "\n".join("  " + escape_controls(line) for line in text.split("\n"))


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
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.captureWarnings(True)
    return handler
