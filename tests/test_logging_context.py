"""Log records from workflow executions carry run id, workflow, version and task address."""

from __future__ import annotations

import io
import json
import logging

from _helpers import running_worker

import aiki
from aiki_server._logging import setup_logging

task_log = logging.getLogger("user.tasks")


@aiki.task("log-something")
async def log_something(payload: str) -> str:
    task_log.info("charging %s", payload)
    return payload


logged = aiki.workflow("logged")


@logged.v("1")
async def logged_v1(ctx: aiki.WorkflowContext, payload: str) -> str:
    task_log.info("before the task")
    return await log_something.start(ctx, payload)


async def test_json_logs_carry_the_run_context(client: aiki.Client) -> None:
    stream = io.StringIO()
    handler = setup_logging("info", "json", stream)
    try:
        async with running_worker(client, logged):
            handle = await logged_v1.start(client, "card-1")
            await handle.wait_for_completion(timeout=20)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_message = {line["message"]: line for line in lines}
    in_workflow = by_message["before the task"]
    assert (in_workflow["run_id"], in_workflow["workflow"], in_workflow["version"]) == (
        handle.id,
        "logged",
        "1",
    )
    assert "task" not in in_workflow
    in_task = by_message["charging card-1"]
    assert in_task["run_id"] == handle.id
    assert in_task["task"].startswith("log-something:")
    outside = [
        line for line in lines if line["logger"] == "aiki.worker" and "serving" in line["message"]
    ]
    assert outside and "run_id" not in outside[0]
