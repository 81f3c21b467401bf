"""Recovery by an operator: running a failed or cancelled run again (``retry_run``), and
the dead letters (messages no worker could use): list, read, discard, requeue.

Kept apart from ``_control`` (the everyday controls of a live run): these act on runs
and messages that something already gave up on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._errors import InvalidState, RunNotFound
from .._redis import ScriptRefused
from ._base import StoreBase
from ._keys import shard_of
from ._records import text
from ._scripts import RequeueDeadLetter, RetryRun
from ._streams import _entries as stream_entries


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter: the message as it was (``stream``, ``message`` id, ``fields``), why
    no worker could use it (``reason``), and when it was dead-lettered (``at``, ms)."""

    id: str
    at: int
    stream: str
    message: str
    fields: dict[str, Any]
    reason: str

    @property
    def run_id(self) -> str | None:
        run = self.fields.get("run")
        return run if isinstance(run, str) and run else None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "stream": self.stream,
            "message": self.message,
            "fields": self.fields,
            "reason": self.reason,
            "run_id": self.run_id,
        }


def _dead_letter(entry_id: str, raw: dict[str, Any]) -> DeadLetter:
    try:
        fields = json.loads(raw.get("fields") or "{}")
    except ValueError:
        fields = {"unreadable": raw.get("fields")}
    if not isinstance(fields, dict):
        fields = {"value": fields}
    try:
        at = int(entry_id.split("-", 1)[0])
    except ValueError:
        at = 0
    return DeadLetter(
        id=entry_id,
        at=at,
        stream=str(raw.get("stream") or ""),
        message=str(raw.get("message") or ""),
        fields=fields,
        reason=str(raw.get("reason") or ""),
    )


def _entries(reply: Any) -> list[tuple[str, dict[str, Any]]]:
    """An XRANGE/XREVRANGE reply (any client's shape) as ``[(entry id, fields), ...]``."""
    return [(m.id, m.fields) for m in stream_entries("", reply)]


class DeadLetterNotFound(LookupError):
    """No dead letter with that id (discarded, or never there)."""


class RecoverOps(StoreBase):
    async def retry_run(self, run_id: str) -> int:
        """Queue a failed or cancelled run again, keeping its completed steps: returns how
        many step records (the failed task's, ...) were dropped to run again. Raises
        RunNotFound, or InvalidState for a run that is not failed or cancelled."""
        run = await self._existing(run_id)
        k = self.keys
        shard = shard_of(run_id)
        try:
            reply = await RetryRun(
                run=k.run(run_id),
                tasks=k.tasks(run_id),
                stream=k.run_stream(run_id, run.workflow, run.version),
                timers=k.timers(shard),
                ended=k.ended(shard),
                id=run_id,
                base=k.base(shard),
                ended_channel=k.run_ended_channel,
            ).call(self.redis)
        except ScriptRefused as refused:
            if refused.code == "MISSING":
                raise RunNotFound(run_id) from None
            if refused.code == "CONFLICT":
                raise InvalidState(refused.detail) from None
            raise
        await self.acknowledged()
        return int(reply)

    # -- dead letters -----------------------------------------------------------------

    async def list_dead_letters(
        self, *, limit: int = 50, before: str | None = None
    ) -> tuple[list[DeadLetter], int]:
        """Newest first: up to ``limit`` dead letters older than the entry ``before``
        (exclusive; None for the newest), and how many there are in all."""
        upper = "+"
        if before:
            ms, _, seq = before.partition("-")
            if int(ms) == int(seq or 0) == 0:  # nothing is older than the first id
                return [], int(await self.redis.command("XLEN", self.keys.dead_letters) or 0)
            upper = f"({int(ms)}-{int(seq or 0)}"
        reply, total = await self.redis.batch(
            [
                ["XREVRANGE", self.keys.dead_letters, upper, "-", "COUNT", str(limit)],
                ["XLEN", self.keys.dead_letters],
            ]
        )
        for r in (reply, total):
            if isinstance(r, BaseException):
                raise r
        return [_dead_letter(i, raw) for i, raw in _entries(reply)], int(total or 0)

    async def get_dead_letter(self, entry_id: str) -> DeadLetter | None:
        reply = await self.redis.command(
            "XRANGE", self.keys.dead_letters, entry_id, entry_id, "COUNT", "1"
        )
        found = _entries(reply)
        return _dead_letter(*found[0]) if found else None

    async def discard_dead_letter(self, entry_id: str) -> bool:
        """Delete a dead letter; False if there was none."""
        return bool(await self.redis.command("XDEL", self.keys.dead_letters, entry_id))

    async def requeue_dead_letter(self, entry_id: str) -> str:
        """Put a dead letter's run back in its queue (its reason was fixed) and delete the
        dead letter. Returns ``queued``, or ``already-queued`` when the run has a live
        message already. Raises DeadLetterNotFound, RunNotFound (the run is gone: discard
        the letter), or InvalidState (no run in the message, or the run has ended or waits
        for something else, so no message is missing)."""
        letter = await self.get_dead_letter(entry_id)
        if letter is None:
            raise DeadLetterNotFound(entry_id)
        run_id = letter.run_id
        if run_id is None:
            raise InvalidState(f"dead letter {entry_id} names no run: there is nothing to requeue")
        try:
            run = await self._existing(run_id)
            k = self.keys
            reply = await RequeueDeadLetter(
                run=k.run(run_id),
                stream=k.run_stream(run_id, run.workflow, run.version),
                id=run_id,
            ).call(self.redis)
        except ScriptRefused as refused:
            if refused.code == "MISSING":
                raise RunNotFound(run_id) from None
            if refused.code in ("CONFLICT", "ENDED"):
                raise InvalidState(refused.detail) from None
            raise
        # The dead-letter stream is in another hash slot than the run's keys (Redis
        # Cluster), so this is a second command: a repeat after a failure here finds
        # the run queued and answers already-queued, never adding a second message.
        await self.redis.command("XDEL", self.keys.dead_letters, entry_id)
        await self.acknowledged()
        return str(text(reply))
