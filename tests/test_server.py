"""The HTTP server: the API against a real Redis and real workers, served by Hypercorn
(in-process through ``serve_server``, and by the ``hypercorn`` command line).

Every test uses a private Redis on a free port (never 127.0.0.1:6379) and its own key
prefix, so tests sharing the module's Redis cannot see each other's runs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _helpers import running_worker as shared_running_worker

import aiki
from aiki._redis import open_redis
from aiki._store import Keys, Store
from aiki.embedded import RedisServerProcess, free_port
from aiki_server import ServerHandle, Settings, create_app, serve_server

SRC = Path(__file__).resolve().parents[1] / "src"
HANG_GUARD = 60.0  # seconds: fails a hung test; never a timing assertion


# -- workflows the tests' workers run -------------------------------------------------


@aiki.task("server-test-double")
async def double(payload: dict[str, Any]) -> int:
    return payload["n"] * 2


server_echo = aiki.workflow("server-test-echo")


@server_echo.v("1")
async def server_echo_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    doubled = await double.start(ctx, {"n": payload["n"]})
    return {"n": payload["n"], "doubled": doubled, "tag": payload.get("tag")}


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(module_redis: RedisServerProcess, prefix: str) -> Settings:
    return Settings(redis_url=module_redis.url, host="127.0.0.1", port=0, prefix=prefix)


@contextlib.asynccontextmanager
async def running_server(settings: Settings) -> AsyncIterator[ServerHandle]:
    """``serve_server`` in a nursery; cancelled when the block ends."""
    async with trio.open_nursery() as nursery:
        handle: ServerHandle = await nursery.start(serve_server, settings)
        try:
            yield handle
        finally:
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def running_worker(
    redis_url: str, prefix: str, *workflows: Any, concurrency: int = 10
) -> AsyncIterator[aiki.Worker]:
    """The shared ``_helpers.running_worker`` on a client of its own under ``prefix``."""
    async with (
        aiki.client(redis_url=redis_url, prefix=prefix) as client,
        shared_running_worker(
            client, *workflows, max_concurrent_workflow_runs=concurrency, claim_min_idle_time=5.0
        ) as worker,
    ):
        yield worker


@contextlib.asynccontextmanager
async def open_store(redis_url: str, prefix: str) -> AsyncIterator[Store]:
    async with open_redis(redis_url, name="aiki-test") as redis:
        yield Store(redis, Keys(prefix))


async def prefix_keys(store: Store) -> set[str]:
    keys = await store.redis.command("KEYS", f"{store.keys.prefix}:*")
    return {k.decode() if isinstance(k, bytes) else k for k in keys}


async def runs_count(store: Store) -> int:
    return int(await store.redis.command("ZCARD", store.keys.runs_index()))


def assert_error(response: httpx.Response, status: int, type_: str, field: str | None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["type"] == type_, error
    assert error["field"] == field, error
    assert error["message"]
    return error


# -- the happy path --------------------------------------------------------------------


async def test_start_over_http_and_wait_with_a_real_worker(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, server_echo),
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        response = await http.post(
            "/api/v1/runs",
            json={
                "workflow": "server-test-echo",
                "version": "1",
                "payload": {"n": 21, "tag": "x"},
            },
        )
        assert response.status_code == 201, response.text
        started = response.json()
        assert started["status"] == "queued"
        assert started["workflow"] == "server-test-echo" and started["version"] == "1"
        run_id = started["id"]
        assert response.headers["location"] == f"/api/v1/runs/{run_id}"

        response = await http.get(f"/api/v1/runs/{run_id}/wait", params={"timeout": 30})
        assert response.status_code == 200, response.text
        run = response.json()
        assert run["id"] == run_id
        assert run["status"] == "completed"
        assert run["result"] == {"n": 21, "doubled": 42, "tag": "x"}
        assert run["payload"] == {"n": 21, "tag": "x"}
        assert [t["status"] for t in run["tasks"]] == ["completed"]

        shown = (await http.get(f"/api/v1/runs/{run_id}")).json()
        assert shown["status"] == "completed" and shown["tasks"] == run["tasks"]

        listed = (await http.get("/api/v1/runs")).json()
        assert [r["id"] for r in listed["runs"]] == [run_id]
        assert listed["next_cursor"] is None

        workflows = (await http.get("/api/v1/workflows")).json()["workflows"]
        assert [(w["workflow"], w["version"]) for w in workflows] == [("server-test-echo", "1")]


async def test_base_url_client_starts_and_awaits_100_runs(settings: Settings) -> None:
    assert settings.redis_url is not None
    results: dict[int, Any] = {}
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, server_echo),
        aiki.client(base_url=server.base_url, prefix=settings.prefix) as client,
    ):
        assert not client.uses_redis

        async def one(n: int) -> None:
            handle = await server_echo_v1.start(client, {"n": n})
            results[n] = await handle.wait_for_completion(timeout=HANG_GUARD)

        async with trio.open_nursery() as nursery:
            for n in range(100):
                nursery.start_soon(one, n)
    assert results == {n: {"n": n, "doubled": 2 * n, "tag": None} for n in range(100)}


async def test_delayed_start_over_http_is_fired_by_the_servers_timer_daemon(
    settings: Settings,
) -> None:
    assert settings.redis_url is not None
    async with (
        running_server(settings) as server,
        running_worker(settings.redis_url, settings.prefix, server_echo),
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        start_at_ms = int(time.time() * 1000) + 2000
        response = await http.post(
            "/api/v1/runs",
            json={
                "workflow": "server-test-echo",
                "version": "1",
                "payload": {"n": 5},
                "start_at_ms": start_at_ms,
            },
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "scheduled"
        run_id = response.json()["id"]
        run: dict[str, Any] = {}
        with trio.move_on_after(HANG_GUARD):
            while run.get("status") != "completed":
                wait = await http.get(f"/api/v1/runs/{run_id}/wait", params={"timeout": 30})
                run = wait.json()
        assert run["status"] == "completed" and run["result"]["doubled"] == 10
        assert run["started_at"] >= start_at_ms


async def test_wait_returns_the_current_run_when_the_timeout_passes(settings: Settings) -> None:
    async with (
        running_server(settings) as server,
        open_store(settings.redis_url or "", settings.prefix) as store,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        # Registered, but no worker runs it: the run stays queued.
        await store.register_workflows([("server-test-echo", "1")], "test")
        started = await http.post(
            "/api/v1/runs", json={"workflow": "server-test-echo", "version": "1", "payload": {}}
        )
        run_id = started.json()["id"]
        response = await http.get(f"/api/v1/runs/{run_id}/wait", params={"timeout": "0"})
        assert response.status_code == 200
        assert response.json()["status"] == "queued"
        for bad in ("-1", "abc", "nan"):
            response = await http.get(f"/api/v1/runs/{run_id}/wait", params={"timeout": bad})
            assert_error(response, 422, "validation_error", "timeout")


async def test_list_runs_pages_without_losing_runs(settings: Settings) -> None:
    async with (
        running_server(settings) as server,
        open_store(settings.redis_url or "", settings.prefix) as store,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        await store.register_workflows([("server-test-echo", "1")], "test")
        ids = set()
        for n in range(7):
            response = await http.post(
                "/api/v1/runs",
                json={"workflow": "server-test-echo", "version": "1", "payload": {"n": n}},
            )
            ids.add(response.json()["id"])
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/api/v1/runs", params=params)).json()
            assert len(page["runs"]) <= 3
            seen += [r["id"] for r in page["runs"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == 7

        queued = (await http.get("/api/v1/runs", params={"status": "queued"})).json()
        assert len(queued["runs"]) == 7
        none = (await http.get("/api/v1/runs", params={"status": "failed"})).json()
        assert none == {"runs": [], "next_cursor": None}
        for params, field in [
            ({"status": "bogus"}, "status"),
            ({"limit": "0"}, "limit"),
            ({"limit": "501"}, "limit"),
            ({"limit": "x"}, "limit"),
            ({"cursor": "yesterday"}, "cursor"),
            ({"stauts": "queued"}, "stauts"),
        ]:
            response = await http.get("/api/v1/runs", params=params)
            assert_error(response, 422, "validation_error", field)


# -- bad input: 4xx with a JSON body naming the field, and nothing written --------------


BAD_STARTS: list[tuple[str, Any, int, str, str]] = [
    ("not JSON", b"{not json", 400, "invalid_json", "body"),
    ("not an object", b'["workflow"]', 400, "invalid_json", "body"),
    ("missing workflow", {"version": "1"}, 422, "validation_error", "workflow"),
    ("empty workflow", {"workflow": "", "version": "1"}, 422, "validation_error", "workflow"),
    (
        "version not a string",
        {"workflow": "server-test-echo", "version": 1},
        422,
        "validation_error",
        "version",
    ),
    (
        "reference id not a string",
        {"workflow": "server-test-echo", "version": "1", "reference_id": 7},
        422,
        "validation_error",
        "reference_id",
    ),
    (
        "unknown field",
        {"workflow": "server-test-echo", "version": "1", "paylod": {}},
        422,
        "validation_error",
        "paylod",
    ),
    ("unknown workflow", {"workflow": "nope", "version": "1"}, 404, "unknown_workflow", "workflow"),
    (
        "unknown version",
        {"workflow": "server-test-echo", "version": "9"},
        404,
        "unknown_workflow",
        "version",
    ),
    (
        "oversized payload",
        {"workflow": "server-test-echo", "version": "1", "payload": "x" * 2000},
        413,
        "payload_too_large",
        "payload",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "type_", "field"),
    [case[1:] for case in BAD_STARTS],
    ids=[case[0] for case in BAD_STARTS],
)
async def test_bad_start_is_refused_and_writes_nothing(
    module_redis: RedisServerProcess,
    prefix: str,
    body: Any,
    status: int,
    type_: str,
    field: str,
) -> None:
    settings = Settings(redis_url=module_redis.url, port=0, prefix=prefix, max_payload_bytes=1000)
    async with (
        running_server(settings) as server,
        open_store(module_redis.url, prefix) as store,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        await store.register_workflows([("server-test-echo", "1")], "test")
        keys_before = await prefix_keys(store)
        runs_before = await runs_count(store)
        if isinstance(body, bytes):
            response = await http.post(
                "/api/v1/runs", content=body, headers={"content-type": "application/json"}
            )
        else:
            response = await http.post("/api/v1/runs", json=body)
        error = assert_error(response, status, type_, field)
        if field == "version" and type_ == "unknown_workflow":
            assert error["known_versions"] == ["1"]
        assert await runs_count(store) == runs_before == 0
        assert await prefix_keys(store) == keys_before


async def test_oversized_request_body_is_a_json_413(module_redis: RedisServerProcess) -> None:
    settings = Settings(redis_url=module_redis.url, port=0, max_payload_bytes=100)
    async with (
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        body = b'{"workflow": "w", "version": "1", "payload": "' + b"x" * 200_000 + b'"}'
        response = await http.post(
            "/api/v1/runs", content=body, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "payload_too_large", "payload")


async def test_unknown_run_and_route_are_json_404s(settings: Settings) -> None:
    async with (
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        for path in ("/api/v1/runs/no-such-run", "/api/v1/runs/no-such-run/wait?timeout=0"):
            error = assert_error(await http.get(path), 404, "run_not_found", "run_id")
            assert "no-such-run" in error["message"]
        assert_error(await http.get("/api/v1/nothing-here"), 404, "not_found", None)
        # Outside the API, a client asking for JSON gets a JSON 404 (a browser, HTML).
        assert_error(await http.get("/no-such-page"), 404, "not_found", None)
        response = await http.delete("/api/v1/runs")
        assert_error(response, 405, "method_not_allowed", None)
        assert "POST" in response.headers["allow"]


async def test_unexpected_errors_are_json_500s(settings: Settings) -> None:
    from aiki_server._state import app_state

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    async with (
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        store = app_state(server.app).store
        assert store is not None
        store.get_run = broken  # type: ignore[method-assign]
        error = assert_error(await http.get("/api/v1/runs/x"), 500, "internal_error", None)
        assert "a bug" not in error["message"]  # no internals leak to clients
        assert (await http.get("/healthz")).status_code == 200


async def test_http_client_maps_errors(settings: Settings) -> None:
    async with (
        running_server(settings) as server,
        aiki.client(base_url=server.base_url) as client,
    ):
        with pytest.raises(aiki.UnknownWorkflow):
            await server_echo_v1.start(client, {"n": 1})
        with pytest.raises(aiki.RunNotFound):
            await client.get_run("missing")
        with pytest.raises(aiki.RunNotFound):
            await client.get_handle("missing").wait_for_completion(timeout=1)


# -- probes, metrics, lifecycle --------------------------------------------------------


async def test_probes_and_metrics(settings: Settings) -> None:
    async with (
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ok"
        await http.get("/api/v1/runs/nope")
        text = (await http.get("/metrics")).text
        assert 'aiki_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
        assert (
            'aiki_http_requests_total{method="GET",route="/api/v1/runs/<run_id>",status="404"} 1.0'
            in text
        )


async def test_readyz_is_503_while_redis_is_down(prefix: str) -> None:
    redis = RedisServerProcess()
    await redis.start_async()
    try:
        settings = Settings(redis_url=redis.url, port=0, prefix=prefix)
        async with (
            running_server(settings) as server,
            httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
        ):
            assert (await http.get("/readyz")).status_code == 200
            await trio.to_thread.run_sync(redis.kill)
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
            assert (await http.get("/healthz")).status_code == 200
            assert_error(await http.get("/api/v1/runs"), 503, "unavailable", None)
    finally:
        await trio.to_thread.run_sync(redis.cleanup)


async def test_create_app_does_no_io_and_startup_failure_is_clear() -> None:
    # Nothing listens there: constructing the app must not try.
    port = free_port()
    settings = Settings(redis_url=f"redis://127.0.0.1:{port}", port=0)
    app = create_app(settings)
    assert app is not None
    async with trio.open_nursery() as nursery:
        with pytest.raises(aiki.ConnectionFailed):
            await nursery.start(serve_server, settings)


async def test_an_app_without_redis_url_fails_to_start_clearly() -> None:
    settings = Settings(redis_url=None, port=0)
    app = create_app(settings)
    async with trio.open_nursery() as nursery:
        with pytest.raises(aiki.ConfigurationError, match="AIKI_REDIS_URL"):
            await nursery.start(functools.partial(serve_server, settings, app=app))


async def test_serve_server_without_redis_url_runs_an_embedded_redis(tmp_path: Path) -> None:
    settings = Settings(redis_url=None, port=0, data_dir=str(tmp_path / "data"))
    async with (
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        assert server.redis_url is not None and server.redis_url.startswith("redis://")
        assert (await http.get("/readyz")).status_code == 200
        assert (await http.get("/api/v1/runs")).json() == {"runs": [], "next_cursor": None}
    assert (tmp_path / "data" / "appendonlydir").is_dir()


async def test_shutdown_trigger_stops_gracefully(settings: Settings) -> None:
    from aiki_server._state import app_state

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        server: ServerHandle = await nursery.start(
            functools.partial(serve_server, settings, shutdown_trigger=stop.wait)
        )
        assert app_state(server.app).store is not None
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.get("/healthz")).status_code == 200
        stop.set()
    # serve_server returned by itself (the nursery was not cancelled) and closed Redis.
    assert app_state(server.app).store is None


def test_settings_from_env() -> None:
    env = {
        "AIKI_REDIS_URL": "redis://example:6380/2",
        "AIKI_HOST": "0.0.0.0",
        "AIKI_PORT": "8081",
        "AIKI_PREFIX": "p",
        "AIKI_MAX_PAYLOAD_BYTES": "2048",
    }
    s = Settings.from_env(env)
    assert (s.redis_url, s.host, s.port, s.prefix, s.max_payload_bytes) == (
        "redis://example:6380/2",
        "0.0.0.0",
        8081,
        "p",
        2048,
    )
    assert Settings.from_env({}) == Settings()
    assert Settings.from_env({"AIKI_DAEMONS": "0"}).daemons is False
    for var, value in [
        ("AIKI_PORT", "http"),
        ("AIKI_PORT", "70000"),
        ("AIKI_MAX_PAYLOAD_BYTES", "0"),
        ("AIKI_REDIS_URL", "localhost:6379"),
        ("AIKI_DAEMONS", "maybe"),
    ]:
        with pytest.raises(aiki.ConfigurationError, match=var):
            Settings.from_env({var: value})


# -- the real hypercorn command line ---------------------------------------------------


def _open_log(path: Path) -> Any:
    return open(path, "wb")  # the child writes to it; we only read it on failure


async def test_hypercorn_cli_serves_the_app_module(
    module_redis: RedisServerProcess, prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["AIKI_REDIS_URL"] = module_redis.url
    env["AIKI_PREFIX"] = prefix
    command = [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class",
        "trio",
        "--bind",
        f"127.0.0.1:{port}",
        "aiki_server.app:app",
    ]
    log_path = tmp_path / "hypercorn.log"
    with _open_log(log_path) as log:
        proc = await trio.lowlevel.open_process(command, env=env, stdout=log, stderr=log)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            health = None
            with trio.move_on_after(HANG_GUARD):
                while proc.poll() is None:
                    try:
                        health = await http.get("/healthz")
                        break
                    except httpx.TransportError:
                        await trio.sleep(0.05)
            assert health is not None, log_path.read_text()
            assert health.status_code == 200 and health.json() == {"status": "ok"}
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            response = await http.post(
                "/api/v1/runs", json={"workflow": "nope", "version": "1", "payload": None}
            )
            assert_error(response, 404, "unknown_workflow", "workflow")
    finally:
        proc.terminate()
        with trio.move_on_after(15) as scope:
            await proc.wait()
        if scope.cancelled_caught:
            proc.kill()
            await proc.wait()
