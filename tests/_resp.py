"""A tiny RESP client over raw sockets, so tests can look at Redis without the SDK.

Independent of ``aiki._redis`` on purpose: a test that checks what the SDK wrote (or how
many connections it holds) must not go through the SDK's own connection.
"""

from __future__ import annotations

import socket
from typing import Any

import trio

Arg = str | bytes | int | float


class RespError(Exception):
    """Redis answered with an error reply."""


def encode(*args: Arg) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Parser:
    """Incremental RESP2 parser: feed bytes, take complete replies."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> None:
        self.buf += data

    def take(self) -> tuple[bool, Any]:
        """(True, reply) when a whole reply is buffered, else (False, None)."""
        ok, value, pos = self._parse(0)
        if ok:
            self.buf = self.buf[pos:]
        return ok, value

    def _parse(self, pos: int) -> tuple[bool, Any, int]:
        end = self.buf.find(b"\r\n", pos)
        if end < 0:
            return False, None, pos
        kind, rest, nxt = self.buf[pos : pos + 1], self.buf[pos + 1 : end], end + 2
        if kind == b"+":
            return True, rest.decode(), nxt
        if kind == b"-":
            return True, RespError(rest.decode()), nxt
        if kind == b":":
            return True, int(rest), nxt
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return True, None, nxt
            if len(self.buf) < nxt + n + 2:
                return False, None, pos
            return True, self.buf[nxt : nxt + n], nxt + n + 2
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return True, None, nxt
            items = []
            for _ in range(n):
                ok, item, nxt = self._parse(nxt)
                if not ok:
                    return False, None, pos
                items.append(item)
            return True, items, nxt
        raise AssertionError(f"bad RESP data at {self.buf[pos : pos + 40]!r}")


def _check(reply: Any) -> Any:
    if isinstance(reply, RespError):
        raise reply
    return reply


def command(port: int, *args: Arg, timeout: float = 5.0) -> Any:
    """Send one command to 127.0.0.1:port (blocking) and return its reply."""
    parser = _Parser()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(encode(*args))
        while True:
            ok, reply = parser.take()
            if ok:
                return _check(reply)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            parser.feed(chunk)


async def acommand(port: int, *args: Arg) -> Any:
    """Send one command to 127.0.0.1:port with trio and return its reply."""
    parser = _Parser()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(encode(*args))
        while True:
            ok, reply = parser.take()
            if ok:
                return _check(reply)
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            parser.feed(chunk)


def _parse_client_list(text: bytes | str) -> list[dict[str, str]]:
    if isinstance(text, bytes):
        text = text.decode()
    clients = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
        clients.append(fields)
    return clients


async def client_list(port: int) -> list[dict[str, str]]:
    """The server's connected clients (``CLIENT LIST``), without the asking connection."""
    reply = await acommand(port, "CLIENT", "LIST")
    return [c for c in _parse_client_list(reply) if c.get("cmd") != "client|list"]


async def count_clients(port: int, name_prefix: str | None = None) -> int:
    """How many connections the server has (excluding this query's own connection),
    optionally only those whose client name starts with ``name_prefix``."""
    clients = await client_list(port)
    if name_prefix is not None:
        clients = [c for c in clients if c.get("name", "").startswith(name_prefix)]
    return len(clients)
