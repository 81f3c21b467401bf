"""Transitions on a taken run: take it, record its tasks, finish, park or requeue it.

Every write here takes the :class:`TakenRun` it acts for (its revision fences the write:
a worker that lost its claim changes nothing), and is one script, with the stream ack
that belongs to it inside.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .. import _serde
from ._base import StoreBase
from ._keys import GROUP, shard_of
from ._query import MAX_ATTRIBUTES
from ._records import NO_RUN, SPARE, TakenRun, TakeRefused, pairs, taken_from_reply, text
from ._scripts import (
    FinishRun,
    ParkRun,
    ReadAndTake,
    RecordTask,
    RequeueRun,
    SetAttributes,
    TakeRun,
    TaskAttempt,
)
from ._streams import Message


class TakenOps(StoreBase):
    async def take_run(
        self, message: Message, worker_id: str
    ) -> tuple[Message, TakenRun | TakeRefused]:
        """Take the run ``message`` stands for, for execution (fences out earlier
        executors): the run it names, or a better one waiting in the version's priority
        queue (a doorbell names none). Returns the message the execution holds (another
        one when a run with a priority was taken) and the run, or why not."""
        stream, message_id, run_id, take = await TakeRun(
            stream=message.stream,
            worker=worker_id,
            message=message.id,
            id=message.run_id or "",
        ).call(self.redis)
        run = text(run_id)
        held = (text(stream), text(message_id))
        if held != message.key:  # a run with a priority was taken: its held message
            message = Message(held[0], held[1], {"run": run})
        return message, taken_from_reply(run, take) if run else TakeRefused(text(take[0]))

    async def read_and_take(
        self, streams: Sequence[str], shard: int, count: int, worker_id: str
    ) -> list[tuple[str, str, dict[str, str], TakenRun | TakeRefused]]:
        """Read new messages from ``streams`` (all in ``shard``) and take their runs, in
        one call that never blocks: ``(stream, message id, fields, taken or refused)``
        per message (a message without a ``run`` field is refused ``no-run``)."""
        reply = await ReadAndTake(
            streams=list(streams),
            group=GROUP,
            consumer=worker_id,
            count=count,
            base=self.keys.base(shard),
        ).call(self.redis)
        out: list[tuple[str, str, dict[str, str], TakenRun | TakeRefused]] = []
        for stream, message_id, run_id, take, *fields in reply or []:
            run = text(run_id)
            if run:
                out.append(
                    (text(stream), text(message_id), {"run": run}, taken_from_reply(run, take))
                )
            elif text(take[0]) == "spare":  # a doorbell with no run left to take
                out.append((text(stream), text(message_id), {"doorbell": ""}, SPARE))
            else:
                raw = pairs(fields[0] if fields else None)
                out.append((text(stream), text(message_id), raw, NO_RUN))
        return out

    async def record_task(self, run: TakenRun, address: str, record: dict[str, Any]) -> None:
        """Record a task's outcome, fenced by the run's revision. Raises
        ScriptRefused(STALE) when the run was taken by another execution since."""
        k = self.keys
        await RecordTask(
            run=k.run(run.id),
            tasks=k.tasks(run.id),
            revision=run.revision,
            address=address,
            # The record wraps an input and a result each checked at their door.
            record=_serde.dumps(record, what="task record", depth=_serde.MAX_JSON_DEPTH + 1),
        ).call(self.redis)
        await self.acknowledged()

    async def task_attempt(
        self, run: TakenRun, address: str, record: dict[str, Any], deadline_ms: int | None
    ) -> None:
        """Record an attempt of a task with a deadline (fenced like :meth:`record_task`)
        and keep that deadline in the shard's ``task-deadlines`` (``None``: the attempt
        ended, drop it), so that another process reclaims the run if the deadline passes
        with the attempt still running (its worker stuck or gone)."""
        k = self.keys
        await TaskAttempt(
            run=k.run(run.id),
            tasks=k.tasks(run.id),
            deadlines=k.task_deadlines(shard_of(run.id)),
            revision=run.revision,
            address=address,
            record=_serde.dumps(record, what="task result"),
            member=f"{run.id}|{run.revision}|{address}",
            deadline="" if deadline_ms is None else int(deadline_ms),
        ).call(self.redis)
        if deadline_ms is None:  # the attempt's end, with its outcome: acknowledged
            await self.acknowledged()

    async def finish_run(
        self,
        run: TakenRun,
        message_id: str,
        *,
        result_json: str | None = None,
        error: dict[str, Any] | None = None,
        task: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """Record the run's outcome, ack its message and notify waiters, in one script;
        with ``task`` (address, record), the workflow's last task record too (one round
        trip instead of two for a workflow that ends right after its last task)."""
        address, record = "", ""
        if task is not None:
            address = task[0]
            record = _serde.dumps(task[1], what="task record", depth=_serde.MAX_JSON_DEPTH + 1)
        if error is not None:
            status, name, value = "failed", "error", _serde.dumps(error, what="error")
        else:
            status, name, value = "completed", "result", result_json or "null"
        k = self.keys
        await FinishRun(
            run=k.run(run.id),
            stream=k.run_stream(run.id, run.workflow, run.version),
            tasks=k.tasks(run.id),
            revision=run.revision,
            status=status,
            field=name,
            value=value,
            message=message_id,
            group=GROUP,
            channel=k.run_ended_channel,
            id=run.id,
            base=k.base(shard_of(run.id)),
            address=address,
            record=record,
        ).call(self.redis)
        await self.acknowledged()

    async def set_attributes(self, run: TakenRun, changes: dict[str, str | None]) -> int:
        """Set search attributes of the run (None removes one), fenced by its revision:
        stored and indexed in one script (``lua/set_attributes.lua``). Returns how many
        changed. Raises ScriptRefused (STALE; LIMIT past ``MAX_ATTRIBUTES``)."""
        return int(
            await SetAttributes(
                run=self.keys.run(run.id),
                revision=run.revision,
                id=run.id,
                max_attributes=MAX_ATTRIBUTES,
                changes=[x for name, value in changes.items() for x in (name, value or "")],
            ).call(self.redis)
        )

    async def requeue_run(self, run: TakenRun, message_id: str) -> None:
        """Hand an unfinished run back to its stream at once (graceful worker stop)."""
        k = self.keys
        await RequeueRun(
            run=k.run(run.id),
            stream=k.run_stream(run.id, run.workflow, run.version),
            revision=run.revision,
            message=message_id,
            group=GROUP,
        ).call(self.redis)

    async def park_run(
        self,
        run: TakenRun,
        message_id: str,
        *,
        status: str,
        wake_at_ms: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        drop_tasks: Sequence[str] = (),
        event: tuple[str, int] | None = None,
        child_id: str | None = None,
        sleep_address: str | None = None,
    ) -> str:
        """Suspend an execution: requeue the run now (``queued``) or park it in
        ``status`` with an optional timer. ``event=(name, seen)`` / ``child_id`` name what
        a parked run waits for, so that it is enqueued at once if that already happened.
        Returns the status the run was left in."""
        k = self.keys
        reply = await ParkRun(
            run=k.run(run.id),
            tasks=k.tasks(run.id),
            stream=k.run_stream(run.id, run.workflow, run.version),
            timers=k.timers(shard_of(run.id)),
            events=k.events(run.id),
            child=k.run(child_id or run.id),  # itself when there is no child
            revision=run.revision,
            message=message_id,
            group=GROUP,
            status=status,
            wake_at="" if wake_at_ms is None else int(wake_at_ms),
            errors="" if errors is None else _serde.dumps(errors, what="errors"),
            id=run.id,
            event=event[0] if event else "",
            events_seen=event[1] if event else 0,
            sleep_address=sleep_address or "",
            drop_tasks=list(drop_tasks),
        ).call(self.redis)
        await self.acknowledged()
        return str(text(reply))

    async def ack(self, stream: str, message_id: str) -> None:
        """Drop a message that needs no execution (its run already ended)."""
        await self.redis.batch([["XACK", stream, GROUP, message_id], ["XDEL", stream, message_id]])

    async def dead_letter(self, stream: str, message_id: str, fields: Any, reason: str) -> None:
        """Ack a message no worker can use, keeping it and the reason as a dead letter."""
        await self.redis.batch(
            [
                [
                    "XADD",
                    self.keys.dead_letters,
                    "MAXLEN",
                    "~",
                    "10000",
                    "*",
                    "stream",
                    stream,
                    "message",
                    message_id,
                    "fields",
                    json.dumps(fields, default=repr),
                    "reason",
                    reason,
                ],
                ["XACK", stream, GROUP, message_id],
                ["XDEL", stream, message_id],
            ]
        )
