"""``aiki worker --processes N``: N worker processes under one supervisor process.

Why processes: a worker executes Python, which runs one thread at a time, so one worker
process uses one core at most. Using every core takes several processes, and an
operator wants one command, one process to signal and one log stream for them.

How, and why this way:

* **Each child is an ordinary ``aiki worker --processes 1``** (``python -m
  aiki_server.cli``), so a supervised worker runs exactly the code of a single one. The
  supervisor only starts, watches, restarts and stops processes; it never touches Redis
  after its start-up check.
* **One worker id per child**, ``<base>-<i>``, the same across restarts: a restarted
  child claims its own id again (once the dead one's registry entry is stale, see
  ``aiki._worker_loops.REGISTRY_STALE``) and at once re-reads the messages still pending
  under that id, instead of leaving them for another worker's ``claim_min_idle_time``.
* **A link per child** (one end of a ``socketpair``, its fd number passed with
  ``--supervisor-fd``): the child writes ``ready`` once subscribed, and stops gracefully
  when it reads end-of-file, which is also what it reads when the supervisor died (even
  SIGKILLed), so no orphan keeps executing runs. A child that ends before ``ready`` failed
  at start-up; after ``START_ATTEMPTS`` such failures in a row the supervisor gives up
  with the child's last error line rather than restarting a bad configuration for ever.
  The configuration is checked in the supervisor before any child starts
  (``_worker.check_config``), so the usual mistakes end as one line, as without
  ``--processes``.
* **Children in a process group of their own**: Ctrl-C at a terminal signals the
  foreground process group; were the children in it, each would get the terminal's
  SIGINT and then the supervisor's SIGTERM, a second signal, which means "stop at once".
  So only the supervisor gets it and sends each child one SIGTERM (graceful stop).
  Under systemd use ``KillMode=mixed`` for the same reason.
* **Logs**: a child's stdout and stderr are pipes that the supervisor reads line by line
  and writes to its own, each line prefixed with ``[worker-<i>] `` (JSON log lines get a
  ``"process"`` field instead, so they stay JSON).
* **Restarts**: a child that crashes (non-zero exit, killed by a signal) is started
  again after a delay from :class:`aiki.engine.Backoff` (the project's one backoff),
  which goes back to its start once a child has run for ``STABLE_AFTER`` seconds.
* **Stop**: the first SIGINT/SIGTERM sends each child SIGTERM and waits for them (their
  ``--shutdown-grace`` plus a margin); a second signal, or that wait running out, sends
  a second SIGTERM (the child stops at once), and a child still there ``KILL_AFTER``
  seconds later is SIGKILLed. The signals are the CLI's (:mod:`._signals`).
* **No threads**: one trio task per child keeps it running; each run of it has a task
  per pipe and one for the link.

The Redis URL reaches the children in their environment (``AIKI_REDIS_URL``), never on
their command line, which ``ps`` shows to every user (it may hold a password).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import trio

from aiki.engine import Backoff

from ._base import CliError, notice

START_ATTEMPTS = 3
"""A child that fails this many times in a row before it is ready ends the supervisor."""

STABLE_AFTER = 30.0
"""Seconds a child must have served before its crash starts the restart delays afresh."""

KILL_AFTER = 5.0
"""After a stop at once (second SIGTERM), seconds before a child is SIGKILLed."""

DRAIN = 2.0
"""Seconds, once a child has exited, to relay the rest of its output (a grandchild that
inherited its pipes could hold them open for ever)."""

LONGEST_LINE = 65536
"""A longer stretch of output without a newline is relayed as a line of its own."""

READY = b"ready\n"


def cpu_count() -> int:
    """The CPUs this process may run on (a container's or ``taskset``'s limit included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def child_ids(base: str, processes: int) -> list[str]:
    """The worker id of each child: ``<base>-1`` ... ``<base>-<processes>``."""
    return [f"{base}-{i}" for i in range(1, processes + 1)]


@dataclass
class Child:
    """One supervised worker process, across its restarts."""

    index: int
    worker_id: str
    name: str = ""
    pid: int | None = None
    starts: int = 0
    last_error: str = ""
    proc: trio.Process | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or f"worker-{self.index}"


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Runs one child per id in ``ids`` with ``argv + ["--id", id, "--supervisor-fd", fd]``
    until stopped; see the module's docstring for what it promises."""

    def __init__(
        self,
        argv: Sequence[str],
        ids: Sequence[str],
        *,
        env: dict[str, str],
        json_logs: bool = False,
        stdout: BinaryIO | None = None,
        stderr: BinaryIO | None = None,
    ) -> None:
        self.argv = list(argv)
        self.env = env
        self.children = [Child(i, worker_id) for i, worker_id in enumerate(ids, start=1)]
        self.json_logs = json_logs
        self._stdout = stdout
        self._stderr = stderr
        self._stop = trio.Event()
        self._failure: str | None = None

    async def serve(self, shutdown_trigger: Any, *, task_status: Any) -> None:
        """Start every child, keep them running until ``shutdown_trigger()`` returns, then
        stop them gracefully. Raises :class:`CliError` if a child kept failing to start."""
        async with trio.open_nursery() as nursery:

            async def stop_when_triggered() -> None:
                await shutdown_trigger()
                self._stop.set()

            nursery.start_soon(stop_when_triggered)
            async with trio.open_nursery() as keepers:
                for child in self.children:
                    keepers.start_soon(self._keep, child)
                task_status.started(self)
            nursery.cancel_scope.cancel()
        if self._failure is not None:
            raise CliError(self._failure)

    def stopping(self) -> str:
        return f"stopping worker processes ({len(self.children)})"

    # -- one child ----------------------------------------------------------------------

    async def _keep(self, child: Child) -> None:
        """Run ``child`` until the stop; restart it with backoff when it ends on its own."""
        backoff = Backoff(initial=0.5, maximum=30.0)
        failed_starts = 0
        while not self._stop.is_set():
            began = trio.current_time()
            ready, code = await self._run_once(child)
            if self._stop.is_set():
                return
            if not ready:
                failed_starts += 1
                if failed_starts >= START_ATTEMPTS:
                    last = f": {child.last_error}" if child.last_error else ""
                    self._fail(
                        f"{child.name} (worker id {child.worker_id}) failed to start "
                        f"{failed_starts} times in a row; the last one {describe_exit(code)}"
                        f"{last}"
                    )
                    return
            else:
                failed_starts = 0
                if trio.current_time() - began >= STABLE_AFTER:
                    backoff.reset()
            delay = backoff.next()
            notice(
                f"{child.name} (pid {child.pid}) {describe_exit(code)}"
                f"{'' if ready else ' before it was ready'}; restarting in {delay:.1f} s"
            )
            with trio.move_on_after(delay):
                await self._stop.wait()

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = message
            notice(f"{message}; stopping the other worker processes")
        self._stop.set()

    async def _run_once(self, child: Child) -> tuple[bool, int]:
        """Start ``child`` once and relay its output until it exits: (whether it said
        ``ready``, its exit code). Cancelled, it stops the child at once (see the module)."""
        ours, theirs = socket.socketpair()
        try:
            proc = await trio.lowlevel.open_process(
                [
                    *self.argv,
                    "--id",
                    child.worker_id,
                    "--supervisor-fd",
                    str(theirs.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                pass_fds=(theirs.fileno(),),
                process_group=0,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        child.proc, child.pid = proc, proc.pid
        child.starts += 1
        child.last_error = ""
        link = trio.socket.from_stdlib_socket(ours)
        ready = False
        try:
            async with trio.open_nursery() as nursery:
                outputs = [trio.Event(), trio.Event(), trio.Event()]

                async def read_link() -> None:
                    nonlocal ready
                    try:
                        seen = b""
                        while not seen.endswith(b"\n") and (chunk := await link.recv(64)):
                            seen += chunk
                        ready = seen == READY
                    except OSError:
                        pass  # the child is gone; its exit code says how
                    finally:
                        outputs[2].set()

                async def forward_stop() -> None:
                    await self._stop.wait()
                    proc.send_signal(signal.SIGTERM)

                assert proc.stdout is not None and proc.stderr is not None
                nursery.start_soon(self._relay, child, proc.stdout, False, outputs[0])
                nursery.start_soon(self._relay, child, proc.stderr, True, outputs[1])
                nursery.start_soon(read_link)
                nursery.start_soon(forward_stop)
                code = await proc.wait()
                with trio.move_on_after(DRAIN):
                    for done in outputs:
                        await done.wait()
                nursery.cancel_scope.cancel()
        finally:
            link.close()
            if proc.returncode is None:  # cancelled: stop at once, then kill
                with trio.CancelScope(shield=True):
                    await self._stop_at_once(child, proc)
        return ready, code

    async def _stop_at_once(self, child: Child, proc: trio.Process) -> None:
        proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(KILL_AFTER):
            await proc.wait()
            return
        notice(f"{child.name} (pid {proc.pid}) still running {KILL_AFTER:g} s later: killed")
        proc.kill()
        await proc.wait()

    # -- output -------------------------------------------------------------------------

    async def _relay(self, child: Child, stream: Any, is_stderr: bool, done: trio.Event) -> None:
        """Copy ``stream`` to our stdout or stderr line by line, each line labelled."""
        out = (
            (self._stderr or sys.stderr.buffer)
            if is_stderr
            else (self._stdout or sys.stdout.buffer)
        )
        pending = b""
        try:
            while chunk := await stream.receive_some(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                if len(pending) > LONGEST_LINE:
                    lines.append(pending)
                    pending = b""
                if lines:
                    self._write(child, out, lines, is_stderr)
            if pending:
                self._write(child, out, [pending], is_stderr)
        finally:
            done.set()

    def _write(self, child: Child, out: BinaryIO, lines: list[bytes], is_stderr: bool) -> None:
        if is_stderr:
            for line in reversed(lines):
                if line.strip():
                    child.last_error = line.decode(errors="replace").strip()[:500]
                    break
        out.write(b"".join(self.label(child, line) for line in lines))
        out.flush()

    def label(self, child: Child, line: bytes) -> bytes:
        """``[worker-2] line``; a JSON object line gets ``"process": "worker-2"`` instead."""
        if self.json_logs and line.startswith(b"{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                record["process"] = child.name
                return json.dumps(record, ensure_ascii=False).encode() + b"\n"
        return b"[" + child.name.encode() + b"] " + line + b"\n"


class SupervisorLink:
    """The child's end of the link (``--supervisor-fd``): say ``ready``, and learn that
    the supervisor is gone (end-of-file: it closed the link, or died)."""

    def __init__(self, fd: int) -> None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise CliError(f"--supervisor-fd {fd} is not a socket: {exc}") from None
        self._sock = trio.socket.from_stdlib_socket(sock)

    async def ready(self) -> None:
        await self._sock.send(READY)

    async def wait_closed(self) -> None:
        """Return once the supervisor's end is closed."""
        while await self._sock.recv(64):
            pass

    def close(self) -> None:
        self._sock.close()
