"""Time skipping: test a workflow that takes weeks in well under a second.

``open_test_environment(..., time_skipping=True)`` runs the engine on a virtual clock.
Whenever every run is waiting on time (a sleep, an event timeout, a retry delay, a
delayed start, a schedule), the clock jumps to the next due time; task code still runs
in real time. ``await env.sleep(seconds)`` moves the clock explicitly, ``env.now()``
reads it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment

DAY = 86_400.0

charges: list[str] = []


@aiki.task("charge-card", retry=aiki.Retry.fixed(max_attempts=3, delay=3600))
async def charge_card(payload: dict[str, Any]) -> str:
    charges.append(payload["customer"])
    if len(charges) == 1:
        raise ConnectionError("the payment provider is down")  # retried an hour later
    return f"charged {payload['customer']}"


@aiki.task("send-digest")
async def send_digest(payload: Any) -> str:
    return "digest sent"


trial = aiki.workflow("trial")


@trial.v("1.0.0")
async def trial_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    await ctx.sleep("free-trial", 30 * DAY)
    try:
        plan = await ctx.wait_for_event("plan-chosen", timeout=7 * DAY)
    except aiki.EventTimeout:
        plan = "basic"  # nobody answered within the week
    receipt = await charge_card.start(ctx, {"customer": payload["customer"], "plan": plan})
    return {"plan": plan, "receipt": receipt}


digest = aiki.workflow("digest")


@digest.v("1.0.0")
async def digest_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    return await send_digest.start(ctx, payload)


def _days(a: datetime, b: datetime) -> float:
    return round((b - a).total_seconds() / DAY, 2)


async def main() -> dict[str, Any]:
    charges.clear()
    async with open_test_environment(trial, digest, time_skipping=True) as env:
        began = env.now()
        handle = await trial_v1.start(env.client, {"customer": "ada"})
        result = await handle.wait_for_completion(timeout=30)
        trial_days = _days(began, env.now())  # 30 + 7 days and an hour, virtually

        # Counting a schedule's occurrences: the clock moves only when told to.
        async with env.auto_time_skipping_disabled():
            await digest_v1.schedule(env.client, "daily-digest", every=DAY)
            await env.sleep(3 * DAY + 60)
            await env.client.delete_schedule("daily-digest")
        digests = await env.client.store.list_runs(workflow="digest", limit=10)
    out = {
        "result": result,
        "charge_attempts": len(charges),
        "trial_days": trial_days,
        "digests": sorted(r.result for r in digests),
    }
    print(out)
    return out


if __name__ == "__main__":
    trio.run(main)
