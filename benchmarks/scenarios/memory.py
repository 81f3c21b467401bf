"""Memory: RSS of a worker subprocess before and after many one-task runs.

``VmRSS`` from ``/proc/PID/status``: once right after the worker is subscribed
(``cold``), once after a warm-up (``before``: caches, script SHAs and connection buffers
are in place) and once after the measured runs (``after``). Runs go in batches of 500
(started one after another, then awaited together) so the backlog stays bounded.
Growth is ``(after - before) / before``; the growth from ``cold`` is reported too.
"""

from __future__ import annotations

from typing import Any

import trio

from .._bench import Bench
from .._workflows import one_task_v1

NAME = "memory"
BATCH = 500


async def _runs(bench: Bench, count: int) -> None:
    done = 0
    while done < count:
        size = min(BATCH, count - done)
        await bench.run_many(one_task_v1, list(range(done, done + size)))
        done += size


async def run(bench: Bench) -> dict[str, Any]:
    bench.flush()
    async with bench.workers(1, tag="mem") as (worker,):
        await trio.sleep(0.5)
        cold = worker.rss_kb()
        await _runs(bench, bench.sizes.memory_warmup_runs)
        before = worker.rss_kb()
        await _runs(bench, bench.sizes.memory_runs)
        await trio.sleep(0.5)
        after = worker.rss_kb()
        peak = worker.hwm_kb()
    return {
        "method": "VmRSS after warm-up vs after the measured runs",
        "warmup_runs": bench.sizes.memory_warmup_runs,
        "runs": bench.sizes.memory_runs,
        "rss_cold_kb": cold,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "rss_peak_kb": peak,
        "growth_pct": round((after - before) * 100 / before, 2),
        "growth_from_cold_pct": round((after - cold) * 100 / cold, 2),
    }
