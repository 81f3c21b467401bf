"""Concurrency keys across real worker processes (the acceptance tests of
docs/flow-control.md#concurrency-keys).

Executions log their start and end to one Redis list (``tests/workers/
concurrency_worker.py``). An execution logs its end before its run's end is recorded,
and a run admitted after it logs its start after that, so the list's ORDER shows which
executions overlapped: the checks count, never time. (How long the whole takes against
the busiest key's serial time is a benchmark: ``benchmarks/scenarios/concurrency.py``.)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import urlparse

from _helpers import wait_until
from _resp import acommand
from workers.concurrency_worker import global_three_v1, per_key_v1
from workers.processes import TESTS, worker_process

import aiki
from aiki._store import Keys, shard_of

CONCURRENCY_WORKER = TESTS / "workers" / "concurrency_worker.py"


async def _log(redis_url: str) -> list[tuple[str, str, str]]:
    """The executions' log, in order: (start|end, run id, key)."""
    raw = await acommand(urlparse(redis_url).port, "LRANGE", "executions", "0", "-1")
    out = []
    for item in raw:
        what, _at, run_id, key = item.decode().split()
        out.append((what, run_id, key))
    return out


def most_at_once(log: list[tuple[str, str, str]], key: str | None = None) -> int:
    """The most executions (of ``key``, or of any) that had started and not ended at one
    point of the log."""
    running: set[str] = set()
    most = 0
    for what, run_id, k in log:
        if key is not None and k != key:
            continue
        if what == "start":
            running.add(run_id)
        else:
            running.discard(run_id)
        most = max(most, len(running))
    return most


async def _leftover_keys(redis_url: str) -> list[bytes]:
    """Concurrency holders or waiting lists still in Redis (none once every run ended)."""
    return await acommand(urlparse(redis_url).port, "KEYS", "aiki:*concurrency*")


async def test_sixty_runs_over_six_keys_on_three_workers_never_overlap_per_key(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for n in range(3):
            await stack.enter_async_context(
                worker_process(redis_url, f"conc-{n}", tmp_path, script=CONCURRENCY_WORKER)
            )
        payloads = [{"key": f"k{i % 6}", "n": i, "seconds": 0.05} for i in range(60)]
        handles = await per_key_v1.start_many(client, payloads)
        results = [await h.wait_for_completion(timeout=120) for h in handles]
    assert results == list(range(60))
    log = await _log(redis_url)
    assert len(log) == 120  # one execution per run, each logged start and end
    for k in range(6):
        assert most_at_once(log, f"k{k}") == 1, f"two runs of k{k} overlapped"
    assert most_at_once(log) > 1  # keys went side by side: the limit is per key
    assert await _leftover_keys(redis_url) == []


async def test_a_global_limit_of_three_on_three_workers_with_ten_slots_each(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        for n in range(3):
            await stack.enter_async_context(
                worker_process(redis_url, f"conc-g{n}", tmp_path, "10", script=CONCURRENCY_WORKER)
            )
        handles = await global_three_v1.start_many(
            client, [{"n": i, "seconds": 0.05} for i in range(30)]
        )
        results = [await h.wait_for_completion(timeout=120) for h in handles]
    assert results == list(range(30))
    log = await _log(redis_url)
    assert len(log) == 60
    assert most_at_once(log) == 3  # never more than 3 running (and 3 did run at once)
    assert await _leftover_keys(redis_url) == []


async def test_a_killed_worker_leaks_no_slot_and_counts_none_twice(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    """kill -9 a worker while it executes the holder of a key: another worker claims the
    run (stream claim), finishes it, and the key's next run is admitted then."""
    port = urlparse(redis_url).port
    claim = "1.0"  # claim_min_idle_time: the survivor claims the dead worker's run fast
    async with worker_process(
        redis_url, "conc-victim", tmp_path, "10", claim, script=CONCURRENCY_WORKER
    ) as victim:
        holder = await per_key_v1.start(client, {"key": "crash", "n": 1, "hang_once": True})
        waiter = await per_key_v1.start(client, {"key": "crash", "n": 2})

        async def hanging() -> bool:
            return (await holder.describe()).worker == "conc-victim" and bool(
                await acommand(port, "EXISTS", f"hung:{holder.id}")
            )

        await wait_until(hanging, what="the victim executes the holder")
        assert await waiter.status() == "awaiting_concurrency"
        await victim.kill()
    holders_key = Keys().concurrency("conc-per-key", "1", "crash", shard_of(holder.id))
    async with worker_process(
        redis_url, "conc-survivor", tmp_path, "10", claim, script=CONCURRENCY_WORKER
    ):
        seen: list[int] = []

        async def both_done() -> bool:
            seen.append(await acommand(port, "SCARD", holders_key))
            return await waiter.status() == "completed"

        await wait_until(both_done, timeout=60, what="the claimed holder, then the waiter")
        assert await holder.wait_for_completion(timeout=5) == 1
        assert await waiter.wait_for_completion(timeout=5) == 2
    assert max(seen) <= 1  # the claim did not take a second slot
    log = await _log(redis_url)
    # The victim's execution started and never ended; the survivor's re-execution of
    # the holder ended before the waiter's execution started.
    assert [(w, r) for w, r, _ in log] == [
        ("start", holder.id),
        ("start", holder.id),
        ("end", holder.id),
        ("start", waiter.id),
        ("end", waiter.id),
    ]
    assert await _leftover_keys(redis_url) == []
