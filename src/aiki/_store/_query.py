"""What a run search asks for (:class:`RunQuery`) and answers (:class:`RunPage`), and
the rules for search attributes.

Plain data, no Redis. A query names the search indexes to intersect (see ``_keys.py``:
``{s}:index:<kind>:<value>``); ``_listing.py`` runs it, shard by shard, on the server
(``lua/find_runs.lua``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigurationError
from ._keys import RUN_STATUSES, Keys
from ._records import RunRecord

MAX_ATTRIBUTES = 32
"""How many attributes one run may have (each is an index entry)."""
MAX_ATTRIBUTE_NAME = 64
MAX_ATTRIBUTE_VALUE = 256
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def check_attribute_name(name: Any, what: str = "attribute") -> str:
    """A valid attribute name (a letter or ``_``, then letters, digits, ``_ . -``: no
    ``:`` nor ``=``, so index keys and query strings stay unambiguous), else
    ConfigurationError naming it."""
    if not isinstance(name, str) or len(name) > MAX_ATTRIBUTE_NAME or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{what} name must match [A-Za-z_][A-Za-z0-9_.-]* (at most "
            f"{MAX_ATTRIBUTE_NAME} characters), got {name!r}",
            field=f"attribute.{name}" if isinstance(name, str) else "attributes",
        )
    return name


def attribute_value(name: str, value: Any) -> str:
    """The stored (string) form of an attribute value: a non-empty str, an int, or a
    bool (``"true"``/``"false"``); anything else is refused, naming the attribute."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise ConfigurationError(
            f"attribute {name!r} must be a str, int or bool, got {type(value).__name__}",
            field=f"attribute.{name}",
        )
    if not text or len(text) > MAX_ATTRIBUTE_VALUE:
        raise ConfigurationError(
            f"attribute {name!r} must be 1 to {MAX_ATTRIBUTE_VALUE} characters, got {text!r}",
            field=f"attribute.{name}",
        )
    return text


def check_attributes(
    values: Mapping[str, Any], *, allow_none: bool = False
) -> dict[str, str | None]:
    """Attributes as stored: names checked, values as strings (None kept, meaning
    "remove", when ``allow_none``)."""
    if not isinstance(values, Mapping):
        raise ConfigurationError(
            "attributes must be a mapping of name to value", field="attributes"
        )
    out: dict[str, str | None] = {}
    for name, value in values.items():
        check_attribute_name(name)
        out[name] = None if value is None and allow_none else attribute_value(name, value)
    if len(out) > MAX_ATTRIBUTES:
        raise ConfigurationError(
            f"at most {MAX_ATTRIBUTES} attributes, got {len(out)}", field="attributes"
        )
    return out


def parse_cursor(raw: str | None) -> tuple[int, str | None] | None:
    """A page cursor: ``<ms>:<run id>`` (a ``next_cursor``: go on after that run) or a
    bare ``<ms>`` (runs created before that time); None for the first page."""
    if not raw:
        return None
    ms, sep, run_id = raw.partition(":")
    if not (ms.isascii() and ms.isdigit() and len(ms) <= 15) or (sep and not run_id):
        raise ConfigurationError(
            f"cursor must be a next_cursor from a previous page or a time in ms, got {raw!r}",
            field="cursor",
        )
    return int(ms), run_id or None


@dataclass(frozen=True)
class RunQuery:
    """Which runs a listing wants: every filter given must hold (times in ms)."""

    status: str | None = None
    workflow: str | None = None
    version: str | None = None
    reference_id: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    created_after: int | None = None  # inclusive
    created_before: int | None = None  # exclusive

    @classmethod
    def build(
        cls,
        *,
        status: str | None = None,
        workflow: str | None = None,
        version: str | None = None,
        reference_id: str | None = None,
        attributes: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
    ) -> RunQuery:
        """A checked query: a bad status or attribute is a ConfigurationError naming it."""
        if status is not None and status not in RUN_STATUSES:
            raise ConfigurationError(
                f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}",
                field="status",
            )
        pairs = dict(attributes or {})
        checked = check_attributes(pairs)
        return cls(
            status=status or None,
            workflow=workflow or None,
            version=version or None,
            reference_id=reference_id or None,
            attributes=tuple(sorted((k, v) for k, v in checked.items() if v is not None)),
            created_after=created_after,
            created_before=created_before,
        )

    def indexes(self, keys: Keys, shard: int) -> list[str]:
        """The index keys of ``shard`` to intersect (the runs index when no filter)."""
        wanted: list[tuple[str, str]] = [
            (kind, value)
            for kind, value in (
                ("status", self.status),
                ("workflow", self.workflow),
                ("version", self.version),
                ("reference", self.reference_id),
            )
            if value
        ]
        wanted += [(f"attr:{name}", value) for name, value in self.attributes]
        if not wanted:
            return [keys.runs_index(shard)]
        return [keys.index(kind, value, shard) for kind, value in wanted]


@dataclass(frozen=True)
class RunPage:
    """One page of a run listing, newest first: pass ``next_cursor`` (None on the last
    page) as ``cursor=`` for the next one. Paging is stable: a run is listed once,
    however many runs start meanwhile (they are newer than the first page)."""

    runs: list[RunRecord] = field(default_factory=list)
    next_cursor: str | None = None

    def __iter__(self) -> Any:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)
