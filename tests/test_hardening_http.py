"""#16 items 4, 6, 7 and the slow-body part of 9: the HTTP door.

* 4: after an EARLY rejection (the body never read: 413, 401, 404, 405, 415) the next
  request on the same keep-alive connection must be answered, or the server must say
  ``Connection: close`` and close. Checked with httpx and with a raw socket.
* 6: API writes take only ``application/json`` (415 otherwise); a foreign ``Origin``
  on an unsafe method is refused (403); with API keys the dashboard has a login form
  that sets an HttpOnly, SameSite cookie.
* 7: control characters in a request path never forge a line of the text access log.
* 9: a body that is too slow gets 408, then the connection is closed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _helpers import running_worker, wait_until
from workers.hardening import (
    HANG_GUARD,
    RawConnection,
    aiki_server,
    request_bytes,
)

import aiki
from aiki_server import ServerHandle, Settings, create_app, serve_server

KEY = "k-" + "0123abcd" * 4
MAX_PAYLOAD = 10_000  # a small limit, so "too large" needs no huge body
# Early rejections with bodies of several hundred KB or more: Hypercorn hands a body to the
# app through a queue of 10 chunks of 64 KB, so smaller bodies never show the deadlock.
KEEP_ALIVE_MAX_PAYLOAD = 1_000_000

parked = aiki.workflow("hard-parked")


@parked.v("1")
async def parked_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await ctx.wait_for_event("go")


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    settings = Settings(redis_url=redis_url, port=0, max_payload_bytes=MAX_PAYLOAD)
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, settings)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def secured(redis_url: str) -> AsyncIterator[ServerHandle]:
    settings = Settings(redis_url=redis_url, port=0, max_payload_bytes=MAX_PAYLOAD, api_keys=(KEY,))
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, settings)
        nursery.cancel_scope.cancel()


def _start_body(size: int = 0) -> bytes:
    body = {"workflow": "hard-parked", "version": "1", "payload": "x" * size}
    return json.dumps(body).encode()


# -- item 4: keep-alive after an early rejection --------------------------------------------

# name -> (needs API keys, method, path, headers, body, the early status)
EARLY: dict[str, tuple[bool, str, str, dict[str, str], bytes, int]] = {
    "413-too-large": (
        False,
        "POST",
        "/api/v1/runs",
        {"Content-Type": "application/json"},
        _start_body(10_000_000),
        413,
    ),
    "401-no-key": (
        True,
        "POST",
        "/api/v1/runs",
        {"Content-Type": "application/json"},
        _start_body(2_000_000),
        401,
    ),
    "404-no-route": (
        False,
        "POST",
        "/api/v1/no-such-route",
        {"Content-Type": "application/json"},
        _start_body(2_000_000),
        404,
    ),
    "405-wrong-method": (
        False,
        "POST",
        "/healthz",
        {"Content-Type": "application/json"},
        _start_body(2_000_000),
        405,
    ),
    "415-wrong-type": (
        False,
        "POST",
        "/api/v1/runs",
        {"Content-Type": "text/plain"},
        _start_body(2_000_000),
        415,
    ),
    "400-bad-json": (
        False,
        "POST",
        "/api/v1/runs",
        {"Content-Type": "application/json"},
        b"{not json" + b" " * 2_000_000,
        400,  # the body IS read here (a control case: keep-alive works today)
    ),
}

_MARKS: dict[str, Any] = {}


def _cases(marks: dict[str, Any]) -> list[Any]:
    return [pytest.param(name, marks=marks.get(name, ()), id=name) for name in EARLY]


@pytest.mark.parametrize("case", _cases(_MARKS))
async def test_keep_alive_after_early_rejection_httpx(
    case: str, redis_url: str, client: aiki.Client
) -> None:
    secured_, method, path, headers, body, status = EARLY[case]
    settings = Settings(
        redis_url=redis_url,
        port=0,
        max_payload_bytes=KEEP_ALIVE_MAX_PAYLOAD,
        api_keys=(KEY,) if secured_ else (),
    )
    async with running_worker(client, parked), trio.open_nursery() as nursery:
        handle = await nursery.start(serve_server, settings)
        auth = {"Authorization": f"Bearer {KEY}"} if secured_ else {}
        with trio.fail_after(HANG_GUARD):
            async with httpx.AsyncClient(base_url=handle.base_url, timeout=5) as http:
                r = await http.request(method, path, headers=headers, content=body)
                assert r.status_code == status, r.text
                # The same client (its pooled keep-alive connection, or a new one if the
                # server closed it) must get an answer.
                again = await http.get("/healthz", headers=auth)
                assert again.status_code == 200
                listed = await http.get("/api/v1/runs", headers=auth)
                assert listed.status_code == 200
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("case", _cases(_MARKS))
async def test_keep_alive_after_early_rejection_raw_socket(
    case: str, redis_url: str, client: aiki.Client
) -> None:
    secured_, method, path, headers, body, status = EARLY[case]
    settings = Settings(
        redis_url=redis_url,
        port=0,
        max_payload_bytes=KEEP_ALIVE_MAX_PAYLOAD,
        api_keys=(KEY,) if secured_ else (),
    )
    auth = {"Authorization": f"Bearer {KEY}"} if secured_ else {}
    async with running_worker(client, parked), trio.open_nursery() as nursery:
        handle = await nursery.start(serve_server, settings)
        conn = await RawConnection.open(handle.base_url)
        try:
            sent = trio.Event()

            async def send_request() -> None:
                # The whole body, as a client would send it; the server may stop reading
                # it (then this blocks until the server closes, or breaks: both fine).
                await conn.send(request_bytes(method, path, headers, body))
                sent.set()

            async with trio.open_nursery() as io:
                io.start_soon(send_request)
                with trio.fail_after(5):
                    first = await conn.response()
                assert first is not None and first.status == status, first
                if first.closes:
                    # "Connection: close": the server must then really close.
                    with trio.fail_after(5):
                        assert await conn.closed_by_server()
                else:
                    # Keep-alive: the server must take the rest of the body, then answer
                    # the next request on this connection.
                    with trio.fail_after(5):
                        await sent.wait()
                        await conn.send(request_bytes("GET", "/healthz", auth))
                        second = await conn.response()
                    assert second is not None and second.status == 200, second
                io.cancel_scope.cancel()
        finally:
            await conn.aclose()
        nursery.cancel_scope.cancel()


# -- item 9: a slow body gets 408, then the connection is closed ------------------------


async def test_slow_body_gets_408_then_the_connection_closes(redis_url: str) -> None:
    app = create_app(Settings(redis_url=redis_url, port=0))
    app.config["BODY_TIMEOUT"] = 1  # Quart's own limit for receiving a body, in seconds
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(
            lambda task_status: serve_server(
                Settings(redis_url=redis_url, port=0), app=app, task_status=task_status
            )
        )
        conn = await RawConnection.open(handle.base_url)
        try:
            head = request_bytes(
                "POST", "/api/v1/runs", {"Content-Type": "application/json"}, b"x" * 1000
            )
            await conn.send(head[: len(head) - 990])  # headers and 10 bytes of 1000
            with trio.fail_after(15):
                first = await conn.response()
            assert first is not None and first.status == 408, first
            with trio.fail_after(5):
                assert await conn.closed_by_server()
        finally:
            await conn.aclose()
        nursery.cancel_scope.cancel()


# -- item 6: content types, Origin, dashboard login -------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "text/xml",
    ],
)
async def test_api_writes_take_only_json(
    content_type: str, server: ServerHandle, client: aiki.Client
) -> None:
    async with running_worker(client, parked):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            r = await http.post(
                "/api/v1/runs", content=_start_body(), headers={"Content-Type": content_type}
            )
            listed = (await http.get("/api/v1/runs")).json()["runs"]
            ok = await http.post(
                "/api/v1/runs",
                content=_start_body(),
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
    assert r.status_code == 415, r.text
    assert r.json()["error"]["type"] == "unsupported_media_type"
    assert "application/json" in r.json()["error"]["message"]
    assert listed == []  # nothing was started
    assert ok.status_code == 201, ok.text  # JSON with a charset parameter is fine


async def test_foreign_origin_cannot_write(server: ServerHandle, client: aiki.Client) -> None:
    async with running_worker(client, parked):
        handle = await parked_v1.start(client, None)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            forged = await http.post(
                f"/api/v1/runs/{handle.id}/cancel",
                headers={
                    "Origin": "http://evil.example",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
            forged_json = await http.post(
                f"/api/v1/runs/{handle.id}/cancel",
                json={"reason": "forged"},
                headers={"Origin": "null"},
            )
            status_after = await handle.status()
            # The server's own origin (the dashboard) and no Origin (CLI, SDK) still work.
            same = await http.post(
                f"/api/v1/runs/{handle.id}/cancel",
                json={"reason": "by the dashboard"},
                headers={"Origin": server.base_url},
            )
    assert forged.status_code == 403, forged.text
    assert "origin" in forged.json()["error"]["message"].lower()
    assert forged_json.status_code == 403, forged_json.text
    assert status_after != "cancelled"
    assert same.status_code == 200, same.text


async def test_dashboard_login_sets_a_safe_cookie(secured: ServerHandle) -> None:
    html = {"Accept": "text/html"}
    same_origin = {"Origin": secured.base_url}
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as http:
        anonymous = await http.get("/", headers=html)
        assert anonymous.status_code in (401, 302, 303), anonymous.status_code
        if anonymous.status_code in (302, 303):
            assert "/login" in anonymous.headers["Location"]

        form = await http.get("/login", headers=html)
        assert form.status_code == 200
        assert "<form" in form.text and 'method="post"' in form.text.lower()
        assert 'name="api_key"' in form.text

        wrong = await http.post(
            "/login", data={"api_key": "wrong"}, headers={**html, **same_origin}
        )
        assert wrong.status_code in (401, 403)
        assert "set-cookie" not in wrong.headers

        good = await http.post("/login", data={"api_key": KEY}, headers={**html, **same_origin})
        assert good.status_code in (200, 302, 303), good.text
        cookie = good.headers["set-cookie"]
        attrs = [a.strip().lower() for a in cookie.split(";")]
        assert "httponly" in attrs, cookie
        assert any(a in ("samesite=strict", "samesite=lax") for a in attrs), cookie
        assert KEY not in cookie  # the key itself is never the cookie
        assert "/login" not in (good.headers.get("Location") or "")

        # httpx keeps the cookie: the dashboard and the API answer a browser now.
        assert (await http.get("/", headers=html)).status_code == 200
        assert (await http.get("/api/v1/runs")).status_code == 200
        # ... but a cookie never lets a foreign page write.
        forged = await http.post(
            "/api/v1/schedules", json={}, headers={"Origin": "http://evil.example"}
        )
        assert forged.status_code == 403


# -- item 7: the text access log cannot be forged ---------------------------------------


async def test_control_characters_never_forge_a_log_line(redis_url: str, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    async with aiki_server(redis_url, log_path, "--access-log") as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            r = await http.get("/api/v1/runs/abc%0d%0aFORGED%20GET%20/admin%20200%0aFORGED2")
            assert r.status_code == 404
            # The access log line is written once the response is sent.
            await wait_until(
                lambda: "abc" in log_path.read_text(errors="replace"), what="the access log line"
            )
    text = log_path.read_text(errors="replace")
    assert "abc" in text, text
    for line in text.splitlines():
        assert not line.startswith("FORGED"), text
    assert "\r" not in text, text


def test_text_formatter_escapes_controls_and_indents_tracebacks() -> None:
    """The text formatter itself (the CLI's ``--log-format text``): a message stays on
    one line; a traceback keeps its lines, each continuation line indented."""
    import io
    import logging

    from aiki_server._logging import setup_logging

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("info", "text", stream)
        log = logging.getLogger("aiki_server.test")
        log.info("run %s not found", "abc\r\nFORGED line\x1b[2J\u2028x")
        try:
            raise ValueError("bad\nFORGED2")
        except ValueError:
            log.exception("failed %s", "y\nFORGED3")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = stream.getvalue().splitlines()
    assert not any(line.startswith("FORGED") for line in lines), lines
    assert "abc\\r\\nFORGED line\\x1b[2J\\u2028x" in lines[0]
    assert "Traceback (most recent call last):" in stream.getvalue()
    assert "ValueError: bad" in stream.getvalue()
    assert all(line.startswith(("20", "  ")) for line in lines), lines
