"""The Aiki scenarios, in the order they run. Each module has ``NAME`` and ``run(bench)``."""

from __future__ import annotations

from . import (
    concurrency,
    durable,
    flow_timeouts,
    idle,
    latency,
    memory,
    redis_clients,
    replay,
    roundtrips,
    search,
    steps,
    throughput,
    typed,
)

SCENARIOS = {
    m.NAME: m
    for m in (
        throughput,
        latency,
        steps,
        replay,
        idle,
        memory,
        roundtrips,
        redis_clients,
        durable,
        typed,
        search,
        concurrency,
        flow_timeouts,
    )
}

__all__ = ["SCENARIOS"]
