"""The one place Aiki handles signals: every serving command runs under it.

The library installs no signal handlers (as in Hypercorn's ``trio/run.py``, its serve
functions take a ``shutdown_trigger``); the command line turns SIGINT/SIGTERM into that
trigger. The first signal starts a graceful stop, which gets ``grace`` seconds; a second
signal, or a graceful stop that outlives its grace, stops at once (cancellation).
"""

from __future__ import annotations

import math
import signal
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from ._base import notice

Trigger = Callable[[], Awaitable[Any]]


class Serve(Protocol):
    """``await serve(shutdown_trigger, task_status=...)``: calls ``task_status.started``
    once it runs, and returns when stopped (gracefully once the trigger returns)."""

    async def __call__(self, shutdown_trigger: Trigger, *, task_status: Any) -> None: ...


async def serve_until_signal(
    serve: Serve,
    *,
    stopping: str | Callable[[], str],
    started: Callable[[Any], None],
    grace: float = math.inf,
) -> None:
    """Run ``serve`` until it returns or a signal stops it.

    ``started`` gets what ``serve`` passed to ``task_status.started`` (to print a banner);
    ``stopping`` says what the first signal does, as in ``"SIGTERM: stopping gracefully
    (again to stop at once)"`` (a function: asked when the signal comes)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    what = stopping if isinstance(stopping, str) else stopping()
                    notice(f"{signal.Signals(signum).name}: {what} (again to stop at once)")
                    stop.set()
                    break
                with trio.move_on_after(grace) as waited:
                    async for _ in signals:
                        break
                if waited.cancelled_caught:
                    notice(f"still stopping after {grace:g} s: stopping at once")
                nursery.cancel_scope.cancel()

            async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await serve(stop.wait, task_status=task_status)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            started(await nursery.start(run))
