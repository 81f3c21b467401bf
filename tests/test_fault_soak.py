"""Soak: three worker processes, one SIGKILLed and replaced every second, while runs of
five tasks go through. Every run completes with the results its payload implies, every
task record exists once, and no task ran again after its result was recorded.

Each execution of a task (``soak`` in ``tests/workers/fault_worker.py``) RPUSHes a unique
token to ``execs:<run>:<step>`` and its idempotency key to ``keys:<run>:<step>`` when it
starts, INCRs ``count:<run>:<step>`` just before returning, and returns its token in its
result. So after the soak:

* the recorded token is the LAST entry of ``execs``: no execution started after the one
  whose result was recorded;
* executions beyond the first are bounded by the kills: a kill interrupts at most
  ``concurrency`` tasks (each run executes one task at a time);
* every execution of a task saw the same idempotency key.

The short version runs in CI; the long one is marked ``slow``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from workers.fault_worker import SOAK_STEPS, soak_expected, soak_v1
from workers.processes import WorkerProcess, start_worker

import aiki

CONCURRENCY = 4
WORKERS = 3
KILL_EVERY = 1.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize(
    "n_runs",
    [pytest.param(60, id="short"), pytest.param(500, id="long", marks=pytest.mark.slow)],
)
async def test_soak_with_a_worker_sigkilled_every_second(
    redis_url: str, client: aiki.Client, tmp_path: Path, n_runs: int
) -> None:
    live: list[WorkerProcess] = []
    everyone: list[WorkerProcess] = []
    kills = 0
    generation = 0

    async def spawn() -> None:
        nonlocal generation
        name = f"soak-{generation}"
        generation += 1
        worker = await start_worker(redis_url, name, tmp_path, "--concurrency", str(CONCURRENCY))
        everyone.append(worker)
        live.append(worker)

    async def killer() -> None:
        nonlocal kills
        async with trio.open_nursery() as respawns:
            while True:
                await trio.sleep(KILL_EVERY)
                if not live:
                    continue
                victim = live.pop(0)  # the oldest: it has been working longest
                await victim.kill()
                kills += 1
                respawns.start_soon(spawn)

    payloads = [{"x": 1000 + 7 * i} for i in range(n_runs)]
    results: dict[str, Any] = {}
    try:
        for _ in range(WORKERS):
            await spawn()
        handles = [await soak_v1.start(client, p) for p in payloads]

        async def wait_one(handle: aiki.RunHandle) -> None:
            results[handle.id] = await handle.wait_for_completion(timeout=600)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(killer)
            async with trio.open_nursery() as waits:
                for handle in handles:
                    waits.start_soon(wait_one, handle)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for worker in everyone:
                await worker.aclose()

    assert kills >= 1
    # Every run completed with the results its payload implies.
    for handle, payload in zip(handles, payloads, strict=True):
        assert results[handle.id] == {"values": soak_expected(payload["x"])}

    # Read every run's record and every side effect in a few batches.
    store = client.store
    runs = {h.id: await client.get_run(h.id, with_tasks=True) for h in handles}
    commands: list[list[Any]] = []
    for run_id in runs:
        for step in range(1, SOAK_STEPS + 1):
            base = f"{run_id}:{step}"
            commands += [
                ["LRANGE", f"execs:{base}", "0", "-1"],
                ["LRANGE", f"keys:{base}", "0", "-1"],
                ["GET", f"count:{base}"],
            ]
    replies: list[Any] = []
    for i in range(0, len(commands), 3000):
        replies += await store.redis.batch(commands[i : i + 3000])

    extra_starts = extra_completions = 0
    reply = iter(replies)
    all_keys: set[str] = set()
    for run_id, run in runs.items():
        assert run.status == "completed"
        assert run.tasks is not None and len(run.tasks) == SOAK_STEPS
        by_step = {r["input"]["step"]: (address, r) for address, r in run.tasks.items()}
        assert sorted(by_step) == list(range(1, SOAK_STEPS + 1))
        expected = soak_expected(run.payload["x"])
        x = run.payload["x"]
        for step in range(1, SOAK_STEPS + 1):
            address, record = by_step[step]
            execs = [_text(t) for t in next(reply)]
            keys = [_text(k) for k in next(reply)]
            count = int(next(reply) or 0)
            # The record: once, completed, consistent with its input and the run's result.
            assert record["task"] == "soak-step" and record["status"] == "completed"
            assert record["input"] == {"x": x, "step": step}
            assert record["result"]["value"] == expected[step - 1]
            x = expected[step - 1]
            # No execution started after the one whose result was recorded.
            assert execs and execs[-1] == record["result"]["token"], (run_id, step, execs)
            assert len(set(execs)) == len(execs)
            # Executed at least once to the end; every execution saw the same key.
            assert count >= 1 and len(execs) >= count
            assert keys == [f"{run_id}:{address}"] * len(execs)
            all_keys.add(keys[0])
            extra_starts += len(execs) - 1
            extra_completions += count - 1

    # Shown when an assertion below fails.
    print(f"soak: {n_runs} runs, {kills} kills, extra executions: {extra_starts} started,")
    print(f"      {extra_completions} completed without their result recorded")
    # Each kill interrupts at most CONCURRENCY tasks, each of which then runs once more.
    assert extra_completions <= kills * CONCURRENCY
    assert extra_starts <= kills * CONCURRENCY, (extra_starts, kills)
    assert len(all_keys) == n_runs * SOAK_STEPS  # keys differ between tasks and runs

    # Nothing left behind: every message acked and deleted, no dead letters.
    stream = store.keys.stream("soak", "1")
    pending = await store.redis.command("XPENDING", stream, "aiki-workers")
    assert int(pending[0]) == 0
    assert int(await store.redis.command("XLEN", stream)) == 0
    assert int(await store.redis.command("XLEN", store.keys.dead_letters)) == 0
