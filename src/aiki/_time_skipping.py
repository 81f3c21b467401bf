"""Time skipping for tests: a virtual clock that jumps ahead when every run waits on time.

A workflow that sleeps 30 days, waits a week for an event or retries a task an hour
later cannot be tested in real time. In an environment opened with
``open_test_environment(..., time_skipping=True)`` the engine's clock is virtual:

* **One clock for everything durable.** Every Lua script reads the time with
  ``now_ms`` (Redis ``TIME`` plus the shard's ``clock-offset`` key), and the Python side
  computes durable times from those readings (``aiki._clock``). So moving the offset
  forward moves sleeps, event timeouts, retry delays, workflow deadlines, delayed starts
  and schedules together, with no code path of its own. Production never writes the
  offset (the key is absent), so it costs nothing there.
* **Jumps.** :class:`TimeSkipper` watches the environment: when no execution is
  outstanding (every stream is empty: each run is parked, waiting or ended), it moves
  the clock to the earliest due timer or schedule occurrence and fires it at once (it
  does not wait for the daemons' next look). Executions still run in real time: a task
  that takes a second takes a second, and the clock stands still meanwhile.
* **Explicit advances.** :meth:`TimeSkipper.sleep` moves the clock forward by a
  duration, stopping at every timer due on the way and letting what it woke settle
  before going on, so effects happen in the order their times say.

The clock only ever moves forward. What the skipper cannot know is what the test will
do next: with automatic skipping on, a run that waits a week for an event times out at
once unless the event was sent before it parked. A test that sends events into waits
turns automatic skipping off around them (``async with
skipper.auto_skipping_disabled()``)
and moves the clock itself with ``sleep``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import trio

from ._clock import wall_ms
from ._schedules import fire_due_schedules
from ._store import Store

log = logging.getLogger("aiki.testing")

__all__ = ["MAX_SLEEP", "TimeSkipper", "check_sleep"]

POLL = 0.01
"""Seconds between two looks at whether the environment is idle."""

FIRE_BATCH = 1000
"""Timers fired per shard and script right after a jump."""

MAX_SLEEP = 100 * 365 * 86_400.0
"""The longest ``env.sleep`` (100 years). Why a bound: the scripts format the clock with
Lua's ``tostring``, which turns to exponent notation at 1e14 ms (the year 5138); a clock
moved past that breaks every script reading it, and the offset never goes back."""


def check_sleep(seconds: object) -> float:
    """``env.sleep``'s argument, checked the same way with and without time skipping."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"seconds must be a number, got {type(seconds).__name__}")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SLEEP:
        raise ValueError(
            f"seconds must be a finite number from 0 to {MAX_SLEEP:.0f} (100 years), "
            f"got {seconds!r}"
        )
    return float(seconds)


class TimeSkipper:
    """The virtual clock's driver in one test environment (its store's Redis)."""

    def __init__(self, store: Store, *, poll: float = POLL) -> None:
        self.store = store
        self.poll = poll
        self.auto = True
        """Whether the clock jumps by itself when the environment is idle."""
        self.offset_ms = 0
        """How far the virtual clock is ahead of Redis's real one."""
        self.jumps = 0
        """How many times the clock was moved (for tests of the skipper itself)."""
        self._disabled = 0  # auto_skipping_disabled blocks currently open
        self._auto_before = True  # self.auto when the first of them opened
        self._lock = trio.Lock()  # one driver at a time: the automatic loop or a sleep

    def now_ms(self) -> int:
        """The virtual clock, in ms since the epoch (Redis runs on this machine)."""
        return wall_ms() + self.offset_ms

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Jump to the next due time whenever the environment is idle, until cancelled."""
        self.offset_ms = await self.store.clock_ms() - wall_ms()
        task_status.started()
        stuck: int | None = None  # a due time whose firing did nothing (see _jump)
        while True:
            await trio.sleep(self.poll)
            if not self.auto or self._lock.locked():
                continue
            async with self._lock:
                if not self.auto or await self.store.outstanding_executions():
                    continue
                due = await self.store.next_due_ms()
                if due is not None and due != stuck:
                    stuck = None if await self._jump(due) else due

    async def sleep(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, firing what falls due on the way in order
        (each jump's effects settle before the next); returns once what the last one
        woke has settled too (no execution outstanding)."""
        seconds = check_sleep(seconds)
        async with self._lock:
            await self._settle()
            target = await self.store.clock_ms() + int(seconds * 1000)
            stuck: int | None = None
            while True:
                due = await self.store.next_due_ms()
                step = target if due is None or due > target or due == stuck else due
                stuck = None if await self._jump(step) else step
                await self._settle()
                if step >= target:
                    return

    @contextlib.asynccontextmanager
    async def auto_skipping_disabled(self) -> AsyncIterator[None]:
        """Inside the block the clock moves only by :meth:`sleep`. Entering waits for a
        jump in progress to end, so none lands inside the block (e.g. onto a schedule
        the block creates)."""
        async with self._lock:
            if self._disabled == 0:
                self._auto_before = self.auto
            self._disabled += 1  # counted: overlapping blocks (two tasks) keep it off
            self.auto = False
        try:
            yield
        finally:
            self._disabled -= 1
            if self._disabled == 0:
                self.auto = self._auto_before

    async def _settle(self) -> None:
        """Wait until no execution is outstanding. Polled: the executions are in Redis
        and in the worker, no event of this process says when they are all done."""
        while True:
            if not await self.store.outstanding_executions():
                return
            await trio.sleep(self.poll)

    async def _jump(self, target_ms: int) -> int:
        """Set the clock to ``target_ms`` (if ahead) and fire what is due at once;
        returns how many timers and schedule occurrences fired. (A due time can stay due
        with nothing fired: a schedule whose definition is unreadable is skipped and
        logged. The callers then do not jump to it again, so they never spin.)"""
        now, self.offset_ms = await self.store.advance_clock(target_ms)
        self.jumps += 1
        fired = 0
        for shard in range(await self.store.shard_count()):
            while True:
                f, due, _ = await self.store.fire_timers(shard, FIRE_BATCH)
                fired += f
                if due < FIRE_BATCH:
                    break
        started = await fire_due_schedules(self.store, now)
        log.debug("virtual clock at %d ms: fired %d timers, %d schedules", now, fired, started)
        return fired + started
