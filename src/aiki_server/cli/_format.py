"""How the CLI prints what a server answers: tables, times, JSON, and one run in full."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from .._present import Sealed, duration, prepare_tasks, readable, timeline


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def ago(ms: int | None) -> str:
    if not ms:
        return "-"
    return f"{duration(max(0, time.time() * 1000 - ms))} ago"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def short_json(value: Any, limit: int = 2000) -> str:
    if isinstance(value, Sealed):  # encrypted data the server could not decode
        return str(value)
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "\n... (use --json for all)"


def indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def show_error(error: dict[str, Any], title: str) -> None:
    where = f" (in task {error['task']})" if error.get("task") else ""
    click.echo(f"{title}{error.get('type')}: {error.get('message')}{where}")
    if error.get("traceback"):
        click.echo(indent(str(error["traceback"]).rstrip(), "    "))


def concurrency_rows(run: dict[str, Any]) -> list[tuple[str, Any]]:
    """A run of a version with ``concurrency=``: its key and limit (none otherwise)."""
    limit = run.get("concurrency_limit")
    if limit is None:
        return []
    key = run.get("concurrency_key")
    what = f"key {key!r}, limit {limit}" if key is not None else f"version-wide, limit {limit}"
    return [("concurrency", what)]


def show_run(run: dict[str, Any]) -> None:
    run = readable(run)  # envelopes the server could not decode, described
    created = run.get("created_at")

    def at(ms: int | None) -> str:
        if not ms:
            return "-"
        offset = f"  (+{duration(ms - created)})" if created and ms != created else ""
        return when(ms) + offset

    ended = run.get("ended_at")
    took = duration(ended - created) if created and ended else "-"
    if created and not ended:
        took = f"{duration(time.time() * 1000 - created)} so far"
    fields = [
        ("id", run.get("id")),
        ("workflow", f"{run.get('workflow')} @ {run.get('version')}"),
        ("status", run.get("status")),
        ("attempts", run.get("attempts")),
        ("worker", run.get("worker") or "-"),
        ("reference id", run.get("reference_id") or "-"),
        *concurrency_rows(run),
        ("priority", run.get("priority") or "0 (none)"),
        ("created", when(created)),
        ("started", at(run.get("started_at"))),
        ("ended", at(ended)),
        ("duration", took),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<14}{value}")
    click.echo("payload:")
    click.echo(indent(short_json(run.get("payload"))))
    if run.get("status") == "completed":
        click.echo("result:")
        click.echo(indent(short_json(run.get("result"))))
    error = run.get("error")
    if isinstance(error, dict):
        show_error(error, "error:        ")
    for i, earlier in enumerate(run.get("errors") or []):
        if isinstance(earlier, dict):
            how = "failed" if not earlier.get("retried_at") else earlier.get("ended_as", "ended")
            retried = (
                f" (retried {when(earlier['retried_at'])})" if earlier.get("retried_at") else ""
            )
            show_error(earlier, f"attempt {earlier.get('attempt', i + 1)} {how}{retried}: ")
    tasks = prepare_tasks(run.get("tasks"))
    if tasks:
        click.echo(f"tasks ({len(tasks)}, in start order):")
        rows = [
            [
                str(i),
                str(t["name"]),
                str(t.get("status", "-")),
                str(t.get("attempts", "-")),
                f"+{duration(t['started_at'] - created)}"
                if created and isinstance(t.get("started_at"), int)
                else "-",
                duration(t["duration_ms"]),
                str(t.get("address")),
            ]
            for i, t in enumerate(tasks, 1)
        ]
        headers = ["#", "TASK", "STATUS", "ATTEMPTS", "STARTED", "DURATION", "ADDRESS"]
        click.echo(indent(table(headers, rows)))
        for i, t in enumerate(tasks, 1):
            for n, task_error in enumerate(t.get("errors") or [], 1):
                if isinstance(task_error, dict):
                    attempt = task_error.get("attempt", n)
                    show_error(task_error, f"task {i}. {t['name']} attempt {attempt} failed: ")
            beat = t.get("heartbeat")
            if isinstance(beat, dict):
                beat_at = beat.get("at")
                at_text = (
                    f" at +{duration(beat_at - created)}"
                    if created and isinstance(beat_at, int)
                    else ""
                )
                details = short_json(beat.get("details"))
                click.echo(f"  task {i}. {t['name']} last heartbeat{at_text}: {details}")
    events = timeline(run, tasks)
    if events:
        click.echo("timeline:")
        rows = [[f"+{duration(e['offset_ms'])}", e["text"]] for e in events]
        click.echo(indent(table(["AT", "EVENT"], rows)))
