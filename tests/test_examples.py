"""Every example runs and produces what it says (each uses aiki.testing's environment:
embedded Redis, server with daemons, worker)."""

from __future__ import annotations

import importlib

import pytest


def _main(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"examples.{name}").main


async def test_durable_sleep() -> None:
    assert await _main("durable_sleep")() == [
        ["reminded ada", "reminded ada"],
        ["reminded bob", "reminded bob"],
    ]


async def test_events() -> None:
    assert await _main("events")() == [
        {"order": "A-1", "status": "paid", "amount": 42},
        {"order": "A-2", "status": "expired"},
    ]


async def test_child_workflows() -> None:
    assert await _main("child_workflows")() == [
        "courier for p1",
        "courier for p2",
        "courier for p3",
    ]


async def test_fan_out() -> None:
    result = await _main("fan_out")()
    assert result["total"] == 3.1 and len(result["prices"]) == 5


async def test_control() -> None:
    assert await _main("control")() == {
        "status_while_paused": "paused",
        "resumed_result": 10,
        "cancelled_reason": "wrong table",
    }


async def test_timeouts_and_delays() -> None:
    assert await _main("timeouts_and_delays")() == {
        "timeout_error": "WorkflowTimeout",
        "delayed_status": "scheduled",
        "delayed_result": "answered",
    }


async def test_schedules() -> None:
    fired = await _main("schedules")()
    assert fired >= 2


@pytest.mark.parametrize("name", ["order_processing"])
async def test_order_processing_demo(name: str) -> None:
    result = await _main(name)()
    assert result["success"] is True and result["charged"] == 29.0
