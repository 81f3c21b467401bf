"""One backoff, one retry loop and one supervise loop for every background activity.

Why one module: the client's start retry, the run-ended listener's reconnects, the
worker's read loop and the server's daemons all wait "a little longer each time, with
jitter, up to a cap" when Redis is away, and all must log an outage once, not once per
attempt. Written once here, they behave the same everywhere and are tested once.

Everything uses ``anyio`` so that the client stays usable from asyncio; under trio it is
plain trio.

* :class:`Backoff` — capped exponential delays with jitter (``next()``, ``reset()``).
* :func:`jittered` — ``seconds`` spread by +-20 %, so that many processes polling at the
  same interval do not fall into step.
* :func:`retrying` — call until it succeeds, retrying the given (transient) errors with a
  backoff until a deadline.
* :func:`supervise` — a daemon's loop: run one step after another for ever; a failing
  step is logged once per outage (and its recovery once), then retried with backoff.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._errors import ConnectionFailed

T = TypeVar("T")


def jittered(seconds: float, spread: float = 0.2) -> float:
    """``seconds`` times a random factor in ``[1 - spread, 1 + spread]``."""
    return seconds * random.uniform(1.0 - spread, 1.0 + spread)


@dataclass
class Backoff:
    """Capped exponential delays with jitter: ``initial``, ``initial * factor``, ... up to
    ``maximum``. ``next()`` returns the delay to wait now and moves on; ``reset()`` after a
    success starts again from ``initial``."""

    initial: float = 0.05
    maximum: float = 5.0
    factor: float = 2.0
    spread: float = 0.2
    failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        for name in ("initial", "maximum", "factor", "spread"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Backoff {name} must be a finite number >= 0, got {value!r}")

    def peek(self) -> float:
        """The delay ``next()`` would return, before jitter."""
        return min(self.maximum, self.initial * self.factor**self.failures)

    def next(self) -> float:
        delay = jittered(self.peek(), self.spread)
        if self.peek() < self.maximum:
            self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0

    async def sleep(self) -> None:
        await anyio.sleep(self.next())


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    retry_for: float,
    retry_on: tuple[type[BaseException], ...] = (ConnectionFailed,),
    backoff: Backoff | None = None,
    on_retry: Callable[[BaseException, float], Any] | None = None,
) -> T:
    """``await call()``, retrying ``retry_on`` errors with ``backoff`` until ``retry_for``
    seconds have passed; then the last error is raised. ``on_retry(error, delay)`` is
    called before each wait (to log it, or to note that a retry happened)."""
    backoff = backoff or Backoff(initial=0.05, maximum=2.0)
    deadline = anyio.current_time() + retry_for
    while True:
        try:
            return await call()
        except retry_on as exc:
            delay = backoff.next()
            if anyio.current_time() + delay > deadline:
                raise
            if on_retry is not None:
                on_retry(exc, delay)
            await anyio.sleep(delay)


async def supervise(
    name: str,
    step: Callable[[], Awaitable[float]],
    *,
    log: logging.Logger,
    backoff: Backoff | None = None,
    task_status: Any = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``step()`` for ever: it does one round of work and returns how many seconds to
    wait before the next (0: go on at once). A step that raises is logged once per outage
    (a lost connection as a warning, anything else with its traceback), retried with
    ``backoff``, and its recovery logged once: a daemon never dies of one bad reply and
    never floods the log while Redis is away."""
    backoff = backoff or Backoff(initial=0.25, maximum=5.0)
    task_status.started()
    failing = False
    while True:
        try:
            wait = await step()
        except Exception as exc:
            if not failing:
                if isinstance(exc, ConnectionFailed):
                    log.warning("%s cannot reach Redis (%s); retrying", name, exc)
                else:
                    log.exception("%s failed; retrying", name)
                failing = True
            await backoff.sleep()
            continue
        if failing:
            log.warning("%s works again", name)
            failing = False
            backoff.reset()
        if wait > 0:
            await anyio.sleep(wait)
        else:
            await anyio.lowlevel.checkpoint()
