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
from _helpers import running_worker
from workers.typed_flows import ship, typed_orders

import aiki
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

        bad_cases = [
            ({"items": [{"sku": "a", "quantity": "many"}]}, "payload.items[0].quantity"),
            ({"items": [{"sku": "a"}]}, "payload.items[0].quantity"),  # missing
            ({"coupon": "X"}, "payload.coupon"),  # a forbidden extra field
            ({"order_id": 7}, "payload.order_id"),
        ]
        for change, field in bad_cases:
            r = await http.post(
                "/api/v1/runs",
                json={"workflow": "typed-orders", "version": "1", "payload": {**GOOD, **change}},
            )
            assert r.status_code == 422, r.text
            assert r.json()["error"]["field"] == field, r.text
        assert await client.store.redis.command("ZCARD", client.store.keys.runs_index()) == 0

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
