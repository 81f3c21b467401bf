"""What the dashboard, ``/metrics`` and the CLI read besides runs: the worker registry,
queue statistics, the dead-letter count, and the raw reads run totals are built from.

Reads only, except the worker registry's own entries (a worker publishes and removes its
entry; the server removes entries of workers that died without doing so).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from .. import _serde
from ._deployment import DeploymentOps
from ._keys import GROUP
from ._records import pairs, raise_first, scored, text
from ._scripts import ClaimWorker


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _pending_count(reply: Any) -> int:
    if isinstance(reply, BaseException) or not reply:
        return 0
    if isinstance(reply, dict):  # RESP3 map shapes, should a client return one
        return _int(next(iter(reply.values()), 0))
    return _int(reply[0])


def _first_entry_ms(reply: Any) -> int | None:
    """The time part (ms) of the first entry id in an XRANGE reply."""
    if isinstance(reply, BaseException) or not reply:
        return None
    entry_id = next(iter(reply)) if isinstance(reply, dict) else reply[0][0]
    try:
        return int(text(entry_id).split("-", 1)[0])
    except (ValueError, IndexError):
        return None


class ObserveOps(DeploymentOps):
    # -- the worker registry ----------------------------------------------------------

    async def publish_worker(self, worker_id: str, entry: dict[str, Any]) -> None:
        """Write a worker's registry entry (its heartbeat: JSON of ``entry``)."""
        await self.redis.command("HSET", self.keys.workers, worker_id, json.dumps(entry))

    async def claim_worker(
        self, worker_id: str, instance: str, entry: dict[str, Any], *, stale_ms: int
    ) -> dict[str, Any] | None:
        """Write a starting worker's registry entry unless another live instance (another
        ``instance`` token, a heartbeat younger than ``stale_ms``) holds ``worker_id``:
        None when claimed, else the holder's entry. One script, so two workers starting
        with one id at once cannot both win."""
        reply = await ClaimWorker(
            workers=self.keys.workers,
            id=worker_id,
            instance=instance,
            now_ms=int(time.time() * 1000),
            stale_ms=stale_ms,
            entry=json.dumps(entry),
        ).call(self.redis)
        if reply is None:
            return None
        try:
            held = json.loads(text(reply))
        except ValueError:
            held = None
        return held if isinstance(held, dict) else {"id": worker_id}

    async def remove_workers(self, *worker_ids: str) -> None:
        """Remove registry entries (a worker that stops; entries silent for too long)."""
        if worker_ids:
            await self.redis.command("HDEL", self.keys.workers, *worker_ids)

    async def worker_entries(self) -> dict[str, str]:
        """The worker registry as stored: worker id -> JSON entry."""
        return pairs(await self.redis.command("HGETALL", self.keys.workers))

    # -- queues -----------------------------------------------------------------------

    async def queue_stats(self, *, now: int | None = None) -> list[dict[str, Any]]:
        """Per registered workflow version: ``depth`` (entries in its stream: outstanding
        executions, since entries are deleted when acked), ``pending`` (delivered to a
        worker, not acked yet) and ``oldest_age_s`` (age of the oldest entry, or None),
        summed over the version's stream in every shard. One round trip for them all.
        Runs with a priority count once each too: a waiting one by its doorbell in the
        stream, an executing one by its pending message in the held stream."""
        now = int(time.time() * 1000) if now is None else now
        workflows = await self.list_workflows()
        shards = range(await self.shard_count())
        commands: list[list[Any]] = []
        for w in workflows:
            for shard in shards:
                stream = self.keys.stream(w["workflow"], w["version"], shard)
                commands += [
                    ["XLEN", stream],
                    ["XPENDING", stream, GROUP],
                    ["XRANGE", stream, "-", "+", "COUNT", "1"],
                    ["XPENDING", self.keys.held(w["workflow"], w["version"], shard), GROUP],
                ]
        replies = await self.redis.batch(commands) if commands else []
        out = []
        per = 4 * len(shards)
        for i, w in enumerate(workflows):
            depth = pending = 0
            oldest: int | None = None
            for j in range(len(shards)):
                xlen, waiting, first, held = replies[per * i + 4 * j : per * i + 4 * j + 4]
                depth += 0 if isinstance(xlen, BaseException) else _int(xlen)
                depth += _pending_count(held)
                pending += _pending_count(waiting) + _pending_count(held)
                at = _first_entry_ms(first)
                if at is not None and (oldest is None or at < oldest):
                    oldest = at
            out.append(
                {
                    "workflow": w["workflow"],
                    "version": w["version"],
                    "depth": depth,
                    "pending": pending,
                    "oldest_age_s": None if oldest is None else max(0.0, (now - oldest) / 1000),
                }
            )
        return out

    async def dead_letter_count(self) -> int:
        """Entries in the dead-letter stream."""
        return _int(await self.redis.command("XLEN", self.keys.dead_letters))

    # -- raw reads for run totals -------------------------------------------------------

    async def runs_index_page(
        self, shard: int, lowest: str, *, skip: int, count: int
    ) -> list[tuple[str, int]]:
        """``(run id, creation ms)`` from a shard's runs index, oldest first, from score
        ``lowest`` (``"-inf"`` or a number), skipping ``skip`` entries, at most ``count``."""
        reply = await self.redis.command(
            "ZRANGE",
            self.keys.runs_index(shard),
            lowest,
            "+inf",
            "BYSCORE",
            "LIMIT",
            str(skip),
            str(count),
            "WITHSCORES",
        )
        return [(run_id, int(float(score))) for run_id, score in scored(reply)]

    async def run_fields(
        self, run_ids: Sequence[str], fields: Sequence[str]
    ) -> dict[str, list[str | None]]:
        """Some fields of many runs, in one round trip: run id -> values (None: absent)."""
        replies = await self.redis.batch([["HMGET", self.keys.run(r), *fields] for r in run_ids])
        raise_first(replies)
        return {
            run_id: [None if v is None else text(v) for v in reply]
            for run_id, reply in zip(run_ids, replies, strict=True)
        }

    async def task_records(self, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The task records of many runs, in one round trip (unreadable ones skipped)."""
        replies = await self.redis.batch([["HGETALL", self.keys.tasks(r)] for r in run_ids])
        raise_first(replies)
        out: dict[str, dict[str, Any]] = {}
        for run_id, reply in zip(run_ids, replies, strict=True):
            records: dict[str, Any] = {}
            for address, raw in pairs(reply).items():
                try:
                    records[address] = _serde.loads(raw)
                except (TypeError, ValueError):
                    continue
            out[run_id] = records
        return out
