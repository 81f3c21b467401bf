"""Schedules: start a workflow version on a cron expression or a fixed interval.

Definitions live in Redis (the store's schedule operations); the server's schedule
daemon (``aiki._daemons.serve_schedules``) fires them. Each occurrence fires
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
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from . import _serde
from ._clock import redis_now_ms
from ._concurrency import check_key
from ._errors import ConfigurationError
from ._start import check_priority
from ._store import ScheduleNotFound, Store, with_shard

log = logging.getLogger("aiki.schedules")

Overlap = Literal["allow", "skip", "cancel_previous"]


@dataclass(frozen=True)
class Schedule:
    """When to start which workflow version with which payload.

    Exactly one of ``cron`` (a 5-field cron expression, UTC) and ``every`` (seconds).
    ``overlap``: what to do when an occurrence comes while the previous run still runs:
    ``allow`` (start anyway), ``skip`` (skip this occurrence), ``cancel_previous``.
    ``priority``: the runs' (see ``WorkflowVersion.start``). ``concurrency_key``: the
    runs' key for the version's ``concurrency=`` limit (``WorkflowVersion.schedule``
    computes it from the payload; None: the version-wide key).
    """

    id: str
    workflow: str
    version: str
    payload: Any = None
    cron: str | None = None
    every: float | None = None
    overlap: Overlap = "allow"
    priority: int = 0
    concurrency_key: str | None = None

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ConfigurationError("schedule id must be a non-empty string", field="id")
        if (self.cron is None) == (self.every is None):
            raise ConfigurationError(
                "a schedule needs exactly one of cron= and every=",
                field="cron" if self.every is None else "every",
            )
        if self.every is not None and self.every <= 0:
            raise ConfigurationError("schedule every= must be > 0 seconds", field="every")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ConfigurationError(f"invalid cron expression {self.cron!r}", field="cron")
        if self.overlap not in ("allow", "skip", "cancel_previous"):
            raise ConfigurationError(
                f"schedule overlap must be allow, skip or cancel_previous, got {self.overlap!r}",
                field="overlap",
            )
        _serde.dumps(self.payload, what="schedule payload")
        check_priority(self.priority)
        if self.concurrency_key is not None:
            check_key(self.concurrency_key, f"schedule {self.id!r}")

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
    first = schedule.next_after(await redis_now_ms(store))
    await store.save_schedule(schedule.id, json.dumps(schedule.to_json()), first)
    return first


async def list_schedules(store: Store) -> list[dict[str, Any]]:
    out = []
    paused = await store.paused_schedules()
    for sid, raw, next_at in await store.schedule_definitions():
        data = json.loads(raw)
        data["next_at"] = next_at
        data["paused"] = sid in paused
        data["paused_at"] = paused.get(sid)
        out.append(data)
    return out


async def _definition(store: Store, schedule_id: str) -> Schedule:
    raw = await store.schedule_definition(schedule_id)
    if raw is None:
        raise ScheduleNotFound(schedule_id)
    return Schedule.from_json(json.loads(raw))


async def pause_schedule(store: Store, schedule_id: str) -> str:
    """Stop a schedule from firing until it is resumed (``paused``); raises
    ScheduleNotFound."""
    return await store.pause_schedule(schedule_id)


async def resume_schedule(store: Store, schedule_id: str) -> str:
    """Resume a paused schedule from its next occurrence after now (``resumed``; occurrences
    missed while paused are not fired), or ``active`` if it was not paused."""
    schedule = await _definition(store, schedule_id)
    return await store.resume_schedule(schedule_id, schedule.next_after(await redis_now_ms(store)))


async def trigger_schedule(store: Store, schedule_id: str) -> str:
    """Start the schedule's workflow now, outside its timetable (which is unchanged, and
    paused or not): returns the new run's id. The overlap policy is not applied: the
    operator asked for this run."""
    schedule = await _definition(store, schedule_id)
    now = await redis_now_ms(store)
    run_id = with_shard(
        uuid.uuid5(uuid.NAMESPACE_URL, f"aiki-schedule:{schedule_id}:now:{now}").hex, 0
    )
    await store.trigger_schedule(
        schedule_id,
        run_id=run_id,
        workflow=schedule.workflow,
        version=schedule.version,
        payload_json=_serde.dumps(schedule.payload),
        priority=schedule.priority,
        **await _registered(store, schedule),
    )
    return run_id


async def _registered(store: Store, schedule: Schedule) -> dict[str, Any]:
    """What a schedule's run takes from its version's registration: the workflow-level
    timeout, and its concurrency (the limit, and the schedule's key, else the
    version-wide one)."""
    registration = await store.workflow_registration(schedule.workflow, schedule.version) or {}
    timeout = registration.get("timeout")
    declared = registration.get("concurrency")
    limit = declared.get("limit") if isinstance(declared, dict) else None
    return {
        "timeout": float(timeout) if timeout else None,
        "concurrency": (schedule.concurrency_key or "", int(limit)) if limit else (None, None),
    }


async def delete_schedule(store: Store, schedule_id: str) -> bool:
    return await store.delete_schedule(schedule_id)


def occurrence_run_id(schedule_id: str, occurrence_ms: int) -> str:
    """The run an occurrence starts: deterministic, and in shard 0 with the schedules."""
    return with_shard(
        uuid.uuid5(uuid.NAMESPACE_URL, f"aiki-schedule:{schedule_id}:{occurrence_ms}").hex, 0
    )


async def fire_due_schedules(store: Store, now_ms: int | None = None) -> int:
    """Fire every due schedule occurrence once. Returns how many runs were started.

    "Due" is on Redis's clock (``now_ms`` by default: one read), the clock the runs'
    timers fire on, which is virtual in a time-skipping test environment."""
    now = now_ms if now_ms is not None else await redis_now_ms(store)
    started = 0
    for schedule_id, occurrence in await store.due_schedules(now):
        raw = await store.schedule_definition(schedule_id)
        if raw is None:
            continue
        try:
            schedule = Schedule.from_json(json.loads(raw))
        except (ValueError, TypeError, ConfigurationError) as exc:
            log.error("schedule %s has an invalid definition, skipped: %s", schedule_id, exc)
            continue
        start, previous = True, None
        if schedule.overlap != "allow":
            last_id = await store.last_schedule_run(schedule_id)
            previous = await store.get_run(last_id) if last_id else None
            if previous is not None and not previous.ended and schedule.overlap == "skip":
                start = False
        run_id = occurrence_run_id(schedule_id, occurrence)
        following = schedule.next_after(occurrence)
        if following <= now:  # occurrences were missed: catch up once, then go on from now
            following = schedule.next_after(now)
        fired = await store.fire_schedule(
            schedule_id,
            occurrence,
            following_ms=following,
            start=start,
            run_id=run_id,
            workflow=schedule.workflow,
            version=schedule.version,
            payload_json=_serde.dumps(schedule.payload),
            priority=schedule.priority,
            **await _registered(store, schedule),
        )
        if fired == 1:
            started += 1
            log.info("schedule %s fired run %s", schedule_id, run_id)
            if (
                previous is not None
                and not previous.ended
                and schedule.overlap == ("cancel_previous")
            ):
                await store.cancel_run(previous.id, f"schedule {schedule_id} started {run_id}")
        elif fired == 2 and not start:
            log.info(
                "schedule %s skipped an occurrence: run %s still running",
                schedule_id,
                previous.id if previous else "?",
            )
    return started
