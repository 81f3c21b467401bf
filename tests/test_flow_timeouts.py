"""Task timeouts and heartbeats (docs/flow-control.md), on real worker processes.

Times are read from what the runs recorded (Redis clock, ms) and only bounded from
above by generous, counted margins: a 10 s task cancelled by a 1 s timeout three times
ends well before one of its sleeps would have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from workers.flow_worker import guarded_v1
from workers.processes import TESTS, worker_process

import aiki

FLOW_WORKER = TESTS / "workers" / "flow_worker.py"


async def _run(client: aiki.Client, payload: dict[str, Any]) -> tuple[Any, aiki.RunRecord]:
    handle = await guarded_v1.start(client, payload)
    result = await handle.wait_for_completion(timeout=60)
    run = await client.get_run(handle.id, with_tasks=True)
    return result, run


async def test_a_timeout_cancels_each_attempt_and_counts_under_the_retry_policy(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    async with worker_process(redis_url, "flow-t1", tmp_path, script=FLOW_WORKER):
        result, run = await _run(client, {"task": "flow-sleepy"})
    assert result["failed"] == "TaskTimeout"
    assert "timeout of 1 s" in result["message"]
    (record,) = run.tasks.values()
    assert record["status"] == "failed" and record["attempts"] == 3
    assert [e["type"] for e in record["errors"]] == ["TaskTimeout"] * 3
    # Three 10 s sleeps, each cancelled at about 1 s: far less than one whole sleep.
    assert run.ended_at - run.started_at < 8000


async def test_a_task_that_stops_heartbeating_is_retried_with_its_last_details(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    async with worker_process(redis_url, "flow-h1", tmp_path, script=FLOW_WORKER):
        result, run = await _run(client, {"task": "flow-silent"})
    assert result == {"attempt": 2, "resumed_from": {"done": 2}}
    (record,) = run.tasks.values()
    (error,) = record["errors"]
    assert error["type"] == "TaskTimeout" and "heartbeat" in error["message"]
    # Ended by the heartbeat deadline, not by its own 30 s sleep (a causal bound, not a
    # timing one: how soon after heartbeat_timeout is measured by the benchmarks).
    assert error["at"] - record["heartbeat"]["at"] < 30_000
    assert record["heartbeat"]["details"] == {"done": 2}


async def test_a_stuck_worker_loses_the_run_to_another_process(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    """The first worker blocks its event loop inside the task (it can cancel nothing);
    the deadline kept in Redis lets the second one take the run and retry the task."""
    async with worker_process(redis_url, "flow-stuck-1", tmp_path, "1", script=FLOW_WORKER):
        handle = await guarded_v1.start(client, {"task": "flow-stuck", "block": 6})
        # Wait until the first worker holds the run, then start a second one.
        for _ in range(200):
            run = await client.get_run(handle.id, with_tasks=True)
            if run.tasks and "heartbeat" in next(iter(run.tasks.values())):
                break
            await trio.sleep(0.05)
        async with worker_process(redis_url, "flow-stuck-2", tmp_path, script=FLOW_WORKER):
            result = await handle.wait_for_completion(timeout=60)
            run = await client.get_run(handle.id, with_tasks=True)
    assert result == {"attempt": 2, "resumed_from": {"step": "before blocking"}}
    assert run.worker == "flow-stuck-2"
    (record,) = run.tasks.values()
    (error,) = record["errors"]
    assert error["type"] == "TaskTimeout"
    # Reclaimed and retried while the first worker was still blocked (6 s): a causal
    # bound, not a timing one (it failed at 3.08 s under load when it said 3 s).
    assert error["at"] - record["heartbeat"]["at"] < 6000


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"heartbeat_timeout": "5"}, "heartbeat_timeout"),
    ],
)
def test_bad_timeouts_are_refused_at_definition(options: dict[str, Any], field: str) -> None:
    with pytest.raises(aiki.ConfigurationError, match=field) as caught:
        aiki.task("bad-timeout", **options)
    assert caught.value.field == field


# -- the last heartbeat is visible: API, CLI, dashboard -----------------------------------

visible = aiki.workflow("flow-visible-heartbeat")
RELEASE = trio.Event()


@aiki.task("flow-reporting", heartbeat_timeout=30.0)
async def reporting(payload: Any) -> Any:
    aiki.task_context().heartbeat({"rows": 1234, "note": "<b>half way</b>"})
    await RELEASE.wait()
    return "done"


@visible.v("1")
async def visible_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await reporting.start(ctx, payload)


async def test_the_last_heartbeat_shows_in_the_api_cli_and_dashboard(
    settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import httpx
    from test_server import HANG_GUARD, running_server, running_worker

    from aiki_server.cli._format import show_run

    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, visible),
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        handle = await visible_v1.start(client, {})
        for _ in range(400):
            run = (await http.get(f"/api/v1/runs/{handle.id}")).json()
            if run.get("tasks") and "heartbeat" in run["tasks"][0]:
                break
            await trio.sleep(0.05)
        (task,) = run["tasks"]
        assert task["status"] == "running"
        assert task["heartbeat"]["details"] == {"rows": 1234, "note": "<b>half way</b>"}
        page = (await http.get(f"/runs/{handle.id}", headers={"Accept": "text/html"})).text
        assert "Last heartbeat" in page and "&lt;b&gt;half way&lt;/b&gt;" in page
        show_run(run)
        assert "last heartbeat" in capsys.readouterr().out
        RELEASE.set()
        assert await handle.wait_for_completion(timeout=HANG_GUARD) == "done"
