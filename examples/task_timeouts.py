"""Task timeouts and heartbeats: a hung call is cancelled and retried; a long export
reports its progress, and an attempt that goes silent is retried from its last report.
"""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment

CALLS: list[str] = []


@aiki.task("call-flaky-partner", timeout=0.5, retry=aiki.Retry.fixed(3, 0.1))
async def call_flaky_partner(payload: Any) -> str:
    """The partner hangs on the first call; the 0.5 s timeout cancels it."""
    CALLS.append("partner")
    if len(CALLS) == 1:
        await trio.sleep(3600)
    return "answered"


@aiki.task("export-rows", heartbeat_timeout=0.5, retry=aiki.Retry.fixed(2, 0.1))
async def export_rows(total: int) -> int:
    """Exports rows in batches, reporting each batch; the first attempt stalls halfway."""
    ctx = aiki.task_context()
    done = (ctx.last_heartbeat or {}).get("done", 0)  # resume where the last attempt was
    while done < total:
        if ctx.attempt == 1 and done == total // 2:
            await trio.sleep(3600)  # stalls: no heartbeat for 0.5 s, so it is retried
        done += 10
        ctx.heartbeat({"done": done})
        await trio.sleep(0.01)
    return ctx.attempt


sync = aiki.workflow("partner-export")


@sync.v("1.0.0")
async def sync_v1(ctx: aiki.WorkflowContext, payload: Any) -> dict[str, Any]:
    answer = await call_flaky_partner.start(ctx, payload)
    attempts = await export_rows.start(ctx, 100)
    return {"partner": answer, "export_attempts": attempts}


async def main() -> dict[str, Any]:
    async with open_test_environment(sync) as env:
        handle = await sync_v1.start(env.client, "order-1")
        out = await handle.wait_for_completion(timeout=30)
        run = await handle.describe(with_tasks=True)
    assert run.tasks is not None
    out["timed_out"] = sorted(
        {e["type"] for record in run.tasks.values() for e in record.get("errors", [])}
    )
    print(out)
    return out


if __name__ == "__main__":
    trio.run(main)
