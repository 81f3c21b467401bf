"""A time limit on every HTTP request (ASGI middleware).

A request that takes longer than ``Settings.request_timeout`` seconds is cancelled (trio
cancellation reaches the handler and whatever Redis call it waits on) and answered
``504`` with a JSON error body — unless its response had already started, in which case
the connection is simply closed. Long-polls are capped at ``max_wait``, below the limit.
"""

from __future__ import annotations

import json
from typing import Any

import trio

Scope = dict[str, Any]


class RequestDeadline:
    def __init__(self, app: Any, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        with trio.move_on_after(self.seconds) as scope_guard:
            await self.app(scope, receive, tracking_send)
        if scope_guard.cancelled_caught and not started:
            body = json.dumps(
                {
                    "error": {
                        "type": "timeout",
                        "message": f"the request took longer than {self.seconds:g} s",
                        "field": None,
                    }
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 504,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
