"""Latency: N one-task workflows one after another; client-observed start to result.

Each sample is the time from calling ``start`` until ``wait_for_completion`` returned
the result (the run-ended notification carries it). One worker subprocess, idle between
runs, blocked in ``XREADGROUP``.
"""

from __future__ import annotations

from typing import Any

from .._bench import Bench, BenchmarkError
from .._common import ms_stats, now
from .._workflows import one_task_v1

NAME = "latency"


async def run(bench: Bench) -> dict[str, Any]:
    n = bench.sizes.latency_runs
    bench.flush()
    async with bench.workers(1, tag="lat"):
        for i in range(bench.sizes.warmup):
            await bench.run_one(one_task_v1, i)
        samples: list[float] = []
        t0 = now()
        for i in range(n):
            t1 = now()
            result = await bench.run_one(one_task_v1, i)
            samples.append((now() - t1) * 1000)
            if result != i:
                raise BenchmarkError(f"run {i} returned {result!r}")
        seconds = now() - t0
    return {
        "method": "sequential one-task workflows, start() to wait_for_completion() result",
        "n": n,
        "seconds": round(seconds, 3),
        "per_s": round(n / seconds, 1),
        **ms_stats(samples),
        "max_ms": round(max(samples), 3),
    }
