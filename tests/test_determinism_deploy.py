"""Issue #20 acceptance: a deploy that changes the code under a run in flight.

Real worker processes on a private Redis (``tests/workers/deploy_flows.py``): worker A
runs the old code up to the durable sleep and is stopped; worker B, with the changed
code, replays the run after the sleep is woken.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import TESTS, wait_until
from _resp import acommand
from workers import processes
from workers.deploy_flows import build

import aiki

DEPLOY_WORKER = TESTS / "workers" / "deploy_flows.py"


async def counts(port: int) -> dict[str, int]:
    out = {}
    for name in ("a", "b", "c"):
        value = await acommand(port, "GET", f"count:{name}")
        out[name] = int(value) if value is not None else 0
    return out


async def sleeping(handle: aiki.RunHandle) -> bool:
    return await handle.status() == "sleeping"


async def run_old_code_to_the_sleep(
    client: aiki.Client, url: str, tmp_path: Path, how_many: int = 1
) -> list[aiki.RunHandle]:
    """Worker A (old code) takes runs up to their sleep, then stops."""
    version = build("old").get_version("1")
    assert version is not None
    async with processes.worker_process(url, "worker-old", tmp_path, "old", script=DEPLOY_WORKER):
        handles = [await version.start(client, {"x": 10 + i}) for i in range(how_many)]
        for handle in handles:
            await wait_until(lambda h=handle: sleeping(h), timeout=30, what="run asleep")
    return handles


async def test_swapped_tasks_end_the_run_with_non_determinism_error_and_no_task_reruns(
    redis_url: str, redis_port: int, client: aiki.Client, tmp_path: Path
) -> None:
    (handle,) = await run_old_code_to_the_sleep(client, redis_url, tmp_path)
    assert await counts(redis_port) == {"a": 1, "b": 1, "c": 0}
    async with processes.worker_process(
        redis_url, "worker-new", tmp_path, "swapped", script=DEPLOY_WORKER
    ):
        assert await handle.wakeup("pause") == 1
        with pytest.raises(aiki.WorkflowFailed) as caught:
            await handle.wait_for_completion(timeout=30)
    assert caught.value.error_type == "NonDeterminismError"
    message = caught.value.error_message
    # The position, the recorded step and the requested one are named.
    assert "step 1" in message, message
    assert "the run recorded task 'a'" in message, message
    assert "asks for task 'b'" in message, message
    # Neither task ran again (nor did anything after them).
    assert await counts(redis_port) == {"a": 1, "b": 1, "c": 0}
    run = await client.get_run(handle.id, with_tasks=True)
    assert run is not None and run.status == "failed"
    assert sorted(r.get("task", r.get("kind")) for r in (run.tasks or {}).values()) == [
        "a",
        "b",
        "sleep",
    ]


async def test_patched_code_completes_the_old_run_and_a_new_run(
    redis_url: str, redis_port: int, client: aiki.Client, tmp_path: Path
) -> None:
    (old_run,) = await run_old_code_to_the_sleep(client, redis_url, tmp_path)
    version = build("patched").get_version("1")
    assert version is not None
    async with processes.worker_process(
        redis_url, "worker-patched", tmp_path, "patched", script=DEPLOY_WORKER
    ):
        new_run = await version.start(client, {"x": 20})
        await wait_until(lambda: sleeping(new_run), timeout=30, what="new run asleep")
        for handle in (old_run, new_run):
            assert await handle.wakeup("pause") == 1
        assert await old_run.wait_for_completion(timeout=30) == {"sum": 11 + 20}
        assert await new_run.wait_for_completion(timeout=30) == {"sum": 21 + 40}
    # Old run: a, b before the deploy, c after it; new run: b, a, c. Nothing twice.
    assert await counts(redis_port) == {"a": 2, "b": 2, "c": 2}
    new = await client.get_run(new_run.id, with_tasks=True)
    assert new is not None and new.tasks is not None
    order = sorted(new.tasks.values(), key=lambda r: r["seq"])
    assert [r.get("task", r.get("kind")) for r in order] == ["b", "a", "sleep", "c"]
    assert order[0]["patches"] == ["swap-a-b"]  # the patch rides on the first new step
    old = await client.get_run(old_run.id, with_tasks=True)
    assert old is not None and old.tasks is not None
    assert not any("patches" in r for r in old.tasks.values())
