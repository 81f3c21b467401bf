"""The SDK end to end against a real Redis: client + worker in one trio program."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
import trio
from _helpers import running_worker, wait_until

import aiki
from examples import order_processing as example

# -- the order-processing example ---------------------------------------------------------


def expected_order_result(payload: dict[str, Any]) -> dict[str, Any]:
    """What the example's workflow must return, computed here from the payload alone."""
    order = payload["order_data"]
    digest = hashlib.sha256(json.dumps(order, sort_keys=True).encode()).hexdigest()
    total = 0.0
    units = 0
    for item in order["items"]:
        total += item["quantity"] * item.get("price", 0.0)
        units += item["quantity"]
    return {
        "success": True,
        "order_id": "order-" + digest[:12],
        "charged": round(total, 2),
        "units_reserved": units,
        "confirmation_sent_to": payload["email"],
    }


ORDER_A = example.EXAMPLE_ORDER
ORDER_B = {
    "order_data": {
        "items": [
            {"id": "sku-9", "quantity": 3, "price": 1.25},
            {"id": "sku-7", "quantity": 4, "price": 10.0},
            {"id": "sku-1", "quantity": 1, "price": 0.99},
        ],
        "customer_email": "someone@example.org",
    },
    "email": "someone@example.org",
}


async def test_order_example_results_match_payload(client: aiki.Client) -> None:
    async with running_worker(client, example.order_processing):
        handle_a = await example.order_processing_v1.start(client, ORDER_A)
        handle_b = await example.order_processing_v1.start(client, ORDER_B)
        result_a = await handle_a.wait_for_completion(timeout=30)
        result_b = await handle_b.wait_for_completion(timeout=30)

    assert result_a == expected_order_result(ORDER_A)
    assert result_b == expected_order_result(ORDER_B)
    assert result_a != result_b
    assert result_a["charged"] == 29.0  # 2 * 12.5 + 1 * 4.0
    assert result_b["units_reserved"] == 8


async def test_order_run_record_has_four_completed_tasks(client: aiki.Client) -> None:
    async with running_worker(client, example.order_processing):
        handle = await example.order_processing_v1.start(client, ORDER_B)
        result = await handle.wait_for_completion(timeout=30)

    run = await client.get_run(handle.id, with_tasks=True)
    assert run.status == "completed"
    assert run.result == result == expected_order_result(ORDER_B)
    assert run.workflow == "order-processing" and run.version == "1.0.0"
    assert run.payload == ORDER_B
    assert run.attempts == 1
    assert run.tasks is not None and len(run.tasks) == 4
    by_name = {record["task"]: record for record in run.tasks.values()}
    assert set(by_name) == {
        "validate-order",
        "process-payment",
        "update-inventory",
        "send-confirmation",
    }
    for address, record in run.tasks.items():
        assert record["status"] == "completed", address
        assert address.startswith(record["task"] + ":")
        assert "input" in record and "result" in record
    expected = expected_order_result(ORDER_B)
    assert by_name["validate-order"]["input"] == {"order_data": ORDER_B["order_data"]}
    assert by_name["validate-order"]["result"]["order_id"] == expected["order_id"]
    assert by_name["process-payment"]["input"]["amount"] == expected["charged"]
    assert by_name["process-payment"]["result"]["charged"] == expected["charged"]
    assert by_name["update-inventory"]["input"] == {"items": ORDER_B["order_data"]["items"]}
    assert by_name["update-inventory"]["result"]["units"] == expected["units_reserved"]
    assert by_name["send-confirmation"]["input"] == {"email": ORDER_B["email"]}
    assert by_name["send-confirmation"]["result"]["sent_to"] == ORDER_B["email"]


# -- status transitions -------------------------------------------------------------------

gate_entered = trio.Event()
gate_open = trio.Event()


@aiki.task("gated")
async def gated(payload: Any) -> Any:
    gate_entered.set()
    await gate_open.wait()
    return {"echo": payload}


gated_wf = aiki.workflow("gated-workflow")


@gated_wf.v("1.0.0")
async def gated_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await gated.start(ctx, payload)


async def test_status_transitions(client: aiki.Client) -> None:
    global gate_entered, gate_open
    gate_entered, gate_open = trio.Event(), trio.Event()
    handle = await gated_v1.start(client, {"n": 7})
    assert await handle.status() == "queued"  # no worker yet
    async with running_worker(client, gated_wf):
        await gate_entered.wait()
        assert await handle.status() == "running"
        gate_open.set()
        assert await handle.wait_for_completion(timeout=30) == {"echo": {"n": 7}}
    assert await handle.status() == "completed"
    run = await handle.describe()
    assert run.started_at is not None and run.ended_at is not None


# -- failures -----------------------------------------------------------------------------


@aiki.task("explode")
async def explode_with_value_error(payload: Any) -> Any:
    raise ValueError(f"bad value {payload['value']!r}")


failing_wf = aiki.workflow("failing")


@failing_wf.v("1.0.0")
async def failing_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await explode_with_value_error.start(ctx, payload)


catching_wf = aiki.workflow("catching")


@catching_wf.v("1.0.0")
async def catching_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    try:
        await explode_with_value_error.start(ctx, payload)
    except aiki.TaskFailed as exc:
        return {"recovered": True, "type": exc.error_type, "message": exc.error_message}
    return {"recovered": False}


async def test_task_value_error_fails_the_run(client: aiki.Client) -> None:
    async with running_worker(client, failing_wf):
        handle = await failing_v1.start(client, {"value": 42})
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=30)

    err = info.value
    assert isinstance(err, aiki.AikiError)
    assert err.run_id == handle.id
    assert err.error_type == "ValueError"
    assert err.error_message == "bad value 42"
    assert err.traceback is not None
    assert "explode_with_value_error" in err.traceback
    assert "ValueError: bad value 42" in err.traceback

    run = await client.get_run(handle.id, with_tasks=True)
    assert run.status == "failed"
    assert run.result is None
    assert run.error is not None
    assert run.error["type"] == "ValueError"
    assert run.error["message"] == "bad value 42"
    assert "explode_with_value_error" in run.error["traceback"]
    assert run.tasks is not None and len(run.tasks) == 1
    (task_record,) = run.tasks.values()
    assert task_record["status"] == "failed"
    assert task_record["error"]["type"] == "ValueError"


async def test_workflow_catching_task_failed_completes(client: aiki.Client) -> None:
    async with running_worker(client, catching_wf):
        handle = await catching_v1.start(client, {"value": "x"})
        result = await handle.wait_for_completion(timeout=30)
    assert result == {"recovered": True, "type": "ValueError", "message": "bad value 'x'"}
    run = await client.get_run(handle.id, with_tasks=True)
    assert run.status == "completed"
    assert run.error is None
    assert run.tasks is not None
    assert [t["status"] for t in run.tasks.values()] == ["failed"]


async def test_non_json_payload_is_refused_and_nothing_written(client: aiki.Client) -> None:
    redis = client.store.redis
    runs_index = client.store.keys.runs_index()
    assert await redis.command("DBSIZE") == 0

    with pytest.raises(aiki.InvalidPayload) as info:
        await gated_v1.start(client, {"items": {1, 2, 3}})
    assert "payload" in str(info.value)
    assert isinstance(info.value, aiki.AikiError)
    with pytest.raises(aiki.InvalidPayload, match="payload"):
        await gated_v1.start(client, {"ratio": float("nan")})

    assert await redis.command("ZCARD", runs_index) == 0
    assert await redis.command("DBSIZE") == 0

    # The same check sees a write when there is one.
    await gated_v1.start(client, {"items": [1, 2, 3]})
    assert await redis.command("ZCARD", runs_index) == 1


# -- versions -----------------------------------------------------------------------------

versioned = aiki.workflow("versioned")
executions_by_version: dict[str, int] = {"1.0.0": 0, "2.0.0": 0}


@versioned.v("1.0.0")
async def versioned_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    executions_by_version["1.0.0"] += 1
    return {"version": 1, "double": payload["n"] * 2}


@versioned.v("2.0.0")
async def versioned_v2(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    executions_by_version["2.0.0"] += 1
    return {"version": 2, "square": payload["n"] ** 2}


async def test_two_versions_side_by_side(client: aiki.Client) -> None:
    executions_by_version.update({"1.0.0": 0, "2.0.0": 0})
    async with running_worker(client, versioned):  # both versions on one worker
        handles = []
        for n in range(6):
            version = versioned_v1 if n % 2 == 0 else versioned_v2
            handles.append((n, await version.start(client, {"n": n})))
        for n, handle in handles:
            result = await handle.wait_for_completion(timeout=30)
            if n % 2 == 0:
                assert handle.version == "1.0.0"
                assert result == {"version": 1, "double": 2 * n}
            else:
                assert handle.version == "2.0.0"
                assert result == {"version": 2, "square": n * n}
            run = await client.get_run(handle.id)
            assert run.version == handle.version
    assert executions_by_version == {"1.0.0": 3, "2.0.0": 3}


async def test_v1_run_waits_for_a_v1_worker(client: aiki.Client) -> None:
    executions_by_version.update({"1.0.0": 0, "2.0.0": 0})
    async with running_worker(client, versioned_v2, id="only-v2"):
        old = await versioned_v1.start(client, {"n": 5})
        # A v2 run started after the v1 run completes on this worker: the worker is
        # live and reading, yet it never touches the v1 run.
        new = await versioned_v2.start(client, {"n": 5})
        assert await new.wait_for_completion(timeout=30) == {"version": 2, "square": 25}
        assert await old.status() == "queued"
        with pytest.raises(aiki.WaitTimeout):
            await old.wait_for_completion(timeout=0.5)
        assert await old.status() == "queued"
    assert executions_by_version == {"1.0.0": 0, "2.0.0": 1}

    async with running_worker(client, versioned_v1, id="only-v1"):
        assert await old.wait_for_completion(timeout=30) == {"version": 1, "double": 10}
    assert executions_by_version == {"1.0.0": 1, "2.0.0": 1}
    run = await client.get_run(old.id)
    assert run.version == "1.0.0" and run.status == "completed" and run.attempts == 1


# -- memoization --------------------------------------------------------------------------

echo_calls: list[Any] = []


@aiki.task("echo")
async def echo(payload: Any) -> Any:
    echo_calls.append(payload)
    return {"echo": payload, "call": len(echo_calls)}


twice_wf = aiki.workflow("twice")


@twice_wf.v("1.0.0", retry=aiki.Retry.fixed(max_attempts=2, delay=0.0))
async def twice_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    first = await echo.start(ctx, {"same": "input"})
    second = await echo.start(ctx, {"same": "input"})
    if ctx.attempt == 1:
        # Fail after both tasks were recorded: the retry replays from the top.
        raise RuntimeError("first attempt fails on purpose")
    return {
        "first": first,
        "second": second,
        "replayed": ctx.replayed_tasks,
        "executed": ctx.executed_tasks,
    }


async def test_same_task_same_input_twice_gets_two_addresses(client: aiki.Client) -> None:
    echo_calls.clear()
    async with running_worker(client, twice_wf):
        handle = await twice_v1.start(client, None)
        result = await handle.wait_for_completion(timeout=30)

    # Two calls in the first execution, none in the replay (both memoized).
    assert echo_calls == [{"same": "input"}, {"same": "input"}]
    assert result["first"] == {"echo": {"same": "input"}, "call": 1}
    assert result["second"] == {"echo": {"same": "input"}, "call": 2}
    assert result["replayed"] == 2 and result["executed"] == 0

    run = await client.get_run(handle.id, with_tasks=True)
    assert run.status == "completed"
    assert run.attempts == 2
    assert run.tasks is not None
    addresses = sorted(run.tasks)
    assert len(addresses) == 2
    assert addresses[0].startswith("echo:") and addresses[0].endswith(":0")
    assert addresses[1].startswith("echo:") and addresses[1].endswith(":1")
    assert addresses[0].rsplit(":", 1)[0] == addresses[1].rsplit(":", 1)[0]  # same hash
    assert [run.tasks[a]["result"]["call"] for a in addresses] == [1, 2]


# (the public API is pinned in test_public_api.py)


async def test_wait_until_helper_fails_on_timeout() -> None:
    # The polling helper used across the suite must not pass silently when it times out.
    with pytest.raises(pytest.fail.Exception):
        await wait_until(lambda: False, timeout=0.05, what="never")
