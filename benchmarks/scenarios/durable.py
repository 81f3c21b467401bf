"""Durable: the cost of ``durability="fsync"`` (acknowledged writes wait for WAITAOF).

The suite's shared Redis keeps nothing on disk, so this scenario runs its own private
Redis with the AOF on (``appendonly yes``, ``appendfsync everysec``; a server binary that
has WAITAOF: the bundled Valkey when the one on PATH is older), and measures on it, with
durability ``none`` and then ``fsync`` (the client in this process and the worker
subprocess alike, through ``AIKI_DURABILITY``):

* throughput: N one-task workflows started one after another (at most 500: each start
  waits for an fsync), then awaited; first start to last result (as the ``throughput``
  scenario, one worker) — and the suite's N with 50 concurrent producers, where
  concurrent writers share each WAITAOF;
* latency: sequential one-task workflows, start to result.

Then the same with ``appendfsync always`` and durability ``none``: the other way to make
acknowledged writes durable (every write of Redis fsynced before its reply).

``waitaof_per_run`` counts the WAITAOF commands Redis answered per workflow (each covers
every write made before it; a one-task run has three acknowledged writes in the worker
and client: its start, its task's record and its end, plus the wait's own check).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

import aiki
from aiki.embedded import find_redis_server, open_embedded_redis

from .._bench import Bench, BenchmarkError
from .._common import ms_stats, now
from .._procs import worker_processes
from .._resp import Resp
from .._workflows import one_task_v1

NAME = "durable"

# The sequential producer's run count (at most): each of its starts waits for an fsync.
SEQUENTIAL_RUNS = 500


@contextlib.asynccontextmanager
async def _setup(
    url: str, durability: str, bench: Bench
) -> AsyncIterator[tuple[aiki.Client, Resp]]:
    admin = Resp.from_url(url)
    try:
        admin.command("FLUSHALL")
        async with (
            aiki.client(redis_url=url, durability=durability) as client,
            worker_processes(
                url,
                1,
                bench.log_dir,
                concurrency=bench.sizes.concurrency,
                tag=f"d-{durability}-",
                env={"AIKI_DURABILITY": durability},
            ),
        ):
            yield client, admin
    finally:
        admin.close()


async def _throughput(client: aiki.Client, admin: Resp, n: int, producers: int) -> dict[str, Any]:
    admin.command("CONFIG", "RESETSTAT")
    wrong: list[Any] = []
    starts: list[float] = []

    async def produce(k: int) -> None:
        payloads = list(range(k, n, producers))
        t1 = now()
        handles = [await one_task_v1.start(client, p) for p in payloads]
        starts.append(now() - t1)
        for handle, p in zip(handles, payloads, strict=True):
            if await handle.wait_for_completion(timeout=300.0) != p:
                wrong.append(p)

    t0 = now()
    async with trio.open_nursery() as nursery:
        for k in range(producers):
            nursery.start_soon(produce, k)
    seconds = now() - t0
    if wrong:
        raise BenchmarkError(f"{len(wrong)} runs returned wrong results")
    stats = admin.commandstats()
    return {
        "n": n,
        "producers": producers,
        "seconds": round(seconds, 3),
        "enqueue_s": round(max(starts), 3),
        "per_s": round(n / seconds, 1),
        "waitaof_per_run": round(stats.get("waitaof", 0) / n, 3),
    }


async def _latency(client: aiki.Client, n: int) -> dict[str, Any]:
    samples: list[float] = []
    for i in range(n):
        t1 = now()
        handle = await one_task_v1.start(client, i)
        if await handle.wait_for_completion(timeout=60.0) != i:
            raise BenchmarkError(f"run {i} returned a wrong result")
        samples.append((now() - t1) * 1000)
    return {"n": n, **ms_stats(samples), "max_ms": round(max(samples), 3)}


async def _measure(url: str, durability: str, bench: Bench) -> dict[str, Any]:
    sizes = bench.sizes
    # One sequential producer waits for each start's fsync in turn: fewer runs there.
    sequential = min(sizes.throughput_runs, SEQUENTIAL_RUNS)
    async with _setup(url, durability, bench) as (client, admin):
        for i in range(sizes.warmup):  # connections, scripts, the worker's first reads
            await (await one_task_v1.start(client, f"warm-{i}")).wait_for_completion(60.0)
        return {
            "throughput": await _throughput(client, admin, sequential, 1),
            "throughput_50_producers": await _throughput(client, admin, sizes.throughput_runs, 50),
            "latency": await _latency(client, sizes.latency_runs),
        }


async def _on_redis(
    bench: Bench, binary: str, appendfsync: str, durability: str
) -> tuple[dict[str, Any], dict[str, str]]:
    data_dir = Path(bench.log_dir) / f"durable-redis-{appendfsync}"
    async with open_embedded_redis(
        data_dir=data_dir, binary=binary, appendonly=True, appendfsync=appendfsync
    ) as redis:
        admin = Resp.from_url(redis.url)
        try:
            info = admin.info("server")
        finally:
            admin.close()
        return await _measure(redis.url, durability, bench), info


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


async def run(bench: Bench) -> dict[str, Any]:
    binary = find_redis_server(waitaof=True)
    none, info = await _on_redis(bench, binary, "everysec", "none")
    fsync, _ = await _on_redis(bench, binary, "everysec", "fsync")
    always, _ = await _on_redis(bench, binary, "always", "none")
    return {
        "method": "one-task workflows on a private Redis with appendonly yes: appendfsync "
        "everysec with durability none, then fsync (client and worker); then appendfsync "
        "always with durability none, for comparison",
        "redis": {
            "binary": binary,
            "version": info.get("valkey_version") or info.get("redis_version"),
            "server": "valkey" if "valkey_version" in info else "redis",
        },
        "everysec_none": none,
        "everysec_fsync": fsync,
        "always_none": always,
        "fsync_vs_none": {
            "throughput": _ratio(fsync["throughput"]["per_s"], none["throughput"]["per_s"]),
            "throughput_50_producers": _ratio(
                fsync["throughput_50_producers"]["per_s"],
                none["throughput_50_producers"]["per_s"],
            ),
            "latency_p50": _ratio(fsync["latency"]["p50_ms"], none["latency"]["p50_ms"]),
        },
    }
