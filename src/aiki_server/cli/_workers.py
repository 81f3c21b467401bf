"""``aiki workers list``: the workers, from their heartbeats, through a server's API."""

from __future__ import annotations

import click

from ._api import call_api
from ._base import api_options, cli
from ._format import ago, print_json, table


@cli.group()
def workers() -> None:
    """Look at the workers (from their heartbeats, through a server's API)."""


@workers.command("list")
@api_options
def workers_list(url: str, as_json: bool) -> None:
    """List workers: workflows, runs in flight, last heartbeat (stale after 15 s)."""
    data = call_api(url, lambda api: api.list_workers())
    if as_json:
        print_json(data)
        return
    found = data.get("workers", [])
    if not found:
        click.echo("no workers")
        return
    rows = [
        [
            w["id"],
            "stale" if w.get("stale") else "live",
            ", ".join(w.get("workflows") or []),
            f"{w.get('in_flight')}/{w.get('max')}",
            ago(w.get("last_heartbeat_ms")),
            str(w.get("host") or "-"),
            str(w.get("pid") or "-"),
        ]
        for w in found
    ]
    headers = ["ID", "STATE", "WORKFLOWS", "IN FLIGHT", "HEARTBEAT", "HOST", "PID"]
    click.echo(table(headers, rows))
