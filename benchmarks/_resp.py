"""A tiny synchronous RESP2 client for the benchmark's own admin commands.

Independent of ``aiki._redis`` on purpose: the figures Aiki is measured by (``INFO
commandstats``, ``CLIENT LIST``, ``MONITOR``) must not go through the SDK under test,
and must not show up as SDK connections. Calls block; they are only made outside
measured windows (or from a thread, for ``MONITOR``).
"""

from __future__ import annotations

import re
import socket
import threading
from typing import Any
from urllib.parse import urlparse

Arg = str | bytes | int | float


class RespError(Exception):
    """Redis answered with an error reply."""


def _encode(args: tuple[Arg, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Resp:
    """One blocking connection. ``Resp.from_url("redis://127.0.0.1:6379")``."""

    def __init__(self, host: str, port: int, *, timeout: float | None = 10.0) -> None:
        self.host = host
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = 10.0) -> Resp:
        parsed = urlparse(url)
        return cls(parsed.hostname or "127.0.0.1", parsed.port or 6379, timeout=timeout)

    def send(self, *args: Arg) -> None:
        self.sock.sendall(_encode(args))

    def read(self) -> Any:
        line = self.file.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            raise RespError(body.decode())
        if kind == b":":
            return int(body)
        if kind == b"$":
            n = int(body)
            if n < 0:
                return None
            return self.file.read(n + 2)[:-2]
        if kind == b"*":
            n = int(body)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RespError(f"unexpected reply {line!r}")

    def command(self, *args: Arg) -> Any:
        self.send(*args)
        return self.read()

    def text(self, *args: Arg) -> str:
        reply = self.command(*args)
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    # -- helpers over INFO / CLIENT LIST ------------------------------------------------

    def info(self, section: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.text("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                key, _, value = line.partition(":")
                out[key] = value
        return out

    def commandstats(self) -> dict[str, int]:
        """Calls per command since the last ``CONFIG RESETSTAT`` (Lua-internal included)."""
        out: dict[str, int] = {}
        for key, value in self.info("commandstats").items():
            if key.startswith("cmdstat_"):
                fields = dict(kv.split("=", 1) for kv in value.split(","))
                out[key[len("cmdstat_") :]] = int(fields["calls"])
        return out

    def client_list(self) -> list[dict[str, str]]:
        out = []
        for line in self.text("CLIENT", "LIST").splitlines():
            out.append(dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv))
        return out


_MONITOR_LINE = re.compile(r'^\+(\d+\.\d+) \[(\d+) ([^\]]+)\] "([^"]*)"(?: "([^"]*)")?')


class Monitor:
    """``MONITOR`` on a connection of its own, read by a thread.

    Collects ``(source address or "lua", COMMAND, first argument)`` for every command
    Redis executes. :meth:`stop` sends a marker command from ``admin`` and returns once
    the marker has been seen, so nothing executed before it is missed.
    """

    MARKER = "aiki-bench-monitor-end"

    def __init__(self, url: str) -> None:
        self.conn = Resp.from_url(url, timeout=None)
        self.events: list[tuple[str, str, str]] = []
        self._done = threading.Event()
        self._error: BaseException | None = None
        reply = self.conn.command("MONITOR")
        if reply != "OK":
            raise RespError(f"MONITOR answered {reply!r}")
        self._thread = threading.Thread(target=self._read, name="bench-monitor", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                line = self.conn.file.readline()
                if not line:
                    return
                m = _MONITOR_LINE.match(line.decode(errors="replace"))
                if not m:
                    continue
                _ts, _db, source, cmd, arg1 = m.groups()
                if cmd.upper() == "ECHO" and arg1 == self.MARKER:
                    return
                self.events.append((source, cmd.upper(), arg1 or ""))
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self._error = exc
        finally:
            self._done.set()

    def stop(self, admin: Resp) -> None:
        admin.command("ECHO", self.MARKER)
        finished = self._done.wait(10.0)
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(5.0)
        self.conn.close()
        if self._error is not None:
            raise self._error
        if not finished:
            raise TimeoutError("MONITOR did not deliver the end marker within 10 s")
