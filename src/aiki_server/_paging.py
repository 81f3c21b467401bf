"""Paging of lists: runs by creation time with ``<ms>:<id>`` cursors, the small lists
(schedules, workflows, workers) by key, and dead letters by their stream entry id.
Shared by the API and the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiki import ConfigurationError
from aiki.engine import RunQuery, RunRecord, Store

from ._errors import validation_error
from ._limits import MAX_MS


@dataclass(frozen=True)
class RunFilter:
    """What a runs list is restricted to (the API's and the dashboard's filters)."""

    status: str | None = None
    workflow: str | None = None
    version: str | None = None
    created_after: int | None = None  # ms, inclusive
    created_before: int | None = None  # ms, exclusive
    reference_id: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def query(self) -> RunQuery:
        """The store's search query; a bad attribute is a 422 naming it."""
        try:
            return RunQuery.build(
                status=self.status,
                workflow=self.workflow,
                version=self.version,
                reference_id=self.reference_id,
                attributes=self.attributes,
                created_after=self.created_after,
                created_before=self.created_before,
            )
        except ConfigurationError as exc:
            raise validation_error(exc.field or "attributes", str(exc)) from None


async def list_runs_page(
    store: Store, filters: RunFilter, limit: int, raw_cursor: str | None
) -> tuple[list[RunRecord], str | None]:
    """One page of runs, newest first, and the cursor of the next page (or None): a
    search over the indexes on the server (``Store.find_runs``), so a selective filter
    (an attribute, a reference id) costs what it finds, not what is stored."""
    cursor = parse_cursor(raw_cursor)
    page = await store.find_runs(filters.query(), limit=limit, after=cursor)
    return page.runs, page.next_cursor


def page_by_key(
    items: list[dict[str, Any]], key: Callable[[dict[str, Any]], str], limit: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a small list sorted by ``key`` (a string), after the cursor ``after``:
    the key of the previous page's last item (any string is a valid cursor: the items
    after it)."""
    items = sorted(items, key=key)
    if after:
        items = [item for item in items if key(item) > after]
    page = items[:limit]
    return page, key(page[-1]) if len(items) > limit else None


def parse_cursor(raw: str | None) -> tuple[int, str | None] | None:
    """``<ms>`` (runs created before that time) or ``<ms>:<id>`` (a ``next_cursor``)."""
    if not raw:
        return None
    ms, sep, run_id = raw.partition(":")
    try:
        value = int(ms) if ms.isascii() and ms.isdigit() else -1
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_MS or (sep and not run_id):
        raise validation_error(
            "cursor",
            f"cursor must be a next_cursor from a previous page or a time in ms, got {raw!r}",
        )
    return value, run_id or None


def is_entry_id(value: str) -> bool:
    """Whether ``value`` is a stream entry id (``<ms>-<n>``): a dead letter's id, and its
    list's cursor."""
    ms, sep, seq = value.partition("-")
    # Redis's entry ids are two uint64: 19 digits always fit.
    return bool(sep) and all(p.isascii() and p.isdigit() and len(p) <= 19 for p in (ms, seq))
