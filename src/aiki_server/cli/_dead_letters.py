"""``aiki dead-letters list|show|discard|requeue``: the messages no worker could use (a
message naming no run or a missing one, a run whose data cannot be read, a version no
worker has code for), through a server's API."""

from __future__ import annotations

from typing import Any

import click

from aiki.engine import HttpApi

from ._api import call_api
from ._base import CliError, api_options, cli
from ._format import print_json, short_json, table, when


@cli.group("dead-letters")
def dead_letters() -> None:
    """List, inspect, discard and requeue dead letters (through a server's API)."""


@dead_letters.command("list")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Per page."
)
@click.option("--cursor", default=None, help="Show the page after this cursor (from a list).")
@api_options
def dead_letters_list(limit: int, cursor: str | None, url: str, as_json: bool) -> None:
    """List dead letters, newest first, with the reason each was dead-lettered."""
    data = call_api(url, lambda api: api.list_dead_letters(limit=limit, cursor=cursor))
    if as_json:
        print_json(data)
        return
    letters = data.get("dead_letters", [])
    if not letters:
        click.echo("no dead letters")
        return
    rows = [
        [d["id"], when(d.get("at")), d.get("run_id") or "-", d.get("stream", ""), d["reason"]]
        for d in letters
    ]
    click.echo(table(["ID", "AT", "RUN", "STREAM", "REASON"], rows))
    click.echo(f"\n{data.get('total', len(letters))} dead letter(s) in all")
    if data.get("next_cursor"):
        click.echo(f"more: aiki dead-letters list --cursor {data['next_cursor']}")


@dead_letters.command("show")
@click.argument("letter_id")
@api_options
def dead_letters_show(letter_id: str, url: str, as_json: bool) -> None:
    """Show one dead letter: the message, why, and the run it names as it is now."""
    data = call_api(url, lambda api: api.get_dead_letter(letter_id))
    if as_json:
        print_json(data)
        return
    run: dict[str, Any] | None = data.get("run")
    click.echo(f"dead letter:  {data['id']} ({when(data.get('at'))})")
    click.echo(f"reason:       {data['reason']}")
    click.echo(f"stream:       {data.get('stream')} (message {data.get('message')})")
    click.echo(f"fields:       {short_json(data.get('fields'))}")
    if data.get("run_id"):
        state = f"{run['status']} ({run['workflow']}@{run['version']})" if run else "not found"
        click.echo(f"run:          {data['run_id']}: {state}")


def _act(letter_id: str, url: str, call: Any, verb: str) -> dict[str, Any]:
    try:
        result: dict[str, Any] = call_api(url, call)
    except CliError as exc:
        if exc.message.startswith("cannot reach"):
            raise
        raise CliError(f"cannot {verb} dead letter {letter_id}: {exc.message}") from None
    return result


@dead_letters.command("discard")
@click.argument("letter_ids", nargs=-1, required=True)
@api_options
def dead_letters_discard(letter_ids: tuple[str, ...], url: str, as_json: bool) -> None:
    """Delete dead letters (their runs, if any, are not changed)."""
    for letter_id in letter_ids:
        data = _act(letter_id, url, lambda api, i=letter_id: api.discard_dead_letter(i), "discard")
        if as_json:
            print_json(data)
        else:
            click.echo(f"dead letter {letter_id} discarded")


@dead_letters.command("requeue")
@click.argument("letter_ids", nargs=-1, required=True)
@api_options
def dead_letters_requeue(letter_ids: tuple[str, ...], url: str, as_json: bool) -> None:
    """Give dead-lettered runs their message back once the reason was fixed (a worker
    with their version deployed, their data repaired); the dead letters are deleted."""

    def requeue(letter_id: str) -> Any:
        async def call(api: HttpApi) -> dict[str, Any]:
            return await api.requeue_dead_letter(letter_id)

        return call

    for letter_id in letter_ids:
        data = _act(letter_id, url, requeue(letter_id), "requeue")
        if as_json:
            print_json(data)
            continue
        run = data.get("run") or {}
        click.echo(f"dead letter {letter_id}: run {run.get('id')} {data.get('result')}")
