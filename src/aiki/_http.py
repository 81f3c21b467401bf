"""The SDK's one HTTP client of the Aiki server's API (``/api/v1``).

Why one: the client over HTTP and the ``aiki`` command line talk to the same routes, so
they share the requests, the long-poll loop of a wait, and — above all — the mapping of
errors at the boundary: httpx never escapes; a server that cannot be reached is
``ConnectionFailed``, a missing run ``RunNotFound``, a refused control ``InvalidState``,
a start that conflicts ``RunConflict``, an unknown workflow ``UnknownWorkflow``, anything
else ``ServerError`` (status and JSON body). A mapped error's ``__cause__`` is the
``ServerError`` the server answered, so a caller that wants the server's own words (the
CLI prints them) finds them there.

Written against anyio, like the client, so it runs under trio and asyncio alike.
``HttpBackend`` adapts it to the client's backend protocol.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from . import _serde, _tracing
from ._errors import (
    AikiError,
    ConnectionFailed,
    InvalidState,
    RunConflict,
    RunNotFound,
    ServerError,
    UnknownWorkflow,
    WaitTimeout,
)
from ._http_ops import API, OperatorRoutes
from ._http_ops import drop_none as _drop_none
from ._http_ops import segment as _segment
from ._store import RunPage, RunQuery, RunRecord

if TYPE_CHECKING:
    from types import TracebackType

    from ._schedules import Schedule
    from ._start import StartRequest

TERMINAL = frozenset({"completed", "failed", "cancelled"})
_NO_BODY: Any = object()


class HttpApi(OperatorRoutes):
    """An async client of one Aiki server's HTTP API.

    ``async with HttpApi("http://127.0.0.1:9090", api_key=...) as api:`` then one typed
    method per route. Answers are the server's JSON (dicts), errors are Aiki's. ``http``
    wraps an httpx client the caller owns (and closes) instead of opening one.
    """

    LONG_POLL = 25.0  # seconds one wait request asks the server to hold

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            base_url = "http://" + base_url
        self.base_url = base_url.rstrip("/")
        self._owned = http is None
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        )

    async def __aenter__(self) -> HttpApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    # -- the one request function ---------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = _NO_BODY,
        content: str | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
        version: str | None = None,
        reference_id: str | None = None,
    ) -> Any:
        """Send one request and return its JSON answer, or raise the mapped Aiki error.

        ``run_id`` says the route is about that run (a 404 is ``RunNotFound``, a 409
        ``InvalidState``); ``workflow``, ``version`` and ``reference_id`` name what an
        ``UnknownWorkflow`` or ``RunConflict`` is about."""
        kwargs: dict[str, Any] = {}
        if json is not _NO_BODY:
            kwargs["json"] = json
        if content is not None:
            kwargs["content"] = content
            kwargs["headers"] = {"content-type": "application/json"}
        traced = _tracing.trace_headers()  # the server continues the caller's trace
        if traced:
            kwargs["headers"] = {**kwargs.get("headers", {}), **traced}
        if params:
            kwargs["params"] = params
        if timeout is not None:
            kwargs["timeout"] = timeout
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            # The cause keeps httpx's reason (the CLI prints it); the type is Aiki's.
            raise ConnectionFailed(f"Aiki server at {self._http.base_url}: {exc!r}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            if not isinstance(data, dict):
                # Not the API's JSON (a proxy's page, say): keep the start of the text.
                data = {"error": {"message": response.text[:500]}}
            raise _map_error(
                response.status_code,
                data,
                run_id=run_id,
                workflow=workflow,
                version=version,
                reference_id=reference_id,
            )
        if data is None:
            message = f"the server at {self.base_url} did not answer JSON"
            raise ServerError(response.status_code, {"error": {"message": message}})
        return data

    # -- runs ---------------------------------------------------------------------------

    async def start(
        self,
        workflow: str,
        version: str,
        payload_json: str,
        *,
        reference_id: str | None = None,
        on_conflict: str = "error",
        start_at_ms: int | None = None,
        timeout: float | None = None,
        sensitive: bool = False,
        priority: int = 0,
        concurrency_key: str | None = None,
    ) -> dict[str, Any]:
        """Start a run; ``payload_json`` is the payload already encoded as JSON.
        ``concurrency_key``: the run's key for its version's ``concurrency=`` limit (the
        server applies the limit the version's workers registered)."""
        # Splice the encoded payload in rather than decode and re-encode it.
        body = (
            f'{{"workflow":{_serde.dumps(workflow)},"version":{_serde.dumps(version)},'
            f'"payload":{payload_json},"reference_id":{_serde.dumps(reference_id)},'
            f'"on_conflict":{_serde.dumps(on_conflict)},'
            f'"start_at_ms":{_serde.dumps(start_at_ms)},'
            f'"timeout":{_serde.dumps(timeout)},'
            f'"sensitive":{_serde.dumps(sensitive)}'
            + (f',"priority":{_serde.dumps(priority)}' if priority else "")
            + (f',"concurrency_key":{_serde.dumps(concurrency_key)}}}' if concurrency_key else "}")
        )
        data: dict[str, Any] = await self.request(
            "POST",
            f"{API}/runs",
            content=body,
            workflow=workflow,
            version=version,
            reference_id=reference_id,
        )
        return data

    async def get_run(self, run_id: str) -> dict[str, Any]:
        """One run, with its tasks."""
        data: dict[str, Any] = await self.request(
            "GET", f"{API}/runs/{_segment(run_id)}", run_id=run_id
        )
        return data

    async def run_history(self, run_id: str) -> dict[str, Any]:
        """The run's history document (``aiki.history/1``): what ``aiki.testing.replay``
        checks new code against."""
        data: dict[str, Any] = await self.request(
            "GET", f"{API}/runs/{_segment(run_id)}/history", run_id=run_id
        )
        return data

    async def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        version: str | None = None,
        created_after: int | None = None,
        created_before: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        reference_id: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One page of runs, newest first: ``{"runs": [...], "next_cursor": ...}``;
        ``attributes`` go as ``attribute.<name>=<value>`` (all must match)."""
        params = _drop_none(
            {
                "limit": limit,
                "status": status,
                "workflow": workflow,
                "version": version,
                "reference_id": reference_id,
                "created_after": created_after,
                "created_before": created_before,
                "cursor": cursor,
                **{f"attribute.{k}": v for k, v in (attributes or {}).items()},
            }
        )
        data: dict[str, Any] = await self.request("GET", f"{API}/runs", params=params)
        return data

    async def wait(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Long-poll until the run ends or ``timeout`` seconds pass (None: forever), and
        return the run as last seen: the caller tells an end from a timeout by its
        ``status``."""
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        while True:
            poll = min(self.LONG_POLL, max(0.0, deadline - anyio.current_time()))
            data: dict[str, Any] = await self.request(
                "GET",
                f"{API}/runs/{_segment(run_id)}/wait",
                params={"timeout": f"{poll:.3f}"},
                timeout=poll + 10.0,
                run_id=run_id,
            )
            if data.get("status") in TERMINAL or anyio.current_time() >= deadline:
                return data

    async def control(self, run_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /runs/{id}/{action}``: ``{"result": ..., "run": {...}}``."""
        data: dict[str, Any] = await self.request(
            "POST", f"{API}/runs/{_segment(run_id)}/{action}", json=body, run_id=run_id
        )
        return data

    async def cancel(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        return await self.control(run_id, "cancel", {"reason": reason} if reason else {})

    async def pause(self, run_id: str) -> dict[str, Any]:
        return await self.control(run_id, "pause", {})

    async def resume(self, run_id: str) -> dict[str, Any]:
        return await self.control(run_id, "resume", {})

    async def wakeup(self, run_id: str, name: str) -> dict[str, Any]:
        return await self.control(run_id, "wakeup", {"name": name})

    async def send_event(
        self, run_id: str, name: str, data: Any = None, *, reference_id: str | None = None
    ) -> dict[str, Any]:
        body = {"name": name, "data": data, "reference_id": reference_id}
        return await self.control(run_id, "events", body)

    # -- schedules, workers, workflows ------------------------------------------------

    async def list_schedules(self, cursor: str | None = None) -> dict[str, Any]:
        """One page of schedules, by id: ``{"schedules": [...], "next_cursor": ...}``."""
        params = _drop_none({"cursor": cursor})
        data: dict[str, Any] = await self.request("GET", f"{API}/schedules", params=params)
        return data

    async def create_schedule(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a schedule (its JSON form); answers it with ``next_at``."""
        data: dict[str, Any] = await self.request(
            "POST",
            f"{API}/schedules",
            json=body,
            workflow=body.get("workflow"),
            version=body.get("version"),
        )
        return data

    async def delete_schedule(self, schedule_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.request(
            "DELETE", f"{API}/schedules/{_segment(schedule_id)}"
        )
        return data

    async def list_workers(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.request("GET", f"{API}/workers")
        return data

    async def list_workflows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        params = _drop_none({"limit": limit, "cursor": cursor})
        data: dict[str, Any] = await self.request("GET", f"{API}/workflows", params=params)
        return data


def _map_error(
    status: int,
    body: dict[str, Any],
    *,
    run_id: str | None,
    workflow: str | None,
    version: str | None,
    reference_id: str | None,
) -> AikiError:
    """The Aiki error for an error answer; the answer itself is its ``__cause__``."""
    server = ServerError(status, body)
    error = body.get("error")
    error = error if isinstance(error, dict) else {}
    kind, message = error.get("type"), error.get("message")
    mapped: AikiError | None = None
    if status == 404 and kind == "unknown_workflow" and workflow is not None:
        mapped = UnknownWorkflow(workflow, version)
    elif status == 404 and run_id is not None:
        mapped = RunNotFound(run_id)
    elif status == 409 and kind == "run_conflict":
        mapped = RunConflict(workflow or "", reference_id or "", message or "")
    elif status == 409 and run_id is not None:
        mapped = InvalidState(message or "invalid state")
    if mapped is None:
        return server
    mapped.__cause__ = server
    return mapped


# -- the client's backend over HTTP ---------------------------------------------------


class HttpBackend:
    """The client's backend protocol (``aiki._client._Backend``) over :class:`HttpApi`:
    what a client opened with only ``base_url`` does (long-polling for waits)."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    async def start(self, request: StartRequest) -> str:
        data = await self.api.start(
            request.workflow,
            request.version,
            request.payload_json,
            reference_id=request.reference_id,
            on_conflict=request.on_conflict,
            start_at_ms=_absolute(request),
            timeout=request.timeout,
            sensitive=request.sensitive,
            priority=request.priority,
            concurrency_key=request.concurrency_key or None,  # "": the version-wide key
        )
        return str(data["id"])

    async def start_many(self, requests: Sequence[StartRequest]) -> list[str]:
        return [await self.start(r) for r in requests]  # the API starts one run a request

    async def get(self, run_id: str, with_tasks: bool = False) -> RunRecord | None:
        try:
            return _record_from_json(await self.api.get_run(run_id))
        except RunNotFound:
            return None

    async def list_runs(self, query: RunQuery, limit: int, cursor: str | None) -> RunPage:
        data = await self.api.list_runs(
            status=query.status,
            workflow=query.workflow,
            version=query.version,
            reference_id=query.reference_id,
            attributes=dict(query.attributes),
            created_after=query.created_after,
            created_before=query.created_before,
            limit=limit,
            cursor=cursor,
        )
        runs = [_record_from_json(r) for r in data.get("runs", [])]
        return RunPage(runs, data.get("next_cursor"))

    async def wait(self, run_id: str, timeout: float | None) -> dict[str, Any]:
        data = await self.api.wait(run_id, timeout)
        if data.get("status") not in TERMINAL:
            raise WaitTimeout(run_id, timeout or 0.0, data.get("status"))
        return {k: data.get(k) for k in ("id", "status", "result", "error")}

    async def cancel(self, run_id: str, reason: str) -> str:
        return str((await self.api.cancel(run_id, reason)).get("result"))

    async def pause(self, run_id: str) -> str:
        return str((await self.api.pause(run_id)).get("result"))

    async def resume(self, run_id: str) -> str:
        return str((await self.api.resume(run_id)).get("result"))

    async def wakeup(self, run_id: str, name: str) -> int:
        return int((await self.api.wakeup(run_id, name)).get("result") or 0)

    async def retry(self, run_id: str) -> str:
        return str((await self.api.retry(run_id)).get("result"))

    async def send_event(self, run_id: str, name: str, data: Any, reference_id: str | None) -> bool:
        answer = await self.api.send_event(run_id, name, data, reference_id=reference_id)
        return bool(answer.get("result"))

    async def create_schedule(self, schedule: Schedule) -> None:
        await self.api.create_schedule(schedule.to_json())

    async def list_schedules(self) -> list[dict[str, Any]]:
        schedules: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:  # every page, as the Redis backend answers every schedule
            page = await self.api.list_schedules(cursor)
            schedules.extend(page["schedules"])
            cursor = page.get("next_cursor")
            if not cursor:
                return schedules

    async def delete_schedule(self, schedule_id: str) -> bool:
        return bool((await self.api.delete_schedule(schedule_id)).get("deleted"))


def _record_from_json(data: dict[str, Any]) -> RunRecord:
    fields = {k: v for k, v in data.items() if k in RunRecord.__dataclass_fields__}
    if "tasks" in data and isinstance(data["tasks"], list):
        fields["tasks"] = {t["address"]: t for t in data["tasks"]}
    return RunRecord(**fields)


def _absolute(request: StartRequest) -> int | None:
    """The API takes a start time, not a delay: over HTTP, ``delay=`` is counted from
    this machine's clock (a Redis client counts it on Redis's clock)."""
    if request.start_delay_ms is None:
        return request.start_at_ms
    return int(time.time() * 1000) + request.start_delay_ms
