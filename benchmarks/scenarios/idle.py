"""Idle: CPU used by a worker subprocess with nothing to do.

After the worker is subscribed and has settled for a second, its user + system CPU time
is read from ``/proc/PID/stat`` before and after the idle window (all its threads,
GLIDE's included; the kernel counts in ticks of 10 ms), and with ns precision from
``/proc/PID/task/*/schedstat``. The same is read for this process (an idle client and
its run-ended listener) and for Redis. Figures are CPU seconds per 10 s of idling; the
target uses the ``/proc/PID/stat`` figure the issue names.
"""

from __future__ import annotations

from typing import Any

import trio

from .._bench import Bench
from .._common import CLK_TCK, cpu_seconds, sched_cpu_seconds, self_cpu_seconds

NAME = "idle"


async def run(bench: Bench) -> dict[str, Any]:
    seconds = bench.sizes.idle_seconds
    bench.flush()
    async with bench.workers(1, tag="idle") as (worker,):
        await trio.sleep(1.0)
        w0, c0, r0 = worker.cpu_seconds(), self_cpu_seconds(), cpu_seconds(bench.redis_pid)
        s0 = sched_cpu_seconds(worker.pid)
        await trio.sleep(seconds)
        s1 = sched_cpu_seconds(worker.pid)
        w1, c1, r1 = worker.cpu_seconds(), self_cpu_seconds(), cpu_seconds(bench.redis_pid)
    scale = 10.0 / seconds
    precise = None if s0 is None or s1 is None else round((s1 - s0) * scale, 4)
    return {
        "method": "utime+stime from /proc/PID/stat over an idle window, per 10 s",
        "idle_seconds": seconds,
        "tick_s": 1 / CLK_TCK,
        "worker_cpu_s": round(w1 - w0, 3),
        "worker_cpu_s_per_10s": round((w1 - w0) * scale, 3),
        "worker_cpu_s_per_10s_schedstat": precise,
        "client_process_cpu_s_per_10s": round((c1 - c0) * scale, 3),
        "redis_cpu_s_per_10s": round((r1 - r0) * scale, 3),
    }
