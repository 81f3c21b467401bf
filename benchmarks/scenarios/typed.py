"""Typed: one-task throughput with plain JSON, with typed payloads (pydantic models in
and out of the workflow and its task), and with plain JSON under the encryption codec
(``aiki.codecs.Encryption``, producer and worker), side by side on one worker process.

The typed round pays for validation at the start (client), loading the payload and
the task input and dumping both results (worker), and loading the result (client).
The payload is a small order (an id and three items) in both rounds, so the difference
is the typing alone. Method as in ``throughput`` (start all, then await all).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

import aiki
from aiki.codecs import Encryption

from .._bench import Bench
from .._common import cpu_seconds, now, self_cpu_seconds
from .._workflows import BenchItem, BenchOrder, one_task_v1, typed_one_task_v1

NAME = "typed"


def _order(i: int | str) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "items": [{"sku": f"sku-{k}", "quantity": k + 1} for k in range(3)],
    }


def _model(i: int | str) -> BenchOrder:
    return BenchOrder(
        order_id=f"o-{i}", items=[BenchItem(sku=f"sku-{k}", quantity=k + 1) for k in range(3)]
    )


async def _round(bench: Bench, label: str) -> dict[str, Any]:
    n = bench.sizes.throughput_runs
    typed = label == "typed"
    wf = typed_one_task_v1 if typed else one_task_v1
    make = _model if typed else _order
    key = os.urandom(32)
    env = {**os.environ, "AIKI_BENCH_KEY": key.hex()} if label == "encrypted" else None
    bench.flush()
    async with contextlib.AsyncExitStack() as stack:
        if env is not None:  # producer and worker share the key; plain JSON payloads
            producer = await stack.enter_async_context(
                aiki.client(redis_url=bench.redis_url, codecs=[Encryption({1: key})])
            )
            bench = dataclasses.replace(bench, client=producer)
        children = await stack.enter_async_context(bench.workers(1, tag=f"typed-{label}-", env=env))
        await bench.run_many(wf, [make(f"warm-{i}") for i in range(bench.sizes.warmup)])
        cpu0 = [c.cpu_seconds() for c in children]
        self0, redis0 = self_cpu_seconds(), cpu_seconds(bench.redis_pid)
        t0 = now()
        await bench.run_many(wf, [make(i) for i in range(n)])
        seconds = now() - t0
        self1, redis1 = self_cpu_seconds(), cpu_seconds(bench.redis_pid)
        cpu1 = [c.cpu_seconds() for c in children]
    return {
        "n": n,
        "seconds": round(seconds, 3),
        "per_s": round(n / seconds, 1),
        "cpu_ms_per_run": {
            "client_process": round((self1 - self0) * 1000 / n, 3),
            "workers": round((sum(cpu1) - sum(cpu0)) * 1000 / n, 3),
            "redis": round((redis1 - redis0) * 1000 / n, 3),
        },
    }


async def run(bench: Bench) -> dict[str, Any]:
    rounds = {label: await _round(bench, label) for label in ("plain", "typed", "encrypted")}
    plain = rounds["plain"]["per_s"]
    return {
        "method": "one-task workflows on one worker, a small order payload; start all, "
        "then await all; plain JSON beside pydantic models in and out, and beside plain "
        "JSON under the AES-GCM codec (producer and worker)",
        **rounds,
        "typed_vs_plain": round(rounds["typed"]["per_s"] / plain, 3) if plain else None,
        "encrypted_vs_plain": round(rounds["encrypted"]["per_s"] / plain, 3) if plain else None,
    }
