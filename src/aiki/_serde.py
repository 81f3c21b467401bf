"""JSON in and out of Redis, and the canonical form that task addresses hash.

Payloads and results are JSON: that is what crosses languages, the HTTP API and the
dashboard. Canonical JSON (sorted keys, no spaces) makes a task's address independent
of dict ordering, so a replay finds the result recorded by an earlier execution.
"""

from __future__ import annotations

import hashlib
import json
import traceback as _traceback
from typing import Any

from ._errors import InvalidPayload

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_canonical = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
)


def dumps(value: Any, *, what: str = "payload") -> str:
    """Encode ``value`` as compact JSON, or raise InvalidPayload naming ``what``."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"{what} is not JSON-serializable: {exc}") from None


def loads(text: str | bytes | None) -> Any:
    """Decode JSON stored by :func:`dumps`; ``None`` stays ``None``."""
    if text is None:
        return None
    return json.loads(text)


def canonical_hash(value: Any) -> str:
    """A short stable hash of ``value``'s canonical JSON (part of a task address)."""
    try:
        data = _canonical.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"task input is not JSON-serializable: {exc}") from None
    return hashlib.blake2b(data.encode(), digest_size=8).hexdigest()


def error_record(exc: BaseException) -> dict[str, Any]:
    """What a run or task records about an exception: type, message and traceback text."""
    from ._errors import TaskFailed
    from ._retry import NonRetryableError

    if isinstance(exc, TaskFailed):
        # The workflow let a task's failure propagate: record the task's original error.
        record: dict[str, Any] = {
            "type": exc.error_type,
            "message": exc.error_message,
            "traceback": exc.traceback,
            "task": exc.task,
        }
        if exc.details.get("non_retryable"):
            record["non_retryable"] = True
        return record
    plain: dict[str, Any] = {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(_traceback.format_exception(exc)),
    }
    if isinstance(exc, NonRetryableError):
        plain["non_retryable"] = True
    return plain
