"""Child processes of the benchmark: Aiki workers and the Aiki server.

Each child is started with ``python -m benchmarks.<module>``, announces itself on stdout
and stops when ``stop`` arrives on its stdin (or stdin closes, so an orphan stops too).
Their stderr goes to a log file in the run's temporary directory.

:func:`cli_worker_processes` is the exception: the product's own command, ``aiki worker
--processes N`` (a supervisor and its N worker children), stopped with SIGTERM as an
operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import trio

from ._common import ROOT, child_env, cpu_seconds, proc_status_kb


class ChildFailed(RuntimeError):
    pass


class Child:
    """One running child process (a worker or the server)."""

    def __init__(self, name: str, process: trio.Process, log_path: Path) -> None:
        self.name = name
        self.process = process
        self.log_path = log_path
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS")

    def hwm_kb(self) -> int:
        return proc_status_kb(self.pid, "VmHWM")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def read_line(self, timeout: float) -> str | None:
        """The next stdout line, or None at end of file."""
        assert self.process.stdout is not None
        with trio.fail_after(timeout):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some(4096)
                if not chunk:
                    return None
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace").strip()

    async def stop(self, timeout: float = 20.0) -> str | None:
        """Ask the child to stop; kill it if it has not exited after ``timeout`` s.
        Returns its last stdout line (``STOPPED ...`` for a worker)."""
        last: str | None = None
        with trio.CancelScope(shield=True):
            if self.process.returncode is None and self.process.stdin is not None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.process.stdin.send_all(b"stop\n")
                    await self.process.stdin.aclose()
            with trio.move_on_after(timeout) as scope:
                while (line := await self.read_line(timeout)) is not None:
                    last = line or last
                await self.process.wait()
            if scope.cancelled_caught:
                self.process.kill()
                await self.process.wait()
        return last


async def _spawn(
    name: str, module: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None
) -> Child:
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")  # noqa: ASYNC230 - a local file, opened once per child
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", f"benchmarks.{module}", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
            env={**child_env(), **(env or {})},
        )
    finally:
        log.close()  # the child holds its own descriptor
    return Child(name, process, log_path)


@contextlib.asynccontextmanager
async def worker_processes(
    redis_url: str,
    count: int,
    log_dir: Path,
    *,
    concurrency: int = 50,
    tag: str = "w",
    env: dict[str, str] | None = None,
) -> AsyncIterator[list[Child]]:
    """``count`` worker subprocesses, each subscribed (READY) when the body runs."""
    children: list[Child] = []
    try:
        for i in range(count):
            child = await _spawn(
                f"worker-{tag}{i}",
                "_worker_proc",
                [
                    "--redis-url",
                    redis_url,
                    "--id",
                    f"bench-{tag}{i}",
                    "--concurrency",
                    str(concurrency),
                ],
                log_dir,
                env,
            )
            children.append(child)
        for child in children:
            line = await child.read_line(60.0)
            if not line or not line.startswith("READY"):
                raise ChildFailed(
                    f"{child.name} did not start (said {line!r}); log:\n{child.log_tail()}"
                )
        yield children
    finally:
        for child in children:
            await child.stop()


class Pid:
    """A process the benchmark watches but did not start (a supervised worker child)."""

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid = pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(text.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry))
    return found


@contextlib.asynccontextmanager
async def cli_worker_processes(
    redis_url: str,
    processes: int,
    log_dir: Path,
    registry: Callable[[], Awaitable[dict[str, str]]],
    *,
    concurrency: int = 50,
    tag: str = "cli",
) -> AsyncIterator[list[Pid]]:
    """``aiki worker benchmarks._workflows:ALL --processes N`` (the workflows and
    settings of ``_worker_proc``: concurrency 50, block time 1 s). The body runs once
    each child is in the worker registry (``registry()``: id -> JSON entry); it gets the
    supervisor and the children, for their CPU. SIGTERM stops them after."""
    log_path = log_dir / f"worker-{tag}.log"
    with log_path.open("ab") as log:  # noqa: ASYNC230 - a local file, opened once
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "aiki_server.cli", "worker", "benchmarks._workflows:ALL"]
            + ["--processes", str(processes), "--id", f"bench-{tag}"]
            + ["--concurrency", str(concurrency), "--log-level", "warning"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=ROOT,
            env={**child_env(), "AIKI_REDIS_URL": redis_url},
        )
    try:
        ids = [f"bench-{tag}-{i}" for i in range(1, processes + 1)]
        pids: list[int] = []
        with trio.move_on_after(60.0):
            while proc.poll() is None:
                entries = await registry()
                children = _children_of(proc.pid)
                pids = [json.loads(entries[i])["pid"] for i in ids if i in entries]
                if len(pids) == processes and set(pids) <= children:
                    break
                await trio.sleep(0.1)
        if proc.poll() is not None or len(pids) != processes:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise ChildFailed(f"aiki worker --processes {processes} did not start; log:\n{tail}")
        yield [Pid("supervisor", proc.pid)] + [
            Pid(f"worker-{i}", pid) for i, pid in enumerate(pids, start=1)
        ]
    finally:
        with trio.CancelScope(shield=True):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(30.0):
                await proc.wait()
            if proc.poll() is None:
                proc.kill()
                await proc.wait()


async def start_server(redis_url: str, port: int, log_dir: Path) -> tuple[Child | None, str]:
    """Start the Aiki server subprocess and wait for ``/healthz``.

    Returns ``(child, note)``; ``child`` is None when the server is not available, and
    ``note`` says why (or where it listens)."""
    child = await _spawn(
        "server", "_server_proc", ["--redis-url", redis_url, "--port", str(port)], log_dir
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=1.0) as http:
        with trio.move_on_after(20.0):
            while child.process.poll() is None:
                try:
                    response = await http.get("/healthz")
                except httpx.TransportError:
                    await trio.sleep(0.1)
                    continue
                if response.status_code == 200:
                    return child, f"aiki_server at {base} (subprocess pid {child.pid})"
                await trio.sleep(0.1)
    said = await child.stop(timeout=5.0)
    if said and said.startswith("UNAVAILABLE"):
        reason = said[len("UNAVAILABLE ") :]
    else:
        reason = f"did not answer /healthz within 20 s; log: {child.log_tail(5)!r}"
    return None, f"skipped: {reason}"
