"""A workflow-level timeout ends a stuck run ``failed``; a delayed start keeps a run
``scheduled`` until its time."""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment


@aiki.task("call-slow-partner")
async def call_slow_partner(payload: Any) -> str:
    await trio.sleep(payload)
    return "answered"


partner = aiki.workflow("partner-sync")


@partner.v("1.0.0", timeout=1.0)
async def partner_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    return await call_slow_partner.start(ctx, payload)


async def main() -> dict[str, Any]:
    async with open_test_environment(partner) as env:
        stuck = await partner_v1.start(env.client, 3600)
        try:
            await stuck.wait_for_completion(timeout=30)
        except aiki.WorkflowFailed as exc:
            timeout_error = exc.error_type
        later = await partner_v1.start(env.client, 0.0, delay=1.0)
        status_before = await later.status()
        result = await later.wait_for_completion(timeout=30)
    out = {
        "timeout_error": timeout_error,
        "delayed_status": status_before,
        "delayed_result": result,
    }
    print(out)
    return out


if __name__ == "__main__":
    trio.run(main)
