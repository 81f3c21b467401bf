"""Control from outside an execution: events, early wake-ups, cancel, pause, resume,
and firing due timers."""

from __future__ import annotations

import contextlib

from .. import _serde
from .._errors import InvalidState, RunNotFound
from .._redis import ScriptRefused
from ._base import StoreBase
from ._keys import GROUP, shard_of
from ._records import text
from ._scripts import CancelRun, FireTimers, PauseRun, ResumeRun, SendEvent, WakeSleep


class ControlOps(StoreBase):
    async def send_event(
        self,
        run_id: str,
        name: str,
        data_json: str,
        *,
        reference_id: str | None = None,
        max_events: int = 10_000,
    ) -> bool:
        """Deliver an event to a run. False if this reference id was delivered before."""
        run = await self._existing(run_id)
        k = self.keys
        try:
            reply = await SendEvent(
                run=k.run(run_id),
                events=k.events(run_id),
                stream=k.run_stream(run_id, run.workflow, run.version),
                timers=k.timers(shard_of(run_id)),
                name=name,
                data=data_json,
                reference_id=reference_id or "",
                id=run_id,
                max_events=max_events,
            ).call(self.redis)
        except ScriptRefused as refused:
            if refused.code == "MISSING":
                raise RunNotFound(run_id) from None
            if refused.code in ("ENDED", "LIMIT"):
                raise InvalidState(refused.detail) from None
            raise
        await self.acknowledged()
        return bool(text(reply) == "stored")

    async def wake_sleep(self, run_id: str, name: str) -> int:
        """End the sleep called ``name`` early. Returns how many sleeps were woken."""
        run = await self._existing(run_id)
        k = self.keys
        reply = await WakeSleep(
            run=k.run(run_id),
            tasks=k.tasks(run_id),
            stream=k.run_stream(run_id, run.workflow, run.version),
            timers=k.timers(shard_of(run_id)),
            name=name,
            id=run_id,
        ).call(self.redis)
        await self.acknowledged()
        return int(reply)

    async def cancel_run(self, run_id: str, reason: str = "cancelled") -> str:
        """Cancel a run and, recursively, its children. Returns the run's final status."""
        status = await self._cancel(run_id, reason)
        await self.acknowledged()  # once for the whole tree
        return status

    async def _cancel(self, run_id: str, reason: str) -> str:
        run = await self._existing(run_id)
        k = self.keys
        reply = await CancelRun(
            run=k.run(run_id),
            stream=k.run_stream(run_id, run.workflow, run.version),
            timers=k.timers(shard_of(run_id)),
            children=k.children(run_id),
            reason=_serde.dumps(reason),
            group=GROUP,
            ended_channel=k.run_ended_channel,
            control_channel=k.control_channel,
            id=run_id,
            base=k.base(shard_of(run_id)),
        ).call(self.redis)
        for child in reply[1] or []:
            child_id = text(child)
            with contextlib.suppress(RunNotFound):
                await self._cancel(child_id, f"parent run {run_id} was cancelled")
        return str(text(reply[0]))

    async def pause_run(self, run_id: str) -> str:
        run = await self._existing(run_id)
        k = self.keys
        try:
            reply = await PauseRun(
                run=k.run(run_id),
                stream=k.run_stream(run_id, run.workflow, run.version),
                timers=k.timers(shard_of(run_id)),
                group=GROUP,
                control_channel=k.control_channel,
                id=run_id,
            ).call(self.redis)
        except ScriptRefused as refused:
            if refused.code == "ENDED":
                raise InvalidState(refused.detail) from None
            raise
        await self.acknowledged()
        return str(text(reply))

    async def resume_run(self, run_id: str) -> str:
        run = await self._existing(run_id)
        k = self.keys
        reply = await ResumeRun(
            run=k.run(run_id),
            stream=k.run_stream(run_id, run.workflow, run.version),
            timers=k.timers(shard_of(run_id)),
            id=run_id,
        ).call(self.redis)
        await self.acknowledged()
        return str(text(reply))

    async def fire_timers(self, shard: int = 0, limit: int = 200) -> tuple[int, int, float | None]:
        """Enqueue a shard's runs whose timers are due: (fired, due, seconds until the
        next timer is due, by Redis's clock; None when the shard has none)."""
        k = self.keys
        reply = await FireTimers(
            timers=k.timers(shard),
            task_deadlines=k.task_deadlines(shard),
            base=k.base(shard),
            limit=limit,
            group=GROUP,
            control_channel=k.control_channel,
        ).call(self.redis)
        next_due = text(reply[2])
        if not next_due:
            return int(reply[0]), int(reply[1]), None
        return int(reply[0]), int(reply[1]), (float(next_due) - int(reply[3])) / 1000
