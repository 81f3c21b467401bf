"""Runs started with ``sensitive=True``: the dashboard, the CLI and API reads show their
payload, result and task data redacted; workers and waiters get the real data."""

from __future__ import annotations

import subprocess
import sys

import httpx
import trio
from _helpers import running_worker

import aiki
from aiki_server import Settings, serve_server
from examples.order_processing import order_processing, order_processing_v1

SECRET = "4111-1111-1111-1111"
ORDER = {
    "order_data": {"items": [{"id": SECRET, "quantity": 1, "price": 9.0}]},
    "email": "secret-person@example.com",
}


async def test_sensitive_run_is_redacted_for_people_not_for_code(
    client: aiki.Client, redis_url: str
) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            serve_server, Settings(redis_url=redis_url, host="127.0.0.1", port=0)
        )
        async with running_worker(client, order_processing):
            async with aiki.client(base_url=server.base_url) as http_client:
                handle = await order_processing_v1.start(http_client, ORDER, sensitive=True)
                result = await handle.wait_for_completion(timeout=20)  # the real result
            assert result["confirmation_sent_to"] == "secret-person@example.com"
            plain = await order_processing_v1.start(client, ORDER)
            await plain.wait_for_completion(timeout=20)
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            shown = [
                (await http.get(f"/api/v1/runs/{handle.id}")).text,
                str(
                    next(
                        r
                        for r in (await http.get("/api/v1/runs")).json()["runs"]
                        if r["id"] == handle.id
                    )
                ),
                (await http.get(f"/runs/{handle.id}")).text,  # dashboard page
            ]
            assert SECRET in (await http.get(f"/api/v1/runs/{plain.id}")).text
        cli = await trio.to_thread.run_sync(
            lambda: subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "aiki_server.cli",
                    "runs",
                    "show",
                    handle.id,
                    "--url",
                    server.base_url,
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
        assert cli.returncode == 0, cli.stderr
        shown.append(cli.stdout)
        nursery.cancel_scope.cancel()
    for text in shown:
        assert SECRET not in text and "secret-person" not in text
        assert "[redacted]" in text
    record = await client.get_run(handle.id, with_tasks=True)  # SDK reads from Redis
    assert record.sensitive and record.payload == ORDER
