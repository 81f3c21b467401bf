"""``aiki schedules list|create|delete|pause|resume|trigger-now``: schedules, through a
server's API."""

from __future__ import annotations

import json
from typing import Any

import click

from aiki.engine import HttpApi

from ._api import call_api
from ._base import CliError, api_options, cli
from ._format import print_json, table, when


@cli.group()
def schedules() -> None:
    """List, create, delete, pause, resume and trigger schedules (through a server's API)."""


@schedules.command("list")
@api_options
def schedules_list(url: str, as_json: bool) -> None:
    """List schedules, by id."""

    async def every_page(api: HttpApi) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            data = await api.list_schedules(cursor)
            found.extend(data.get("schedules", []))
            if not data.get("next_cursor"):
                return found
            cursor = data["next_cursor"]

    found = call_api(url, every_page)
    if as_json:
        print_json({"schedules": found})
        return
    if not found:
        click.echo("no schedules")
        return
    rows = [
        [
            s["id"],
            f"{s.get('workflow')} @ {s.get('version')}",
            f"cron {s['cron']}" if s.get("cron") else f"every {s.get('every')} s",
            str(s.get("overlap", "")),
            "paused" if s.get("paused") else when(s.get("next_at")),
        ]
        for s in found
    ]
    click.echo(table(["ID", "WORKFLOW", "WHEN", "OVERLAP", "NEXT"], rows))


@schedules.command("create")
@click.argument("schedule_id")
@click.option("--workflow", required=True, help="The workflow to start.")
@click.option("--version", "version_", required=True, help="Its version.")
@click.option("--cron", default=None, help='A 5-field cron expression, in UTC ("*/5 * * * *").')
@click.option(
    "--every", type=click.FloatRange(min=0, min_open=True), default=None, help="Every N seconds."
)
@click.option("--payload", default="null", show_default=True, help="The runs' payload (JSON).")
@click.option(
    "--overlap",
    type=click.Choice(["allow", "skip", "cancel_previous"]),
    default="allow",
    show_default=True,
    help="When the previous run is still running: start anyway, skip, or cancel it.",
)
@click.option(
    "--priority",
    type=click.IntRange(0, 100),
    default=0,
    show_default=True,
    help="The runs' priority: 0 (none) to 100, higher ones are taken first.",
)
@api_options
def schedules_create(
    schedule_id: str,
    workflow: str,
    version_: str,
    cron: str | None,
    every: float | None,
    payload: str,
    overlap: str,
    priority: int,
    url: str,
    as_json: bool,
) -> None:
    """Create (or replace) the schedule SCHEDULE_ID: exactly one of --cron and --every."""
    if (cron is None) == (every is None):
        raise CliError("give exactly one of --cron and --every")
    try:
        payload_value = json.loads(payload)
    except ValueError as exc:
        raise CliError(f"--payload is not valid JSON: {exc}") from None
    body: dict[str, Any] = {
        "id": schedule_id,
        "workflow": workflow,
        "version": version_,
        "payload": payload_value,
        "overlap": overlap,
    }
    if priority:
        body["priority"] = priority
    body["cron" if cron is not None else "every"] = cron if cron is not None else every
    data = call_api(url, lambda api: api.create_schedule(body))
    if as_json:
        print_json(data)
    else:
        click.echo(f"schedule {schedule_id} saved; next run {when(data.get('next_at'))}")


@schedules.command("delete")
@click.argument("schedule_id")
@api_options
def schedules_delete(schedule_id: str, url: str, as_json: bool) -> None:
    """Delete a schedule (runs it started are not affected)."""
    data = call_api(url, lambda api: api.delete_schedule(schedule_id))
    if as_json:
        print_json(data)
    else:
        click.echo(f"schedule {schedule_id} deleted")


def _action(schedule_id: str, action: str, url: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = call_api(url, lambda api: api.schedule_action(schedule_id, action))
    except CliError as exc:
        if exc.message.startswith("cannot reach"):
            raise
        raise CliError(f"cannot {action} schedule {schedule_id}: {exc.message}") from None
    return data


@schedules.command("pause")
@click.argument("schedule_id")
@api_options
def schedules_pause(schedule_id: str, url: str, as_json: bool) -> None:
    """Stop a schedule from firing until it is resumed."""
    data = _action(schedule_id, "pause", url)
    if as_json:
        print_json(data)
    else:
        click.echo(f"schedule {schedule_id} paused")


@schedules.command("resume")
@click.argument("schedule_id")
@api_options
def schedules_resume(schedule_id: str, url: str, as_json: bool) -> None:
    """Let a paused schedule fire again, from its next occurrence after now (occurrences
    missed while paused are not fired)."""
    data = _action(schedule_id, "resume", url)
    if as_json:
        print_json(data)
    elif data.get("result") == "active":
        click.echo(f"schedule {schedule_id} was not paused")
    else:
        click.echo(f"schedule {schedule_id} resumed")


@schedules.command("trigger-now")
@click.argument("schedule_id")
@api_options
def schedules_trigger_now(schedule_id: str, url: str, as_json: bool) -> None:
    """Start the schedule's workflow now, outside its timetable (which is unchanged)."""
    data = _action(schedule_id, "trigger", url)
    if as_json:
        print_json(data)
    else:
        click.echo(f"schedule {schedule_id} started run {(data.get('run') or {}).get('id')}")
