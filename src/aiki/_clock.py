"""The engine's clock: Redis's, not this machine's.

Every durable time (a sleep's wake-up, an event's timeout, a retry's due time, a run's
deadline, a delayed start, a schedule's occurrence) ends up compared with a timer that a
Lua script fires on Redis's clock (``now_ms`` in ``_store/lua/lib.lua``), so it is
computed on that clock too: the machines' clocks differ, Redis's is one.

That clock is Redis ``TIME`` plus an offset that only a time-skipping test environment
writes (``aiki._time_skipping``; the ``{s}:clock-offset`` key). Nothing here reads the
offset itself: the readings below come from the scripts, which add it. So production
pays nothing in Python for time skipping, and every part of the engine sees the same
(possibly virtual) time without being told.

* :class:`RedisClock`: one reading of Redis's clock (what a taken run carries) advanced
  by this process's monotonic clock: no round trip; what a workflow execution uses.
* :func:`redis_now_ms`: a fresh reading (one round trip), for what is off the hot path
  (schedules).
* :func:`wall_ms`: this machine's clock, for what is not a durable time (heartbeats,
  log lines).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._store import Store

__all__ = ["RedisClock", "redis_now_ms", "wall_ms"]


def wall_ms() -> int:
    """This machine's clock, in ms since the epoch."""
    return int(time.time() * 1000)


class RedisClock:
    """Redis's clock as read at one instant (``reading_ms``), advanced since by the local
    monotonic clock (which never jumps)."""

    __slots__ = ("_base", "_mono")

    def __init__(self, reading_ms: int | None = None) -> None:
        self._base = wall_ms() if reading_ms is None else reading_ms
        self._mono = time.monotonic()

    def now_ms(self) -> int:
        return self._base + int((time.monotonic() - self._mono) * 1000)


async def redis_now_ms(store: Store) -> int:
    """Redis's clock now (virtual in a time-skipping test environment): one round trip."""
    return await store.clock_ms()
