"""The operator's routes of :class:`aiki._http.HttpApi`: re-running failed runs, dead
letters, and schedule actions (pause, resume, trigger now).

A mixin so that the recovery verbs the CLI and the dashboard share have one home and
``_http`` stays the request machinery and the everyday routes; every method goes
through ``HttpApi.request`` (one error mapping).
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

API = "/api/v1"


def segment(value: str) -> str:
    """One path segment: ids with ``/``, ``?`` or ``#`` must not change the route."""
    return quote(value, safe="")


def drop_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None and v != ""}


class _Api(Protocol):
    """What the mixin uses of ``HttpApi``."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = ...,
        content: str | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        run_id: str | None = None,
        workflow: str | None = None,
        version: str | None = None,
        reference_id: str | None = None,
    ) -> Any: ...

    async def control(self, run_id: str, action: str, body: dict[str, Any]) -> dict[str, Any]: ...


class OperatorRoutes:
    """Recovery and schedule actions (mixed into ``HttpApi``)."""

    # -- re-running runs ----------------------------------------------------------------

    async def retry(self: _Api, run_id: str) -> dict[str, Any]:
        """Run a failed or cancelled run again, keeping its completed steps."""
        return await self.control(run_id, "retry", {})

    async def retry_runs(
        self: _Api,
        workflow: str,
        version: str,
        *,
        status: str = "failed",
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Retry one page of the runs of ``workflow@version`` with ``status`` created in
        ``[since_ms, until_ms)``: ``{"retried": [ids], "refused": [...], "examined",
        "next_cursor"}`` (pass ``next_cursor`` back for the next page)."""
        body = drop_none(
            {
                "workflow": workflow,
                "version": version,
                "status": status,
                "since_ms": since_ms,
                "until_ms": until_ms,
                "limit": limit,
                "cursor": cursor,
            }
        )
        data: dict[str, Any] = await self.request(
            "POST", f"{API}/runs/retry", json=body, workflow=workflow, version=version
        )
        return data

    # -- dead letters -------------------------------------------------------------------

    async def list_dead_letters(
        self: _Api, *, limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page, newest first: ``{"dead_letters": [...], "total", "next_cursor"}``."""
        params = drop_none({"limit": limit, "cursor": cursor})
        data: dict[str, Any] = await self.request("GET", f"{API}/dead-letters", params=params)
        return data

    async def get_dead_letter(self: _Api, letter_id: str) -> dict[str, Any]:
        """One dead letter, with its run as it is now (if it names one that exists)."""
        data: dict[str, Any] = await self.request("GET", f"{API}/dead-letters/{segment(letter_id)}")
        return data

    async def discard_dead_letter(self: _Api, letter_id: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.request(
            "DELETE", f"{API}/dead-letters/{segment(letter_id)}"
        )
        return data

    async def requeue_dead_letter(self: _Api, letter_id: str) -> dict[str, Any]:
        """Give the dead letter's run its message back: ``{"result", "run"}``."""
        data: dict[str, Any] = await self.request(
            "POST", f"{API}/dead-letters/{segment(letter_id)}/requeue", json={}
        )
        return data

    # -- schedule actions ---------------------------------------------------------------

    async def schedule_action(self: _Api, schedule_id: str, action: str) -> dict[str, Any]:
        """``POST /schedules/{id}/{action}`` (pause, resume, trigger)."""
        data: dict[str, Any] = await self.request(
            "POST", f"{API}/schedules/{segment(schedule_id)}/{action}", json={}
        )
        return data
