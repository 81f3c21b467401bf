"""Replay: resuming a run that has 100 recorded tasks.

``bench-replay-once`` runs 100 tasks and then raises on its first execution; its retry
policy (``aiki.Retry.fixed(2, 0.0)``) re-runs it at once, and the second execution
replays the 100 recorded tasks before completing. ``bench-hundred-tasks`` is the same
workflow without the failure. The figures:

* ``resume_ms`` (the target figure), measured inside the worker process (one worker,
  so both executions run in it; a monotonic clock): from the ``raise`` in the first
  execution until the second execution has got the 100th recorded result back. It
  covers recording the error, handing the run back to its stream (``park_run``),
  reading the message again (``XREADGROUP``), taking the run (``take_run``, which loads
  and decodes the 100 task records) and replaying them. Split into
  ``raise_to_entry_ms`` (everything up to entering the workflow function again) and
  ``replay_in_worker_ms`` (function entry to the 100th recorded result).
* ``client_observed_extra_ms``: mean client-observed time of the fail-once run minus
  that of the plain run (noisy: two ~30 ms figures subtracted).
* ``direct_load_ms`` + ``direct_replay_ms``: in this process, load a finished run with
  its task records (``client.get_run(..., with_tasks=True)``: one round trip, 100 JSON
  records decoded) and call the workflow function with a ``WorkflowContext`` built from
  them (nothing may be recorded).
"""

from __future__ import annotations

import statistics
from typing import Any

import aiki

from .._bench import Bench, BenchmarkError
from .._common import ms_stats, now
from .._workflows import REPLAY_TASKS, hundred_tasks_v1, replay_once_v1

NAME = "replay"


async def _refuse(address: str, record: dict[str, Any]) -> None:
    raise BenchmarkError(f"a replay of recorded tasks tried to record {address}")


async def _direct_replay(bench: Bench, run_id: str) -> tuple[float, float]:
    t0 = now()
    run = await bench.client.get_run(run_id, with_tasks=True)
    t1 = now()
    ctx = aiki.WorkflowContext(
        run_id=run.id,
        workflow=run.workflow,
        version=run.version,
        attempt=run.revision + 1,
        memo=dict(run.tasks or {}),
        record_task=_refuse,
    )
    result = await replay_once_v1.fn(ctx, run.payload)
    t2 = now()
    if ctx.replayed_tasks != REPLAY_TASKS or result.get("replayed_tasks") != REPLAY_TASKS:
        raise BenchmarkError(f"direct replay replayed {ctx.replayed_tasks} tasks")
    return (t1 - t0) * 1000, (t2 - t1) * 1000


async def run(bench: Bench) -> dict[str, Any]:
    n = bench.sizes.replay_runs
    bench.flush()
    plain: list[float] = []
    resumed: list[float] = []
    in_worker: list[float] = []
    to_entry: list[float] = []
    resume: list[float] = []
    last_id = ""
    async with bench.workers(1, tag="replay"):
        for i in range(2):
            await bench.run_one(hundred_tasks_v1, -1 - i)
            await bench.run_one(replay_once_v1, -1 - i)
        for i in range(n):
            t0 = now()
            await bench.run_one(hundred_tasks_v1, i)
            plain.append((now() - t0) * 1000)
            t0 = now()
            handle = await replay_once_v1.start(bench.client, i)
            result = await handle.wait_for_completion(timeout=60.0)
            resumed.append((now() - t0) * 1000)
            if result.get("replayed_tasks") != REPLAY_TASKS or result.get("executed_tasks"):
                raise BenchmarkError(f"second execution did not replay everything: {result}")
            in_worker.append(result["replay_ms"])
            if result.get("raise_to_replayed_ms") is None:
                raise BenchmarkError("the two executions did not run in the same worker")
            to_entry.append(result["raise_to_entry_ms"])
            resume.append(result["raise_to_replayed_ms"])
            last_id = handle.id
        direct = [await _direct_replay(bench, last_id) for _ in range(max(3, n))]
    extra = statistics.fmean(resumed) - statistics.fmean(plain)
    return {
        "method": "in the worker: raise in execution 1 -> 100th recorded result in execution 2",
        "n": n,
        "recorded_tasks": REPLAY_TASKS,
        "resume_ms": round(statistics.fmean(resume), 3),
        "resume": ms_stats(resume),
        "raise_to_entry_ms": round(statistics.fmean(to_entry), 3),
        "replay_in_worker_ms": round(statistics.fmean(in_worker), 3),
        "ms_per_replayed_step": round(statistics.fmean(in_worker) / REPLAY_TASKS, 4),
        "client_observed_extra_ms": round(extra, 3),
        "plain_run_mean_ms": round(statistics.fmean(plain), 3),
        "fail_once_run_mean_ms": round(statistics.fmean(resumed), 3),
        "direct_load_ms": round(statistics.median(d[0] for d in direct), 3),
        "direct_replay_ms": round(statistics.median(d[1] for d in direct), 3),
    }
