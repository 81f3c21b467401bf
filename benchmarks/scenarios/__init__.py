"""The Aiki scenarios, in the order they run. Each module has ``NAME`` and ``run(bench)``."""

from __future__ import annotations

from . import idle, latency, memory, redis_clients, replay, roundtrips, steps, throughput

SCENARIOS = {
    m.NAME: m for m in (throughput, latency, steps, replay, idle, memory, roundtrips, redis_clients)
}

__all__ = ["SCENARIOS"]
