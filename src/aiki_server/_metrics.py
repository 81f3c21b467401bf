"""``/metrics``: Prometheus metrics computed from Redis at scrape time.

The server cannot see workers' memory, so everything about runs, tasks, queues and
workers is derived from what is in Redis when Prometheus scrapes:

=========================================================  ====================================
metric                                                     source
=========================================================  ====================================
``aiki_runs_started_total{workflow,version}``              the runs index (every run created)
``aiki_runs_completed_total`` / ``_failed_total`` /        runs seen in that final status
``_cancelled_total`` ``{workflow,version}``
``aiki_runs_in_progress{workflow,version,status}``         runs not ended, by status
``aiki_run_retries_total{workflow,version}``               workflow attempts that were retried
``aiki_run_duration_seconds{workflow,version,status}``     started_at -> ended_at of ended runs
``aiki_task_duration_seconds{workflow,version,task}``      task records of ended runs
``aiki_task_retries_total{workflow,version,task}``         task records (attempts - 1)
``aiki_queue_depth{workflow,version}``                     ``XLEN`` of the version's stream
``aiki_queue_pending{workflow,version}``                   ``XPENDING``: delivered, not acked
``aiki_queue_oldest_message_age_seconds{workflow,version}`` first entry id of the stream
``aiki_dead_letters``                                      ``XLEN`` of the dead-letter stream
``aiki_workers{state}``                                    the worker registry (live / stale)
``aiki_worker_in_flight{worker}``, ``_capacity``,          each live worker's last registry
``_heartbeat_age_seconds``,                                entry (written every 2 s)
``aiki_worker_claims_taken_over_total{worker}``,
``aiki_worker_redis_resets_total{worker}``
``aiki_worker_rate_limit_waits_total{worker,limit}``,      rate-limit waits in the worker, the
``_wait_seconds_total``, ``_parks_total``                  seconds waited, runs parked for it
``aiki_worker_concurrency_waits_total``,                   runs that waited for a concurrency
``_wait_seconds_total`` ``{worker,workflow,version,key}``  key's slot, and how long (key ''
                                                           = the version-wide one)
``aiki_redis_up``                                          1 if the last scrape read Redis
``aiki_redis_resets_total``                                this server found Redis emptied
=========================================================  ====================================

Run totals are kept incrementally (see :class:`aiki_server._observe.RunTotals`): the
first scrape of a server reads the whole runs index, later ones only what changed. The
task duration histogram is built from task records (recorded by workers with their
start and end times) when the server first sees their run ended; it covers runs that
ended within the hour before that, so it restarts with the server like any in-process
histogram, while the run counters are the same on every replica.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import trio
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from aiki import ConnectionFailed
from aiki.engine import ScriptRefused, Store

from ._observe import DURATION_BUCKETS, Histogram, RunTotals, dead_letter_count, list_workers
from ._observe import queue_stats as read_queue_stats

log = logging.getLogger("aiki_server.metrics")

_ENDED = ("completed", "failed", "cancelled")


class RedisCollector(Collector):
    """A collector whose values are read from Redis by :meth:`refresh` (async, called by
    the ``/metrics`` handler) and served by :meth:`collect` (sync, called by
    ``generate_latest``)."""

    def __init__(self) -> None:
        self.totals = RunTotals()
        self.queues: list[dict[str, Any]] = []
        self.workers: list[dict[str, Any]] = []
        self.dead_letters = 0
        self.up = 0
        self._lock = trio.Lock()

    async def refresh(self, store: Store | None, *, budget: float = 5.0) -> None:
        async with self._lock:
            if store is None:
                self.up = 0
                return
            try:
                await self.totals.refresh(store, budget=budget)
                self.queues = await read_queue_stats(store)
                self.workers = await list_workers(store)
                self.dead_letters = await dead_letter_count(store)
                self.up = 1
            except (ConnectionFailed, ScriptRefused) as exc:
                log.warning("metrics: cannot read Redis: %s", exc)
                self.up = 0

    def describe(self) -> Iterator[Metric]:
        # Names only, so that the registry can check for duplicates at registration.
        yield from self._families(empty=True)

    def collect(self) -> Iterator[Metric]:
        yield from self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        totals = self.totals
        wv = ["workflow", "version"]

        started = CounterMetricFamily(
            "aiki_runs_started", "Workflow runs created, by workflow and version", labels=wv
        )
        ended = {
            status: CounterMetricFamily(
                f"aiki_runs_{status}", f"Workflow runs that ended {status}", labels=wv
            )
            for status in _ENDED
        }
        in_progress = GaugeMetricFamily(
            "aiki_runs_in_progress",
            "Workflow runs not ended yet, by status",
            labels=[*wv, "status"],
        )
        run_retries = CounterMetricFamily(
            "aiki_run_retries",
            "Workflow attempts that failed and were retried (workflow-level retries)",
            labels=wv,
        )
        run_durations = HistogramMetricFamily(
            "aiki_run_duration_seconds",
            "Run duration, first start to end, of ended runs",
            labels=[*wv, "status"],
        )
        task_durations = HistogramMetricFamily(
            "aiki_task_duration_seconds",
            "Task execution time (last attempt's start to end), from task records of ended runs",
            labels=[*wv, "task"],
        )
        task_retries = CounterMetricFamily(
            "aiki_task_retries",
            "Task attempts that failed and were retried, from task records of ended runs",
            labels=[*wv, "task"],
        )
        depth = GaugeMetricFamily(
            "aiki_queue_depth",
            "Executions waiting in the workflow version's stream (delivered or not)",
            labels=wv,
        )
        pending = GaugeMetricFamily(
            "aiki_queue_pending",
            "Stream entries delivered to a worker and not acknowledged yet",
            labels=wv,
        )
        oldest = GaugeMetricFamily(
            "aiki_queue_oldest_message_age_seconds",
            "Age of the oldest entry in the workflow version's stream",
            labels=wv,
        )
        dead = GaugeMetricFamily("aiki_dead_letters", "Entries in the dead-letter stream")
        workers = GaugeMetricFamily(
            "aiki_workers", "Workers in the registry, by state (live or stale)", labels=["state"]
        )
        in_flight = GaugeMetricFamily(
            "aiki_worker_in_flight", "Runs a live worker is executing", labels=["worker"]
        )
        capacity = GaugeMetricFamily(
            "aiki_worker_capacity",
            "Runs a live worker may execute at once (max_concurrent_workflow_runs)",
            labels=["worker"],
        )
        heartbeat_age = GaugeMetricFamily(
            "aiki_worker_heartbeat_age_seconds",
            "Seconds since the worker's last registry entry",
            labels=["worker"],
        )
        claims = CounterMetricFamily(
            "aiki_worker_claims_taken_over",
            "Messages of silent workers this worker took over (since it started)",
            labels=["worker"],
        )
        resets = CounterMetricFamily(
            "aiki_worker_redis_resets",
            "Times this worker found Redis emptied and registered its workflows again "
            "(since it started)",
            labels=["worker"],
        )
        rate_waits = CounterMetricFamily(
            "aiki_worker_rate_limit_waits",
            "Task attempts that waited in the worker for a rate limit's units",
            labels=["worker", "limit"],
        )
        rate_seconds = CounterMetricFamily(
            "aiki_worker_rate_limit_wait_seconds",
            "Seconds task attempts waited in the worker for a rate limit's units",
            labels=["worker", "limit"],
        )
        rate_parks = CounterMetricFamily(
            "aiki_worker_rate_limit_parks",
            "Runs parked awaiting_rate_limit (a wait too long to hold a worker slot)",
            labels=["worker", "limit"],
        )
        concurrency_waits = CounterMetricFamily(
            "aiki_worker_concurrency_waits",
            "Runs this worker executed that had waited awaiting_concurrency for their key's "
            "slot (key '' = the version-wide one; past 100 keys a version's new keys count "
            "as '(other)')",
            labels=["worker", "workflow", "version", "key"],
        )
        concurrency_seconds = CounterMetricFamily(
            "aiki_worker_concurrency_wait_seconds",
            "Seconds those runs waited for their concurrency key's slot",
            labels=["worker", "workflow", "version", "key"],
        )
        up = GaugeMetricFamily("aiki_redis_up", "1 if the last scrape could read Redis")
        families: list[Metric] = [
            started,
            *ended.values(),
            in_progress,
            run_retries,
            run_durations,
            task_durations,
            task_retries,
            depth,
            pending,
            oldest,
            dead,
            workers,
            in_flight,
            capacity,
            heartbeat_age,
            claims,
            resets,
            rate_waits,
            rate_seconds,
            rate_parks,
            concurrency_waits,
            concurrency_seconds,
            up,
        ]
        if empty:
            yield from families
            return

        for (workflow, version), n in sorted(totals.started.items()):
            started.add_metric([workflow, version], n)
            for status in _ENDED:
                ended[status].add_metric(
                    [workflow, version], totals.ended.get((workflow, version, status), 0)
                )
        for (workflow, version, status), n in sorted(totals.in_progress().items()):
            in_progress.add_metric([workflow, version, status], n)
        retries = totals.run_retries()
        for workflow, version in sorted(set(totals.started) | set(retries)):
            run_retries.add_metric([workflow, version], retries.get((workflow, version), 0))
        for key, hist in sorted(totals.run_durations.items()):
            run_durations.add_metric(list(key), _buckets(hist), hist.sum)
        for key, hist in sorted(totals.task_durations.items()):
            task_durations.add_metric(list(key), _buckets(hist), hist.sum)
        for key, n in sorted(totals.task_retries.items()):
            task_retries.add_metric(list(key), n)
        for q in self.queues:
            labels = [q["workflow"], q["version"]]
            depth.add_metric(labels, q["depth"])
            pending.add_metric(labels, q["pending"])
            oldest.add_metric(labels, q["oldest_age_s"] or 0.0)
        dead.add_metric([], self.dead_letters)
        live = [w for w in self.workers if not w["stale"]]
        workers.add_metric(["live"], len(live))
        workers.add_metric(["stale"], len(self.workers) - len(live))
        for w in live:
            in_flight.add_metric([w["id"]], w["in_flight"])
            capacity.add_metric([w["id"]], w["max"])
            heartbeat_age.add_metric([w["id"]], w["heartbeat_age_ms"] / 1000)
            claims.add_metric([w["id"]], w["claims_taken_over"])
            resets.add_metric([w["id"]], w["redis_resets"])
            for limit, (waits, waited, parks) in w["rate_limit_waits"].items():
                rate_waits.add_metric([w["id"], limit], waits)
                rate_seconds.add_metric([w["id"], limit], waited)
                rate_parks.add_metric([w["id"], limit], parks)
            for workflow, version, key, waits, waited in w["concurrency_waits"]:
                concurrency_waits.add_metric([w["id"], workflow, version, key], waits)
                concurrency_seconds.add_metric([w["id"], workflow, version, key], waited)
        up.add_metric([], self.up)
        yield from families


def _buckets(hist: Histogram) -> list[tuple[str, float]]:
    return [
        ("+Inf" if bound == float("inf") else repr(bound), count)
        for bound, count in zip(DURATION_BUCKETS, hist.buckets, strict=True)
    ]
