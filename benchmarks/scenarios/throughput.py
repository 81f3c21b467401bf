"""Throughput: N one-task workflows started and completed, with 1 and with 2 worker processes.

The producer (this process) starts every run one after another, then waits for all of
them at once through the client's single run-ended listener. The clock runs from the
first start until the client has seen the last result. Workers are subprocesses with
``max_concurrent_workflow_runs=50``; they are started (and subscribed) before the clock
starts, and a warm-up of a few runs is not measured.

A third round, for information only (no target, not comparable to the peers, whose
producers enqueue one job after another): one worker, and the same runs started by 50
concurrent producer tasks (each starts its share one after another, then awaits it).
It shows how much of the one-producer figure is the producer's sequential start rate.

A fifth round runs the product's own command instead of the benchmark's worker
subprocesses: ``aiki worker --processes N`` with N = the usable cores (its default), a
supervisor and N worker children, same workflows, concurrency and block time. Its CPU
figure for the workers includes the supervisor's (it only relays their log lines).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import trio

from .._bench import Bench
from .._common import cpu_seconds, machine_busy_seconds, now, self_cpu_seconds
from .._workflows import one_task_v1

NAME = "throughput"


async def _produce(bench: Bench, n: int, producers: int) -> float:
    """Start and await ``n`` runs with ``producers`` concurrent producer tasks; returns
    the time until the last start (the slowest producer's)."""
    if producers == 1:
        return await bench.run_many(one_task_v1, list(range(n)))
    if producers == 0:  # one start_many call: all starts in one pipeline
        t0 = trio.current_time()
        handles = await one_task_v1.start_many(bench.client, list(range(n)))
        enqueue_s = trio.current_time() - t0
        async with trio.open_nursery() as nursery:
            for handle in handles:
                nursery.start_soon(handle.wait_for_completion, 300.0)
        return enqueue_s
    enqueued: list[float] = []

    async def producer(k: int) -> None:
        enqueued.append(await bench.run_many(one_task_v1, list(range(k, n, producers))))

    async with trio.open_nursery() as nursery:
        for k in range(producers):
            nursery.start_soon(producer, k)
    return max(enqueued)


def usable_cores() -> int:
    """What ``aiki worker`` runs by default: one process per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


async def _round(
    bench: Bench, workers: int, producers: int = 1, *, cli: bool = False
) -> dict[str, Any]:
    n = bench.sizes.throughput_runs
    bench.flush()
    processes: contextlib.AbstractAsyncContextManager[Any] = (
        bench.cli_workers(workers, tag=f"cli{workers}")
        if cli
        else bench.workers(workers, tag=f"t{workers}-{producers}-")
    )
    async with processes as children:
        await bench.run_many(one_task_v1, [f"warm-{i}" for i in range(bench.sizes.warmup)])
        bench.admin.command("CONFIG", "RESETSTAT")
        cpu0 = [c.cpu_seconds() for c in children]
        self0, redis0 = self_cpu_seconds(), cpu_seconds(bench.redis_pid)
        busy0 = machine_busy_seconds()
        t0 = now()
        enqueue_s = await _produce(bench, n, producers)
        seconds = now() - t0
        busy1 = machine_busy_seconds()
        self1, redis1 = self_cpu_seconds(), cpu_seconds(bench.redis_pid)
        cpu1 = [c.cpu_seconds() for c in children]
        stats = bench.admin.commandstats()
    worker_cpu = sum(cpu1) - sum(cpu0)
    ours = (self1 - self0) + worker_cpu + (redis1 - redis0)
    return {
        "n": n,
        "workers": workers,
        "via": f"aiki worker --processes {workers}" if cli else "benchmarks._worker_proc",
        "producers": producers,
        "concurrency_per_worker": bench.sizes.concurrency,
        "seconds": round(seconds, 3),
        "enqueue_s": round(enqueue_s, 3),
        "per_s": round(n / seconds, 1),
        # CPU spent per workflow in each process during the measured window.
        "cpu_ms_per_run": {
            "client_process": round((self1 - self0) * 1000 / n, 3),
            "workers": round(worker_cpu * 1000 / n, 3),
            "redis": round((redis1 - redis0) * 1000 / n, 3),
        },
        # Top-level commands only (a script cannot call EVALSHA or XREADGROUP): under
        # load XREADGROUP returns batches, so its share per run drops below one.
        # Cores kept busy by anything else on the machine during the window (another
        # job, the Aiki server's daemons): a high figure means a disturbed measurement.
        "other_cpu_cores": round(max(0.0, (busy1 - busy0) - ours) / seconds, 2),
        "evalsha_per_run": round(stats.get("evalsha", 0) / n, 3),
        "xreadgroup_per_run": round(stats.get("xreadgroup", 0) / n, 3),
    }


async def run(bench: Bench) -> dict[str, Any]:
    one = await _round(bench, 1)
    two = await _round(bench, 2)
    concurrent = await _round(bench, 1, producers=50)
    bulk = await _round(bench, 1, producers=0)
    cores = usable_cores()
    cli = await _round(bench, cores, cli=True)
    return {
        "method": "one-task workflows, producer starts all then awaits all; "
        "first start to last result seen by the client",
        "one_worker": one,
        "two_workers": two,
        "one_worker_50_producers": concurrent,
        "one_worker_start_many": bulk,
        "cli_n_processes": cli,
    }
