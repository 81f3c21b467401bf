"""API keys: with keys configured every route but the health checks needs
``Authorization: Bearer <key>``; a missing or wrong key gets 401 and starts nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from _helpers import running_worker

import aiki
from aiki_server import ServerHandle, Settings, serve_server
from examples.order_processing import EXAMPLE_ORDER, order_processing, order_processing_v1

KEY = "k-" + "a1b2c3d4" * 4
OTHER_KEY = "k-" + "ffffeeee" * 4


@pytest.fixture
async def secured(redis_url: str) -> AsyncIterator[ServerHandle]:
    settings = Settings(redis_url=redis_url, host="127.0.0.1", port=0, api_keys=(KEY, OTHER_KEY))
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, settings)
        nursery.cancel_scope.cancel()


async def test_missing_or_wrong_key_is_401_and_starts_nothing(
    secured: ServerHandle, client: aiki.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_worker(client, order_processing):
        pass  # registers the workflow, so a start would otherwise be accepted
    body = {"workflow": "order-processing", "version": "1.0.0", "payload": EXAMPLE_ORDER}
    async with httpx.AsyncClient(base_url=secured.base_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
            r = await http.post("/api/v1/runs", json=body, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["type"] == "unauthorized"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        for path in ("/api/v1/runs", "/", "/metrics", "/api/v1/openapi.json"):
            assert (await http.get(path)).status_code == 401, path
        for path in ("/healthz", "/readyz"):
            assert (await http.get(path)).status_code == 200, path
        r = await http.get("/api/v1/runs", headers={"Authorization": f"Bearer {OTHER_KEY}"})
        assert r.status_code == 200 and r.json()["runs"] == []
    assert await client.store.redis.command("ZCARD", client.store.keys.runs_index()) == 0
    assert KEY not in caplog.text and OTHER_KEY not in caplog.text


async def test_sdk_client_with_api_key(secured: ServerHandle, client: aiki.Client) -> None:
    async with running_worker(client, order_processing):
        async with aiki.client(base_url=secured.base_url, api_key=KEY) as http:
            handle = await order_processing_v1.start(http, EXAMPLE_ORDER)
            assert (await handle.wait_for_completion(timeout=20))["charged"] == 29.0
        async with aiki.client(base_url=secured.base_url, api_key="nope") as http:
            with pytest.raises(aiki.ServerError) as info:
                await order_processing_v1.start(http, EXAMPLE_ORDER)
            assert info.value.status_code == 401


async def test_cli_reads_api_key_from_env(secured: ServerHandle) -> None:
    def cli(env_key: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "AIKI_API_KEY"}
        if env_key:
            env["AIKI_API_KEY"] = env_key
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "aiki_server.cli",
                "runs",
                "list",
                "--json",
                "--url",
                secured.base_url,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    denied = await trio.to_thread.run_sync(cli, None)
    assert denied.returncode == 1 and "401" in denied.stderr
    allowed = await trio.to_thread.run_sync(cli, KEY)
    assert allowed.returncode == 0, allowed.stderr
    assert KEY not in allowed.stdout + allowed.stderr + denied.stderr


def test_bad_key_settings_are_named(tmp_path: object) -> None:
    with pytest.raises(aiki.ConfigurationError, match="api_keys"):
        Settings(api_keys=("short",))
    with pytest.raises(aiki.ConfigurationError, match="AIKI_API_KEYS_FILE"):
        Settings.from_env({"AIKI_API_KEYS_FILE": "/no/such/file"})
    settings = Settings.from_env({"AIKI_API_KEYS": f"{KEY}, {OTHER_KEY}"})
    assert settings.api_keys == (KEY, OTHER_KEY)
    assert KEY not in repr(settings)


async def test_event_limit_per_run(redis_url: str, client: aiki.Client) -> None:
    settings = Settings(redis_url=redis_url, host="127.0.0.1", port=0, max_events_per_run=3)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_server, settings)
        handle = await order_processing_v1.start(client, EXAMPLE_ORDER)  # stays queued
        async with aiki.client(base_url=server.base_url) as http:
            remote = http.get_handle(handle.id)
            for i in range(3):
                assert await remote.send_event("ping", i)
            with pytest.raises(aiki.InvalidState, match="3 events"):
                await remote.send_event("ping", 4)
        nursery.cancel_scope.cancel()


async def test_sdk_rejects_oversized_payload_before_writing(redis_url: str) -> None:
    async with aiki.client(redis_url=redis_url, max_payload_bytes=1000) as small:
        with pytest.raises(aiki.InvalidPayload, match="limit is 1000"):
            await order_processing_v1.start(small, {"blob": "é" * 600})  # 1,200 bytes
        assert await small.store.redis.command("DBSIZE") == 0


async def test_requests_have_a_time_limit(redis_url: str) -> None:
    import math

    from aiki_server._deadline import RequestDeadline

    async def slow_app(scope: dict, receive: object, send: object) -> None:
        await trio.sleep(math.inf)

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await RequestDeadline(slow_app, 0.2)({"type": "http"}, None, send)
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"])["error"]["type"] == "timeout"
    with pytest.raises(aiki.ConfigurationError, match="request_timeout"):
        Settings(max_wait=60, request_timeout=30)
