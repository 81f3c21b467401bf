"""Helpers for the Hardening (#16) regression tests: the ``aiki`` command line as a
child process (server and workers), raw HTTP/1.1 over a socket, and deep JSON.

Only stable interfaces are used: the installed ``aiki`` command (or its entry point),
HTTP, and sockets; never the server's or the SDK's private modules.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
WORKERS = TESTS / "workers"

# A safety net against hangs in every wait below: never a timing assertion.
HANG_GUARD = 30.0


def aiki_command() -> list[str]:
    """The ``aiki`` console script installed beside this Python (the project's
    ``[project.scripts]`` entry point), else its entry point through ``-c``."""
    script = Path(sys.executable).parent / "aiki"
    if script.exists():
        return [str(script)]
    found = shutil.which("aiki")
    if found:
        return [found]
    return [sys.executable, "-c", "from aiki_server.cli import main; main()"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``aiki``: no AIKI_* from outside, the worktree's
    sources and ``tests/workers`` (workflow modules for ``aiki worker``) importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKI_")}
    parts = [str(ROOT / "src"), str(ROOT), str(TESTS), str(WORKERS)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    """A running ``aiki`` child process and the file its output goes to."""

    proc: trio.Process
    log_path: Path
    base_url: str = ""

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_serving(self, timeout: float = 30.0) -> None:
        """Until a worker child has logged that it serves (its start-up is over: its
        connections are open and its loops run), so that a fault injected next hits a
        running worker, not one still starting on a loaded machine."""
        with trio.fail_after(timeout):
            while " serving " not in self.log():
                assert self.alive, f"worker exited while starting:\n{self.log()[-3000:]}"
                await trio.sleep(0.05)


async def _stop(proc: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            with trio.move_on_after(10):
                await proc.wait()
        if proc.poll() is None:
            proc.kill()
            await proc.wait()


async def _spawn(args: list[str], log_path: Path, cwd: Path | None = None) -> trio.Process:
    with open(log_path, "wb") as log:  # noqa: ASYNC230 (a local file, opened once)
        return await trio.lowlevel.open_process(
            [*aiki_command(), *args], stdout=log, stderr=log, env=cli_env(), cwd=cwd
        )


@asynccontextmanager
async def aiki_server(
    redis_url: str, log_path: Path, *args: str, prefix: str = "aiki"
) -> AsyncIterator[Child]:
    """``aiki server`` on a free port, ready (``/readyz`` 200) when the body runs."""
    port = free_port()
    proc = await _spawn(
        ["server", "--redis-url", redis_url, "--port", str(port), "--prefix", prefix, *args],
        log_path,
    )
    child = Child(proc, log_path, f"http://127.0.0.1:{port}")
    try:
        async with httpx.AsyncClient(base_url=child.base_url, timeout=5) as http:
            with trio.move_on_after(HANG_GUARD):
                while child.alive:
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)
        if not child.alive or not child.base_url:
            raise AssertionError(f"aiki server did not start:\n{child.log()[-3000:]}")
        yield child
    finally:
        await _stop(proc)


@asynccontextmanager
async def aiki_worker(
    redis_url: str, target: str, log_path: Path, *args: str, prefix: str = "aiki"
) -> AsyncIterator[Child]:
    """``aiki worker TARGET`` (a module in ``tests/workers``), one process (no
    supervisor: the tests count one process's log lines); stopped after."""
    proc = await _spawn(
        ["worker", target, "--redis-url", redis_url, "--prefix", prefix, "--processes", "1"]
        + list(args),
        log_path,
    )
    child = Child(proc, log_path)
    try:
        yield child
    finally:
        await _stop(proc)


def deep_json(depth: int) -> str:
    """``[[[...0...]]]`` nested ``depth`` arrays deep, as JSON text."""
    return "[" * depth + "0" + "]" * depth


def deep_list(depth: int) -> list[object]:
    """The same as a Python value, built without recursion."""
    value: list[object] = [0]
    for _ in range(depth - 1):
        value = [value]
    return value


# -- raw HTTP/1.1 ------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


class RawConnection:
    """One keep-alive TCP connection spoken to by hand (no client library to paper over
    what the server does with the connection)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, base_url: str) -> RawConnection:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        return cls(await trio.open_tcp_stream(host, int(port)))

    async def send(self, data: bytes) -> bool:
        """Send; False if the server had already closed or reset the connection."""
        try:
            await self.stream.send_all(data)
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False

    async def _more(self) -> bool:
        try:
            chunk = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            chunk = b""
        self.buffer += chunk
        return bool(chunk)

    async def response(self) -> RawResponse | None:
        """The next response, or None when the server closed the connection first."""
        while b"\r\n\r\n" not in self.buffer:
            if not await self._more():
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not await self._more():
                break
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return RawResponse(status, headers, body)

    async def closed_by_server(self) -> bool:
        """True once the server closes its side (EOF or reset)."""
        while True:
            if not await self._more():
                return True

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


def request_bytes(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
