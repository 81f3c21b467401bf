"""How operator commands reach a server: the SDK's :class:`aiki.engine.HttpApi`, one call
per command under ``trio.run``, and Aiki's errors said as one line for the operator."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TypeVar

import trio

import aiki
from aiki.engine import HttpApi

from ._base import CliError

T = TypeVar("T")

TIMEOUT = 30.0  # seconds per request (a wait's long-polls get their own)


def call_api(url: str, call: Callable[[HttpApi], Awaitable[T]]) -> T:
    """Run ``await call(api)`` against the server at ``url``; Aiki errors become a
    ``CliError`` (see :func:`error_message`). A server that requires API keys gets the
    one in ``AIKI_API_KEY`` (never printed)."""
    api = HttpApi(url, api_key=os.environ.get("AIKI_API_KEY", "").strip() or None, timeout=TIMEOUT)

    async def main() -> T:
        async with api:
            return await call(api)

    try:
        return trio.run(main)
    except KeyboardInterrupt:
        sys.exit(130)
    except aiki.AikiError as exc:
        raise CliError(error_message(exc, api.base_url)) from None


def error_message(exc: aiki.AikiError, base_url: str) -> str:
    """What the operator reads: the server's own words for a missing run or schedule or
    a refused action (404, 409), the status and message for other error answers, the
    reason a server cannot be reached."""
    if isinstance(exc, aiki.ConnectionFailed):
        cause = exc.__cause__
        reason = (str(cause) or type(cause).__name__) if cause is not None else str(exc)
        return f"cannot reach the Aiki server at {base_url}: {reason}"
    answer = exc if isinstance(exc, aiki.ServerError) else exc.__cause__
    if not isinstance(answer, aiki.ServerError):
        return str(exc)
    body = answer.body if isinstance(answer.body, dict) else {}
    error = body.get("error")
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    status = answer.status_code
    if status < 400:  # an answer that is not JSON
        return str(message)
    if status in (404, 409) and message:
        return str(message)  # no run/schedule with id ..., invalid state
    if "type" not in error:  # not the API's JSON: the start of the text, as sent
        message = (message or "")[:200]
    message = message or _reason(status)
    return f"server answered {status}: {message}"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
