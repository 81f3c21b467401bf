"""Workflows served by ``aiki worker hardening_flows:echo`` in the Hardening (#16) tests
(``tests/workers`` is on the child's PYTHONPATH, see ``workers.hardening.cli_env``)."""

from __future__ import annotations

from typing import Any

import trio

import aiki


@aiki.task("hard-echo-step")
async def echo_step(payload: Any) -> Any:
    await trio.sleep(0.01)
    return payload


echo = aiki.workflow("hard-echo")


@echo.v("1")
async def echo_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await echo_step.start(ctx, payload)
