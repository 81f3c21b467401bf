"""The two other ways out of an unread request body (aiki_server/_unread_body.py), beside
the drain that test_hardening_http.py's keep-alive tests show:

* a body declared larger than the server drains is answered with ``Connection: close``
  and the socket is then really closed (no hang, no keep-alive promise broken);
* a chunked body (no Content-Length) answered early is drained too, and the connection
  answers its next request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from workers.hardening import HANG_GUARD, RawConnection, request_bytes

from aiki_server import ServerHandle, Settings, serve_server

# MAX_CONTENT_LENGTH = 4 * 10_000 + 65_536; the server drains up to 4 times that (~420 KB).
MAX_PAYLOAD = 10_000


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    settings = Settings(redis_url=redis_url, port=0, max_payload_bytes=MAX_PAYLOAD)
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, settings)
        nursery.cancel_scope.cancel()


async def test_a_body_too_big_to_drain_closes_the_connection(server: ServerHandle) -> None:
    body = b" " * 3_000_000
    conn = await RawConnection.open(server.base_url)
    try:
        async with trio.open_nursery() as io:
            # The client goes on sending; the server stops reading and closes.
            io.start_soon(conn.send, request_bytes("POST", "/api/v1/no-such-route", {}, body))
            with trio.fail_after(HANG_GUARD):
                first = await conn.response()
                assert first is not None and first.status == 404, first
                assert first.closes, first.headers
                assert await conn.closed_by_server()
            io.cancel_scope.cancel()
    finally:
        await conn.aclose()


async def test_a_chunked_body_answered_early_is_drained(server: ServerHandle) -> None:
    chunk = b"x" * 60_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    head = (
        b"POST /api/v1/no-such-route HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    conn = await RawConnection.open(server.base_url)
    try:
        with trio.fail_after(HANG_GUARD):
            await conn.send(head + chunks)
            first = await conn.response()
            assert first is not None and first.status == 404, first
            assert not first.closes
            await conn.send(request_bytes("GET", "/healthz"))
            second = await conn.response()
            assert second is not None and second.status == 200, second
    finally:
        await conn.aclose()
