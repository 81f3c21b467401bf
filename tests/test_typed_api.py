"""Schemas in the API (#18 part 2): each version registers its input and output JSON
Schema; ``GET /api/v1/workflows`` lists them, ``POST /api/v1/runs`` validates against
the input schema (422 naming the field, nothing written), and the OpenAPI document
carries them as components."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from _helpers import running_worker, scan_redis
from workers.typed_flows import ship, typed_orders

import aiki
from aiki import _serde
from aiki_server import ServerHandle, Settings, serve_server


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, Settings(redis_url=redis_url, port=0))
        nursery.cancel_scope.cancel()


GOOD: dict[str, Any] = {
    "order_id": "o-api",
    "items": [{"sku": "a", "quantity": 2}],
    "placed_at": "2026-12-06T09:30:00Z",
    "with_child": False,
}


# Bad payloads (each with a marker in place of "MRK") and the field the 422 names.
BAD_CASES = [
    ({"items": [{"sku": "MRK", "quantity": "many"}]}, "payload.items[0].quantity"),  # str
    ({"items": [{"sku": "a", "quantity": 1}, {"sku": "MRK"}]}, "payload.items[1].quantity"),
    ({"coupon": "MRK"}, "payload.coupon"),  # a forbidden extra field
    ({"order_id": 7, "items": [{"sku": "MRK", "quantity": 1}]}, "payload.order_id"),
    ({"items": "MRK"}, "payload.items"),  # wrong type
]


async def test_schemas_are_registered_listed_and_enforced(
    client: aiki.Client, server: ServerHandle
) -> None:
    async with (
        running_worker(client, typed_orders, ship),
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as http,
    ):
        listed = (await http.get("/api/v1/workflows")).json()["workflows"]
        found = {(w["workflow"], w["version"]): w for w in listed}
        typed = found[("typed-orders", "1")]
        assert typed["input_schema"]["title"] == "Order"
        assert set(typed["input_schema"]["required"]) == {"order_id", "items", "placed_at"}
        assert typed["output_schema"]["title"] == "Receipt"

        for n, (change, field) in enumerate(BAD_CASES):
            marker = f"MARKER-REJECTED-HTTP-{n}"
            payload = {**GOOD, "order_id": marker, **_serde.loads(
                _serde.dumps(change).replace("MRK", marker))}  # fmt: skip
            for reference in (None, f"{marker}-ref"):
                r = await http.post(
                    "/api/v1/runs",
                    json={"workflow": "typed-orders", "version": "1", "payload": payload,
                          "reference_id": reference},
                )  # fmt: skip
                assert r.status_code == 422, r.text
                assert r.json()["error"]["field"] == field, r.text
        assert await client.store.redis.command("ZCARD", client.store.keys.runs_index()) == 0
        dump = "\n".join(await scan_redis(client))
        assert "typed-orders" in dump  # the registration (and its schemas) is there
        assert "MARKER-REJECTED" not in dump, dump[dump.find("MARKER-REJECTED") - 300 :][:400]

        r = await http.post(
            "/api/v1/runs", json={"workflow": "typed-orders", "version": "1", "payload": GOOD}
        )
        assert r.status_code == 201, r.text
        done = await http.get(f"/api/v1/runs/{r.json()['id']}/wait", params={"timeout": 30})
        assert done.json()["status"] == "completed", done.text
        assert done.json()["result"]["total_quantity"] == 2

        document = (await http.get("/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    order = schemas["workflow.typed-orders.1.input"]
    assert order["properties"]["items"]["items"]["$ref"] == (
        "#/components/schemas/workflow.typed-orders.1.input.Item"
    )
    assert "workflow.typed-orders.1.input.Item" in schemas
    assert "input_schema" in schemas["Workflow"]["properties"]
