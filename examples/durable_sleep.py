"""Durable sleep: the run sleeps without holding a worker slot, and wakes up on time
(or early, with ``handle.wakeup``), even across worker and server restarts."""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment


@aiki.task("send-reminder")
async def send_reminder(payload: dict[str, Any]) -> str:
    return f"reminded {payload['user']}"


onboarding = aiki.workflow("onboarding")


@onboarding.v("1.0.0")
async def onboarding_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> list[str]:
    sent = [await send_reminder.start(ctx, {"user": payload["user"], "n": 1})]
    await ctx.sleep("cool-off", payload["wait_seconds"])  # days, in real life
    sent.append(await send_reminder.start(ctx, {"user": payload["user"], "n": 2}))
    return sent


async def main() -> list[Any]:
    async with open_test_environment(onboarding) as env:
        short = await onboarding_v1.start(env.client, {"user": "ada", "wait_seconds": 1.0})
        long = await onboarding_v1.start(env.client, {"user": "bob", "wait_seconds": 86400})
        await trio.sleep(0.5)
        print("statuses while sleeping:", await short.status(), await long.status())
        await long.wakeup("cool-off")  # no need to wait a day
        results = [await h.wait_for_completion(timeout=30) for h in (short, long)]
    print(results)
    return results


if __name__ == "__main__":
    trio.run(main)
