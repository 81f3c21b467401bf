"""The HTTP JSON API: a Quart-Trio app over the state store.

``create_app(settings)`` does no I/O: the Redis connection and the run-ended listener
are opened when the app starts serving (``before_serving``), in a task of the app's own
nursery, and closed when it stops (``after_serving``, or cancellation). All Redis state
goes through :class:`aiki._store.Store`; this module imports no Redis library.

Every API response is JSON (``/metrics`` excepted); every API error is
``{"error": {"type": ..., "message": ..., "field": ...}}`` with a 4xx/5xx status, and a
rejected request writes nothing. The document of the API is served at
``/api/v1/openapi.json`` (:mod:`aiki_server._openapi`). The dashboard
(:mod:`aiki_server._dashboard`) serves HTML at ``/``, ``/runs/<id>``, ``/workers`` and
``/schedules``; errors on those pages are HTML for browsers.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from aiki import (
    ConfigurationError,
    ConnectionFailed,
    InvalidPayload,
    InvalidState,
    RunConflict,
    RunNotFound,
    _schedules,
    _serde,
)
from aiki._notify import RunEndedListener, wait_for_end
from aiki._redis import connect, open_asyncio_bridge, resolve_implementation
from aiki._retention import serve_retention
from aiki._schedules import serve_schedules
from aiki._store import Keys, Store
from aiki._store._keys import RUN_STATUSES
from aiki._store._store import choose_run_id
from aiki._timers import serve_timers

from ._deadline import RequestDeadline
from ._metrics import RedisCollector
from ._observe import list_workers
from ._openapi import MAX_LIST_LIMIT, MAX_MS, MAX_SECONDS, openapi_document
from ._settings import Settings

log = logging.getLogger("aiki_server")

API = "/api/v1"
DEFAULT_WAIT = 30.0
START_FIELDS = frozenset(
    {
        "workflow",
        "version",
        "payload",
        "reference_id",
        "on_conflict",
        "start_at_ms",
        "timeout",
        "sensitive",
    }
)
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ERROR_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered as ``{"error": {...}}`` with ``status``."""

    def __init__(
        self, status: int, type: str, message: str, field: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "error": {"type": self.type, "message": self.message, "field": self.field, **self.extra}
        }


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Our own compact encoder: key order of user payloads is kept, not sorted.
    return Response(
        _serde.dumps(data, what="response"),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _error(
    status: int, type: str, message: str, field: str | None = None, **extra: Any
) -> Response:
    return json_response(ApiError(status, type, message, field, **extra).body(), status)


class AppState:
    """What one app holds while serving: its Store, listener and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.listener: RunEndedListener | None = None
        self.redis_url: str | None = settings.redis_url
        self.startup_error: BaseException | None = None
        self._scope: trio.CancelScope | None = None
        self._closed = trio.Event()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aiki_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        # Runs, tasks, queues and workers, read from Redis when /metrics is scraped.
        self.collector = RedisCollector()
        self.registry.register(self.collector)

    def require_store(self) -> Store:
        if self.store is None:
            raise ApiError(503, "unavailable", "the server is not connected to Redis yet")
        return self.store

    def require_listener(self) -> RunEndedListener:
        if self.listener is None:
            raise ApiError(503, "unavailable", "the server is not connected to Redis yet")
        return self.listener

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the Redis connection and the listener until cancelled."""
        settings = self.settings
        self._closed = trio.Event()  # an app may be served more than once
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with contextlib.AsyncExitStack() as stack:
                    url = settings.redis_url
                    if url is None:
                        raise ConfigurationError(
                            "the Aiki server needs a Redis URL: set AIKI_REDIS_URL or "
                            "Settings(redis_url=...) (serve_server and `aiki dev` can run an "
                            "embedded Redis instead)"
                        )
                    implementation = resolve_implementation(settings.redis_client)
                    await stack.enter_async_context(open_asyncio_bridge(implementation))
                    redis = await connect(url, name="aiki-server", implementation=implementation)
                    stack.push_async_callback(_shielded(redis.aclose))
                    store = Store(redis, Keys(settings.prefix))
                    listener = RunEndedListener(
                        url, store, name="aiki-server-notify", implementation=implementation
                    )
                    nursery = await stack.enter_async_context(trio.open_nursery())
                    await nursery.start(listener.serve)
                    if settings.daemons:
                        # Safe with several servers on one Redis: each timer and each
                        # schedule occurrence is fired by one atomic script, once.
                        await nursery.start(serve_timers, store)
                        await nursery.start(serve_schedules, store)
                        await nursery.start(serve_retention, store, settings.retention)
                    self.redis_url, self.store, self.listener = url, store, listener
                    log.info("aiki server connected to Redis (prefix %r)", settings.prefix)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self.store = self.listener = None
            self._closed.set()

    async def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._closed.wait()


def _shielded(fn: Any) -> Any:
    async def call() -> None:
        with trio.CancelScope(shield=True):
            await fn()

    return call


# -- request parsing ------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_body(data: bytes) -> dict[str, Any]:
    try:
        body = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}", "body") from None
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "invalid_json",
            f"the body must be a JSON object, got {type(body).__name__}",
            "body",
        )
    return body


def _required_string(body: dict[str, Any], field: str) -> str:
    if field not in body:
        raise ApiError(422, "validation_error", f"{field} is required", field)
    value = body[field]
    if not isinstance(value, str) or not value:
        raise ApiError(
            422,
            "validation_error",
            f"{field} must be a non-empty string, got {_json_type(value)}",
            field,
        )
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "an empty string" if not value else "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _query_int(name: str, default: int | None, low: int, high: int | None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            422, "validation_error", f"{name} must be an integer, got {raw!r}", name
        ) from None
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ApiError(422, "validation_error", f"{name} must be {bounds}, got {value}", name)
    return value


def _check_query(allowed: set[str]) -> None:
    for name in request.args:
        if name not in allowed:
            raise ApiError(
                422,
                "validation_error",
                f"unknown query parameter {name!r} (allowed: {', '.join(sorted(allowed))})",
                name,
            )


# -- the app --------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> QuartTrio:
    """The Aiki server as a Quart-Trio app. Does no I/O until it starts serving."""
    settings = settings if settings is not None else Settings.from_env()
    app = QuartTrio("aiki_server")
    # Room for a payload of max_payload_bytes written with whitespace or escapes; the
    # payload itself is measured exactly once parsed.
    app.config["MAX_CONTENT_LENGTH"] = 4 * settings.max_payload_bytes + 65_536
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = 5
    state = AppState(settings)
    app.extensions["aiki"] = state
    # Every request has a time limit (a 504 JSON error past it): see _deadline.
    app.asgi_app = RequestDeadline(  # type: ignore[assignment,method-assign]
        app.asgi_app, settings.request_timeout
    )

    @app.before_serving
    async def _open() -> None:
        state.startup_error = None
        try:
            await app.nursery.start(state.run)
        except Exception as exc:
            state.startup_error = _single_leaf(exc)
            raise

    @app.after_serving
    async def _close() -> None:
        await state.close()

    @app.before_request
    async def _authenticate() -> None:
        """With API keys configured, every route but the health checks needs
        ``Authorization: Bearer <key>`` (compared in constant time, never logged)."""
        if not settings.api_keys or request.path in ("/healthz", "/readyz"):
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        presented = given.strip().encode()
        ok = scheme.lower() == "bearer" and any(
            hmac.compare_digest(presented, key.encode()) for key in settings.api_keys
        )
        if not ok:
            raise ApiError(
                401,
                "unauthorized",
                "this server needs an API key: send Authorization: Bearer <key>",
                "Authorization",
            )

    @app.after_request
    async def _count(response: Response) -> Response:
        rule = request.url_rule
        method = request.method if request.method in _KNOWN_METHODS else "OTHER"
        route = rule.rule if rule is not None else "unmatched"
        state.requests.labels(method, route, str(response.status_code)).inc()
        return response

    # -- errors -----------------------------------------------------------------------

    from ._dashboard import blueprint, html_error, wants_html

    app.register_blueprint(blueprint)

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        if wants_html():
            response = await html_error(exc.status, exc.message)
        else:
            response = json_response(exc.body(), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="aiki"'
        return response

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        kind = _ERROR_TYPES.get(status, "http_error")
        message = exc.description or exc.name
        field = None
        if status == 404:
            message = f"no route {request.method} {request.path}"
        elif status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif status == 413:
            message = (
                f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes "
                f"(payloads may be at most {settings.max_payload_bytes} bytes)"
            )
            field = "payload"
        if wants_html():
            response = await html_error(status, message)
        else:
            response = _error(status, kind, message, field)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(ConnectionFailed)
    async def _unavailable(exc: ConnectionFailed) -> Response:
        log.warning("%s %s: Redis unavailable: %s", request.method, request.path, exc)
        if wants_html():
            return await html_error(503, "Redis is unavailable; try again later")
        return _error(503, "unavailable", "Redis is unavailable; try again later")

    @app.errorhandler(Exception)
    async def _internal(exc: Exception) -> Response:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        if wants_html():
            with contextlib.suppress(Exception):
                return await html_error(500, "internal server error")
        return _error(500, "internal_error", "internal server error")

    # -- probes and metrics -----------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        store = state.store
        if store is None or state.listener is None:
            return json_response({"status": "unavailable", "redis": "not connected"}, 503)
        pong = None
        with trio.move_on_after(2.0):
            try:
                pong = await store.redis.command("PING")
            except ConnectionFailed:
                pong = None
        # A cluster client answers for every primary: all of them must answer.
        replies = list(pong.values()) if isinstance(pong, dict) else [pong]
        if not replies or any(reply not in (b"PONG", "PONG") for reply in replies):
            return json_response({"status": "unavailable", "redis": "no answer to PING"}, 503)
        return json_response({"status": "ok", "redis": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        await state.collector.refresh(state.store)
        return Response(generate_latest(state.registry), content_type=CONTENT_TYPE_LATEST)

    @app.get(f"{API}/openapi.json")
    async def openapi() -> Response:
        return json_response(openapi_document())

    # -- runs -------------------------------------------------------------------------

    @app.post(f"{API}/runs")
    async def start_run() -> Response:
        data = await request.get_data(cache=False, as_text=False)
        body = _parse_body(data if isinstance(data, bytes) else data.encode())
        workflow = _required_string(body, "workflow")
        version = _required_string(body, "version")
        reference_id = body.get("reference_id")
        if reference_id is not None and (not isinstance(reference_id, str) or not reference_id):
            raise ApiError(
                422,
                "validation_error",
                f"reference_id must be a non-empty string or null, got {_json_type(reference_id)}",
                "reference_id",
            )
        on_conflict = body.get("on_conflict")
        if on_conflict is None:
            on_conflict = "error"
        if on_conflict not in ("error", "return_existing"):
            raise ApiError(
                422,
                "validation_error",
                "on_conflict must be 'error' or 'return_existing'",
                "on_conflict",
            )
        start_at_ms = body.get("start_at_ms")
        if start_at_ms is not None and (
            not isinstance(start_at_ms, int)
            or isinstance(start_at_ms, bool)
            or not 0 <= start_at_ms <= MAX_MS
        ):
            raise ApiError(
                422,
                "validation_error",
                f"start_at_ms must be a Unix time in milliseconds (an integer in 0..{MAX_MS}) "
                "or null",
                "start_at_ms",
            )
        run_timeout = body.get("timeout")
        if run_timeout is not None and (
            not isinstance(run_timeout, int | float)
            or isinstance(run_timeout, bool)
            or not math.isfinite(run_timeout)
            or not 0 < run_timeout <= MAX_SECONDS
        ):
            raise ApiError(
                422,
                "validation_error",
                f"timeout must be a number of seconds > 0 and <= {MAX_SECONDS}, or null",
                "timeout",
            )
        sensitive = body.get("sensitive", False)
        if sensitive is None:
            sensitive = False
        if not isinstance(sensitive, bool):
            raise ApiError(422, "validation_error", "sensitive must be true or false", "sensitive")
        # Unknown fields are refused, not ignored: a field this server does not know
        # (a newer client's option, a typo) would otherwise be silently dropped.
        unknown = sorted(set(body) - START_FIELDS)
        if unknown:
            raise ApiError(
                422,
                "validation_error",
                f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(START_FIELDS))})",
                unknown[0],
            )
        try:
            payload_json = _serde.dumps(body.get("payload"), what="payload")
        except (InvalidPayload, RecursionError) as exc:
            raise ApiError(422, "validation_error", str(exc), "payload") from None
        size = len(payload_json.encode("utf-8"))
        if size > settings.max_payload_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                f"payload is {size} bytes as compact JSON; the limit is "
                f"{settings.max_payload_bytes}",
                "payload",
                limit=settings.max_payload_bytes,
            )
        store = state.require_store()
        registration = await store.workflow_registration(workflow, version)
        if registration is None:
            known = [
                w["version"] for w in await store.list_workflows() if w["workflow"] == workflow
            ]
            if known:
                raise ApiError(
                    404,
                    "unknown_workflow",
                    f"workflow {workflow!r} has no version {version!r} "
                    f"(known versions: {', '.join(known)})",
                    "version",
                    known_versions=known,
                )
            raise ApiError(
                404,
                "unknown_workflow",
                f"unknown workflow {workflow!r}: no worker has registered it",
                "workflow",
            )
        if run_timeout is None and registration.get("timeout"):
            # the version's own timeout, as its worker registered it
            run_timeout = float(registration["timeout"])
        run_id = choose_run_id(
            workflow, int(registration.get("shards") or 1), reference_id=reference_id
        )
        try:
            started = await store.start_run(
                workflow,
                version,
                payload_json,
                run_id=run_id,
                reference_id=reference_id,
                on_conflict=on_conflict,
                start_at_ms=start_at_ms,
                timeout=run_timeout,
                sensitive=sensitive,
            )
        except RunConflict as exc:
            raise ApiError(409, "run_conflict", str(exc), "reference_id") from None
        location = {"Location": f"{API}/runs/{started}"}
        if started == run_id and start_at_ms is None:
            out = {
                "id": run_id,
                "workflow": workflow,
                "version": version,
                "status": "queued",
                "reference_id": reference_id,
                "created": True,
            }
            return json_response(out, 201, location)
        if started == run_id:
            # Delayed start: ``scheduled`` unless the time had already come (Redis decides).
            created = await store.get_run(started)
            out = created.to_json() if created is not None else {"id": started}
            out["created"] = True
            return json_response(out, 201, location)
        # An idempotent repeat: the existing run, as it is now.
        existing = await store.get_run(started)
        out = existing.to_json() if existing is not None else {"id": started}
        out["created"] = False
        return json_response(out, 200, location)

    @app.get(f"{API}/runs")
    async def list_runs() -> Response:
        _check_query(
            {"status", "workflow", "version", "created_after", "created_before", "limit", "cursor"}
        )
        status = request.args.get("status") or None
        if status is not None and status not in RUN_STATUSES:
            raise ApiError(
                422,
                "validation_error",
                f"status must be one of {', '.join(RUN_STATUSES)}, got {status!r}",
                "status",
            )
        limit = _query_int("limit", 50, 1, MAX_LIST_LIMIT)
        assert limit is not None
        page, next_cursor = await list_runs_page(
            state.require_store(),
            RunFilter(
                status=status,
                workflow=request.args.get("workflow") or None,
                version=request.args.get("version") or None,
                created_after=_query_int("created_after", None, 0, MAX_MS),
                created_before=_query_int("created_before", None, 0, MAX_MS),
            ),
            limit,
            request.args.get("cursor"),
        )
        return json_response({"runs": [r.to_json() for r in page], "next_cursor": next_cursor})

    @app.get(f"{API}/runs/<run_id>")
    async def get_run(run_id: str) -> Response:
        run = await state.require_store().get_run(run_id, with_tasks=True)
        if run is None:
            raise _run_not_found(run_id)
        return json_response(run.to_json())

    @app.get(f"{API}/runs/<run_id>/wait")
    async def wait_run(run_id: str) -> Response:
        _check_query({"timeout"})
        timeout = min(DEFAULT_WAIT, settings.max_wait)
        raw = request.args.get("timeout")
        if raw:
            try:
                timeout = float(raw)
            except ValueError:
                timeout = math.nan
            if not math.isfinite(timeout) or timeout < 0:
                raise ApiError(
                    422,
                    "validation_error",
                    f"timeout must be a number of seconds >= 0, got {raw!r}",
                    "timeout",
                )
            # A longer wish is served as a shorter long-poll; clients poll again.
            timeout = min(timeout, settings.max_wait)
        store = state.require_store()
        try:
            outcome = await wait_for_end(state.require_listener(), store, run_id, timeout)
        except RunNotFound:
            raise _run_not_found(run_id) from None
        if outcome is not None and outcome.get("status") == "missing":
            raise _run_not_found(run_id)
        run = await store.get_run(run_id, with_tasks=True)
        if run is None:
            raise _run_not_found(run_id)
        return json_response(run.to_json(reveal=True))

    # -- control ----------------------------------------------------------------------

    async def _control_body(allowed: set[str]) -> dict[str, Any]:
        raw = await request.get_data(as_text=False)
        assert isinstance(raw, bytes)
        body = _parse_body(raw) if raw.strip() else {}
        for name in body:
            if name not in allowed:
                raise ApiError(422, "validation_error", f"unknown field {name!r}", name)
        return body

    async def _controlled(run_id: str, action: Any) -> Response:
        try:
            result = await action()
        except RunNotFound:
            raise _run_not_found(run_id) from None
        except InvalidState as exc:
            raise ApiError(409, "invalid_state", str(exc)) from None
        run = await state.require_store().get_run(run_id)
        return json_response({"result": result, "run": run.to_json() if run else None})

    @app.post(f"{API}/runs/<run_id>/cancel")
    async def cancel_run(run_id: str) -> Response:
        body = await _control_body({"reason"})
        reason = body.get("reason") or "cancelled"
        if not isinstance(reason, str):
            raise ApiError(422, "validation_error", "reason must be a string", "reason")
        return await _controlled(run_id, lambda: state.require_store().cancel_run(run_id, reason))

    @app.post(f"{API}/runs/<run_id>/pause")
    async def pause_run(run_id: str) -> Response:
        await _control_body(set())
        return await _controlled(run_id, lambda: state.require_store().pause_run(run_id))

    @app.post(f"{API}/runs/<run_id>/resume")
    async def resume_run(run_id: str) -> Response:
        await _control_body(set())
        return await _controlled(run_id, lambda: state.require_store().resume_run(run_id))

    @app.post(f"{API}/runs/<run_id>/wakeup")
    async def wakeup_run(run_id: str) -> Response:
        body = await _control_body({"name"})
        name = _required_string(body, "name")
        return await _controlled(run_id, lambda: state.require_store().wake_sleep(run_id, name))

    @app.post(f"{API}/runs/<run_id>/events")
    async def send_event(run_id: str) -> Response:
        body = await _control_body({"name", "data", "reference_id"})
        name = _required_string(body, "name")
        reference_id = body.get("reference_id")
        if reference_id is not None and (not isinstance(reference_id, str) or not reference_id):
            raise ApiError(
                422,
                "validation_error",
                "reference_id must be a non-empty string",
                "reference_id",
            )
        data_json = _serde.dumps(body.get("data"), what="event data")
        if len(data_json.encode()) > settings.max_payload_bytes:
            raise ApiError(
                413,
                "payload_too_large",
                f"event data is larger than {settings.max_payload_bytes} bytes",
                "data",
            )
        return await _controlled(
            run_id,
            lambda: state.require_store().send_event(
                run_id,
                name,
                data_json,
                reference_id=reference_id,
                max_events=settings.max_events_per_run,
            ),
        )

    # -- schedules --------------------------------------------------------------------

    @app.get(f"{API}/schedules")
    async def list_schedules() -> Response:
        _check_query({"limit", "cursor"})
        limit = _query_int("limit", MAX_LIST_LIMIT, 1, MAX_LIST_LIMIT)
        found = await _schedules.list_schedules(state.require_store())
        page, next_cursor = _page_by_key(found, lambda s: s["id"], limit)
        return json_response({"schedules": page, "next_cursor": next_cursor})

    @app.post(f"{API}/schedules")
    async def create_schedule() -> Response:
        raw = await request.get_data(as_text=False)
        assert isinstance(raw, bytes)
        body = _parse_body(raw)
        allowed = {"id", "workflow", "version", "payload", "cron", "every", "overlap"}
        for name in body:
            if name not in allowed:
                raise ApiError(422, "validation_error", f"unknown field {name!r}", name)
        for name in ("id", "workflow", "version"):
            _required_string(body, name)
        for name in ("cron", "overlap"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise ApiError(
                    422,
                    "validation_error",
                    f"{name} must be a string or null, got {_json_type(body[name])}",
                    name,
                )
        every = body.get("every")
        if every is not None and (
            isinstance(every, bool)
            or not isinstance(every, int | float)
            or not 0 < every <= MAX_SECONDS
        ):
            raise ApiError(
                422,
                "validation_error",
                f"every must be a number of seconds > 0 and <= {MAX_SECONDS}",
                "every",
            )
        try:
            # null means "the default" for overlap as for cron and every.
            schedule = _schedules.Schedule.from_json(
                {k: v for k, v in body.items() if not (k == "overlap" and v is None)}
            )
        except (ConfigurationError, InvalidPayload, TypeError) as exc:
            field = (
                "cron"
                if "cron" in str(exc)
                else "every"
                if "every" in str(exc)
                else ("overlap" if "overlap" in str(exc) else None)
            )
            raise ApiError(422, "validation_error", str(exc), field) from None
        store = state.require_store()
        if not await store.workflow_known(schedule.workflow, schedule.version):
            raise ApiError(
                404,
                "unknown_workflow",
                f"unknown workflow {schedule.workflow!r} version {schedule.version!r}",
                "workflow",
            )
        first = await _schedules.create_schedule(store, schedule)
        return json_response({**schedule.to_json(), "next_at": first}, 201)

    @app.delete(f"{API}/schedules/<schedule_id>")
    async def delete_schedule(schedule_id: str) -> Response:
        deleted = await _schedules.delete_schedule(state.require_store(), schedule_id)
        if not deleted:
            raise ApiError(404, "not_found", f"no schedule with id {schedule_id!r}")
        return json_response({"deleted": True, "id": schedule_id})

    # -- workflows --------------------------------------------------------------------

    @app.get(f"{API}/workflows")
    async def list_workflows() -> Response:
        _check_query({"limit", "cursor"})
        limit = _query_int("limit", MAX_LIST_LIMIT, 1, MAX_LIST_LIMIT)
        found = await state.require_store().list_workflows()
        page, next_cursor = _page_by_key(
            found, lambda w: Keys.workflow_field(w["workflow"], w["version"]), limit
        )
        return json_response({"workflows": page, "next_cursor": next_cursor})

    # -- workers ----------------------------------------------------------------------

    @app.get(f"{API}/workers")
    async def list_workers_() -> Response:
        _check_query({"limit", "cursor"})
        limit = _query_int("limit", MAX_LIST_LIMIT, 1, MAX_LIST_LIMIT)
        found = await list_workers(state.require_store())
        page, next_cursor = _page_by_key(found, lambda w: w["id"], limit)
        return json_response({"workers": page, "next_cursor": next_cursor})

    return app


@dataclass(frozen=True)
class RunFilter:
    """What a runs list is restricted to (the API's and the dashboard's filters)."""

    status: str | None = None
    workflow: str | None = None
    version: str | None = None
    created_after: int | None = None  # ms, inclusive
    created_before: int | None = None  # ms, exclusive


async def list_runs_page(
    store: Store, filters: RunFilter, limit: int, raw_cursor: str | None
) -> tuple[list[Any], str | None]:
    """One page of runs, newest first, and the cursor of the next page (or None)."""
    cursor = _parse_cursor(raw_cursor)
    runs = await _list_page(store, filters, limit, cursor)
    page = runs[:limit]
    next_cursor = f"{page[-1].created_at}:{page[-1].id}" if len(runs) > limit else None
    return page, next_cursor


def _page_by_key(
    items: list[dict[str, Any]], key: Any, limit: int | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of a small list sorted by ``key`` (a string), after the ``cursor`` query
    parameter: the key of the previous page's last item (any string is a valid
    cursor: the items after it)."""
    assert limit is not None
    after = request.args.get("cursor")
    items = sorted(items, key=key)
    if after:
        items = [item for item in items if key(item) > after]
    page = items[:limit]
    return page, key(page[-1]) if len(items) > limit else None


def _parse_cursor(raw: str | None) -> tuple[int, str | None] | None:
    """``<ms>`` (runs created before that time) or ``<ms>:<id>`` (a ``next_cursor``)."""
    if not raw:
        return None
    ms, sep, run_id = raw.partition(":")
    try:
        value = int(ms) if ms.isascii() and ms.isdigit() else -1
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_MS or (sep and not run_id):
        raise ApiError(
            422,
            "validation_error",
            f"cursor must be a next_cursor from a previous page or a time in ms, got {raw!r}",
            "cursor",
        )
    return value, run_id or None


async def _list_page(
    store: Store,
    filters: RunFilter,
    limit: int,
    cursor: tuple[int, str | None] | None,
) -> list[Any]:
    """Up to ``limit + 1`` runs after ``cursor``, newest first (the extra one says
    whether there is a next page).

    Runs are ordered by (creation ms, id), both descending, as the runs index returns
    them. A cursor ``(ms, id)`` continues right after that run, so runs created in the
    same millisecond as a page's last run are not skipped (a bare ms cursor would).
    """
    want = limit + 1
    query: dict[str, Any] = {
        "status": filters.status,
        "workflow": filters.workflow,
        "version": filters.version,
        "since": filters.created_after,
    }
    bound = filters.created_before
    if cursor is None or cursor[1] is None:
        before = cursor[0] if cursor else None
        if bound is not None:
            before = bound if before is None else min(before, bound)
        return await store.list_runs(limit=want, before=before, **query)
    ms, last_id = cursor
    assert last_id is not None
    upper = ms + 1 if bound is None else min(ms + 1, bound)
    extra = 16
    while True:
        got = await store.list_runs(limit=want + extra, before=upper, **query)
        keep = [r for r in got if not (r.created_at == ms and r.id >= last_id)]
        if len(keep) >= want or len(got) < want + extra:
            return keep[:want]
        extra *= 4


def _run_not_found(run_id: str) -> ApiError:
    return ApiError(404, "run_not_found", f"no run with id {run_id!r}", "run_id")


def app_state(app: QuartTrio) -> AppState:
    """The :class:`AppState` of an app made by :func:`create_app`."""
    state: AppState = app.extensions["aiki"]
    return state


def _single_leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
