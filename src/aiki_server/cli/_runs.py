"""``aiki runs list|show|wait|cancel|pause|resume``: runs, through a server's API."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import click

from aiki.engine import RUN_STATUSES, TERMINAL_STATUSES, HttpApi

from .._present import duration, readable
from ._api import call_api
from ._base import DEFAULT_URL, CliError, api_options, cli
from ._format import print_json, show_run, table, when

TERMINAL = tuple(sorted(TERMINAL_STATUSES))


_SINCE_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_time(value: str | None, option: str) -> int | None:
    """``15m``/``2h``/``7d`` (that long ago), an ISO date-time (local time unless it
    names a zone) or a Unix time in ms, as Unix ms."""
    if not value:
        return None
    text = value.strip()
    unit = _SINCE_UNITS.get(text[-1:].lower())
    if unit and text[:-1].replace(".", "", 1).isdigit():
        return int(time.time() * 1000 - float(text[:-1]) * unit)
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{option} must be a duration ago (30s, 15m, 2h, 7d), an ISO date-time "
            f"or Unix ms, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return int(parsed.timestamp() * 1000)


@cli.group()
def runs() -> None:
    """List, show, wait for and control workflow runs (through a server's API)."""


@runs.command("list")
@click.option(
    "--status", type=click.Choice(RUN_STATUSES), default=None, help="Only runs with this status."
)
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--version", "version_", default=None, help="Only runs of this workflow version.")
@click.option(
    "--since", default=None, help="Only runs created since: 15m, 2h, 7d, an ISO time or ms."
)
@click.option("--until", default=None, help="Only runs created before this time (same forms).")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Runs per page."
)
@click.option("--cursor", default=None, help="Show the page after this cursor (from a list).")
@click.option("--reference-id", default=None, help="Only runs started with this reference id.")
@click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Only runs whose search attribute NAME (set by ctx.set_attributes) is VALUE; "
    "repeat to require several.",
)
@api_options
def runs_list(
    status: str | None,
    workflow: str | None,
    version_: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    reference_id: str | None,
    attrs: tuple[str, ...],
    url: str,
    as_json: bool,
) -> None:
    """List runs, newest first (filtered in Redis through its indexes)."""
    created_after = parse_time(since, "--since")
    created_before = parse_time(until, "--until")
    attributes: dict[str, str] = {}
    for item in attrs:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise CliError(f"--attr must be NAME=VALUE, got {item!r}")
        attributes[name] = value
    data = call_api(
        url,
        lambda api: api.list_runs(
            status=status,
            workflow=workflow,
            version=version_,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
            reference_id=reference_id,
            attributes=attributes,
        ),
    )
    if as_json:
        print_json(data)
        return
    runs_ = data.get("runs", [])
    if not runs_:
        click.echo("no runs")
        return
    now = time.time() * 1000
    rows = []
    for r in runs_:
        created, ended = r.get("created_at"), r.get("ended_at")
        took = duration((ended or now) - created) if created else "-"
        error = readable(r).get("error") or {}
        rows.append(
            [
                r["id"],
                r.get("workflow", ""),
                r.get("version", ""),
                r.get("status", ""),
                when(created),
                took if ended or not created else f"{took}+",
                str(r.get("attempts", "")),
                f"{error.get('type')}: {error.get('message')}"[:60] if error else "",
            ]
        )
    headers = ["ID", "WORKFLOW", "VERSION", "STATUS", "CREATED", "DURATION", "ATTEMPTS", "ERROR"]
    if any(r.get("priority") for r in runs_):  # shown only where priorities are used
        headers.append("PRIORITY")
        for row, r in zip(rows, runs_, strict=True):
            row.append(str(r.get("priority") or 0))
    if any(r.get("attributes") for r in runs_):
        headers.append("ATTRIBUTES")
        for row, r in zip(rows, runs_, strict=True):
            row.append(" ".join(f"{k}={v}" for k, v in sorted((r.get("attributes") or {}).items())))
    click.echo(table(headers, rows))
    if data.get("next_cursor") is not None:
        click.echo(f"\nmore: aiki runs list --cursor {data['next_cursor']}")


@runs.command("show")
@click.argument("run_id")
@api_options
def runs_show(run_id: str, url: str, as_json: bool) -> None:
    """Show one run: its tasks in order (durations, attempts, errors with tracebacks)
    and its timeline."""
    data = call_api(url, lambda api: api.get_run(run_id))
    if as_json:
        print_json(data)
    else:
        show_run(data)


@runs.command("export")
@click.argument("run_id")
@click.option(
    "--url",
    envvar="AIKI_URL",
    show_envvar=True,
    default=DEFAULT_URL,
    show_default=True,
    help="The Aiki server.",
)
def runs_export(run_id: str, url: str) -> None:
    """Write a run's history as JSON (``aiki runs export ID > run.json``), for
    ``aiki.testing.replay(version, "run.json")`` to check new code against in CI."""
    history = call_api(url, lambda api: api.run_history(run_id))
    click.echo(json.dumps(history, ensure_ascii=False, indent=1))


@runs.command("wait")
@click.argument("run_id")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after this many seconds [wait forever].",
)
@api_options
def runs_wait(run_id: str, timeout: float | None, url: str, as_json: bool) -> None:
    """Wait until a run ends and show it.

    Exit code 0 if it completed, 1 if it failed or was cancelled, or on timeout.
    """
    data = call_api(url, lambda api: api.wait(run_id, timeout))
    status = data.get("status")
    if as_json:
        print_json(data)
    elif status in TERMINAL:
        show_run(data)
    if status not in TERMINAL:
        raise CliError(f"run {run_id} did not end within {timeout:g} s (status: {status})")
    if status == "failed":
        error = readable(data).get("error") or {}
        raise CliError(f"run {run_id} failed: {error.get('type')}: {error.get('message')}")
    if status == "cancelled":
        raise CliError(f"run {run_id} was cancelled")


def _control(
    run_id: str,
    action: str,
    call: Callable[[HttpApi], Awaitable[dict[str, Any]]],
    url: str,
    as_json: bool,
    describe: Callable[[Any], str] | None = None,
) -> None:
    """Apply a control action and say how it went (``describe``: the result, in words)."""
    try:
        data = call_api(url, call)
    except CliError as exc:
        if exc.message.startswith(("no run with id", "cannot reach")):
            raise
        raise CliError(f"cannot {action} run {run_id}: {exc.message}") from None
    if as_json:
        print_json(data)
        return
    run = data.get("run") or {}
    result, status = data.get("result"), run.get("status", "?")
    if action == "cancel" and result in TERMINAL and result != "cancelled":
        click.echo(f"run {run_id} had already ended: {result}")
    else:
        said = describe(result) if describe is not None else result
        click.echo(f"run {run_id}: {said} (status: {status})")


@runs.command("cancel")
@click.argument("run_id")
@click.option("--reason", default=None, help="Why (recorded as the run's error message).")
@api_options
def runs_cancel(run_id: str, reason: str | None, url: str, as_json: bool) -> None:
    """Cancel a run (and its child runs). A run that already ended is left as it is."""
    _control(run_id, "cancel", lambda api: api.cancel(run_id, reason), url, as_json)


@runs.command("pause")
@click.argument("run_id")
@api_options
def runs_pause(run_id: str, url: str, as_json: bool) -> None:
    """Pause a run: its execution stops at once and it is not run again until resumed."""
    _control(run_id, "pause", lambda api: api.pause(run_id), url, as_json)


@runs.command("resume")
@click.argument("run_id")
@api_options
def runs_resume(run_id: str, url: str, as_json: bool) -> None:
    """Resume a paused run (it is queued again)."""
    _control(run_id, "resume", lambda api: api.resume(run_id), url, as_json)
