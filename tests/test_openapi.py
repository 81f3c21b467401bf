"""The OpenAPI document at ``/api/v1/openapi.json``: it names exactly the app's API
routes, and the running server (the real ``aiki server`` command) holds to it under
schemathesis' fuzzing — no 500s, every response as documented, every error a JSON
``{"error": {...}}`` body."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from test_server import SRC

import aiki
from aiki.embedded import RedisServerProcess, free_port
from aiki_server import Settings, create_app
from aiki_server.api import openapi_document

# Hypothesis looks at every loaded module's __file__, which trips valkey-glide's
# deprecated-module shims: noise, not a problem of this code.
pytestmark = pytest.mark.filterwarnings("ignore:Importing from 'glide:DeprecationWarning")

PROBES = {"/healthz", "/readyz", "/metrics"}
DASHBOARD_ENDPOINTS = {"static", "dashboard.runs_page", "dashboard.run_page"}
DASHBOARD_ENDPOINTS |= {"dashboard.workers_page", "dashboard.schedules_page"}
DASHBOARD_ENDPOINTS |= {"dashboard.dead_letters_page"}
DASHBOARD_ENDPOINTS |= {"dashboard.login_page", "dashboard.login", "dashboard.logout"}
DASHBOARD_ENDPOINTS |= {"dashboard.workflows_page", "dashboard.start_page"}

fuzzed = aiki.workflow("fuzz-flow")


@aiki.task("fuzz-step")
async def fuzz_step(payload: Any) -> Any:
    return payload


@fuzzed.v("1")
async def fuzzed_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await fuzz_step.start(ctx, payload)


def _api_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1"))
    routes: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule in PROBES):
            assert rule.endpoint in DASHBOARD_ENDPOINTS, (rule.rule, rule.endpoint)
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routes.add((method.lower(), path))
    return routes


def test_document_names_exactly_the_api_routes() -> None:
    doc = openapi_document()
    documented = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    routes = _api_routes()
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented paths the app does not serve"
    # Every $ref resolves, every operation has an id and answers errors as Error.
    refs = set(re.findall(r"#/components/schemas/(\w+)", repr(doc)))
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), ids
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "default" in op["responses"], (method, path)
            for name in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
                assert "{" + name + "}" in path


# -- fuzzing the real server ----------------------------------------------------------


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``aiki server`` as a child process on a free port, over a private Redis that
    holds a registered workflow, a completed run with a task record and a queued run."""
    redis = RedisServerProcess()
    redis.start()
    prefix = f"fz{uuid.uuid4().hex[:8]}"
    log_path = tmp_path_factory.mktemp("fuzz") / "server.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        trio.run(_seed, redis.url, prefix)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIKI_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        env["AIKI_MAX_WAIT"] = "0.2"  # long-polls of fuzzed /wait calls end quickly
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aiki_server.cli", "server", "--port", str(port)]
                + ["--redis-url", redis.url, "--prefix", prefix, "--log-level", "warning"],
                env=env,
                stdout=log,
                stderr=log,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, Path(log_path).read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.05)
        yield url
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        redis.cleanup()
    log_text = Path(log_path).read_text()
    assert "Traceback" not in log_text, log_text[-5000:]


async def _seed(redis_url: str, prefix: str) -> None:
    async with aiki.client(redis_url=redis_url, prefix=prefix) as client:
        worker = aiki.worker(client, subscriber=aiki.RedisStreams(block_time=0.1))
        worker.workflow_registry.add(fuzzed)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            handle = await fuzzed_v1.start(client, {"a": [1, "two", None]})
            await handle.wait_for_completion(timeout=30)
            await worker.stop()
        await fuzzed_v1.start(client, "queued, no worker")


@pytest.fixture(scope="module")
def api_schema(live_server: str) -> Any:
    return schemathesis.openapi.from_url(f"{live_server}/api/v1/openapi.json")


@schemathesis.check
def error_bodies_are_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx answer (but /readyz's documented 503) is {"error": {type, message}}."""
    if response.status_code < 400 or case.path == "/readyz":
        return None
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    assert body["error"].get("type") and body["error"].get("message"), body
    return True


# schemathesis' pytest integration (``from_fixture``/``parametrize``) does not run under
# pytest 9, so each operation gets its own Hypothesis test here, in both generation
# modes: valid data (POSITIVE) and data the document says is invalid (NEGATIVE).
EXAMPLES = 30


def _fuzz(operation: Any, mode: GenerationMode, base_url: str, calls: list[int]) -> None:
    """Up to EXAMPLES requests to one operation; raises on the first failed check."""
    session = requests.Session()
    # Whether a cron expression is valid cannot be said in JSON Schema: a schema-valid
    # schedule may be refused, but only for its cron field (checked below).
    cron = operation.path == "/api/v1/schedules" and operation.method.upper() == "POST"
    excluded = [positive_data_acceptance] if cron else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: Any) -> None:
        calls.append(1)
        response = case.call(base_url=base_url, session=session, timeout=15)
        case.validate_response(response, excluded_checks=excluded)
        if cron and mode is GenerationMode.POSITIVE and response.status_code == 422:
            assert response.json()["error"]["field"] == "cron", response.text

    fuzz()


def test_api_holds_to_its_document_under_fuzzing(api_schema: Any, live_server: str) -> None:
    failures: list[str] = []
    calls: list[int] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            try:
                _fuzz(operation, mode, live_server, calls)
            except Unsatisfiable:
                pass  # no invalid request exists (an operation without parameters or body)
            except (Exception, BaseExceptionGroup) as exc:
                name = f"{operation.method.upper()} {operation.path} [{mode.value}]"
                failures.append(f"{name}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert len(calls) >= 10 * EXAMPLES, len(calls)  # it did fuzz every operation
