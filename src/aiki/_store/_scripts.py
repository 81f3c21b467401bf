"""Every run transition, each ONE atomic Lua script (one round trip), and its binding.

The scripts are files, one per transition, in ``lua/`` (package data), loaded and called
as ``_binding.py`` says. What several scripts share (``now_ms``, the revision fence, the
terminal-status test, the key builders, run creation, taking a run) is written once in
``lua/lib.lua``.

Each script has exactly ONE binding here: a frozen dataclass whose fields are the
script's KEYS then its ARGV, in order, by name (``KEYS``/``ARGV`` list them; a name
starting with ``*`` takes the rest of the list). Call sites build a binding with keyword
arguments, so a key or argument in the wrong position cannot happen; each script's
header (``-- KEYS: ...`` / ``-- ARGV: ...``) names the same things (a test checks).

Each script checks the run's status and, for an executor's writes, its ``revision``
(the fence): taking a run increments the revision, and a write naming an older revision
is refused with ``STALE``, so a worker that lost its claim can change nothing. The
stream ack that belongs to a transition happens inside the same script, so a run is
never acked without its outcome recorded, nor recorded without the ack. Error replies
start with an upper-case code (``STALE``, ``MISSING``, ``EXISTS``) that ``aiki._redis``
turns into :class:`ScriptRefused`. Times come from Redis ``TIME`` (ms).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._redis import Arg
from ._binding import Binding, script
from ._scripts_schedules import FireSchedule, PauseSchedule, ResumeSchedule, TriggerSchedule


@script("start_run")
class StartRun(Binding):
    KEYS = ("run", "stream", "runs", "reference", "children", "timers")
    ARGV = (
        "id",
        "workflow",
        "version",
        "payload",
        "reference_id",
        "on_conflict",
        "parent_id",
        "start_at",
        "timeout_ms",
        "sensitive",
        "trace",
        "concurrency_key",
        "concurrency_limit",
        "digests",
        "priority",
    )
    run: str
    stream: str
    runs: str
    reference: str
    children: str
    timers: str
    id: str
    workflow: str
    version: str
    payload: str
    reference_id: str
    on_conflict: str
    parent_id: str
    start_at: Arg
    timeout_ms: Arg
    sensitive: str
    trace: str
    concurrency_key: str
    concurrency_limit: Arg
    digests: str = ""  # a reference id's payload digests (see start_run.lua)
    priority: Arg = ""  # 0..100 ("" in a child start: its parent's)


@script("take_run")
class TakeRun(Binding):
    KEYS = ("stream",)
    ARGV = ("worker", "message", "id")
    stream: str
    worker: str
    message: str
    id: str


@script("read_and_take")
class ReadAndTake(Binding):
    KEYS = ("*streams",)
    ARGV = ("group", "consumer", "count", "base")
    streams: Sequence[str]
    group: str
    consumer: str
    count: int
    base: str


@script("record_task")
class RecordTask(Binding):
    KEYS = ("run", "tasks")
    ARGV = ("revision", "address", "record")
    run: str
    tasks: str
    revision: int
    address: str
    record: str


@script("finish_run")
class FinishRun(Binding):
    KEYS = ("run", "stream", "tasks")
    ARGV = (
        "revision", "status", "field", "value", "message", "group", "channel", "id", "base",
        "address", "record",
    )  # fmt: skip
    run: str
    stream: str
    tasks: str
    revision: int
    status: str
    field: str
    value: str
    message: str
    group: str
    channel: str
    id: str
    base: str
    address: str
    record: str


@script("requeue_run")
class RequeueRun(Binding):
    KEYS = ("run", "stream")
    ARGV = ("revision", "message", "group")
    run: str
    stream: str
    revision: int
    message: str
    group: str


@script("park_run")
class ParkRun(Binding):
    KEYS = ("run", "tasks", "stream", "timers", "events", "child")
    ARGV = (
        "revision",
        "message",
        "group",
        "status",
        "wake_at",
        "errors",
        "id",
        "event",
        "events_seen",
        "sleep_address",
        "*drop_tasks",
    )
    run: str
    tasks: str
    stream: str
    timers: str
    events: str
    child: str
    revision: int
    message: str
    group: str
    status: str
    wake_at: Arg
    errors: str
    id: str
    event: str
    events_seen: int
    sleep_address: str
    drop_tasks: Sequence[str]


@script("task_attempt")
class TaskAttempt(Binding):
    KEYS = ("run", "tasks", "deadlines")
    ARGV = ("revision", "address", "record", "member", "deadline")
    run: str
    tasks: str
    deadlines: str
    revision: int
    address: str
    record: str
    member: str
    deadline: Arg


@script("acquire_rate")
class AcquireRate(Binding):
    KEYS = ("bucket",)
    ARGV = ("interval", "burst", "cost", "max_wait")
    bucket: str
    interval: str
    burst: int
    cost: int
    max_wait: str


@script("fire_timers")
class FireTimers(Binding):
    KEYS = ("timers", "task_deadlines")
    ARGV = ("base", "limit", "group", "control_channel")
    timers: str
    task_deadlines: str
    base: str
    limit: int
    group: str
    control_channel: str


@script("send_event")
class SendEvent(Binding):
    KEYS = ("run", "events", "stream", "timers")
    ARGV = ("name", "data", "reference_id", "id", "max_events")
    run: str
    events: str
    stream: str
    timers: str
    name: str
    data: str
    reference_id: str
    id: str
    max_events: int


@script("wake_sleep")
class WakeSleep(Binding):
    KEYS = ("run", "tasks", "stream", "timers")
    ARGV = ("name", "id")
    run: str
    tasks: str
    stream: str
    timers: str
    name: str
    id: str


@script("cancel_run")
class CancelRun(Binding):
    KEYS = ("run", "stream", "timers", "children")
    ARGV = ("reason", "group", "ended_channel", "control_channel", "id", "base")
    run: str
    stream: str
    timers: str
    children: str
    reason: str
    group: str
    ended_channel: str
    control_channel: str
    id: str
    base: str


@script("pause_run")
class PauseRun(Binding):
    KEYS = ("run", "stream", "timers")
    ARGV = ("group", "control_channel", "id")
    run: str
    stream: str
    timers: str
    group: str
    control_channel: str
    id: str


@script("resume_run")
class ResumeRun(Binding):
    KEYS = ("run", "stream", "timers")
    ARGV = ("id",)
    run: str
    stream: str
    timers: str
    id: str


@script("retry_run")
class RetryRun(Binding):
    KEYS = ("run", "tasks", "stream", "timers", "ended")
    ARGV = ("id", "base", "ended_channel")
    run: str
    tasks: str
    stream: str
    timers: str
    ended: str
    id: str
    base: str
    ended_channel: str


@script("requeue_dead_letter")
class RequeueDeadLetter(Binding):
    KEYS = ("run", "stream")
    ARGV = ("id",)
    run: str
    stream: str
    id: str


@script("raise_shards")
class RaiseShards(Binding):
    KEYS = ("key",)
    ARGV = ("shards",)
    key: str
    shards: int


@script("heartbeat")
class Heartbeat(Binding):
    KEYS = ("stream",)
    ARGV = ("group", "consumer", "*ids")
    stream: str
    group: str
    consumer: str
    ids: Sequence[str]


@script("claim_worker")
class ClaimWorker(Binding):
    KEYS = ("workers",)
    ARGV = ("id", "instance", "now_ms", "stale_ms", "entry")
    workers: str
    id: str
    instance: str
    now_ms: int
    stale_ms: int
    entry: str


@script("clock")
class Clock(Binding):
    KEYS = ("offset",)
    ARGV = ("target", "offset_ms")
    offset: str
    target: Arg
    offset_ms: Arg


@script("generation")
class Generation(Binding):
    KEYS = ("key",)
    ARGV = ("candidate",)
    key: str
    candidate: str


@script("set_attributes")
class SetAttributes(Binding):
    KEYS = ("run",)
    ARGV = ("revision", "id", "max_attributes", "*changes")
    run: str
    revision: int
    id: str
    max_attributes: int
    changes: Sequence[str]


@script("find_runs")
class FindRuns(Binding):
    KEYS = ("*indexes",)
    ARGV = ("base", "lower", "upper", "after_ms", "after_id", "limit", "budget")
    indexes: Sequence[str]
    base: str
    lower: Arg
    upper: Arg
    after_ms: Arg
    after_id: str
    limit: int
    budget: int


@script("prune_ended")
class PruneEnded(Binding):
    KEYS = ("ended", "runs")
    ARGV = ("base", "cutoff", "limit")
    ended: str
    runs: str
    base: str
    cutoff: int
    limit: int


BINDINGS: tuple[type[Binding], ...] = (
    StartRun,
    TakeRun,
    ReadAndTake,
    RecordTask,
    TaskAttempt,
    FinishRun,
    RequeueRun,
    ParkRun,
    FireTimers,
    AcquireRate,
    SendEvent,
    WakeSleep,
    CancelRun,
    PauseRun,
    ResumeRun,
    RetryRun,
    RequeueDeadLetter,
    FireSchedule,
    PauseSchedule,
    ResumeSchedule,
    TriggerSchedule,
    RaiseShards,
    Heartbeat,
    ClaimWorker,
    Generation,
    SetAttributes,
    FindRuns,
    PruneEnded,
    Clock,
)
"""Every binding: one per ``lua/*.lua`` file except the library."""
