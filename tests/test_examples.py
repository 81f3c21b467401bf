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


async def test_time_skipping() -> None:
    result = await _main("time_skipping")()
    assert result["result"] == {"plan": "basic", "receipt": "charged ada"}
    assert result["charge_attempts"] == 2
    assert 37.04 <= result["trial_days"] < 38  # 30 + 7 days + the retry's hour (0.04 d)
    assert result["digests"] == ["digest sent"] * 3


@pytest.mark.parametrize("name", ["order_processing"])
async def test_order_processing_demo(name: str) -> None:
    result = await _main(name)()
    assert result["success"] is True and result["charged"] == 29.0


# -- the same examples through the pytest plugin's fixture (aiki.pytest_plugin) ------------
# These are the patterns docs/testing.md shows: a workflow end to end, a mocked task, a
# task unit-tested on its own, a replay of the run's history.

from typing import Any  # noqa: E402

import aiki  # noqa: E402
import aiki.testing  # noqa: E402
from aiki.engine import history_of  # noqa: E402
from examples import fan_out, order_processing, time_skipping  # noqa: E402


@pytest.mark.aiki_workflows(order_processing.order_processing)
async def test_order_processing_end_to_end_with_the_fixture(
    aiki_env: aiki.testing.TestEnvironment,
) -> None:
    handle = await order_processing.order_processing_v1.start(
        aiki_env.client, order_processing.EXAMPLE_ORDER
    )
    result = await handle.wait_for_completion(timeout=30)
    assert result["success"] is True and result["charged"] == 29.0
    # Its history replays against the same code, with nothing executed.
    run = await aiki_env.client.get_run(handle.id, with_tasks=True)
    assert run is not None
    assert await aiki.testing.replay(order_processing.order_processing_v1, history_of(run)) == (
        result
    )


@pytest.mark.aiki_workflows(order_processing.order_processing)
async def test_order_processing_with_a_mocked_payment(
    aiki_env: aiki.testing.TestEnvironment,
) -> None:
    charges: list[dict[str, Any]] = []

    async def fake_payment(payload: dict[str, Any]) -> dict[str, Any]:
        charges.append(payload)
        return {"charged": 0.0, "payment_id": payload["payment_id"], "success": True}

    with aiki.testing.mock_task(order_processing.process_payment, fake_payment):
        handle = await order_processing.order_processing_v1.start(
            aiki_env.client, order_processing.EXAMPLE_ORDER
        )
        result = await handle.wait_for_completion(timeout=30)
    assert result["charged"] == 0.0 and len(charges) == 1 and charges[0]["amount"] == 29.0


async def test_a_task_unit_tested_without_redis() -> None:
    order = order_processing.EXAMPLE_ORDER["order_data"]
    checked = await aiki.testing.run_task(order_processing.validate_order, {"order_data": order})
    assert checked["amount"] == 29.0
    with pytest.raises(ValueError, match="no items"):
        await aiki.testing.run_task(order_processing.validate_order, {"order_data": {}})


@pytest.mark.aiki_workflows(fan_out.pricing)
@pytest.mark.aiki_env_options(max_concurrent_workflow_runs=2)
async def test_fan_out_with_the_fixture(aiki_env: aiki.testing.TestEnvironment) -> None:
    assert aiki_env.worker.max_concurrent_workflow_runs == 2
    handle = await fan_out.pricing_v1.start(aiki_env.client, {"items": ["fig", "kiwi"]})
    assert await handle.wait_for_completion(timeout=30) == {
        "total": 1.6,
        "prices": {"fig": 1.2, "kiwi": 0.4},
    }


@pytest.mark.aiki_workflows(time_skipping.trial)
@pytest.mark.aiki_env_options(time_skipping=True)
async def test_a_month_long_trial_with_the_fixture(aiki_env: aiki.testing.TestEnvironment) -> None:
    time_skipping.charges.clear()
    began = aiki_env.now()
    handle = await time_skipping.trial_v1.start(aiki_env.client, {"customer": "bob"})
    assert await handle.wait_for_completion(timeout=30) == {
        "plan": "basic",
        "receipt": "charged bob",
    }
    assert (aiki_env.now() - began).days == 37


async def test_task_timeouts() -> None:
    assert await _main("task_timeouts")() == {
        "partner": "answered",
        "export_attempts": 2,
        "timed_out": ["TaskTimeout"],
    }


async def test_concurrency_keys() -> None:
    out = await _main("concurrency_keys")()
    assert out["runs"] == 16 and out["waited_at_first"] > 0
    # One run per customer at a time; two reports at a time.
    assert out["most_at_once"] == {"c0": 1, "c1": 1, "c2": 1, "c9": 1, "reports": 2}


async def test_priorities() -> None:
    out = await _main("priorities")()
    assert out["runs"] == 33 and out["priority"] == 80
    # The three requests end before any export taken after they came: only the one
    # export executing then (one slot) may end between.
    assert out["exports_before_last_request"] <= out["done_when_requested"] + 1, out["order"]
    assert out["exports_before_last_request"] < 30
    # FIFO within a priority, and the backlog goes on in its own order after them.
    assert [x for x in out["order"] if x.startswith("request-")] == [
        "request-0",
        "request-1",
        "request-2",
    ]
    exports = [int(x.split("-")[1]) for x in out["order"] if x.startswith("export-")]
    assert exports == sorted(exports)


async def test_rate_limits() -> None:
    out = await _main("rate_limits")()
    assert out["runs"] == 20 and out["busiest_second"] <= 10 + 1  # limit + burst
