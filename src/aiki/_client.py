"""The client: start runs and learn how they ended, from trio or asyncio programs.

The client is written against anyio, so the same code runs under trio (natively) and
under asyncio (a FastAPI app, say) without a bridge; the worker stays trio-native.

A client given a ``redis_url`` talks to Redis directly (the hot path: one Lua script to
start a run; completions through one shared notification listener). A client given only
``base_url`` does the same over the server's HTTP API, with the same semantics.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import anyio
import httpx

from . import _schedules, _serde
from ._errors import (
    ConfigurationError,
    ConnectionFailed,
    InvalidPayload,
    InvalidState,
    RunConflict,
    RunNotFound,
    ServerError,
    UnknownWorkflow,
    WaitTimeout,
    WorkflowCancelled,
    WorkflowFailed,
)
from ._notify import RunEndedListener, wait_for_end
from ._redis import Redis, ScriptRefused, connect, open_asyncio_bridge, resolve_implementation
from ._schedules import Schedule
from ._store import Keys, RunRecord, Store
from ._store._store import choose_run_id

DEFAULT_MAX_PAYLOAD_BYTES = 1_000_000
# How long a start keeps retrying while Redis cannot be reached (a restart, a failover).
START_RETRY_FOR = 30.0


@dataclass(frozen=True)
class StartOptions:
    """How a run starts besides its payload: when, and its workflow-level timeout."""

    start_at_ms: int | None = None
    timeout: float | None = None
    sensitive: bool = False
    shards: int = 1


class _Backend(Protocol):
    async def start(
        self,
        workflow: str,
        version: str,
        payload_json: str,
        reference_id: str | None,
        on_conflict: str,
        options: StartOptions,
    ) -> str: ...

    async def control(self, run_id: str, action: str, body: dict[str, Any]) -> Any: ...

    async def get(self, run_id: str, with_tasks: bool = False) -> RunRecord | None: ...

    async def wait(self, run_id: str, timeout: float | None) -> dict[str, Any]: ...


class _RedisBackend:
    def __init__(self, store: Store, listener: RunEndedListener) -> None:
        self.store = store
        self.listener = listener
        self._shards_known = 1  # the deployment has at least this many shards

    async def ensure_shards(self, shards: int) -> None:
        """Before the first start into shard N-1, make sure the deployment counts N
        shards (one call per process and size), so workers read it and the daemons
        fire its timers even if no worker registered the version yet."""
        if shards > self._shards_known:
            await self.store.raise_shards(shards)
            self._shards_known = shards

    async def start(
        self,
        workflow: str,
        version: str,
        payload_json: str,
        reference_id: str | None,
        on_conflict: str,
        options: StartOptions,
    ) -> str:
        await self.ensure_shards(options.shards)
        run_id = choose_run_id(workflow, options.shards, reference_id=reference_id)
        # Watch before the run exists, so its end cannot be missed however fast it is.
        self.listener.watch(run_id)
        try:
            started = await self._start_retrying(
                run_id,
                workflow,
                version,
                payload_json,
                reference_id=reference_id,
                on_conflict=on_conflict,
                start_at_ms=options.start_at_ms,
                timeout=options.timeout,
                sensitive=options.sensitive,
            )
        except BaseException:
            self.listener.forget(run_id)
            raise
        if started != run_id:  # an existing run with this reference id
            self.listener.forget(run_id)
        return started

    async def _start_retrying(self, run_id: str, *args: Any, **kwargs: Any) -> str:
        """``start_run``, retried through a Redis outage (capped backoff with jitter).

        Safe to repeat: the run id is chosen before the first try, so a retry of a start
        that did apply (its reply was lost) finds that run (``EXISTS``, or its reference
        id) instead of creating a second one."""
        deadline = anyio.current_time() + START_RETRY_FOR
        delay = 0.05
        retried = False
        while True:
            try:
                return await self.store.start_run(*args, run_id=run_id, **kwargs)
            except ScriptRefused as refused:
                if retried and refused.code == "EXISTS":
                    return run_id  # our own earlier try created it
                raise
            except ConnectionFailed:
                if anyio.current_time() + delay > deadline:
                    raise
                await anyio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 2.0)
                retried = True

    async def get(self, run_id: str, with_tasks: bool = False) -> RunRecord | None:
        return await self.store.get_run(run_id, with_tasks=with_tasks)

    async def wait(self, run_id: str, timeout: float | None) -> dict[str, Any]:
        outcome = await wait_for_end(self.listener, self.store, run_id, timeout)
        if outcome is None:
            run = await self.store.get_run(run_id)
            raise WaitTimeout(run_id, timeout or 0.0, run.status if run else None)
        return outcome

    async def control(self, run_id: str, action: str, body: dict[str, Any]) -> Any:
        store = self.store
        if action == "cancel":
            return await store.cancel_run(run_id, body.get("reason") or "cancelled")
        if action == "pause":
            return await store.pause_run(run_id)
        if action == "resume":
            return await store.resume_run(run_id)
        if action == "wakeup":
            return await store.wake_sleep(run_id, body["name"])
        if action == "events":
            return await store.send_event(
                run_id,
                body["name"],
                _serde.dumps(body.get("data"), what="event data"),
                reference_id=body.get("reference_id"),
            )
        raise ValueError(action)


class _HttpBackend:
    """The same operations over the server's HTTP API (long-polling for waits)."""

    LONG_POLL = 25.0

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"Aiki server at {self.http.base_url}: {exc!r}") from None

    @staticmethod
    def _body(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return {"error": {"message": response.text[:500]}}

    async def start(
        self,
        workflow: str,
        version: str,
        payload_json: str,
        reference_id: str | None,
        on_conflict: str,
        options: StartOptions,
    ) -> str:
        # The payload is already JSON: splice it in rather than decode and re-encode.
        body = (
            f'{{"workflow":{_serde.dumps(workflow)},"version":{_serde.dumps(version)},'
            f'"payload":{payload_json},"reference_id":{_serde.dumps(reference_id)},'
            f'"on_conflict":{_serde.dumps(on_conflict)},'
            f'"start_at_ms":{_serde.dumps(options.start_at_ms)},'
            f'"timeout":{_serde.dumps(options.timeout)},'
            f'"sensitive":{_serde.dumps(options.sensitive)}}}'
        )
        response = await self._request(
            "POST",
            "/api/v1/runs",
            content=body,
            headers={"content-type": "application/json"},
        )
        data = self._body(response)
        if response.status_code == 404 and data.get("error", {}).get("type") == "unknown_workflow":
            raise UnknownWorkflow(workflow, version)
        if response.status_code == 409 and data.get("error", {}).get("type") == "run_conflict":
            raise RunConflict(workflow, reference_id or "", data["error"].get("message", ""))
        if response.status_code >= 400:
            raise ServerError(response.status_code, data)
        return str(data["id"])

    async def get(self, run_id: str, with_tasks: bool = False) -> RunRecord | None:
        response = await self._request("GET", f"/api/v1/runs/{run_id}")
        if response.status_code == 404:
            return None
        data = self._body(response)
        if response.status_code >= 400:
            raise ServerError(response.status_code, data)
        return _record_from_json(data)

    async def control(self, run_id: str, action: str, body: dict[str, Any]) -> Any:
        return await _http_control(self, run_id, action, body)

    async def wait(self, run_id: str, timeout: float | None) -> dict[str, Any]:
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        while True:
            left = deadline - anyio.current_time()
            poll = min(self.LONG_POLL, max(0.0, left))
            response = await self._request(
                "GET",
                f"/api/v1/runs/{run_id}/wait",
                params={"timeout": f"{poll:.3f}"},
                timeout=poll + 10.0,
            )
            data = self._body(response)
            if response.status_code == 404:
                raise RunNotFound(run_id)
            if response.status_code >= 400:
                raise ServerError(response.status_code, data)
            if data.get("status") in ("completed", "failed", "cancelled"):
                return {k: data.get(k) for k in ("id", "status", "result", "error")}
            if anyio.current_time() >= deadline:
                raise WaitTimeout(run_id, timeout or 0.0, data.get("status"))


async def _http_json(backend: Any, method: str, url: str, body: Any) -> Any:
    assert isinstance(backend, _HttpBackend)
    response = await backend._request(method, url, json=body)
    data = backend._body(response)
    if response.status_code >= 400:
        raise ServerError(response.status_code, data)
    return data


async def _http_control(
    backend: _HttpBackend, run_id: str, action: str, body: dict[str, Any]
) -> Any:
    response = await backend._request("POST", f"/api/v1/runs/{run_id}/{action}", json=body)
    data = backend._body(response)
    if response.status_code == 404:
        raise RunNotFound(run_id)
    if response.status_code == 409:
        raise InvalidState(data.get("error", {}).get("message", "invalid state"))
    if response.status_code >= 400:
        raise ServerError(response.status_code, data)
    return data.get("result")


def _record_from_json(data: dict[str, Any]) -> RunRecord:
    fields = {k: v for k, v in data.items() if k in RunRecord.__dataclass_fields__}
    if "tasks" in data and isinstance(data["tasks"], list):
        fields["tasks"] = {t["address"]: t for t in data["tasks"]}
    return RunRecord(**fields)


class RunHandle:
    """A started run: its ``id``, and ways to follow it."""

    def __init__(self, client: Client, run_id: str, workflow: str, version: str) -> None:
        self.client = client
        self.id = run_id
        self.workflow = workflow
        self.version = version

    async def status(self) -> str:
        """The run's current status (``queued``, ``running``, ``completed``, ...)."""
        return (await self.describe()).status

    async def describe(self, *, with_tasks: bool = False) -> RunRecord:
        """The whole stored run, optionally with its task records."""
        run = await self.client._backend.get(self.id, with_tasks)
        if run is None:
            raise RunNotFound(self.id)
        return run

    async def wait_for_completion(self, timeout: float | None = None) -> Any:
        """Wait until the run ends and return its result.

        Raises WorkflowFailed (with the recorded type, message and traceback),
        WorkflowCancelled, or WaitTimeout when ``timeout`` seconds pass first.
        """
        outcome = await self.client._backend.wait(self.id, timeout)
        status = outcome.get("status")
        if status == "completed":
            return outcome.get("result")
        if status == "failed":
            raise WorkflowFailed(self.id, outcome.get("error") or {})
        if status == "cancelled":
            reason = (outcome.get("error") or {}).get("message")
            raise WorkflowCancelled(self.id, reason)
        raise RunNotFound(self.id)

    async def cancel(self, reason: str = "cancelled") -> str:
        """Cancel the run (and its child runs); a running execution is interrupted.
        Returns the run's final status (an already ended run keeps its own)."""
        return str(await self.client._backend.control(self.id, "cancel", {"reason": reason}))

    async def pause(self) -> str:
        """Stop the run from being picked up (a running execution is interrupted)."""
        return str(await self.client._backend.control(self.id, "pause", {}))

    async def resume(self) -> str:
        """Let a paused run go on from where it was."""
        return str(await self.client._backend.control(self.id, "resume", {}))

    async def wakeup(self, name: str) -> int:
        """End the durable sleep called ``name`` now. Returns how many sleeps were woken."""
        return int(await self.client._backend.control(self.id, "wakeup", {"name": name}))

    async def send_event(
        self, name: str, data: Any = None, *, reference_id: str | None = None
    ) -> bool:
        """Deliver the event ``name`` with ``data`` to the run (kept until it waits for
        it). With ``reference_id`` a repeated send is delivered once: returns False then."""
        _serde.dumps(data, what="event data")
        return bool(
            await self.client._backend.control(
                self.id, "events", {"name": name, "data": data, "reference_id": reference_id}
            )
        )

    def __repr__(self) -> str:
        return f"<aiki.RunHandle {self.workflow}@{self.version} {self.id}>"


class Client:
    """A connection to Aiki. Make one with ``async with aiki.client(...) as client``."""

    def __init__(
        self,
        backend: _Backend,
        *,
        redis: Redis | None,
        store: Store | None,
        redis_url: str | None,
        base_url: str | None,
        max_payload_bytes: int,
        redis_client: str = "glide",
    ) -> None:
        self._backend = backend
        self._redis = redis
        self._store = store
        self.redis_url = redis_url
        self.base_url = base_url
        self.max_payload_bytes = max_payload_bytes
        self.redis_client = redis_client

    @property
    def uses_redis(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ConfigurationError("this needs a client opened with redis_url=")
        return self._store

    def _encode_payload(self, payload: Any) -> str:
        """The payload as compact JSON, or InvalidPayload (not JSON, or over the limit)."""
        payload_json = _serde.dumps(payload, what="payload")
        if len(payload_json) * 4 <= self.max_payload_bytes:
            return payload_json  # within the limit however it encodes (<= 4 bytes a char)
        size = len(payload_json.encode())
        if size > self.max_payload_bytes:
            raise InvalidPayload(f"payload is {size} bytes; the limit is {self.max_payload_bytes}")
        return payload_json

    async def _start_run(
        self,
        workflow: str,
        version: str,
        payload: Any,
        reference_id: str | None,
        on_conflict: str = "error",
        *,
        delay: float | None = None,
        start_at: datetime | None = None,
        timeout: float | None = None,
        sensitive: bool = False,
        shards: int = 1,
    ) -> RunHandle:
        payload_json = self._encode_payload(payload)
        if on_conflict not in ("error", "return_existing"):
            raise ConfigurationError(
                f"on_conflict must be 'error' or 'return_existing', got {on_conflict!r}"
            )
        if reference_id is not None and (not isinstance(reference_id, str) or not reference_id):
            raise ConfigurationError("reference_id must be a non-empty string")
        if delay is not None and start_at is not None:
            raise ConfigurationError("give delay= or start_at=, not both")
        start_at_ms: int | None = None
        if delay is not None:
            if delay < 0:
                raise ConfigurationError("delay must be >= 0 seconds")
            start_at_ms = int((time.time() + delay) * 1000)
        elif start_at is not None:
            if start_at.tzinfo is None:
                raise ConfigurationError("start_at must be a timezone-aware datetime")
            start_at_ms = int(start_at.timestamp() * 1000)
        run_id = await self._backend.start(
            workflow,
            version,
            payload_json,
            reference_id,
            on_conflict,
            StartOptions(
                start_at_ms=start_at_ms, timeout=timeout, sensitive=sensitive, shards=shards
            ),
        )
        return RunHandle(self, run_id, workflow, version)

    async def _start_many(
        self,
        workflow: str,
        version: str,
        payloads: list[Any],
        timeout: float | None,
        shards: int = 1,
    ) -> list[RunHandle]:
        encoded = [self._encode_payload(p) for p in payloads]
        if not isinstance(self._backend, _RedisBackend):  # over HTTP: one request each
            return [
                await self._start_run(workflow, version, p, None, timeout=timeout, shards=shards)
                for p in payloads
            ]
        await self._backend.ensure_shards(shards)
        items = [(choose_run_id(workflow, shards), p) for p in encoded]
        for run_id, _ in items:  # watched before they exist, as for start()
            self._backend.listener.watch(run_id)
        try:
            await self._backend.store.start_runs(workflow, version, items, timeout=timeout)
        except BaseException:
            for run_id, _ in items:
                self._backend.listener.forget(run_id)
            raise
        return [RunHandle(self, run_id, workflow, version) for run_id, _ in items]

    def get_handle(self, run_id: str, workflow: str = "", version: str = "") -> RunHandle:
        """A handle for a run started elsewhere (by id)."""
        return RunHandle(self, run_id, workflow, version)

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Save a schedule (replacing one with the same id); the server's schedule
        daemon fires it."""
        if self._store is not None:
            await _schedules.create_schedule(self._store, schedule)
        else:
            await _http_json(self._backend, "POST", "/api/v1/schedules", schedule.to_json())
        return schedule

    async def list_schedules(self) -> list[dict[str, Any]]:
        if self._store is not None:
            return await _schedules.list_schedules(self._store)
        data = await _http_json(self._backend, "GET", "/api/v1/schedules", None)
        return list(data["schedules"])

    async def delete_schedule(self, schedule_id: str) -> bool:
        if self._store is not None:
            return await _schedules.delete_schedule(self._store, schedule_id)
        data = await _http_json(self._backend, "DELETE", f"/api/v1/schedules/{schedule_id}", None)
        return bool(data.get("deleted"))

    async def get_run(self, run_id: str, *, with_tasks: bool = False) -> RunRecord:
        run = await self._backend.get(run_id, with_tasks)
        if run is None:
            raise RunNotFound(run_id)
        return run


@contextlib.asynccontextmanager
async def client(
    *,
    base_url: str | None = None,
    redis_url: str | None = None,
    prefix: str = "aiki",
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    http_timeout: float = 30.0,
    redis_client: str | None = None,
    api_key: str | None = None,
) -> AsyncIterator[Client]:
    """Open a client. With ``redis_url`` it talks to Redis directly (fast path, needed
    by workers); with only ``base_url`` it goes through the server's HTTP API.

    ``redis_client`` picks the Redis implementation, ``"glide"`` (default) or
    ``"redis-py"`` (else ``$AIKI_REDIS_CLIENT``); workers use their client's. ``api_key`` is
    sent as ``Authorization: Bearer`` to a server that requires one."""
    implementation = resolve_implementation(redis_client)
    if not base_url and not redis_url:
        raise ConfigurationError("aiki.client() needs redis_url= or base_url=")
    if base_url and not base_url.startswith(("http://", "https://")):
        base_url = "http://" + base_url
    async with contextlib.AsyncExitStack() as stack:
        http: httpx.AsyncClient | None = None
        if base_url:
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    timeout=http_timeout,
                    headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
                )
            )
        if redis_url:
            await stack.enter_async_context(open_asyncio_bridge(implementation))
            redis = await connect(redis_url, name="aiki-client", implementation=implementation)
            stack.push_async_callback(redis.aclose)
            store = Store(redis, Keys(prefix))
            listener = RunEndedListener(redis_url, store, implementation=implementation)
            nursery = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(nursery.cancel_scope.cancel)
            # Subscribed at the first wait: workers and fire-and-forget producers never
            # receive every run's end.
            await nursery.start(functools.partial(listener.serve, lazy=True))
            backend: _Backend = _RedisBackend(store, listener)
            yield Client(
                backend,
                redis=redis,
                store=store,
                redis_url=redis_url,
                base_url=base_url,
                max_payload_bytes=max_payload_bytes,
                redis_client=implementation,
            )
        else:
            assert http is not None
            yield Client(
                _HttpBackend(http),
                redis=None,
                store=None,
                redis_url=None,
                base_url=base_url,
                max_payload_bytes=max_payload_bytes,
            )
