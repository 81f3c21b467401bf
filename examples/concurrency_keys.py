"""Concurrency keys: at most one run per customer at a time (the key from the payload),
and at most two report runs at once across every worker (a global limit); runs over a
limit wait as ``awaiting_concurrency``, holding no worker slot, until an earlier run of
their key ends.
"""

from __future__ import annotations

from typing import Any

import trio

import aiki
from aiki.testing import open_test_environment

RUNNING: dict[str, int] = {}  # key -> runs of it executing right now (this process)
MOST: dict[str, int] = {}  # key -> the most that ever executed at once


async def _busy(key: str, seconds: float) -> None:
    RUNNING[key] = RUNNING.get(key, 0) + 1
    MOST[key] = max(MOST.get(key, 0), RUNNING[key])
    await trio.sleep(seconds)
    RUNNING[key] -= 1


@aiki.task("apply-change")
async def apply_change(payload: Any) -> str:
    await _busy(payload["customer"], 0.05)
    return f"{payload['change']} applied to {payload['customer']}"


account_changes = aiki.workflow("account-changes")


@account_changes.v(
    "1.0.0", concurrency=aiki.Concurrency(1, key=lambda payload: payload["customer"])
)
async def account_changes_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    return await apply_change.start(ctx, payload)


@aiki.task("build-report")
async def build_report(payload: Any) -> str:
    await _busy("reports", 0.05)
    return f"report {payload['n']}"


reports = aiki.workflow("reports")


@reports.v("1.0.0", concurrency=aiki.Concurrency(2))  # no key: 2 at once in all
async def reports_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    return await build_report.start(ctx, payload)


async def main() -> dict[str, Any]:
    async with open_test_environment(
        account_changes, reports, max_concurrent_workflow_runs=20
    ) as env:
        changes = [{"customer": f"c{i % 3}", "change": f"change-{i}"} for i in range(9)]
        handles = await account_changes_v1.start_many(env.client, changes)
        # A key given at start wins over the key function's.
        handles.append(
            await account_changes_v1.start(
                env.client, {"customer": "c9", "change": "import"}, concurrency_key="imports"
            )
        )
        handles += await reports_v1.start_many(env.client, [{"n": n} for n in range(6)])
        # Those over their key's limit wait, visibly (API, CLI, dashboard too).
        waiting = (await env.client.list_runs(status="awaiting_concurrency")).runs
        results = [await h.wait_for_completion(timeout=60) for h in handles]
    out = {
        "runs": len(results),
        "waited_at_first": len(waiting),
        "most_at_once": dict(sorted(MOST.items())),
    }
    print(out)
    return out


if __name__ == "__main__":
    trio.run(main)
