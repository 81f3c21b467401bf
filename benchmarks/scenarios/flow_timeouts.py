"""Flow timeouts (#17): how soon a task timeout and a lost heartbeat take effect.

One worker subprocess serves ``bench-flow-timeouts`` (``AIKI_BENCH_WORKFLOWS=flow``).
Runs of two kinds start together:

* ``timeout``: a task with ``timeout=1`` that sleeps 10 s, retried twice at once
  (``Retry.fixed(3, 0)``): three attempts, each cancelled by its timeout.
  ``timeout_s_per_attempt`` = the longest attempt, from the task record (Redis's clock:
  the last attempt's start to end, and the gaps between the attempts' failure times):
  the goal is "cancelled at about 1 s".
* ``heartbeat``: a task with ``heartbeat_timeout=1`` whose first attempt heartbeats once
  and then goes silent (sleeps 30 s); the second attempt returns.
  ``heartbeat_retry_s`` = the first attempt's failure time - its last heartbeat: the
  goal is "retried within heartbeat_timeout + 2 s" (<= 3 s).

The worker's own deadline (the attempt's cancel scope) is what acts here; a stuck
worker is covered by ``tests/test_flow_timeouts.py`` (another process reclaims the run).
"""

from __future__ import annotations

from typing import Any

import trio

from .._bench import Bench, BenchmarkError
from .._workflows import flow_timeouts_v1

NAME = "flow_timeouts"
ENV = {"AIKI_BENCH_WORKFLOWS": "flow"}


async def run(bench: Bench) -> dict[str, Any]:
    n = 1 if bench.quick else 5
    bench.flush()
    async with bench.workers(1, tag="flow", env=ENV):
        handles = [
            await flow_timeouts_v1.start(bench.client, {"kind": kind, "i": i})
            for i in range(n)
            for kind in ("timeout", "heartbeat")
        ]
        with trio.fail_after(120):
            results = [await h.wait_for_completion(timeout=120) for h in handles]
        runs = [await bench.client.get_run(h.id, with_tasks=True) for h in handles]
    per_attempt: list[float] = []
    retry_after: list[float] = []
    for handle, result, run_ in zip(handles, results, runs, strict=True):
        (record,) = (run_.tasks or {}).values()
        if result == {"failed": "TaskTimeout"}:
            # The record's start/end are its last attempt's; the attempts before it
            # ended one timeout apart (retried at once): their failure times' gaps.
            at = [e["at"] for e in record["errors"]]
            spans = [record["ended_at"] - record["started_at"]]
            spans += [b - a for a, b in zip(at, at[1:], strict=False)]
            per_attempt.append(max(spans) / 1000)
        elif isinstance(result, dict) and result.get("kind") == "heartbeat":
            (error,) = record["errors"]
            retry_after.append((error["at"] - record["heartbeat"]["at"]) / 1000)
        else:
            raise BenchmarkError(f"run {handle.id} ended {result!r}")
    return {
        "n": n,
        "timeout_s_per_attempt": max(per_attempt),
        "timeout_s_per_attempt_all": per_attempt,
        "heartbeat_retry_s": max(retry_after),
        "heartbeat_retry_s_all": retry_after,
    }
