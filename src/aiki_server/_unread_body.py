"""What happens to a request body the app answered without reading (ASGI middleware).

Many answers come before the body is read: 413 (too large, known from Content-Length),
401 (no API key), 404, 405, 415, a 403 for a foreign ``Origin``. Hypercorn hands the
body to the app through a queue of ``max_app_queue_size`` (10) chunks of up to 64 KB; if
nobody takes them, the queue fills, Hypercorn's reader blocks on it, and the ``http.
disconnect`` it must queue when the response ends blocks too: the connection then
neither answers its next request nor closes (#16 item 4). A client that sends the
whole body before reading the answer (httpx does) hangs as well.

So once the app has answered, this middleware deals with the rest of the body:

* **drain**: when what is left is at most ``drain_bytes``, it is read and discarded
  (before the response's final message, so the connection's request side is done when
  Hypercorn recycles it) and the connection stays usable (keep-alive);
* **close**: when more is declared than that, when the answer is 408 (the client is too
  slow to send its body: waiting for it again makes no sense), or when draining takes
  more than ``drain_seconds`` or ``drain_bytes``, the connection is closed: the response
  says ``Connection: close`` when its head is still unsent, and whatever still arrives
  is discarded until Hypercorn reports the disconnect, so its queue never blocks.

Bodies the app did read, and requests without a body, pass through untouched.
"""

from __future__ import annotations

from typing import Any

import trio

Scope = dict[str, Any]
Message = dict[str, Any]


class _Body:
    """One request's body as this middleware sees it: how much arrived, whether it
    ended (its last chunk or a disconnect was received, by the app or by us)."""

    def __init__(self, receive: Any, declared: int | None) -> None:
        self._receive = receive
        self.declared = declared
        self.received = 0
        self.done = trio.Event()

    async def receive(self) -> Message:
        message: Message = await self._receive()
        if message.get("type") == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done.set()
        elif message.get("type") == "http.disconnect":
            self.done.set()
        return message

    def too_big_to_drain(self, limit: int) -> bool:
        return self.declared is not None and self.declared > limit

    async def drain(self, limit: int) -> None:
        """Read and discard until the body ended, or ``limit`` bytes were seen in all.

        The app may still be receiving concurrently (Quart reads the body in a task of
        its own until the response is sent): whoever gets the last chunk sets ``done``.
        """
        async with trio.open_nursery() as nursery:

            async def pull() -> None:
                while self.received <= limit:
                    await self.receive()
                nursery.cancel_scope.cancel()  # too much: give up (the caller closes)

            nursery.start_soon(pull)
            await self.done.wait()
            nursery.cancel_scope.cancel()

    async def discard_until_disconnect(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            while True:
                message = await self._receive()
                if message.get("type") == "http.disconnect":
                    return


def _declared_length(scope: Scope) -> tuple[bool, int | None]:
    """(whether the request has a body, its Content-Length if declared)."""
    length: int | None = None
    chunked = False
    for name, value in scope.get("headers", ()):
        lowered = name.lower()
        if lowered == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return True, None
        elif lowered == b"transfer-encoding":
            chunked = True
    if chunked:
        return True, None
    return bool(length), length


def _with_close(message: Message) -> Message:
    headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
    return {**message, "headers": [*headers, (b"connection", b"close")]}


class UnreadBody:
    """Drain (bounded) or close what the app left of a request body: see the module."""

    def __init__(self, app: Any, *, drain_bytes: int, drain_seconds: float) -> None:
        self.app = app
        self.drain_bytes = drain_bytes
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        has_body, declared = _declared_length(scope)
        if not has_body:
            await self.app(scope, receive, send)
            return
        body = _Body(receive, declared)
        closing = False

        async with trio.open_nursery() as nursery:

            async def guarded_send(message: Message) -> None:
                nonlocal closing
                kind = message.get("type")
                if kind == "http.response.start" and not body.done.is_set():
                    if message.get("status") == 408 or body.too_big_to_drain(self.drain_bytes):
                        closing = True
                        message = _with_close(message)
                elif (
                    kind == "http.response.body"
                    and not message.get("more_body", False)
                    and not body.done.is_set()
                ):
                    if not closing:
                        with trio.move_on_after(self.drain_seconds):
                            await body.drain(self.drain_bytes)
                    if not body.done.is_set():
                        # Hypercorn closes a connection whose request is unfinished when
                        # the response ends; keep its queue moving until it says so.
                        nursery.start_soon(body.discard_until_disconnect, self.drain_seconds)
                        # Hypercorn closes the socket inside this call, after queueing
                        # the disconnect that makes Quart cancel the app's task: unshielded,
                        # that cancellation stops the close half-way, leaving it open.
                        with trio.CancelScope(shield=True, relative_deadline=self.drain_seconds):
                            await send(message)
                        return
                await send(message)

            await self.app(scope, body.receive, guarded_send)
