"""What the dashboard and ``/metrics`` read from Redis besides runs: the worker registry,
the queues (one stream per workflow version) and run totals.

All reads are the store's (``aiki.engine.Store``: the one place that talks to Redis);
nothing here writes, except that :func:`list_workers` drops registry entries silent for
over an hour (workers that died without removing their entry).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio

from aiki.engine import TERMINAL_STATUSES, Store

#: A worker whose last registry entry is older than this is shown as stale. Workers
#: write one every 2 s (``aiki._worker.REGISTRY_INTERVAL``); the margin covers a busy
#: event loop and clock differences between hosts.
STALE_AFTER_MS = 15_000
#: Entries older than this are removed from the registry when it is listed.
PRUNE_AFTER_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


# -- workers --------------------------------------------------------------------------


async def list_workers(store: Store, *, now: int | None = None) -> list[dict[str, Any]]:
    """The worker registry, sorted by id, each entry with ``stale`` and
    ``heartbeat_age_ms`` added. Entries silent for over an hour are pruned."""
    now = now_ms() if now is None else now
    raw = await store.worker_entries()
    out: list[dict[str, Any]] = []
    prune: list[str] = []
    for worker_id, value in raw.items():
        try:
            entry = json.loads(value)
        except (TypeError, ValueError):
            entry = None
        if not isinstance(entry, dict):
            prune.append(worker_id)
            continue
        try:
            last = int(entry.get("last_heartbeat_ms") or 0)
        except (TypeError, ValueError):
            last = 0
        age = now - last
        if age > PRUNE_AFTER_MS:
            prune.append(worker_id)
            continue
        workflows = entry.get("workflows")
        out.append(
            {
                "id": worker_id,
                "workflows": [str(w) for w in workflows] if isinstance(workflows, list) else [],
                "in_flight": _int(entry.get("in_flight")),
                "max": _int(entry.get("max")),
                "last_heartbeat_ms": last,
                "heartbeat_age_ms": max(0, age),
                "stale": age > STALE_AFTER_MS,
                "started_at_ms": _int(entry.get("started_at_ms")) or None,
                "host": str(entry.get("host") or "") or None,
                "pid": _int(entry.get("pid")) or None,
                "claims_taken_over": _int(entry.get("claims_taken_over")),
                "executions_finished": _int(entry.get("executions_finished")),
                "redis_resets": _int(entry.get("redis_resets")),
                "rate_limit_waits": _rate_waits(entry.get("rate_limit_waits")),
                "concurrency_waits": _concurrency_waits(entry.get("concurrency_waits")),
            }
        )
    if prune:
        await store.remove_workers(*prune)
    return sorted(out, key=lambda w: w["id"])


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# -- queues ---------------------------------------------------------------------------


async def queue_stats(store: Store, *, now: int | None = None) -> list[dict[str, Any]]:
    """Per registered workflow version: ``depth``, ``pending`` and ``oldest_age_s``
    (see :meth:`aiki.engine.Store.queue_stats`)."""
    return await store.queue_stats(now=now)


async def dead_letter_count(store: Store) -> int:
    return await store.dead_letter_count()


# -- run totals -----------------------------------------------------------------------

#: Latency buckets (seconds) of the task and run duration histograms.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    float("inf"),
)

_RUN_FIELDS = ("workflow", "version", "status", "errors", "started_at", "ended_at")


@dataclass
class Histogram:
    """Cumulative-bucket histogram data (what a Prometheus histogram exposes)."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    count: int = 0
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1


@dataclass
class _OpenRun:
    workflow: str
    version: str
    status: str
    retries: int


class RunTotals:
    """Run and task totals computed from Redis state, kept up to date incrementally.

    The first :meth:`refresh` reads every run in the runs index (oldest first, in
    chunks); later ones read only runs created since (the index is scored by creation
    time, from Redis ``TIME``) plus the runs that had not ended yet. Ended runs never
    change, so they are counted once and forgotten: memory is proportional to runs in
    progress, not to history. Because they come from state, the totals are the same on
    every server replica and survive restarts; they only go down if runs are deleted.

    Task durations and task retries come from the task records of each run when it is
    seen ended (one ``HGETALL`` per ended run), for runs that ended within
    ``task_window_ms`` of being seen (so a server's first scrape does not read the task
    records of all history); run retries come from the run's recorded attempt errors.
    """

    RESCAN_MS = 10_000  # index entries this far behind the newest seen are re-read
    CHUNK = 500

    def __init__(self, task_window_ms: int = 3_600_000) -> None:
        self.task_window_ms = task_window_ms
        self.started: Counter[tuple[str, str]] = Counter()
        self.ended: Counter[tuple[str, str, str]] = Counter()
        self.settled_retries: Counter[tuple[str, str]] = Counter()
        self.task_retries: Counter[tuple[str, str, str]] = Counter()
        self.task_durations: dict[tuple[str, str, str], Histogram] = {}
        self.run_durations: dict[tuple[str, str, str], Histogram] = {}
        self.open: dict[str, _OpenRun] = {}
        # Per shard (each has its own runs index): the highest index score read so far,
        # and the ids read with a score >= that minus RESCAN_MS.
        self._high: dict[int, int] = {}
        self._recent: dict[int, dict[str, int]] = {}
        self.complete = False  # False while a refresh stopped at its time budget
        self._lock = trio.Lock()

    # what the collector reads --------------------------------------------------------

    def in_progress(self) -> Counter[tuple[str, str, str]]:
        counts: Counter[tuple[str, str, str]] = Counter()
        for run in self.open.values():
            counts[(run.workflow, run.version, run.status)] += 1
        return counts

    def run_retries(self) -> Counter[tuple[str, str]]:
        total = Counter(self.settled_retries)
        for run in self.open.values():
            if run.retries:
                total[(run.workflow, run.version)] += run.retries
        return total

    # refreshing -----------------------------------------------------------------------

    async def refresh(self, store: Store, *, budget: float = 5.0) -> None:
        """Catch up with Redis, for at most about ``budget`` seconds (a first refresh
        over a long history may take several scrapes; totals only ever grow)."""
        async with self._lock:
            deadline = trio.current_time() + budget
            await self._recheck_open(store)
            complete = True
            for shard in range(await store.shard_count()):
                complete = await self._read_new(store, shard, deadline) and complete
            self.complete = complete

    async def _read_new(self, store: Store, shard: int, deadline: float) -> bool:
        # Paged by score, not by offset (an offset walks the whole index): the next page
        # starts at the last page's highest score, skipping the entries already read at
        # that score. Entries missed by a race at equal scores are found by the next
        # refresh, which starts RESCAN_MS behind the newest entry read.
        high = self._high.get(shard)
        recent = self._recent.setdefault(shard, {})
        cursor = "-inf" if high is None else str(high - self.RESCAN_MS)
        skip = 0
        while True:
            if trio.current_time() > deadline:
                return False
            page = await store.runs_index_page(shard, cursor, skip=skip, count=self.CHUNK)
            fresh = [(r, s) for r, s in page if r not in recent and r not in self.open]
            if fresh:
                await self._read_runs(store, fresh)
            for run_id, score in page:
                recent[run_id] = score
                if high is None or score > high:
                    high = self._high[shard] = score
            if len(page) < self.CHUNK:
                break
            last = page[-1][1]
            at_last = sum(1 for _, score in page if score == last)
            if cursor == str(last):
                skip += at_last
            else:
                cursor, skip = str(last), at_last
        if high is not None:
            floor = high - self.RESCAN_MS
            self._recent[shard] = {r: s for r, s in recent.items() if s >= floor}
        return True

    async def _read_runs(self, store: Store, ids: list[tuple[str, int]]) -> None:
        rows = await self._fields(store, [r for r, _ in ids])
        ended: list[tuple[str, dict[str, Any]]] = []
        for run_id, row in rows.items():
            if row is None:
                continue
            if row["status"] in TERMINAL_STATUSES:
                ended.append((run_id, row))
        tasks = await self._tasks(store, ended)
        # Apply only once every read succeeded: a failed refresh changes nothing.
        for run_id, row in rows.items():
            if row is None:
                continue
            self.started[(row["workflow"], row["version"])] += 1
            if row["status"] not in TERMINAL_STATUSES:
                self.open[run_id] = _OpenRun(
                    row["workflow"], row["version"], row["status"], row["retries"]
                )
        for run_id, row in ended:
            self._settle(row, tasks.get(run_id))

    async def _recheck_open(self, store: Store) -> None:
        ids = list(self.open)
        for start in range(0, len(ids), self.CHUNK):
            chunk = ids[start : start + self.CHUNK]
            rows = await self._fields(store, chunk)
            ended = [
                (r, row) for r, row in rows.items() if row and row["status"] in TERMINAL_STATUSES
            ]
            tasks = await self._tasks(store, ended)
            for run_id, row in rows.items():
                if row is None:  # deleted while in progress
                    self.open.pop(run_id, None)
                elif row["status"] not in TERMINAL_STATUSES:
                    run = self.open[run_id]
                    run.status, run.retries = row["status"], row["retries"]
            for run_id, row in ended:
                self.open.pop(run_id, None)
                self._settle(row, tasks.get(run_id))

    def _settle(self, row: dict[str, Any], tasks: dict[str, Any] | None) -> None:
        workflow, version, status = row["workflow"], row["version"], row["status"]
        self.ended[(workflow, version, status)] += 1
        if row["retries"]:
            self.settled_retries[(workflow, version)] += row["retries"]
        started, ended = row["started_at"], row["ended_at"]
        if started is not None and ended is not None and ended >= started:
            key = (workflow, version, status)
            self.run_durations.setdefault(key, Histogram()).observe((ended - started) / 1000)
        for record in (tasks or {}).values():
            name = record.get("task") if isinstance(record, dict) else None
            if not isinstance(name, str):
                continue  # sleeps, event waits, child waits: not tasks
            key3 = (workflow, version, name)
            attempts = _int(record.get("attempts"))
            if attempts > 1:
                self.task_retries[key3] += attempts - 1
            t0, t1 = record.get("started_at"), record.get("ended_at")
            if isinstance(t0, int) and isinstance(t1, int) and t1 >= t0:
                self.task_durations.setdefault(key3, Histogram()).observe((t1 - t0) / 1000)

    async def _fields(self, store: Store, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        for run_id, values in (await store.run_fields(ids, _RUN_FIELDS)).items():
            workflow, version, status, errors, started, ended = values
            if not workflow or not status:
                out[run_id] = None
                continue
            out[run_id] = {
                "workflow": workflow,
                "version": version or "",
                "status": status,
                "retries": _count_json_list(errors),
                "started_at": _opt_int(started),
                "ended_at": _opt_int(ended),
            }
        return out

    async def _tasks(
        self, store: Store, ended: list[tuple[str, dict[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        floor = now_ms() - self.task_window_ms
        wanted = [r for r, row in ended if (row["ended_at"] or 0) >= floor]
        if not wanted:
            return {}
        return await store.task_records(wanted)


def _count_json_list(raw: str | None) -> int:
    if not raw:
        return 0
    try:
        value = json.loads(raw)
    except ValueError:
        return 0
    return len(value) if isinstance(value, list) else 0


def _opt_int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def _rate_waits(value: Any) -> dict[str, tuple[int, float, int]]:
    """A worker's rate-limit counters by limit name: (waits in the worker, seconds
    waited there, runs parked); anything malformed is left out."""
    out: dict[str, tuple[int, float, int]] = {}
    if isinstance(value, dict):
        for name, counts in value.items():
            if isinstance(counts, list) and len(counts) == 3:
                try:
                    out[str(name)] = (int(counts[0]), float(counts[1]), int(counts[2]))
                except (TypeError, ValueError):
                    continue
    return out


def _concurrency_waits(value: Any) -> list[tuple[str, str, str, int, float]]:
    """A worker's concurrency-key waits: (workflow, version, key, runs that waited,
    seconds they waited), from its ``"workflow@version" -> key -> [waits, seconds]``;
    anything malformed is left out."""
    out: list[tuple[str, str, str, int, float]] = []
    if not isinstance(value, dict):
        return out
    for version_id, keys in value.items():
        workflow, at, version = str(version_id).rpartition("@")
        if not at or not isinstance(keys, dict):
            continue
        for key, counts in keys.items():
            if isinstance(counts, list) and len(counts) == 2:
                try:
                    out.append((workflow, version, str(key), int(counts[0]), float(counts[1])))
                except (TypeError, ValueError):
                    continue
    return out
