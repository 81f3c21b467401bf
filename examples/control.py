"""Control: pause a run so no worker picks it up, resume it, and cancel another one
while it runs (the execution is interrupted at once; the reason is recorded)."""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment


@aiki.task("migrate-batch")
async def migrate_batch(payload: dict[str, Any]) -> int:
    await trio.sleep(payload["seconds"])
    return payload["rows"]


migration = aiki.workflow("migration")


@migration.v("1.0.0")
async def migration_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> int:
    return await migrate_batch.start(ctx, payload)


async def main() -> dict[str, Any]:
    async with open_test_environment(migration) as env:
        paused = await migration_v1.start(env.client, {"rows": 10, "seconds": 0.1})
        await paused.pause()
        await trio.sleep(0.5)
        status_while_paused = await paused.status()
        await paused.resume()
        resumed_result = await paused.wait_for_completion(timeout=30)

        runaway = await migration_v1.start(env.client, {"rows": 10**9, "seconds": 3600})
        await trio.sleep(0.5)
        await runaway.cancel("wrong table")
        try:
            await runaway.wait_for_completion(timeout=30)
        except aiki.WorkflowCancelled as exc:
            cancelled_reason = exc.reason
    out = {
        "status_while_paused": status_while_paused,
        "resumed_result": resumed_result,
        "cancelled_reason": cancelled_reason,
    }
    print(out)
    return out


if __name__ == "__main__":
    trio.run(main)
