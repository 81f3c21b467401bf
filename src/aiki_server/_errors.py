"""The JSON error shape of the API and the handlers that answer every error with it.

Every API error is ``{"error": {"type": ..., "message": ..., "field": ...}}`` with a
4xx/5xx status (``field`` names the request field, query parameter or header at fault,
or is null). Errors on dashboard pages are HTML for browsers instead: the page renderer
is passed in (:func:`register_error_handlers`), so this module does not depend on the
dashboard.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from aiki import ConnectionFailed
from aiki.engine import json_dumps

log = logging.getLogger("aiki_server")

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


def validation_error(field: str | None, message: str) -> ApiError:
    """The 422 of a request field or query parameter that is not as documented."""
    return ApiError(422, "validation_error", message, field)


def run_not_found(run_id: str) -> ApiError:
    return ApiError(404, "run_not_found", f"no run with id {run_id!r}", "run_id")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Our own compact encoder: key order of user payloads is kept, not sorted.
    return Response(
        json_dumps(data, what="response"),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def error_response(
    status: int, type: str, message: str, field: str | None = None, **extra: Any
) -> Response:
    return json_response(ApiError(status, type, message, field, **extra).body(), status)


#: Whether this request's errors are HTML pages, and how to render one.
WantsHtml = Callable[[], bool]
HtmlError = Callable[[int, str], Awaitable[Response]]


def register_error_handlers(
    app: Quart, *, max_payload_bytes: int, wants_html: WantsHtml, html_error: HtmlError
) -> None:
    """Answer ApiError, HTTP errors, Redis outages and bugs in the API's error shape."""

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
                f"(payloads may be at most {max_payload_bytes} bytes)"
            )
            field = "payload"
        if wants_html():
            response = await html_error(status, message)
        else:
            response = error_response(status, kind, message, field)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(ConnectionFailed)
    async def _unavailable(exc: ConnectionFailed) -> Response:
        log.warning("%s %s: Redis unavailable: %s", request.method, request.path, exc)
        if wants_html():
            return await html_error(503, "Redis is unavailable; try again later")
        return error_response(503, "unavailable", "Redis is unavailable; try again later")

    @app.errorhandler(Exception)
    async def _internal(exc: Exception) -> Response:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        if wants_html():
            with contextlib.suppress(Exception):
                return await html_error(500, "internal server error")
        return error_response(500, "internal_error", "internal server error")
