"""Schedule storage and firing: definitions, their next occurrences, and the script that
fires one occurrence exactly once (however many servers try).

What a schedule means (cron, intervals, overlap, catch-up) is ``aiki._schedules``'s;
here are only the keys (all in shard 0, with the runs schedules start).
"""

from __future__ import annotations

from typing import Any

from .._errors import InvalidState
from .._redis import ScriptRefused
from ._base import StoreBase
from ._records import pairs, raise_first, scored, text
from ._scripts import FireSchedule, PauseSchedule, ResumeSchedule, TriggerSchedule


class ScheduleNotFound(LookupError):
    """No schedule with that id."""


class ScheduleOps(StoreBase):
    async def save_schedule(self, schedule_id: str, definition_json: str, first_ms: int) -> None:
        """Save a definition (replacing one with the same id, paused or not), first due
        at ``first_ms``."""
        k = self.keys
        raise_first(
            await self.redis.batch(
                [
                    ["HSET", k.schedules, schedule_id, definition_json],
                    ["ZADD", k.schedules_due, str(first_ms), schedule_id],
                    ["HDEL", k.schedules_paused, schedule_id],
                ]
            )
        )

    async def schedule_definitions(self) -> list[tuple[str, str, int | None]]:
        """Every schedule: ``(id, definition JSON, next occurrence ms or None)``, by id."""
        k = self.keys
        defs, due = await self.redis.batch(
            [["HGETALL", k.schedules], ["ZRANGE", k.schedules_due, "0", "-1", "WITHSCORES"]]
        )
        raise_first([defs, due])
        next_at = {sid: int(float(score)) for sid, score in scored(due)}
        return [(sid, raw, next_at.get(sid)) for sid, raw in sorted(pairs(defs).items())]

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule; False if there was none."""
        k = self.keys
        removed, *_ = await self.redis.batch(
            [
                ["HDEL", k.schedules, schedule_id],
                ["ZREM", k.schedules_due, schedule_id],
                ["HDEL", k.schedules_paused, schedule_id],
            ]
        )
        if isinstance(removed, BaseException):
            raise removed
        return bool(removed)

    async def due_schedules(self, now_ms: int, limit: int = 100) -> list[tuple[str, int]]:
        """``(schedule id, occurrence ms)`` of schedules due at ``now_ms``, soonest first."""
        reply = await self.redis.command(
            "ZRANGE",
            self.keys.schedules_due,
            "-inf",
            str(now_ms),
            "BYSCORE",
            "LIMIT",
            "0",
            str(limit),
            "WITHSCORES",
        )
        return [(sid, int(float(score))) for sid, score in scored(reply)]

    async def schedule_definition(self, schedule_id: str) -> str | None:
        """A schedule's definition JSON; None (and its due entry dropped) if it is gone."""
        raw = await self.redis.command("HGET", self.keys.schedules, schedule_id)
        if raw is None:
            await self.redis.command("ZREM", self.keys.schedules_due, schedule_id)
            return None
        return str(text(raw))

    async def last_schedule_run(self, schedule_id: str) -> str | None:
        """The id of the latest run a schedule started, if any."""
        raw = await self.redis.command("HGET", self.keys.schedules_last_run, schedule_id)
        return None if raw is None else str(text(raw))

    async def fire_schedule(
        self,
        schedule_id: str,
        occurrence_ms: int,
        *,
        following_ms: int | None,
        start: bool,
        run_id: str,
        workflow: str,
        version: str,
        payload_json: str,
        timeout: float | None,
        priority: int = 0,
        concurrency: tuple[str | None, int | None] = (None, None),
    ) -> int:
        """Fire one occurrence, in one script: 0 if another caller fired it first, 1 if
        it started ``run_id`` (in shard 0), 2 if it was skipped (``start=False``, or the
        run exists already). The schedule moves on to ``following_ms`` (None: done).
        ``concurrency``: the run's (key, limit), as for ``start_run``."""
        k = self.keys
        reply: Any = await FireSchedule(
            due=k.schedules_due,
            last_run=k.schedules_last_run,
            run=k.run(run_id),
            stream=k.stream(workflow, version, 0),
            runs=k.runs_index(0),
            schedule=schedule_id,
            occurrence=occurrence_ms,
            following="" if following_ms is None else following_ms,
            action="start" if start else "skip",
            id=run_id,
            workflow=workflow,
            version=version,
            payload=payload_json,
            timeout_ms="" if timeout is None else int(timeout * 1000),
            priority=priority,
            concurrency_key=concurrency[0] or "",
            concurrency_limit="" if concurrency[1] is None else int(concurrency[1]),
        ).call(self.redis)
        return int(reply)

    async def paused_schedules(self) -> dict[str, int]:
        """Paused schedule id -> when it was paused (ms)."""
        reply = await self.redis.command("HGETALL", self.keys.schedules_paused)
        return {sid: int(ms) for sid, ms in pairs(reply).items()}

    async def pause_schedule(self, schedule_id: str) -> str:
        """Stop a schedule from firing until resumed: ``paused``. ScheduleNotFound if
        there is no such schedule."""
        k = self.keys
        call = PauseSchedule(
            schedules=k.schedules, due=k.schedules_due, paused=k.schedules_paused,
            schedule=schedule_id,
        )  # fmt: skip
        return await self._schedule_script(schedule_id, call.call)

    async def resume_schedule(self, schedule_id: str, next_ms: int) -> str:
        """Let a paused schedule fire again from ``next_ms``: ``resumed``, or ``active``
        if it was not paused."""
        k = self.keys
        call = ResumeSchedule(
            schedules=k.schedules, due=k.schedules_due, paused=k.schedules_paused,
            schedule=schedule_id, next=next_ms,
        )  # fmt: skip
        return await self._schedule_script(schedule_id, call.call)

    async def trigger_schedule(
        self,
        schedule_id: str,
        *,
        run_id: str,
        workflow: str,
        version: str,
        payload_json: str,
        timeout: float | None,
        priority: int = 0,
        concurrency: tuple[str | None, int | None] = (None, None),
    ) -> bool:
        """Start the schedule's run ``run_id`` (in shard 0) now; its timetable is
        unchanged. False if that run exists already."""
        k = self.keys
        call = TriggerSchedule(
            schedules=k.schedules,
            last_run=k.schedules_last_run,
            run=k.run(run_id),
            stream=k.stream(workflow, version, 0),
            runs=k.runs_index(0),
            schedule=schedule_id,
            id=run_id,
            workflow=workflow,
            version=version,
            payload=payload_json,
            timeout_ms="" if timeout is None else int(timeout * 1000),
            priority=priority,
            concurrency_key=concurrency[0] or "",
            concurrency_limit="" if concurrency[1] is None else int(concurrency[1]),
        )
        started = await self._schedule_script(schedule_id, call.call) == "1"
        await self.acknowledged()  # an operator's start, like any other
        return started

    async def _schedule_script(self, schedule_id: str, call: Any) -> str:
        try:
            return str(text(await call(self.redis)))
        except ScriptRefused as refused:
            if refused.code == "MISSING":
                raise ScheduleNotFound(schedule_id) from None
            if refused.code == "CONFLICT":
                raise InvalidState(refused.detail) from None
            raise
