"""Workflows of the recovery and CLI-parity tests (retry, dead letters, start, events,
wake-ups, schedules), for ``aiki worker rerun_flows`` in a worker process.

Every task counts its executions in the test's Redis (``INCR count:<flag>:<task>``,
port from ``$RERUN_REDIS_PORT``): a side effect outside the worker process, so a test
sees which tasks ran again after a retry. ``step3`` (and ``bulk-check``) fail while the
key ``broken:<flag>`` exists: the test "fixes the bug" by deleting it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `_resp`, in tests/

from _resp import acommand

import aiki


async def _redis(*args: Any) -> Any:
    return await acommand(int(os.environ["RERUN_REDIS_PORT"]), *args)


async def _count(flag: str, task: str) -> None:
    await _redis("INCR", f"count:{flag}:{task}")


async def _check(flag: str, what: str) -> None:
    if await _redis("EXISTS", f"broken:{flag}"):
        raise RuntimeError(f"{what} is broken")


def _step(n: int) -> Any:
    @aiki.task(f"rerun-step{n}")
    async def step(payload: dict[str, Any]) -> int:
        await _count(payload["flag"], f"step{n}")
        if n == 3:
            await _check(payload["flag"], "step 3")
        return int(payload["x"]) + n

    return step


step1, step2, step3, step4 = (_step(n) for n in (1, 2, 3, 4))

four = aiki.workflow("rerun-four")


@four.v("1")
async def four_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
    flag, x = payload["flag"], payload["x"]
    a = await step1.start(ctx, {"flag": flag, "x": x})
    b = await step2.start(ctx, {"flag": flag, "x": a})
    c = await step3.start(ctx, {"flag": flag, "x": b})
    d = await step4.start(ctx, {"flag": flag, "x": c})
    return {"total": d, "attempt": ctx.attempt}


@aiki.task("rerun-bulk-check")
async def bulk_check(payload: dict[str, Any]) -> int:
    await _count(payload["flag"], "check")
    await _check(payload["flag"], "the bulk check")
    return int(payload["n"])


bulk = aiki.workflow("rerun-bulk")


@bulk.v("1")
async def bulk_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> int:
    return await bulk_check.start(ctx, payload)


echo = aiki.workflow("rerun-echo")


@echo.v("1")
async def echo_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return {"echo": payload}


waiter = aiki.workflow("rerun-waiter")


@waiter.v("1")
async def waiter_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    await ctx.sleep("nap", 3600)
    first = await ctx.wait_for_event("go")
    second = await ctx.wait_for_event("more")
    return {"payload": payload, "go": first, "more": second}
