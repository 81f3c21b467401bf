"""The clock, as the scripts see it, and the virtual clock of time-skipping tests.

Every script reads the time with ``now_ms`` (``lua/lib.lua``): Redis ``TIME`` plus the
shard's ``{s}:clock-offset``, which only a time-skipping test environment writes
(``aiki._time_skipping``) and which is absent in production. These operations read
that clock, move it forward, and tell the environment what it needs to decide a jump:
whether any execution is outstanding, and when the next timer or schedule is due.
"""

from __future__ import annotations

from typing import Any

from ._deployment import DeploymentOps
from ._records import scored, text
from ._scripts import Clock


class VirtualClockOps(DeploymentOps):
    async def clock_ms(self) -> int:
        """Redis's clock now, in ms, as the scripts see it (with the offset, if any)."""
        reply = await Clock(offset=self.keys.clock_offset(0), target="", offset_ms="").call(
            self.redis
        )
        return int(text(reply[0]))

    async def advance_clock(self, target_ms: int) -> tuple[int, int]:
        """Move the clock of every shard forward so that it reads at least ``target_ms``
        (never back); returns ``(the clock's time, its offset from Redis TIME)`` after,
        in ms. Time-skipping tests only."""
        k = self.keys
        reply = await Clock(offset=k.clock_offset(0), target=int(target_ms), offset_ms="").call(
            self.redis
        )
        offset = int(text(reply[1]))
        for shard in range(1, await self.shard_count()):
            await Clock(offset=k.clock_offset(shard), target="", offset_ms=offset).call(self.redis)
        return int(text(reply[0])), offset

    async def outstanding_executions(self) -> int:
        """Entries in every registered version's stream and held stream, over every
        shard: executions queued or running (an entry is deleted when its execution is
        recorded and acked). Zero means every run is parked, waiting or ended."""
        versions = await self.list_workflows()
        shards = range(await self.shard_count())
        commands: list[list[Any]] = [
            ["XLEN", stream]
            for w in versions
            for shard in shards
            for stream in (
                self.keys.stream(w["workflow"], w["version"], shard),
                self.keys.held(w["workflow"], w["version"], shard),
            )
        ]
        if not commands:
            return 0
        replies = await self.redis.batch(commands)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return sum(int(r or 0) for r in replies)

    async def next_due_ms(self) -> int | None:
        """When the earliest timer (any shard) or schedule occurrence is due, in ms on
        Redis's clock; None when there is none."""
        k = self.keys
        commands: list[list[Any]] = [
            ["ZRANGE", k.timers(shard), "0", "0", "WITHSCORES"]
            for shard in range(await self.shard_count())
        ]
        commands.append(["ZRANGE", k.schedules_due, "0", "0", "WITHSCORES"])
        due: list[int] = []
        for reply in await self.redis.batch(commands):
            if isinstance(reply, BaseException):
                raise reply
            due.extend(int(float(score)) for _, score in scored(reply))
        return min(due, default=None)
