"""The schedules' transitions (fire an occurrence, pause, resume, trigger now): their
bindings, as ``_scripts.py`` describes (one binding per ``lua/<name>.lua`` script)."""

from __future__ import annotations

from .._redis import Arg
from ._binding import Binding, script


@script("fire_schedule")
class FireSchedule(Binding):
    KEYS = ("due", "last_run", "run", "stream", "runs")
    ARGV = (
        "schedule",
        "occurrence",
        "following",
        "action",
        "id",
        "workflow",
        "version",
        "payload",
        "timeout_ms",
        "priority",
        "concurrency_key",
        "concurrency_limit",
    )
    due: str
    last_run: str
    run: str
    stream: str
    runs: str
    schedule: str
    occurrence: int
    following: Arg
    action: str
    id: str
    workflow: str
    version: str
    payload: str
    timeout_ms: Arg
    priority: Arg
    concurrency_key: str
    concurrency_limit: Arg


@script("pause_schedule")
class PauseSchedule(Binding):
    KEYS = ("schedules", "due", "paused")
    ARGV = ("schedule",)
    schedules: str
    due: str
    paused: str
    schedule: str


@script("resume_schedule")
class ResumeSchedule(Binding):
    KEYS = ("schedules", "due", "paused")
    ARGV = ("schedule", "next")
    schedules: str
    due: str
    paused: str
    schedule: str
    next: int


@script("trigger_schedule")
class TriggerSchedule(Binding):
    KEYS = ("schedules", "last_run", "run", "stream", "runs")
    ARGV = (
        "schedule",
        "id",
        "workflow",
        "version",
        "payload",
        "timeout_ms",
        "priority",
        "concurrency_key",
        "concurrency_limit",
    )
    schedules: str
    last_run: str
    run: str
    stream: str
    runs: str
    schedule: str
    id: str
    workflow: str
    version: str
    payload: str
    timeout_ms: Arg
    priority: Arg
    concurrency_key: str
    concurrency_limit: Arg
