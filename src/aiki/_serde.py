"""JSON in and out of Redis, and the canonical form that task addresses hash.

Payloads and results are JSON: that is what crosses languages, the HTTP API and the
dashboard. Canonical JSON (sorted keys, no spaces) makes a task's address independent
of dict ordering, so a replay finds the result recorded by an earlier execution.

What is written is bounded, so that whatever is stored can be read back by every reader:
nesting is limited to :data:`MAX_JSON_DEPTH` (a recursive decoder, Python's included,
fails somewhere near 1,000; one deep value would otherwise break every read of a run
listing) and text must be valid UTF-8 (a lone surrogate, what ``os.listdir`` gives for a
non-UTF-8 file name, cannot be sent to Redis). Reads of what is already stored go through
:func:`loads_stored`, which never raises: an older version or another writer may have
left anything there.
"""

from __future__ import annotations

import hashlib
import json
import re
import traceback as _traceback
from typing import Any

from ._errors import InvalidPayload, NonRetryableError, PayloadTooLarge, TaskFailed
from ._types import jsonable

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "MAX_JSON_DEPTH",
    "READ_DEPTH",
    "canonical_hash",
    "check_depth",
    "check_size",
    "depth_message",
    "dumps",
    "error_record",
    "loads",
    "loads_stored",
]

#: The largest task or workflow result a worker records by default (compact JSON, UTF-8
#: bytes), like payloads: a result lives in Redis memory for as long as its run is kept.
DEFAULT_MAX_RESULT_BYTES = 1_000_000
#: How deeply arrays and objects may nest in a payload, result or event (JSON in Redis).
MAX_JSON_DEPTH = 100
#: How deeply stored JSON may nest for a reader to decode it: records wrap values that
#: are within MAX_JSON_DEPTH in a level or two; far below where a decoder recurses out.
READ_DEPTH = 2 * MAX_JSON_DEPTH

# ``default=jsonable``: a pydantic model, dataclass, enum, datetime, UUID or Decimal met
# where no annotation names its type is stored in its JSON form. Plain JSON never
# reaches the hook, so it costs nothing and canonical hashes of plain JSON are unchanged.
_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=jsonable
)
_canonical = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False, default=jsonable
)


# A JSON string (escapes included), and what is neither a string nor a bracket.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def depth_message(what: str) -> str:
    """The refusal of a value nested too deeply (the same words at every door)."""
    return f"{what}: nesting depth exceeds the limit of {MAX_JSON_DEPTH} nested arrays/objects"


def _too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays/objects more than ``limit`` deep.

    Scans the text, never recursing: safe for any depth. Nearly free for most values
    (fewer brackets than the limit cannot nest past it)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for c in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if c in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def check_depth(text: str, what: str = "body") -> None:
    """Raise InvalidPayload when JSON ``text`` (not decoded yet: a request body) nests
    more than MAX_JSON_DEPTH deep; its ``field`` is the top-level member at fault (else
    ``what``). Checked before decoding, which could recurse out; safe for any depth."""
    member = _deep_member(text)
    if member is not None:
        field = member or what
        raise InvalidPayload(depth_message(field), field=field)


def _deep_member(text: str) -> str | None:
    """``None`` when JSON ``text`` nests within MAX_JSON_DEPTH; else the name of the
    top-level member where it goes deeper ("" when not inside an object's member)."""
    if not _too_deep(text):
        return None
    depth, key, member = 0, "", ""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            if depth == 1 and text[match.end() :].lstrip()[:1] == ":":
                try:
                    key = json.loads(token)
                except ValueError:
                    key = token[1:-1]
            continue
        if token in "[{":
            depth += 1
            if depth == 2:
                member = key
            if depth > MAX_JSON_DEPTH:
                return member
        else:
            depth -= 1
            if depth <= 1:
                member = ""
    return ""


def dumps(value: Any, *, what: str = "payload", depth: int = MAX_JSON_DEPTH) -> str:
    """Encode ``value`` as compact JSON, or raise InvalidPayload naming ``what``: not
    JSON-serializable, nested more than ``depth`` deep, or not valid UTF-8 (a lone
    surrogate). A record that wraps checked values passes a larger ``depth``."""
    try:
        text = _encoder.encode(value)
    except RecursionError:
        raise InvalidPayload(depth_message(what)) from None
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"{what} is not JSON-serializable: {exc}") from None
    if _too_deep(text, depth):
        raise InvalidPayload(depth_message(what))
    if not text.isascii() and _SURROGATE.search(text):
        raise InvalidPayload(_surrogate_message(what, text))
    return text


def _surrogate_message(what: str, text: str) -> str:
    found = _SURROGATE.search(text)
    return (
        f"{what} contains a lone surrogate ({found.group() if found else ''!a}), which is "
        "not valid UTF-8 text (a file name from os.listdir may hold one: "
        "os.fsencode(name).decode('utf-8', 'replace') makes it text)"
    )


def check_size(text: str, limit: int, what: str) -> str:
    """``text`` (compact JSON) if it is at most ``limit`` bytes in UTF-8, else raise
    PayloadTooLarge naming ``what`` (a payload at a start; a task or workflow result,
    whose attempt then fails)."""
    if len(text) * 4 <= limit:
        return text  # within the limit however it encodes (<= 4 bytes a char)
    size = len(text.encode())
    if size > limit:
        raise PayloadTooLarge(size, limit, field=what)
    return text


def loads(text: str | bytes | None) -> Any:
    """Decode JSON stored by :func:`dumps`; ``None`` stays ``None``. Raises ValueError
    (never RecursionError) for text that is not JSON or nests too deeply: for readers
    that must have the exact value (a run taken for execution)."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode()
    if _too_deep(text, READ_DEPTH):
        raise ValueError(f"stored JSON nests more than {READ_DEPTH} deep")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"stored JSON nests more than {READ_DEPTH} deep") from None


def loads_stored(text: str | bytes | None) -> Any:
    """Decode stored JSON for showing it, never raising: what cannot be decoded (too
    deep, not JSON) is shown as ``{"unreadable": why, "excerpt": its first characters}``,
    so one poisoned run never breaks a page, a listing or the CLI."""
    try:
        return loads(text)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raw = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        return {"unreadable": str(exc), "excerpt": raw[:200]}


def canonical_hash(value: Any) -> str:
    """A short stable hash of ``value``'s canonical JSON (part of a task address)."""
    try:
        data = _canonical.encode(value)
    except RecursionError:
        raise InvalidPayload(depth_message("task input")) from None
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"task input is not JSON-serializable: {exc}") from None
    if _too_deep(data):
        raise InvalidPayload(depth_message("task input"))
    try:
        encoded = data.encode()
    except UnicodeEncodeError:
        raise InvalidPayload(_surrogate_message("task input", data)) from None
    return hashlib.blake2b(encoded, digest_size=8).hexdigest()


def _utf8(text: str) -> str:
    """``text`` storable as UTF-8: a lone surrogate (a file name in a message) becomes
    its escape, so the error itself can always be recorded."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode()


def _message(exc: BaseException) -> str:
    """``str(exc)``, or what the traceback module shows when an exception's own
    ``__str__`` raises: a user's broken exception class must fail its run, not the
    worker that records it."""
    try:
        return str(exc)
    except Exception as broken:  # noqa: BLE001 - any error of user code
        return f"<exception str() failed: its __str__ raised {type(broken).__name__}>"


def error_record(exc: BaseException) -> dict[str, Any]:
    """What a run or task records about an exception: type, message and traceback text."""
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
        "message": _utf8(_message(exc)),
        "traceback": _utf8("".join(_traceback.format_exception(exc))),
    }
    if isinstance(exc, NonRetryableError):
        plain["non_retryable"] = True
    return plain
