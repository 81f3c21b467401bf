"""Child processes of the benchmark: Aiki workers and the Aiki server.

Each child is started with ``python -m benchmarks.<module>``, announces itself on stdout
and stops when ``stop`` arrives on its stdin (or stdin closes, so an orphan stops too).
Their stderr goes to a log file in the run's temporary directory.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
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
