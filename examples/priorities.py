"""Priorities: a customer's request overtakes a backlog of nightly exports.

A one-slot worker is busy with 30 exports started without a priority (0, the default);
three requests are then started with ``priority=80``. Each is taken as soon as the slot
frees: at most the one export executing when they came ends before them, and the
backlog goes on after them, in its order.
"""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment

FINISHED: list[str] = []  # labels, in the order their runs finished


@aiki.task("render")
async def render(payload: Any) -> str:
    await trio.sleep(0.05)
    FINISHED.append(payload["label"])
    return payload["label"]


documents = aiki.workflow("documents")


@documents.v("1.0.0")
async def documents_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    return await render.start(ctx, payload)


async def main() -> dict[str, Any]:
    FINISHED.clear()
    async with open_test_environment(documents, max_concurrent_workflow_runs=1) as env:
        exports = await documents_v1.start_many(
            env.client, [{"label": f"export-{n}"} for n in range(30)]
        )
        await trio.sleep(0.2)  # the worker is busy with the backlog
        requests = await documents_v1.start_many(
            env.client, [{"label": f"request-{n}"} for n in range(3)], priority=80
        )
        done_when_requested = len(FINISHED)
        for handle in requests + exports:
            await handle.wait_for_completion(timeout=60)
        record = await env.client.get_run(requests[0].id)
    last_request = max(i for i, label in enumerate(FINISHED) if label.startswith("request-"))
    out = {
        "runs": len(FINISHED),
        "priority": record.priority,
        "done_when_requested": done_when_requested,
        "exports_before_last_request": last_request - 2,
        "order": FINISHED[: last_request + 2],
    }
    print(out)
    return out


if __name__ == "__main__":
    trio.run(main)
