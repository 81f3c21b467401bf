"""``aiki runs start|event|wakeup|retry``: act on runs through a server's API, as the HTTP
API can: start a run (payload from the command line, a file or stdin), send an event,
end a sleep early, and re-run failed or cancelled runs (one, or every one of a version
since a time)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from aiki.engine import HttpApi

from ._api import call_api
from ._base import CliError, api_options
from ._format import print_json, show_run
from ._runs import _control, parse_time, runs


def read_json(value: str | None, path: str | None, what: str, option: str) -> str:
    """JSON text from ``value``, or from the file ``path`` (``-``: stdin), checked to be
    JSON; ``null`` when neither is given."""
    if value is not None and path is not None:
        raise CliError(f"give {what} on the command line or with {option}, not both")
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        except OSError as exc:
            raise CliError(f"cannot read {what} from {path}: {exc.strerror or exc}") from None
    else:
        text = "null" if value is None else value
    try:
        json.loads(text)
    except ValueError as exc:
        source = "stdin" if path == "-" else (path or "the command line")
        raise CliError(f"{what} from {source} is not valid JSON: {exc}") from None
    return text.strip()


@runs.command("start")
@click.argument("workflow")
@click.argument("version")
@click.option("--payload", default=None, help="The payload, as JSON [null].")
@click.option(
    "--payload-file",
    default=None,
    metavar="PATH",
    help="Read the payload (JSON) from this file; - reads stdin.",
)
@click.option("--reference-id", default=None, help="Idempotency key: a repeat finds the run.")
@click.option(
    "--on-conflict",
    type=click.Choice(["error", "return_existing"]),
    default="error",
    show_default=True,
    help="When a run with this reference id exists: fail, or answer that run.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds the run may take [the version's default].",
)
@click.option(
    "--priority",
    type=click.IntRange(0, 100),
    default=0,
    show_default=True,
    help="0 (none) to 100: the version's waiting runs with a higher priority are taken first.",
)
@click.option("--wait", is_flag=True, help="Wait until the run ends and show it.")
@api_options
def runs_start(
    workflow: str,
    version: str,
    payload: str | None,
    payload_file: str | None,
    reference_id: str | None,
    on_conflict: str,
    timeout: float | None,
    priority: int,
    wait: bool,
    url: str,
    as_json: bool,
) -> None:
    """Start a run of WORKFLOW at VERSION (a version some worker registered).

    \b
    aiki runs start order-processing 1.0.0 --payload '{"order": 42}'
    aiki runs start order-processing 1.0.0 --payload '{"order": 43}' --priority 80
    aiki runs start order-processing 1.0.0 --payload-file order.json
    cat order.json | aiki runs start order-processing 1.0.0 --payload-file -
    """
    payload_json = read_json(payload, payload_file, "the payload", "--payload-file")

    async def start(api: HttpApi) -> dict[str, Any]:
        started: dict[str, Any] = await api.start(
            workflow,
            version,
            payload_json,
            reference_id=reference_id,
            on_conflict=on_conflict,
            timeout=timeout,
            priority=priority,
        )
        if wait:
            return await api.wait(str(started["id"]))
        return started

    data = call_api(url, start)
    if as_json:
        print_json(data)
    elif wait:
        show_run(data)
    elif data.get("created", True):
        click.echo(data["id"])
    else:
        click.echo(f"{data['id']} (existing run with this reference id: {data.get('status')})")
    if wait and data.get("status") != "completed":
        raise CliError(f"run {data.get('id')} {data.get('status')}")


@runs.command("event")
@click.argument("run_id")
@click.argument("name")
@click.argument("data", required=False, default=None)
@click.option(
    "--data-file",
    default=None,
    metavar="PATH",
    help="Read the data (JSON) from this file; - reads stdin.",
)
@click.option("--reference-id", default=None, help="Idempotency key: a repeat is delivered once.")
@api_options
def runs_event(
    run_id: str,
    name: str,
    data: str | None,
    data_file: str | None,
    reference_id: str | None,
    url: str,
    as_json: bool,
) -> None:
    """Send the event NAME with DATA (JSON, default null) to a run; it is kept until the
    run waits for it."""
    data_value = json.loads(read_json(data, data_file, "the event data", "--data-file"))
    _control(
        run_id,
        "send an event to",
        lambda api: api.send_event(run_id, name, data_value, reference_id=reference_id),
        url,
        as_json,
        describe=lambda result: (
            "event delivered" if result else "already delivered (same reference id)"
        ),
    )


@runs.command("wakeup")
@click.argument("run_id")
@click.argument("name")
@api_options
def runs_wakeup(run_id: str, name: str, url: str, as_json: bool) -> None:
    """End the run's durable sleep called NAME now."""
    _control(
        run_id,
        "wake up",
        lambda api: api.wakeup(run_id, name),
        url,
        as_json,
        describe=lambda result: f"woke {result} sleep(s) named {name!r}",
    )


@runs.command("retry")
@click.argument("run_id", required=False)
@click.option("--workflow", default=None, help="Retry every matching run of this workflow...")
@click.option("--version", "version_", default=None, help="...at this version.")
@click.option(
    "--since", default=None, help="Only runs created since: 15m, 2h, 7d, an ISO time or ms."
)
@click.option("--until", default=None, help="Only runs created before this time (same forms).")
@click.option(
    "--status",
    type=click.Choice(["failed", "cancelled"]),
    default="failed",
    show_default=True,
    help="Which ended runs to retry (with --workflow).",
)
@api_options
def runs_retry(
    run_id: str | None,
    workflow: str | None,
    version_: str | None,
    since: str | None,
    until: str | None,
    status: str,
    url: str,
    as_json: bool,
) -> None:
    """Run a failed or cancelled run again, keeping what it recorded: its completed tasks
    are not executed again; the task that failed and what follows run.

    \b
    aiki runs retry RUN_ID
    aiki runs retry --workflow order-processing --version 1.0.0 --since 2h
    """
    if run_id is not None:
        if workflow or version_ or since or until:
            raise CliError("give a RUN_ID or --workflow/--version, not both")
        _control(run_id, "retry", lambda api: api.retry(run_id), url, as_json)
        return
    if not workflow or not version_:
        raise CliError("give a RUN_ID, or --workflow and --version (with --since) for many")
    since_ms, until_ms = parse_time(since, "--since"), parse_time(until, "--until")

    async def every_page(api: HttpApi) -> dict[str, Any]:
        retried: list[str] = []
        refused: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await api.retry_runs(
                workflow,
                version_,
                status=status,
                since_ms=since_ms,
                until_ms=until_ms,
                cursor=cursor,
            )
            retried += page["retried"]
            refused += page["refused"]
            cursor = page.get("next_cursor")
            if not cursor:
                return {"retried": retried, "refused": refused}

    data = call_api(url, every_page)
    if as_json:
        print_json(data)
        return
    click.echo(f"retried {len(data['retried'])} {status} run(s) of {workflow}@{version_}")
    for item in data["refused"]:
        click.echo(f"  not retried {item['id']}: {item['reason']}")
