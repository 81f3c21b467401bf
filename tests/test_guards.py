"""The request guards of #16 item 6 beyond test_hardening_http.py: a body without a
Content-Type, the configured allowed origins (Settings, AIKI_ALLOWED_ORIGINS,
``--allowed-origin``), and what is never an origin."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from workers.hardening import aiki_command, cli_env

from aiki import ConfigurationError
from aiki_server import ServerHandle, Settings, serve_server

OPS = "https://ops.example.com"


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[ServerHandle]:
    settings = Settings(redis_url=redis_url, port=0, allowed_origins=(OPS + "/",))
    async with trio.open_nursery() as nursery:
        yield await nursery.start(serve_server, settings)
        nursery.cancel_scope.cancel()


async def test_a_json_body_without_content_type_is_a_415(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        r = await http.post("/api/v1/runs", content=b'{"workflow": "w", "version": "1"}')
        assert r.status_code == 415, r.text
        error = r.json()["error"]
        assert error["field"] == "Content-Type" and "none was given" in error["message"]
        r = await http.post(
            "/api/v1/runs", content=b"{}", headers={"Content-Type": "text/plain; charset=x"}
        )
        assert r.status_code == 415 and "'text/plain; charset=x'" in r.json()["error"]["message"]
        # A write without a body (pause, resume, cancel) needs no Content-Type.
        r = await http.post("/api/v1/runs/nope/pause")
        assert r.status_code == 404, r.text


async def test_allowed_origins_may_write_others_may_not(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        for origin, status in [
            (OPS, 404),  # allowed (configured with a trailing slash)
            ("HTTPS://OPS.EXAMPLE.COM", 404),  # origins compare case-insensitively
            ("http://ops.example.com", 403),  # another scheme is another origin
            ("https://ops.example.com:8443", 403),
            ("https://ops.example.com.evil.example", 403),
            ("null", 403),
            ("not an origin", 403),
        ]:
            r = await http.post("/api/v1/runs/nope/cancel", json={}, headers={"Origin": origin})
            assert r.status_code == status, (origin, r.text)
            if status == 403:
                assert r.json()["error"]["type"] == "forbidden_origin"
        # Reads are never refused for their Origin (CORS keeps foreign pages from
        # reading the answer: the server sends no Access-Control-Allow-Origin).
        r = await http.get("/api/v1/runs", headers={"Origin": "http://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_allowed_origins_setting_and_environment() -> None:
    env = {"AIKI_ALLOWED_ORIGINS": "https://a.example, http://b.example:8080"}
    assert Settings.from_env(env).allowed_origins == ("https://a.example", "http://b.example:8080")
    for bad in ["a.example", "https://a.example/path", "ftp://a.example", "null"]:
        with pytest.raises(ConfigurationError, match="allowed_origins"):
            Settings(allowed_origins=(bad,))
    with pytest.raises(ConfigurationError, match="AIKI_ALLOWED_ORIGINS"):
        Settings.from_env({"AIKI_ALLOWED_ORIGINS": "https://a.example/x"})


@pytest.mark.parametrize("command", ["server", "dev"])
def test_allowed_origin_flag_is_validated(command: str) -> None:
    done = subprocess.run(
        [*aiki_command(), command, "--allowed-origin", "https://a.example/x"],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "allowed_origins" in done.stderr and "https://a.example/x" in done.stderr


KEY = "g-" + "0123abcd" * 4


async def test_session_cookie_rules(redis_url: str) -> None:
    """A session cookie: Secure behind an HTTPS proxy, no write without an Origin, and
    no longer valid once its key is removed from the server's keys."""
    settings = Settings(redis_url=redis_url, port=0, api_keys=(KEY,))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(serve_server, settings)
        async with httpx.AsyncClient(base_url=handle.base_url, timeout=10) as http:
            good = await http.post(
                "/login", data={"api_key": KEY}, headers={"X-Forwarded-Proto": "https"}
            )
            assert good.status_code == 303, good.text
            attrs = [a.strip().lower() for a in good.headers["set-cookie"].split(";")]
            assert "secure" in attrs and "samesite=strict" in attrs and "httponly" in attrs
            token = good.cookies["aiki_session"]
            cookies = {"Cookie": f"aiki_session={token}"}
            r = await http.get("/api/v1/runs", headers=cookies)
            assert r.status_code == 200, r.text
            r = await http.post("/api/v1/runs/nope/cancel", json={}, headers=cookies)
            assert r.status_code == 403 and r.json()["error"]["field"] == "Origin", r.text
            r = await http.post(
                "/api/v1/runs/nope/cancel",
                json={},
                headers={**cookies, "Origin": handle.base_url},
            )
            assert r.status_code == 404, r.text
            r = await http.get("/api/v1/runs", headers={"Cookie": f"aiki_session={token}x"})
            assert r.status_code == 401
        nursery.cancel_scope.cancel()
    other = Settings(redis_url=redis_url, port=0, api_keys=("h-" + "0123abcd" * 4,))
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(serve_server, other)
        async with httpx.AsyncClient(base_url=handle.base_url, timeout=10) as http:
            r = await http.get("/api/v1/runs", headers={"Cookie": f"aiki_session={token}"})
            assert r.status_code == 401  # its key is gone: so is the session
            page = await http.get("/", headers={"Accept": "text/html"})
            assert page.status_code == 303 and page.headers["Location"].endswith("/login")
        nursery.cancel_scope.cancel()
