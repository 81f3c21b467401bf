"""Schedules: run a workflow every interval (or on a cron expression, UTC); the server's
schedule daemon fires each occurrence exactly once, even with several servers."""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment


@aiki.task("compact-logs")
async def compact_logs(payload: Any) -> str:
    return f"compacted {payload['table']}"


maintenance = aiki.workflow("maintenance")


@maintenance.v("1.0.0")
async def maintenance_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    return await compact_logs.start(ctx, payload)


async def main() -> int:
    async with open_test_environment(maintenance) as env:
        await maintenance_v1.schedule(
            env.client, "compact-every-half-second", {"table": "events"}, every=0.5, overlap="skip"
        )
        # cron works the same way: cron="0 3 * * *" runs at 03:00 UTC every day.
        await trio.sleep(2.2)
        await env.client.delete_schedule("compact-every-half-second")
        runs = await env.client.store.list_runs(limit=100)
    fired = len([r for r in runs if r.status == "completed"])
    print(f"{fired} scheduled runs completed")
    return fired


if __name__ == "__main__":
    trio.run(main)
