"""Search from every door: ``client.list_runs`` (over Redis and over HTTP, the same
``aiki.RunPage``), ``GET /api/v1/runs?attribute.<name>=...&reference_id=...`` and
``aiki runs list --attr NAME=VALUE --reference-id X``. (The store's search itself:
``tests/test_search.py``; the dashboard's form: ``tests/test_dashboard.py``.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from test_cli_ops import aiki_json, run_aiki
from test_server import HANG_GUARD, running_server, running_worker

import aiki
from aiki_server import Settings

shop = aiki.workflow("search-shop")


@shop.v("1")
async def shop_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.set_attributes(customer=payload["customer"], big=payload["n"] > 5)
    return "ok"


async def _started(client: aiki.Client) -> dict[str, list[str]]:
    """12 runs of 3 customers ('c0' has 4: n 0, 3, 6, 9), plus one with a reference id."""
    by_customer: dict[str, list[str]] = {}
    for n in range(12):
        customer = f"c{n % 3}"
        handle = await shop_v1.start(client, {"customer": customer, "n": n})
        by_customer.setdefault(customer, []).insert(0, handle.id)  # newest first
    ref = await shop_v1.start(client, {"customer": "c9", "n": 0}, reference_id="order-77")
    by_customer["order-77"] = [ref.id]
    for run_id in [i for ids in by_customer.values() for i in ids]:
        await client.get_handle(run_id).wait_for_completion(timeout=HANG_GUARD)
    return by_customer


async def test_sdk_api_and_cli_search_by_attribute_and_reference(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, shop),
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        aiki.client(base_url=server.base_url) as over_http,
    ):
        ids = await _started(client)
        c0 = set(ids["c0"])
        for sdk in (client, over_http):
            page = await sdk.list_runs(attributes={"customer": "c0"})
            assert isinstance(page, aiki.RunPage) and page.next_cursor is None
            assert {r.id for r in page.runs} == c0
            assert page.runs[0].attributes["customer"] == "c0"
            # paging: 4 runs, 3 a page
            first = await sdk.list_runs(attributes={"customer": "c0"}, limit=3)
            assert len(first.runs) == 3 and first.next_cursor
            rest = await sdk.list_runs(
                attributes={"customer": "c0"}, limit=3, cursor=first.next_cursor
            )
            assert {r.id for r in [*first.runs, *rest.runs]} == c0 and rest.next_cursor is None
            both = await sdk.list_runs(attributes={"customer": "c0", "big": True})
            assert len(both.runs) == 2  # n 6 and 9
            by_ref = await sdk.list_runs(reference_id="order-77", status="completed")
            assert [r.id for r in by_ref.runs] == ids["order-77"]
            hour = timedelta(hours=1)
            assert await sdk.list_runs(
                attributes={"customer": "c0"}, created_before=datetime.now(UTC) - hour
            ) == aiki.RunPage([], None)
            with pytest.raises(aiki.ConfigurationError) as bad:
                await sdk.list_runs(attributes={"no:colon": "x"})
            assert bad.value.field == "attribute.no:colon"
            with pytest.raises(aiki.ConfigurationError, match="cursor"):
                await sdk.list_runs(cursor="nope")

        async with httpx.AsyncClient(base_url=server.base_url) as http:
            answer = await http.get("/api/v1/runs", params={"attribute.customer": "c1"})
            assert answer.status_code == 200
            assert {r["id"] for r in answer.json()["runs"]} == set(ids["c1"])
            answer = await http.get(
                "/api/v1/runs", params={"attribute.customer": "c1", "reference_id": "order-77"}
            )
            assert answer.json()["runs"] == []
            bad = await http.get("/api/v1/runs", params={"attribute.a:b": "1"})
            assert bad.status_code == 422
            assert bad.json()["error"]["field"] == "attribute.a:b"
            document = (await http.get("/api/v1/openapi.json")).json()
            operation = document["paths"]["/api/v1/runs"]["get"]
            assert "reference_id" in {p["name"] for p in operation["parameters"]}
            assert "attribute.<name>=<value>" in operation["description"]
            assert operation["x-aiki-parameter-families"][0]["prefix"] == "attribute."

        url = server.base_url
        listed = await aiki_json("runs", "list", "--attr", "customer=c2", "--url", url)
        assert [r["id"] for r in listed["runs"]] == ids["c2"]
        listed = await aiki_json(
            "runs", "list", "--attr", "customer=c2", "--attr", "big=true", "--url", url
        )
        assert len(listed["runs"]) == 2
        listed = await aiki_json("runs", "list", "--reference-id", "order-77", "--url", url)
        assert [r["id"] for r in listed["runs"]] == ids["order-77"]
        table = await run_aiki("runs", "list", "--attr", "customer=c2", "--url", url)
        assert table.returncode == 0 and "ATTRIBUTES" in table.out and "customer=c2" in table.out
        wrong = await run_aiki("runs", "list", "--attr", "customer", "--url", url)
        assert wrong.returncode != 0 and "NAME=VALUE" in wrong.err
