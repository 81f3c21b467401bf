"""A worker frozen with SIGSTOP past ``claim_min_idle_time`` loses its runs for good.

Another worker takes the runs over and finishes them; when the frozen worker is resumed
(SIGCONT) its late writes are refused by the fence (the run's revision), it abandons
those executions quietly, keeps running, and the runs' recorded outcome never changes.
Real processes, real signals, real Redis.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import trio
from _helpers import FAST_CLAIM, wait_until
from _resp import acommand
from workers.fault_worker import stale_before_finish, stale_in_task
from workers.processes import start_worker, worker_process

import aiki


async def snapshot(client: aiki.Client, run_id: str) -> dict[str, Any]:
    """Everything the run records (minus nothing): compared before and after SIGCONT."""
    run = await client.get_run(run_id, with_tasks=True)
    return {
        "status": run.status,
        "result": run.result,
        "error": run.error,
        "revision": run.revision,
        "attempts": run.attempts,
        "worker": run.worker,
        "ended_at": run.ended_at,
        "updated_at": run.updated_at,
        "tasks": run.tasks,
    }


async def entries(port: int, key: str) -> list[str]:
    return [v.decode() for v in await acommand(port, "LRANGE", key, 0, -1)]


async def test_sigstopped_worker_late_writes_are_refused(
    redis_url: str, redis_port: int, client: aiki.Client, tmp_path: Path
) -> None:
    """Acceptance 2. Worker A holds two runs when it is frozen: one inside a task, one
    between its last recorded task and the run's finish. Worker B takes both over and
    finishes them. Resumed, A tries its late writes — the task record of the first run,
    the finish of the second — and both are refused as STALE.

    A is configured so that it cannot notice the takeover before it writes (heartbeat
    every 30 s, its own claims after 60 s): that makes its late writes certain to reach
    Redis, so this test exercises the fence itself rather than the heartbeat's early
    detection (see the next test for that). B claims after ``FAST_CLAIM`` idle."""
    stale_a = await start_worker(
        redis_url, "stale-a", tmp_path, "--claim", "60", "--heartbeat", "30"
    )
    try:
        in_task = await stale_in_task.start(client, {"hold": "stale-a"})
        before_finish = await stale_before_finish.start(client, {"hold": "stale-a"})

        async def a_holds_both() -> bool:
            return await entries(redis_port, f"entered:{in_task.id}") == ["stale-a"] and (
                await entries(redis_port, f"held:{before_finish.id}") == ["stale-a"]
            )

        await wait_until(a_holds_both, timeout=30, what="worker A holding both runs")
        for handle in (in_task, before_finish):
            run = await client.get_run(handle.id)
            assert (run.status, run.worker, run.attempts) == ("running", "stale-a", 1)

        stale_a.send_signal(signal.SIGSTOP)

        async with worker_process(redis_url, "stale-b", tmp_path) as stale_b:
            first = await in_task.wait_for_completion(timeout=30)
            second = await before_finish.wait_for_completion(timeout=30)
            assert stale_b.alive

        # B recorded both outcomes; the before-finish run replays the task A recorded.
        assert first == {"task": "stale-b", "finisher": "stale-b"}
        assert second == {"task": "stale-a", "finisher": "stale-b"}
        assert await entries(redis_port, f"entered:{in_task.id}") == ["stale-a", "stale-b"]
        assert await entries(redis_port, f"entered:{before_finish.id}") == ["stale-a"]
        recorded = {h.id: await snapshot(client, h.id) for h in (in_task, before_finish)}
        for state in recorded.values():
            assert (state["status"], state["worker"], state["attempts"]) == (
                "completed",
                "stale-b",
                2,
            )

        # Let A go on: it finds its releases at once and tries to write.
        for handle in (in_task, before_finish):
            await acommand(redis_port, "SET", f"release:{handle.id}", "1")
        stale_a.send_signal(signal.SIGCONT)

        def a_gave_up_both() -> bool:
            log = stale_a.log()
            return all(f"lost run {h.id} (STALE" in log for h in (in_task, before_finish))

        await wait_until(a_gave_up_both, timeout=30, what="worker A logging both STALE refusals")
        log = stale_a.log()
        assert "Traceback" not in log
        assert stale_a.alive

        # The refused writes changed nothing, then or since.
        for handle in (in_task, before_finish):
            assert await snapshot(client, handle.id) == recorded[handle.id]
        assert await in_task.wait_for_completion(timeout=5) == first
        assert await before_finish.wait_for_completion(timeout=5) == second

        # And A still works: alone now, it executes and finishes a fresh run.
        fresh = await stale_in_task.start(client, {"hold": None})
        assert await fresh.wait_for_completion(timeout=30) == {
            "task": "stale-a",
            "finisher": "stale-a",
        }
        assert stale_a.alive
        for handle in (in_task, before_finish):
            assert await snapshot(client, handle.id) == recorded[handle.id]
    finally:
        await stale_a.aclose()


async def test_sigstopped_worker_notices_takeover_and_abandons(
    redis_url: str, redis_port: int, client: aiki.Client, tmp_path: Path
) -> None:
    """Acceptance 2 with default timing (heartbeat every claim_min_idle_time / 4): the
    resumed worker finds out it lost the run (its heartbeat sees the message owned by
    someone else or gone, or its task record is refused) and abandons the execution; the
    run keeps the second worker's result."""
    async with worker_process(redis_url, "stale-a", tmp_path) as stale_a:
        handle = await stale_in_task.start(client, {"hold": "stale-a"})

        async def a_inside_task() -> bool:
            return await entries(redis_port, f"entered:{handle.id}") == ["stale-a"]

        await wait_until(a_inside_task, timeout=30, what="worker A inside the task")
        # A heartbeats its message: nobody can take it while A is alive and well.
        await trio.sleep(FAST_CLAIM * 1.5)
        run = await client.get_run(handle.id)
        assert (run.status, run.worker, run.attempts) == ("running", "stale-a", 1)

        stale_a.send_signal(signal.SIGSTOP)
        async with worker_process(redis_url, "stale-b", tmp_path):
            result = await handle.wait_for_completion(timeout=30)
        assert result == {"task": "stale-b", "finisher": "stale-b"}
        recorded = await snapshot(client, handle.id)
        assert (recorded["status"], recorded["worker"]) == ("completed", "stale-b")

        await acommand(redis_port, "SET", f"release:{handle.id}", "1")
        stale_a.send_signal(signal.SIGCONT)

        def a_abandoned() -> bool:
            log = stale_a.log()
            return f"lost run {handle.id}" in log or "to another worker; abandoning" in log

        await wait_until(a_abandoned, timeout=30, what="worker A abandoning the run")
        # Give A's loops another round (heartbeat, claim) to do anything they would do.
        await trio.sleep(FAST_CLAIM)
        assert stale_a.alive
        assert "Traceback" not in stale_a.log()
        assert await snapshot(client, handle.id) == recorded
        assert await entries(redis_port, f"entered:{handle.id}") == ["stale-a", "stale-b"]
