"""Redis clients side by side: native (trio sockets + hiredis), valkey-glide and redis-py
through trio-asyncio.

For each implementation of Aiki's Redis module:

* ``cpu_us_per_call``: this process's CPU time per ``GET`` through Aiki's own interface
  (``aiki._redis.connect(url, implementation=...)``), 50 concurrent trio tasks x 200 calls;
  ``ops_per_s`` from the same window.
* ``workflows_per_s``: one-task workflow throughput with the client AND a worker process
  both on that implementation (the worker via ``AIKI_REDIS_CLIENT``), measured like the
  throughput scenario (start all, then await all; half its run count).
"""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki._redis import connect, open_asyncio_bridge

from .._bench import Bench
from .._common import now, self_cpu_seconds
from .._workflows import one_task_v1

NAME = "redis_clients"
IMPLEMENTATIONS = ("native", "glide", "redis-py")


async def _per_call(url: str, implementation: str, tasks: int, calls: int) -> dict[str, Any]:
    async with open_asyncio_bridge(implementation):
        redis = await connect(url, implementation=implementation)
        try:
            await redis.command("SET", "bench:redis-clients", "x" * 100)

            async def one() -> None:
                for _ in range(calls):
                    await redis.command("GET", "bench:redis-clients")

            cpu0, t0 = self_cpu_seconds(), now()
            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(one)
            seconds, cpu = now() - t0, self_cpu_seconds() - cpu0
        finally:
            await redis.aclose()
    n = tasks * calls
    return {"cpu_us_per_call": round(cpu / n * 1e6, 1), "ops_per_s": round(n / seconds)}


async def _throughput(bench: Bench, implementation: str, n: int) -> dict[str, Any]:
    bench.flush()
    env = {"AIKI_REDIS_CLIENT": implementation}
    async with (
        bench.workers(1, tag=f"rc-{implementation}-", env=env),
        aiki.client(redis_url=bench.redis_url, redis_client=implementation) as client,
    ):
        for i in range(bench.sizes.warmup):
            await (await one_task_v1.start(client, f"warm-{i}")).wait_for_completion(60)
        t0 = now()
        handles = [await one_task_v1.start(client, i) for i in range(n)]
        async with trio.open_nursery() as nursery:
            for handle in handles:
                nursery.start_soon(handle.wait_for_completion, 120.0)
        seconds = now() - t0
    return {"n": n, "seconds": round(seconds, 3), "workflows_per_s": round(n / seconds, 1)}


async def run(bench: Bench) -> dict[str, Any]:
    calls = 40 if bench.quick else 200
    n = max(20, bench.sizes.throughput_runs // 2)
    out: dict[str, Any] = {"method": __doc__.split("\n\n", 1)[1].strip()}
    for implementation in IMPLEMENTATIONS:
        out[implementation] = {
            **await _per_call(bench.redis_url, implementation, 50, calls),
            **await _throughput(bench, implementation, n),
        }
    return out
