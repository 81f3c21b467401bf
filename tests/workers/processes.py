"""Worker SUBPROCESSES for fault tests: start one, wait until it is subscribed, signal
it (SIGKILL, SIGSTOP, SIGCONT), read its log, and always reap it.

A worker script prints ``ready`` on stdout once ``worker.start`` returned (subscribed);
its logging goes to ``<log_dir>/<worker id>.stderr``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from _helpers import TESTS, subprocess_env

FAULT_WORKER = TESTS / "workers" / "fault_worker.py"
FOUR_STEPS_WORKER = TESTS / "workers" / "four_steps.py"


class WorkerProcess:
    """One running worker process."""

    def __init__(self, proc: trio.Process, worker_id: str, log_path: Path) -> None:
        self.proc = proc
        self.id = worker_id
        self.log_path = log_path

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL and reap (a crash: no cleanup of any kind runs in the worker)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self.proc.returncode is None:
                self.proc.kill()  # SIGKILL also ends a SIGSTOPped process
            await self.proc.wait()
            if self.proc.stdout is not None:
                await self.proc.stdout.aclose()


async def start_worker(
    url: str,
    worker_id: str,
    log_dir: Path,
    *args: str,
    script: Path = FAULT_WORKER,
    ready_timeout: float = 30.0,
) -> WorkerProcess:
    """Start ``script url worker_id *args`` and return once it printed ``ready``."""
    log_path = log_dir / f"{worker_id}.stderr"
    env = subprocess_env()
    env["WORKER_NAME"] = worker_id
    with open(log_path, "wb") as stderr:  # noqa: ASYNC230 (a local file, opened once)
        proc = await trio.lowlevel.open_process(
            [sys.executable, str(script), url, worker_id, *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    worker = WorkerProcess(proc, worker_id, log_path)
    try:
        assert proc.stdout is not None
        seen = b""
        with trio.move_on_after(ready_timeout):
            while b"ready" not in seen:
                chunk = await proc.stdout.receive_some(1024)
                if not chunk:
                    break
                seen += chunk
        if b"ready" not in seen:
            await worker.aclose()
            pytest.fail(
                f"worker {worker_id} did not become ready (exit {proc.returncode}):\n"
                + worker.log()[-3000:]
            )
    except BaseException:
        await worker.aclose()
        raise
    return worker


@asynccontextmanager
async def worker_process(
    url: str, worker_id: str, log_dir: Path, *args: str, script: Path = FAULT_WORKER
) -> AsyncIterator[WorkerProcess]:
    """``async with worker_process(url, id, tmp_path) as w:`` — killed and reaped after."""
    worker = await start_worker(url, worker_id, log_dir, *args, script=script)
    try:
        yield worker
    finally:
        await worker.aclose()
