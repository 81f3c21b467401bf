"""Starting and awaiting runs from asyncio programs: the anyio-based client on asyncio,
and the FastAPI example driven through its ASGI interface."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
from _helpers import ROOT, subprocess_env

from examples.order_processing import EXAMPLE_ORDER


@pytest.fixture
def order_worker(redis_url: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "workers" / "order_worker.py"), redis_url],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def expected(order: dict) -> float:
    return round(sum(i["quantity"] * i["price"] for i in order["order_data"]["items"]), 2)


def test_plain_asyncio_program_starts_and_awaits_runs(redis_url: str, order_worker: object) -> None:
    import aiki
    from examples.order_processing import order_processing_v1

    async def main() -> list[object]:
        async with aiki.client(redis_url=redis_url) as client:
            handles = [await order_processing_v1.start(client, EXAMPLE_ORDER) for _ in range(5)]
            results = await asyncio.gather(*(h.wait_for_completion(timeout=30) for h in handles))
            assert await handles[0].status() == "completed"
            return list(results)

    results = asyncio.run(main())
    assert [r["charged"] for r in results] == [expected(EXAMPLE_ORDER)] * 5  # type: ignore[index]


def test_fastapi_example_starts_a_run_per_request(redis_url: str, order_worker: object) -> None:
    from fastapi.testclient import TestClient

    from examples.fastapi_app import create_app

    order = {
        "order_data": {"items": [{"id": "a", "quantity": 3, "price": 2.5}]},
        "email": "asgi@example.com",
    }
    with TestClient(create_app(redis_url)) as http:  # runs the lifespan on asyncio
        response = http.post("/orders", json=order)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["result"]["charged"] == 7.5
        assert body["result"]["confirmation_sent_to"] == "asgi@example.com"
        status = http.get(f"/orders/{body['run_id']}")
        assert status.json()["status"] == "completed"
        assert http.get("/orders/nope").status_code == 404
