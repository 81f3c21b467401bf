"""Schedules: start a workflow version on a cron expression or a fixed interval.

Definitions live in Redis; the server's schedule daemon fires them. Each occurrence fires
exactly once however many servers run the daemon (a compare-and-set on the occurrence
time inside one script), and the run it starts has an id derived from the schedule and
the occurrence, so not even a retried script can start it twice.

Catch-up rule: a server that was down while occurrences passed fires ONE run for the
schedule (for the earliest missed occurrence) when it comes back, then goes on with the
next occurrence after the present. Missed occurrences are not replayed one by one.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import trio

from . import _serde
from ._errors import ConfigurationError, ConnectionFailed
from ._store import Store, _scripts
from ._store._keys import with_shard
from ._store._store import _pairs, _text

log = logging.getLogger("aiki.schedules")

Overlap = Literal["allow", "skip", "cancel_previous"]


@dataclass(frozen=True)
class Schedule:
    """When to start which workflow version with which payload.

    Exactly one of ``cron`` (a 5-field cron expression, UTC) and ``every`` (seconds).
    ``overlap``: what to do when an occurrence comes while the previous run still runs:
    ``allow`` (start anyway), ``skip`` (skip this occurrence), ``cancel_previous``.
    """

    id: str
    workflow: str
    version: str
    payload: Any = None
    cron: str | None = None
    every: float | None = None
    overlap: Overlap = "allow"

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ConfigurationError("schedule id must be a non-empty string")
        if (self.cron is None) == (self.every is None):
            raise ConfigurationError("a schedule needs exactly one of cron= and every=")
        if self.every is not None and self.every <= 0:
            raise ConfigurationError("schedule every= must be > 0 seconds")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ConfigurationError(f"invalid cron expression {self.cron!r}")
        if self.overlap not in ("allow", "skip", "cancel_previous"):
            raise ConfigurationError(
                f"schedule overlap must be allow, skip or cancel_previous, got {self.overlap!r}"
            )
        _serde.dumps(self.payload, what="schedule payload")

    def next_after(self, ms: int) -> int:
        """The first occurrence strictly after ``ms`` (epoch milliseconds)."""
        if self.every is not None:
            return ms + int(self.every * 1000)
        from croniter import croniter

        start = datetime.fromtimestamp(ms / 1000, tz=UTC)
        nxt: datetime = croniter(self.cron, start).get_next(datetime)
        return int(nxt.timestamp() * 1000)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        fields: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


async def create_schedule(store: Store, schedule: Schedule) -> int:
    """Save ``schedule`` (replacing one with the same id); returns its first occurrence."""
    k = store.keys
    first = schedule.next_after(int(time.time() * 1000))
    replies = await store.redis.batch(
        [
            ["HSET", k.schedules, schedule.id, json.dumps(schedule.to_json())],
            ["ZADD", k.schedules_due, str(first), schedule.id],
        ]
    )
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return first


async def list_schedules(store: Store) -> list[dict[str, Any]]:
    k = store.keys
    defs, due = await store.redis.batch(
        [["HGETALL", k.schedules], ["ZRANGE", k.schedules_due, "0", "-1", "WITHSCORES"]]
    )
    next_at = _score_map(due)
    out = []
    for sid, raw in sorted(_pairs(defs).items()):
        data = json.loads(raw)
        data["next_at"] = next_at.get(sid)
        out.append(data)
    return out


async def delete_schedule(store: Store, schedule_id: str) -> bool:
    k = store.keys
    removed, _ = await store.redis.batch(
        [["HDEL", k.schedules, schedule_id], ["ZREM", k.schedules_due, schedule_id]]
    )
    return bool(removed)


def _score_map(reply: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    if not reply:
        return out
    if isinstance(reply, dict):
        return {_text(m): int(float(v)) for m, v in reply.items()}
    if reply and isinstance(reply[0], list | tuple):
        return {_text(m): int(float(v)) for m, v in reply}
    for i in range(0, len(reply), 2):
        out[_text(reply[i])] = int(float(reply[i + 1]))
    return out


def occurrence_run_id(schedule_id: str, occurrence_ms: int) -> str:
    """The run an occurrence starts: deterministic, and in shard 0 with the schedules."""
    return with_shard(
        uuid.uuid5(uuid.NAMESPACE_URL, f"aiki-schedule:{schedule_id}:{occurrence_ms}").hex, 0
    )


async def fire_due_schedules(store: Store, now_ms: int | None = None) -> int:
    """Fire every due schedule occurrence once. Returns how many runs were started."""
    k = store.keys
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    due = _score_map(
        await store.redis.command(
            "ZRANGE",
            k.schedules_due,
            "-inf",
            str(now),
            "BYSCORE",
            "LIMIT",
            "0",
            "100",
            "WITHSCORES",
        )
    )
    started = 0
    for schedule_id, occurrence in due.items():
        raw = await store.redis.command("HGET", k.schedules, schedule_id)
        if raw is None:
            await store.redis.command("ZREM", k.schedules_due, schedule_id)
            continue
        try:
            schedule = Schedule.from_json(json.loads(raw))
        except (ValueError, TypeError, ConfigurationError) as exc:
            log.error("schedule %s has an invalid definition, skipped: %s", schedule_id, exc)
            continue
        action, previous = "start", None
        if schedule.overlap != "allow":
            last_id = await store.redis.command("HGET", k.schedules_last_run, schedule_id)
            previous = await store.get_run(_text(last_id)) if last_id else None
            if previous is not None and not previous.ended and schedule.overlap == "skip":
                action = "skip"
        run_id = occurrence_run_id(schedule_id, occurrence)
        timeout = await store.workflow_timeout(schedule.workflow, schedule.version)
        following = schedule.next_after(occurrence)
        if following <= now:  # occurrences were missed: catch up once, then go on from now
            following = schedule.next_after(now)
        reply = await store.redis.script(
            _scripts.FIRE_SCHEDULE,
            [
                k.schedules_due,
                k.schedules_last_run,
                k.run(run_id),
                k.stream(schedule.workflow, schedule.version, 0),
                k.runs_index(0),
            ],
            [
                schedule_id,
                occurrence,
                following,
                action,
                run_id,
                schedule.workflow,
                schedule.version,
                _serde.dumps(schedule.payload),
                "" if timeout is None else int(timeout * 1000),
            ],
        )
        if int(reply) == 1:
            started += 1
            log.info("schedule %s fired run %s", schedule_id, run_id)
            if (
                previous is not None
                and not previous.ended
                and schedule.overlap == ("cancel_previous")
            ):
                await store.cancel_run(previous.id, f"schedule {schedule_id} started {run_id}")
        elif int(reply) == 2 and action == "skip":
            log.info(
                "schedule %s skipped an occurrence: run %s still running",
                schedule_id,
                previous.id if previous else "?",
            )
    return started


async def serve_schedules(
    store: Store, *, interval: float = 0.25, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """The schedule daemon: fire due occurrences until cancelled."""
    task_status.started()
    outage = False
    while True:
        try:
            await fire_due_schedules(store)
            if outage:
                log.warning("schedule daemon reaches Redis again")
                outage = False
        except Exception as exc:  # a daemon never dies of one bad reply
            if not outage:
                if isinstance(exc, ConnectionFailed):
                    log.warning("schedule daemon cannot reach Redis (%s); retrying", exc)
                else:
                    log.exception("schedule daemon failed; retrying")
                outage = True
        await trio.sleep(interval * random.uniform(0.8, 1.2))
