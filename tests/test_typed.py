"""Types from annotations (#18 part 1): pydantic models, dataclasses, enums, datetimes,
UUIDs and Decimals in and out of workflows, tasks, child runs and events.

What crosses Redis stays JSON; the annotations decide what user code gets back. A
payload that does not fit raises aiki.InvalidPayload naming the path of the bad field,
before anything is written (a scan of Redis finds nothing of it).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import running_worker, scan_redis, subprocess_env, wait_until
from workers import processes
from workers.typed_flows import (
    Approval,
    Item,
    Order,
    Receipt,
    Shipment,
    Status,
    Tally,
    count_items,
    ship,
    typed_orders,
    typed_orders_v1,
)

import aiki
from aiki import _serde
from aiki._serde import canonical_hash
from aiki_server import ServerHandle, Settings, serve_server

TYPED_WORKER = Path(__file__).resolve().parent / "workers" / "typed_flows.py"
PLACED = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def order(**kw: Any) -> Order:
    base: dict[str, Any] = {
        "order_id": "o-1",
        "items": [Item(sku="a", quantity=2), Item(sku="b", quantity=3)],
        "placed_at": PLACED,
        "price": Decimal("12.50"),
    }
    return Order(**{**base, **kw})


async def test_a_pydantic_workflow_round_trips_with_a_child_and_an_event(
    client: aiki.Client,
) -> None:
    async with running_worker(client, typed_orders, ship):
        handle = await typed_orders_v1.start(client, order(wants_approval=True))
        await wait_until(_status_is(handle, "awaiting_event"), what="the run awaits the approval")
        await handle.send_event("approve", Approval(by="ada"))
        receipt = await handle.wait_for_completion(timeout=30)
    assert isinstance(receipt, Receipt)
    assert receipt.total_quantity == 5 and receipt.approved_by == "ada"
    assert receipt.placed_at == PLACED and receipt.price == Decimal("12.50")
    assert isinstance(receipt.shipment, Shipment)
    assert receipt.shipment.status is Status.SHIPPED
    assert receipt.shipment.tracking == uuid.uuid5(uuid.NAMESPACE_URL, "o-1")
    assert receipt.seen == ["Tally", "Shipment", "Approval"]

    # What is stored is plain JSON: the payload, the task input and result, the result.
    run = await client.get_run(handle.id, with_tasks=True)
    assert run.payload["placed_at"] == "2026-12-06T09:30:00Z"
    assert run.result["shipment"]["status"] == "shipped"
    tasks = {r.get("task") or r.get("kind"): r for r in (run.tasks or {}).values()}
    assert tasks["count-items"]["result"] == {"order_id": "o-1", "total_quantity": 5}
    assert tasks["count-items"]["input"]["items"][1] == {"sku": "b", "quantity": 3}


def _status_is(handle: aiki.RunHandle, status: str) -> Any:
    async def check() -> bool:
        return await handle.status() == status

    return check


async def test_a_dict_payload_is_validated_into_the_model(client: aiki.Client) -> None:
    payload = {
        "order_id": "o-2",
        "items": [{"sku": "a", "quantity": 1}],
        "placed_at": "2026-12-06T09:30:00+00:00",
        "with_child": False,
    }
    async with running_worker(client, typed_orders, ship):
        handle = await typed_orders_v1.start(client, payload)
        receipt = await handle.wait_for_completion(timeout=30)
    assert isinstance(receipt, Receipt) and receipt.total_quantity == 1
    assert receipt.seen == ["Tally"]
    # A handle made by id returns JSON, or the type asked for.
    assert (await client.get_handle(handle.id).wait_for_completion())["order_id"] == "o-2"
    again = await client.get_handle(handle.id, result_type=Receipt).wait_for_completion()
    assert again == receipt


# (the change, the path named, the reason): each bad payload carries the marker "MRK"
# (made unique per case) in a field that stays in it, so that a scan of Redis can look
# for any trace of it.
BAD_PAYLOADS = [
    ({"order_id": 5, "items": [{"sku": "MRK", "quantity": 1}]}, "order_id", "string"),
    ({"items": "MRK"}, "items", "list"),  # wrong type
    ({"placed_at": "MRK"}, "placed_at", "datetime"),
    ({"coupon": "MRK"}, "coupon", "Extra inputs are not permitted"),  # forbidden extra
    ({"items": [{"sku": "MRK", "quantity": "many"}]}, "items[0].quantity", "integer"),
    (  # a missing field, deep inside a list
        {"items": [{"sku": "a", "quantity": 1}, {"sku": "MRK"}]},
        "items[1].quantity",
        "required",
    ),
    ({"items": [{"sku": "MRK", "quantity": 0}]}, "items[0].quantity", "greater than 0"),
]


def with_marker(change: dict[str, Any], marker: str) -> dict[str, Any]:
    """A bad payload made from ``change``, its "MRK" replaced by ``marker`` (the order
    id carries it too, unless the case is about the order id)."""
    text = _serde.dumps(change).replace("MRK", marker)
    payload: dict[str, Any] = {
        "order_id": f"{marker}-id",
        "items": [{"sku": "a", "quantity": 1}],
        "placed_at": "2026-12-06T09:30:00Z",
    }
    return {**payload, **_serde.loads(text)}


@pytest.mark.parametrize(("change", "path", "reason"), BAD_PAYLOADS)
async def test_a_bad_payload_names_its_path_and_writes_nothing(
    client: aiki.Client, change: dict[str, Any], path: str, reason: str
) -> None:
    # Redis is not empty: a good run is stored, so the scan below has data to search.
    await typed_orders_v1.start(client, order(order_id="MARKER-GOOD-e1"))
    marker = f"MARKER-REJECTED-{uuid.uuid4().hex[:8]}"
    payload = with_marker(change, marker)
    with pytest.raises(aiki.InvalidPayload) as caught:
        await typed_orders_v1.start(client, payload)
    assert caught.value.path == path
    assert caught.value.field == f"payload.{path}"
    assert f"payload.{path}:" in str(caught.value) and reason in str(caught.value)
    with pytest.raises(aiki.InvalidPayload):
        await typed_orders_v1.start_many(client, [order(order_id=f"{marker}-good"), payload])
    with pytest.raises(aiki.InvalidPayload):
        await typed_orders_v1.start(client, payload, reference_id=f"{marker}-ref")
    dump = "\n".join(await scan_redis(client))
    assert "MARKER-GOOD-e1" in dump  # the scan sees stored payloads
    assert marker not in dump, dump[max(0, dump.find(marker) - 300) :][:400]


async def test_a_bad_task_input_or_result_fails_clearly(client: aiki.Client) -> None:
    bad_task = aiki.workflow("typed-bad-task")

    @aiki.task("typed-bad-result")
    async def bad_result(tally: Tally) -> Tally:
        return {"order_id": "x"}  # type: ignore[return-value]  # total_quantity missing

    @bad_task.v("1")
    async def bad_task_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> Any:
        if payload["kind"] == "input":
            return await count_items.start(ctx, {"order_id": "x", "items": [{"sku": 1}]})
        return await bad_result.start(ctx, {"order_id": "x", "total_quantity": 1})

    async with running_worker(client, bad_task):
        with pytest.raises(aiki.WorkflowFailed) as failed:
            await (await bad_task_v1.start(client, {"kind": "input"})).wait_for_completion(30)
        assert failed.value.error_type == "InvalidPayload"
        assert "input of task 'count-items'.items[0].sku" in failed.value.error_message
        assert "placed_at" in failed.value.error_message  # missing too: "1 more error"
        handle = await bad_task_v1.start(client, {"kind": "result"})
        with pytest.raises(aiki.WorkflowFailed) as failed:
            await handle.wait_for_completion(30)
    assert failed.value.error_type == "InvalidPayload"
    assert "result of task 'typed-bad-result'.total_quantity" in failed.value.error_message
    run = await client.get_run(handle.id, with_tasks=True)
    (record,) = (run.tasks or {}).values()
    assert record["status"] == "failed" and "result" not in record  # no half-recorded step


async def test_a_payload_that_no_longer_fits_fails_the_run_without_retries(
    client: aiki.Client,
) -> None:
    # Started by code that does not know the type (as over HTTP without a schema).
    run_id = (await client._start_run("typed-orders", "1", {"order_id": 1}, None)).id
    async with running_worker(client, typed_orders, ship):
        with pytest.raises(aiki.WorkflowFailed) as failed:
            await client.get_handle(run_id).wait_for_completion(30)
    assert failed.value.error_type == "InvalidPayload"
    assert "payload.order_id" in failed.value.error_message


async def test_task_addresses_of_plain_json_inputs_are_unchanged() -> None:
    # The values main computed before typed payloads existed: in-flight runs replay.
    value = {"order_data": {"items": [{"sku": "a", "quantity": 2}], "email": "é@x"}, "n": 1.5}
    assert canonical_hash(value) == "928751f620bfa3d0"
    assert canonical_hash(None) == "7376b2cbfa0ad26e"
    assert canonical_hash([1, "x", True]) == "23fcd8fb4ff84318"
    # A model hashes as its JSON form: a dict equal to it has the same address.
    tally = Tally(order_id="o", total_quantity=1)
    assert canonical_hash(tally) == canonical_hash({"order_id": "o", "total_quantity": 1})


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, Settings(redis_url=redis_url, port=0))
        nursery.cancel_scope.cancel()


async def test_a_pydantic_workflow_round_trips_over_http(
    client: aiki.Client, server: ServerHandle
) -> None:
    async with running_worker(client, typed_orders, ship):
        async with aiki.client(base_url=server.base_url) as http_client:
            with pytest.raises(aiki.InvalidPayload) as caught:
                await typed_orders_v1.start(http_client, {**order().model_dump(), "x": 1})
            assert caught.value.path == "x"
            handle = await typed_orders_v1.start(http_client, order(order_id="o-http"))
            receipt = await handle.wait_for_completion(timeout=30)
    assert isinstance(receipt, Receipt) and receipt.order_id == "o-http"
    assert isinstance(receipt.shipment, Shipment)


async def test_after_a_kill_9_replayed_tasks_return_models(
    redis_url: str, client: aiki.Client, tmp_path: Path
) -> None:
    async with processes.worker_process(
        redis_url, "typed-a", tmp_path, script=TYPED_WORKER
    ) as worker_a:
        handle = await typed_orders_v1.start(client, order(hold=True))

        async def inside_hold() -> bool:
            run = await client.get_run(handle.id, with_tasks=True)
            done = [r["task"] for r in (run.tasks or {}).values() if r["status"] == "completed"]
            return run.status == "running" and done == ["count-items"]

        await wait_until(inside_hold, timeout=30, what="worker A inside the hold task")
        await worker_a.kill()
    await client.store.redis.command("SET", "release", "1")
    async with running_worker(client, typed_orders, ship):
        receipt = await handle.wait_for_completion(timeout=60)
    assert isinstance(receipt, Receipt)
    # count-items was replayed from its record, and still returned a Tally.
    assert receipt.seen == ["Tally", "Tally", "Shipment"]


NO_PYDANTIC = """
import dataclasses, enum, sys, typing, uuid, datetime
sys.modules["pydantic"] = None  # as if the extra were not installed
import aiki
from aiki._types import payload_type

class Color(enum.Enum):
    RED = "red"

@dataclasses.dataclass
class Line:
    sku: str
    quantity: int
    color: Color = Color.RED

class Cart(typing.TypedDict):
    lines: list[Line]
    at: datetime.datetime
    id: uuid.UUID

t = payload_type(Cart)
assert t.backend == "stdlib", t.backend
cart = t.load({"lines": [{"sku": "a", "quantity": 1}], "at": "2026-12-06T09:30:00+00:00",
               "id": "12345678123456781234567812345678"})
assert cart["lines"][0] == Line("a", 1, Color.RED), cart
assert t.dump(cart)["lines"] == [{"sku": "a", "quantity": 1, "color": "red"}]
try:
    t.load({"lines": [{"sku": "a", "quantity": "x"}], "at": "x", "id": "x"})
except aiki.InvalidPayload as exc:
    assert exc.path == "lines[0].quantity", exc.path
    print("ok", exc)
"""


def test_dataclasses_and_typeddicts_work_without_pydantic() -> None:
    out = subprocess.run(
        [sys.executable, "-c", NO_PYDANTIC],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "ok payload.lines[0].quantity: expected an integer, got a string" in out.stdout
