"""Per-step overhead: a 20-task workflow against a 1-task workflow.

N runs of each, sequential and interleaved (1-task, 20-task, 1-task, ...), client
observed start to result. The cost of one step — run the task, record its result with
one fenced script, return the recorded value — is ``(mean(t20) - mean(t1)) / 19``.
"""

from __future__ import annotations

import statistics
from typing import Any

from .._bench import Bench
from .._common import now
from .._workflows import one_task_v1, twenty_tasks_v1

NAME = "steps"


async def run(bench: Bench) -> dict[str, Any]:
    n = bench.sizes.steps_runs
    bench.flush()
    t1: list[float] = []
    t20: list[float] = []
    async with bench.workers(1, tag="steps"):
        for i in range(max(3, bench.sizes.warmup // 4)):
            await bench.run_one(one_task_v1, i)
            await bench.run_one(twenty_tasks_v1, i)
        for i in range(n):
            start = now()
            await bench.run_one(one_task_v1, i)
            t1.append((now() - start) * 1000)
            start = now()
            await bench.run_one(twenty_tasks_v1, i)
            t20.append((now() - start) * 1000)
    mean1, mean20 = statistics.fmean(t1), statistics.fmean(t20)
    med1, med20 = statistics.median(t1), statistics.median(t20)
    return {
        "method": "(mean t20 - mean t1) / 19 over interleaved sequential runs",
        "n": n,
        "t1_mean_ms": round(mean1, 3),
        "t20_mean_ms": round(mean20, 3),
        "t1_median_ms": round(med1, 3),
        "t20_median_ms": round(med20, 3),
        "ms_per_step": round((mean20 - mean1) / 19, 3),
        "ms_per_step_from_medians": round((med20 - med1) / 19, 3),
    }
