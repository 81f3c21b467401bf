"""Concurrency keys (``aiki.Concurrency``, docs/flow-control.md#concurrency-keys).

Three kinds of throughput round on one worker process, method as in ``throughput``
(one producer starts every run one after another, then awaits all; the clock runs from
the first start until the client has the last result), on the same workers, alternated
``REPEATS`` times (the machine's load moves between rounds; the medians are reported):

* ``plain``: the one-task workflow without ``concurrency=`` (the baseline; the same
  payloads, a small object with a key);
* ``unique_keys``: the same one task under ``Concurrency(1, key=...)``, a key of its
  own on every run (nobody ever waits: the cost of admission and release);
* ``shared_keys``: the same with 20 keys, limit 1 each, so every key's runs go one
  after another, each handed to the next by the end of the one before (most runs wait
  ``awaiting_concurrency`` first).

And the acceptance round of the issue: 3 worker processes, 60 runs over 6 keys with a
limit of 1, each busy for ``BUSY`` seconds. ``ratio`` = wall time (first start to last
result) / the busiest key's serial time (the sum of its runs' busy times, measured in
the workflow): the target is <= 1.5. ``handover_ms``: from a run's end to the start of
the next run of its key (wall clock of the workers, one machine), p50 and max.
"""

from __future__ import annotations

import statistics
from typing import Any

from .._bench import Bench, BenchmarkError
from .._common import cpu_seconds, now, self_cpu_seconds
from .._workflows import keyed_busy_v1, keyed_one_task_v1, one_task_v1

NAME = "concurrency"
ENV = {"AIKI_BENCH_WORKFLOWS": "concurrency"}
SHARED_KEYS = 20
BUSY = 0.1
REPEATS = 3
LABELS = ("plain", "unique_keys", "shared_keys")


def _payloads(label: str, n: int) -> list[Any]:
    """The same payloads in every round (the plain one ignores the key), so the rounds
    differ by ``concurrency=`` alone."""
    keys = SHARED_KEYS if label == "shared_keys" else n
    return [{"key": f"k{i % keys}", "i": i} for i in range(n)]


async def _round(bench: Bench, label: str, children: list[Any], rep: int) -> dict[str, Any]:
    n = bench.sizes.throughput_runs
    wf = one_task_v1 if label == "plain" else keyed_one_task_v1
    warm = _payloads(label, bench.sizes.warmup)
    await bench.run_many(wf, [{**p, "key": f"w{rep}-{p['key']}"} for p in warm])
    # Keys of this repetition's own.
    payloads = [{**p, "key": f"{p['key']}-{rep}"} for p in _payloads(label, n)]
    cpu0 = [c.cpu_seconds() for c in children]
    self0, redis0 = self_cpu_seconds(), cpu_seconds(bench.redis_pid)
    t0 = now()
    enqueue_s = await bench.run_many(wf, payloads)
    seconds = now() - t0
    self1, redis1 = self_cpu_seconds(), cpu_seconds(bench.redis_pid)
    cpu1 = [c.cpu_seconds() for c in children]
    return {
        "n": n,
        "seconds": round(seconds, 3),
        "per_s": round(n / seconds, 1),
        "enqueue_s": round(enqueue_s, 3),
        "cpu_ms_per_run": {
            "client_process": round((self1 - self0) * 1000 / n, 3),
            "workers": round((sum(cpu1) - sum(cpu0)) * 1000 / n, 3),
            "redis": round((redis1 - redis0) * 1000 / n, 3),
        },
    }


async def _acceptance(bench: Bench) -> dict[str, Any]:
    bench.flush()
    payloads = [{"key": f"k{i % 6}", "seconds": BUSY} for i in range(60)]
    async with bench.workers(3, tag="conc-acc-", env=ENV):
        t0 = now()
        handles = [await keyed_busy_v1.start(bench.client, p) for p in payloads]
        results = [await h.wait_for_completion(timeout=120) for h in handles]
        seconds = now() - t0
    by_key: dict[str, list[tuple[float, float]]] = {}
    for result in results:
        by_key.setdefault(result["key"], []).append((result["started"], result["ended"]))
    serial = 0.0
    gaps: list[float] = []
    for spans in by_key.values():
        spans.sort()
        serial = max(serial, sum(end - start for start, end in spans))
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if start < end:
                raise BenchmarkError("two runs of one key overlapped")
            gaps.append((start - end) * 1000)
    return {
        "runs": len(results),
        "keys": len(by_key),
        "workers": 3,
        "busy_s": BUSY,
        "seconds": round(seconds, 3),
        "busiest_key_serial_s": round(serial, 3),
        "ratio": round(seconds / serial, 3),
        "target_ratio": 1.5,
        "pass": seconds / serial <= 1.5,
        "handover_ms": {
            "p50": round(statistics.median(gaps), 2),
            "max": round(max(gaps), 2),
        },
    }


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput, and every round's figure."""
    ordered = sorted(rounds, key=lambda r: r["per_s"])
    return {**ordered[len(ordered) // 2], "per_s_all": [r["per_s"] for r in rounds]}


async def run(bench: Bench) -> dict[str, Any]:
    bench.flush()
    repeats = 1 if bench.quick else REPEATS
    rounds: dict[str, list[dict[str, Any]]] = {label: [] for label in LABELS}
    async with bench.workers(1, tag="conc-", env=ENV) as children:
        for rep in range(repeats):
            for label in LABELS:
                rounds[label].append(await _round(bench, label, children, rep))
    medians = {label: _median_round(rounds[label]) for label in LABELS}
    plain = medians["plain"]["per_s"]
    return {
        "method": "one-task workflows on one worker (start all, then await all): plain, "
        "a concurrency key of its own on every run, 20 keys with limit 1, alternated "
        f"{repeats}x (medians); then 3 workers, 60 runs over 6 keys with limit 1, each "
        f"busy {BUSY} s",
        **medians,
        "unique_keys_vs_plain": round(medians["unique_keys"]["per_s"] / plain, 3),
        "shared_keys_vs_plain": round(medians["shared_keys"]["per_s"] / plain, 3),
        "acceptance": await _acceptance(bench),
    }
