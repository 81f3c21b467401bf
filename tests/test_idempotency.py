"""Idempotent starts (``reference_id``) and the task idempotency key.

* A start with a ``reference_id`` creates at most one run per workflow and reference,
  however many times and however concurrently it is repeated; a repeat with another
  payload raises :class:`aiki.RunConflict` (``on_conflict="error"``, the default) or
  returns the existing run (``"return_existing"``).
* ``aiki.task_context().idempotency_key`` is ``<run id>:<task address>``: the same for
  every execution of one task in one run, different between tasks.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
from _helpers import running_worker

import aiki

EXECUTIONS: dict[str, int] = {}
KEYS: dict[str, list[str]] = {}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    EXECUTIONS.clear()
    KEYS.clear()


@aiki.task("charge")
async def charge(payload: Any) -> Any:
    EXECUTIONS["charge"] = EXECUTIONS.get("charge", 0) + 1
    key = aiki.task_context().idempotency_key
    KEYS.setdefault(f"charge:{payload['amount']}", []).append(key)
    return {"charged": payload["amount"], "key": key}


@aiki.task("receipt")
async def receipt(payload: Any) -> Any:
    KEYS.setdefault("receipt", []).append(aiki.task_context().idempotency_key)
    return {"receipt": payload}


@aiki.task("shaky", retry=aiki.Retry.fixed(3, 0.05))
async def shaky(payload: Any) -> Any:
    KEYS.setdefault("shaky", []).append(aiki.task_context().idempotency_key)
    if len(KEYS["shaky"]) < 3:
        raise ConnectionError("the payment provider timed out")
    return "ok"


orders = aiki.workflow("orders")


@orders.v("1")
async def orders_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    first = await charge.start(ctx, {"amount": payload["amount"]})
    again = await charge.start(ctx, {"amount": payload["amount"]})  # same input: 2nd address
    other = await charge.start(ctx, {"amount": payload["amount"] + 1})
    note = await receipt.start(ctx, payload["order"])
    return {"keys": [first["key"], again["key"], other["key"]], "receipt": note}


@orders.v("retrying")
async def orders_retrying(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await shaky.start(ctx, payload)


invoices = aiki.workflow("invoices")


@invoices.v("1")
async def invoices_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await receipt.start(ctx, payload)


async def run_count(client: aiki.Client) -> int:
    return int(await client.store.redis.command("ZCARD", client.store.keys.runs_index()))


async def stream_length(client: aiki.Client, version: aiki.WorkflowVersion) -> int:
    stream = client.store.keys.stream(version.name, version.version)
    return int(await client.store.redis.command("XLEN", stream))


# -- reference ids ------------------------------------------------------------------------


async def test_same_reference_and_payload_returns_the_same_run(client: aiki.Client) -> None:
    payload = {"order": "order-42", "amount": 10}
    first = await orders_v1.start(client, payload, reference_id="order-42")
    second = await orders_v1.start(client, payload, reference_id="order-42")
    assert second.id == first.id
    assert await run_count(client) == 1
    assert await stream_length(client, orders_v1) == 1  # enqueued once
    run = await client.get_run(first.id)
    assert run.reference_id == "order-42" and run.payload == payload

    # Executed once, and a start after it ended still names the same run.
    async with running_worker(client, orders):
        result = await first.wait_for_completion(timeout=30)
    third = await orders_v1.start(client, payload, reference_id="order-42")
    assert third.id == first.id
    assert await third.wait_for_completion(timeout=5) == result
    assert EXECUTIONS["charge"] == 3  # the run's three charges, once each
    assert await run_count(client) == 1


async def test_same_reference_with_another_payload_conflicts(client: aiki.Client) -> None:
    original = {"order": "order-43", "amount": 10}
    first = await orders_v1.start(client, original, reference_id="order-43")
    with pytest.raises(aiki.RunConflict) as info:
        await orders_v1.start(client, {"order": "order-43", "amount": 99}, reference_id="order-43")
    assert info.value.reference_id == "order-43"
    assert first.id in str(info.value)
    with pytest.raises(aiki.RunConflict):  # "error" is the default, spelled out
        await orders_v1.start(client, {"amount": 1}, reference_id="order-43", on_conflict="error")

    existing = await orders_v1.start(
        client,
        {"order": "order-43", "amount": 99},
        reference_id="order-43",
        on_conflict="return_existing",
    )
    assert existing.id == first.id
    assert (await client.get_run(first.id)).payload == original  # not overwritten
    assert await run_count(client) == 1
    with pytest.raises(aiki.ConfigurationError):
        await orders_v1.start(client, original, reference_id="order-43", on_conflict="merge")


async def test_reference_ids_are_per_workflow(client: aiki.Client) -> None:
    order = await orders_v1.start(client, {"order": "x", "amount": 1}, reference_id="ref-1")
    invoice = await invoices_v1.start(client, {"order": "x", "amount": 1}, reference_id="ref-1")
    assert order.id != invoice.id
    assert await run_count(client) == 2


async def test_concurrent_starts_with_one_reference_create_one_run(
    client: aiki.Client, redis_url: str
) -> None:
    payload = {"order": "order-44", "amount": 5}
    ids: list[str] = []
    async with AsyncExitStack() as stack:
        # Several clients, so the starts race over several connections.
        clients = [client] + [
            await stack.enter_async_context(aiki.client(redis_url=redis_url)) for _ in range(3)
        ]
        ready = trio.Event()

        async def start(i: int) -> None:
            await ready.wait()
            handle = await orders_v1.start(clients[i % 4], payload, reference_id="order-44")
            ids.append(handle.id)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(start, i)
            await trio.sleep(0.1)
            ready.set()
    assert len(ids) == 20 and len(set(ids)) == 1
    assert await run_count(client) == 1
    assert await stream_length(client, orders_v1) == 1


async def test_concurrent_conflicting_starts_create_one_run(
    client: aiki.Client, redis_url: str
) -> None:
    """20 racing starts, half with another payload: one run; every start with the
    winner's payload gets it, every other start a RunConflict."""
    payloads = [{"order": "order-45", "amount": 1}, {"order": "order-45", "amount": 2}]
    outcomes: list[tuple[int, str]] = []
    async with AsyncExitStack() as stack:
        clients = [client] + [
            await stack.enter_async_context(aiki.client(redis_url=redis_url)) for _ in range(3)
        ]
        ready = trio.Event()

        async def start(i: int) -> None:
            await ready.wait()
            try:
                handle = await orders_v1.start(
                    clients[i % 4], payloads[i % 2], reference_id="order-45"
                )
                outcomes.append((i % 2, handle.id))
            except aiki.RunConflict:
                outcomes.append((i % 2, "conflict"))

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(start, i)
            await trio.sleep(0.1)
            ready.set()
    assert await run_count(client) == 1
    run = (await client.store.list_runs(limit=5))[0]
    winner = payloads.index(run.payload)
    assert sorted(outcomes) == sorted([(winner, run.id)] * 10 + [(1 - winner, "conflict")] * 10)


async def test_a_start_retried_after_a_lost_reply_creates_one_run(
    client: aiki.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client retries a start through a connection failure. When the failure hid a
    start that did apply, the retry finds that run instead of making a second one."""
    store = client.store
    real_start = store.start_run
    calls: list[str] = []

    async def start_then_lose_reply(*args: Any, **kwargs: Any) -> str:
        calls.append(kwargs["run_id"])
        run_id = await real_start(*args, **kwargs)
        if len(calls) == 1:
            raise aiki.ConnectionFailed("Redis: connection lost before the reply")
        return run_id

    monkeypatch.setattr(store, "start_run", start_then_lose_reply)
    handle = await orders_v1.start(client, {"order": "o", "amount": 3})
    assert len(calls) == 2 and calls[0] == calls[1] == handle.id  # one id, tried twice
    assert await run_count(client) == 1
    assert await stream_length(client, orders_v1) == 1

    calls.clear()
    again = await orders_v1.start(client, {"order": "p", "amount": 3}, reference_id="ref-9")
    assert len(calls) == 2 and again.id == calls[0]
    assert await run_count(client) == 2
    async with running_worker(client, orders):
        assert (await again.wait_for_completion(timeout=30))["receipt"] == {"receipt": "p"}


# -- the idempotency key ------------------------------------------------------------------


async def test_idempotency_key_is_run_and_address_and_differs_between_tasks(
    client: aiki.Client,
) -> None:
    async with running_worker(client, orders):
        handle = await orders_v1.start(client, {"order": "order-46", "amount": 7})
        result = await handle.wait_for_completion(timeout=30)
    run = await client.get_run(handle.id, with_tasks=True)
    assert run.tasks is not None
    expected = {f"{handle.id}:{address}" for address in run.tasks}
    keys = result["keys"] + KEYS["receipt"]
    assert set(keys) == expected and len(keys) == 4  # all different
    assert all(k.startswith(f"{handle.id}:") for k in keys)
    # The same task with the same input twice: two tasks, two keys (occurrence 0 and 1).
    assert result["keys"][0].endswith(":0") and result["keys"][1].endswith(":1")


async def test_idempotency_key_is_the_same_across_retries(client: aiki.Client) -> None:
    async with running_worker(client, orders):
        handle = await orders_retrying.start(client, {"x": 1})
        assert await handle.wait_for_completion(timeout=30) == "ok"
    assert len(KEYS["shaky"]) == 3 and len(set(KEYS["shaky"])) == 1
    run = await client.get_run(handle.id, with_tasks=True)
    assert run.tasks is not None
    (address,) = run.tasks
    assert KEYS["shaky"][0] == f"{handle.id}:{address}"


async def test_idempotency_key_outside_a_task_raises() -> None:
    with pytest.raises(RuntimeError):
        aiki.task_context()
