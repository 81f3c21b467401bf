"""The ``aiki`` command line: run a server, a dev stack or a worker; operate runs.

``aiki server`` and ``aiki dev`` serve the HTTP API and the dashboard; ``aiki worker
MODULE:ATTR`` runs a worker for your workflows; ``aiki runs``, ``aiki schedules`` and
``aiki workers`` talk to a server over HTTP (human tables by default, ``--json`` for
scripts). This is the only place in Aiki that installs signal handlers: SIGINT/SIGTERM
stop a server or worker gracefully, a second signal stops it at once. Errors are one
line on stderr with exit code 1 (usage errors: click's message, exit code 2).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import httpx
import trio

import aiki
from aiki._store._keys import RUN_STATUSES, TERMINAL_STATUSES

from ._logging import LOG_FORMATS, LOG_LEVELS, setup_logging
from ._present import duration, prepare_tasks, timeline
from ._serve import ServerHandle, serve_server
from ._settings import Settings

DEFAULT_URL = "http://127.0.0.1:9090"
TERMINAL = tuple(sorted(TERMINAL_STATUSES))

log = logging.getLogger("aiki_server.cli")


class CliError(click.ClickException):
    """A one-line error on stderr, exit code 1."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``trio.run``, with the errors a user can act on turned into one line."""
    from ._embedded_redis import EmbeddedRedisError

    try:
        return trio.run(fn, *args)
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, click.ClickException):
            raise leaf from None
        if isinstance(leaf, aiki.AikiError | EmbeddedRedisError):
            first = str(leaf).splitlines()[0] if str(leaf) else type(leaf).__name__
            raise CliError(first) from None
        if isinstance(leaf, OSError):
            raise CliError(str(leaf)) from None
        if isinstance(leaf, KeyboardInterrupt):
            sys.exit(130)
        raise


_log_format = "text"


def _setup_logging(level: str, fmt: str = "text") -> None:
    global _log_format
    _log_format = fmt.lower()
    setup_logging(level.lower(), _log_format)


def _notice(message: str) -> None:
    """A message for the operator on stderr: a log record when logs are JSON lines (so
    that stderr stays machine-readable), else a plain line."""
    if _log_format == "json":
        log.warning(message)
    else:
        click.echo(message, err=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})
    except aiki.ConfigurationError as exc:
        raise CliError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(aiki.__version__, prog_name="aiki")
def cli() -> None:
    """Aiki: durable workflows on Redis.

    \b
    aiki dev                      server + embedded Redis, for development
    aiki server --redis-url URL   the HTTP API server and dashboard
    aiki worker MODULE:ATTR       run a worker for your workflows
    aiki runs list|show|wait      look at runs through a server
    aiki runs cancel|pause|resume control a run
    aiki schedules list|create|delete
    aiki workers list             workers and their heartbeats
    """


# -- serving --------------------------------------------------------------------------


async def _serve_until_signal(
    settings: Settings, access_log: bool, banner: Callable[[ServerHandle], None]
) -> None:
    """Serve until SIGINT/SIGTERM (graceful); a second signal stops at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    if not stop.is_set():
                        _notice(
                            f"{signal.Signals(signum).name}: stopping gracefully "
                            "(again to stop at once)"
                        )
                        stop.set()
                    else:
                        nursery.cancel_scope.cancel()

            async def run_server(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await serve_server(
                    settings,
                    task_status=task_status,
                    shutdown_trigger=stop.wait,
                    access_log=access_log,
                )
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            try:
                handle: ServerHandle = await nursery.start(run_server)
            except OSError as exc:
                raise CliError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
            banner(handle)


def _log_level_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS, case_sensitive=False),
        default="text",
        show_default=True,
        envvar="AIKI_LOG_FORMAT",
        show_envvar=True,
        help="Log lines as text, or as one JSON object per line (for log shippers).",
    )(fn)
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="info",
        show_default=True,
        envvar="AIKI_LOG_LEVEL",
        show_envvar=True,
        help="Logging level (logs go to stderr).",
    )(fn)


@cli.command()
@click.option(
    "--redis-url",
    envvar="AIKI_REDIS_URL",
    show_envvar=True,
    help="Redis holding all state: redis://[user:pass@]host:port[/db] or rediss://...",
)
@click.option("--host", default=None, help="Interface to listen on [env AIKI_HOST; 127.0.0.1].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on, 0 for any free port [env AIKI_PORT; 9090].",
)
@click.option("--prefix", default=None, help="Redis key prefix [env AIKI_PREFIX; aiki].")
@click.option("--access-log", is_flag=True, help="Log every request.")
@_log_level_option
def server(
    redis_url: str | None,
    host: str | None,
    port: int | None,
    prefix: str | None,
    access_log: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run the HTTP API server (and the dashboard, at /) against a Redis.

    Stops gracefully on SIGINT/SIGTERM. Other settings come from AIKI_* variables
    (AIKI_MAX_PAYLOAD_BYTES, AIKI_MAX_WAIT).
    """
    settings = _settings(redis_url=redis_url, host=host, port=port, prefix=prefix)
    if settings.redis_url is None:
        raise CliError(
            "no Redis URL: pass --redis-url or set AIKI_REDIS_URL "
            "(or run `aiki dev` for a server with an embedded Redis)"
        )
    _setup_logging(log_level, log_format)

    def banner(handle: ServerHandle) -> None:
        click.echo(f"Aiki server on {handle.base_url} (Ctrl-C to stop)")

    _run(_serve_until_signal, settings, access_log, banner)


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=".aiki-data",
    show_default=True,
    help="Where the embedded Redis keeps its append-only file.",
)
@click.option("--host", default=None, help="Interface to listen on [127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="HTTP port, 0 for any [9090]."
)
@click.option(
    "--redis-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the embedded Redis [a free one].",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@_log_level_option
def dev(
    data_dir: str,
    host: str | None,
    port: int | None,
    redis_port: int | None,
    access_log: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run the server with an embedded Redis (AOF persistence in --data-dir).

    For development: state survives restarts in the data directory. Stops gracefully
    (server first, then Redis) on SIGINT/SIGTERM.
    """
    _setup_logging(log_level, log_format)
    data_path = str(Path(data_dir).expanduser().resolve())
    base = _settings(host=host, port=port, data_dir=data_path)

    async def run() -> None:
        from ._embedded_redis import open_embedded_redis

        async with open_embedded_redis(data_dir=data_path, port=redis_port or None) as redis:
            settings = _settings(
                redis_url=redis.url, host=base.host, port=base.port, data_dir=data_path
            )

            def banner(handle: ServerHandle) -> None:
                click.echo(
                    "Aiki dev server\n"
                    f"  dashboard: {handle.base_url}/\n"
                    f"  API:       {handle.base_url}/api/v1\n"
                    f"  health:    {handle.base_url}/healthz\n"
                    f"  metrics:   {handle.base_url}/metrics\n"
                    f"  Redis:     {redis.url}  (AOF in {data_path})\n"
                    f"Start a worker:  aiki worker MODULE:ATTR --redis-url {redis.url}\n"
                    f"List runs:       aiki runs list --url {handle.base_url}\n"
                    "Press Ctrl-C to stop."
                )

            await _serve_until_signal(settings, access_log, banner)

    _run(run)


# -- worker ---------------------------------------------------------------------------


def load_workflows(target: str) -> list[aiki.Workflow | aiki.WorkflowVersion]:
    """Import ``MODULE[:ATTR]`` (with the current directory importable) and return the
    workflows it names: ATTR may be a Workflow, a WorkflowVersion or a list of them;
    without ATTR, every Workflow defined at the module's top level."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise CliError(f"{target!r} is not MODULE[:ATTR]")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from None
    if attr:
        obj: Any = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise CliError(f"{module_name!r} has no attribute {attr!r}") from None
        items = list(obj) if isinstance(obj, list | tuple | set | frozenset) else [obj]
    else:
        items = [v for v in vars(module).values() if isinstance(v, aiki.Workflow)]
        if not items:
            raise CliError(f"module {module_name!r} defines no aiki.workflow(...); name one")
    for item in items:
        if not isinstance(item, aiki.Workflow | aiki.WorkflowVersion):
            raise CliError(
                f"{target} is not a workflow, a workflow version or a list of them "
                f"(found {type(item).__name__})"
            )
    if not items:
        raise CliError(f"{target} is an empty list of workflows")
    return items


@cli.command()
@click.argument("target", metavar="MODULE[:ATTR]")
@click.option(
    "--redis-url",
    envvar="AIKI_REDIS_URL",
    show_envvar=True,
    required=True,
    help="The Redis the server uses.",
)
@click.option(
    "--prefix", envvar="AIKI_PREFIX", default="aiki", show_default=True, help="Redis key prefix."
)
@click.option("--id", "worker_id", default=None, help="Worker id [host-pid-random].")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Workflow runs executed at once.",
)
@click.option(
    "--claim-min-idle-time",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds after which a silent worker's runs are taken over.",
)
@click.option(
    "--block-time",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds one read waits for new work.",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds running executions get to finish on stop.",
)
@_log_level_option
def worker(
    target: str,
    redis_url: str,
    prefix: str,
    worker_id: str | None,
    concurrency: int,
    claim_min_idle_time: float,
    block_time: float,
    shutdown_grace: float,
    log_level: str,
    log_format: str,
) -> None:
    """Run a worker for the workflows in MODULE[:ATTR].

    ATTR names a workflow, a workflow version, or a list of them (for example
    `aiki worker myapp.flows:order_processing`); without it, every workflow defined in
    MODULE. The current directory is importable. SIGINT/SIGTERM stop the worker
    gracefully (running executions get --shutdown-grace seconds); a second one at once.
    """
    _setup_logging(log_level, log_format)
    items = load_workflows(target)
    try:
        subscriber = aiki.RedisStreams(
            claim_min_idle_time=claim_min_idle_time, block_time=block_time
        )
    except aiki.ConfigurationError as exc:
        raise CliError(str(exc)) from None

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with aiki.client(redis_url=redis_url, prefix=prefix) as client:
                w = aiki.worker(
                    client,
                    id=worker_id,
                    max_concurrent_workflow_runs=concurrency,
                    subscriber=subscriber,
                    shutdown_grace=shutdown_grace,
                )
                for item in items:
                    w.workflow_registry.add(item)
                async with trio.open_nursery() as nursery:

                    async def run_worker(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                        await w.start(task_status=task_status)
                        nursery.cancel_scope.cancel()

                    async def watch_signals() -> None:
                        async for signum in signals:
                            if not stopping:
                                stopping.append(signum)
                                _notice(
                                    f"{signal.Signals(signum).name}: stopping worker {w.id} "
                                    "(again to stop at once)"
                                )
                                nursery.start_soon(w.stop)
                            else:
                                nursery.cancel_scope.cancel()

                    stopping: list[int] = []
                    nursery.start_soon(watch_signals)
                    await nursery.start(run_worker)
                    names = ", ".join(f"{wv.name}@{wv.version}" for wv in w.workflow_registry)
                    click.echo(f"Aiki worker {w.id} running {names} (Ctrl-C to stop)")

    _run(run)


# -- talking to a server -------------------------------------------------------------


class _Api:
    """A small synchronous client of the server's HTTP API for the CLI."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = url.rstrip("/")
        # A server that requires API keys gets the one in AIKI_API_KEY (never printed).
        api_key = os.environ.get("AIKI_API_KEY", "").strip()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.http = httpx.Client(base_url=self.url, timeout=30.0, headers=headers)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body if body is not None else {}, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(f"cannot reach the Aiki server at {self.url}: {reason}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            error = error if isinstance(error, dict) else {}
            message = error.get("message")
            if response.status_code in (404, 409) and message:
                raise CliError(message)  # no run/schedule with id ..., invalid state
            message = message or response.text[:200] or response.reason_phrase
            raise CliError(f"server answered {response.status_code}: {message}")
        if data is None:
            raise CliError(f"the server at {self.url} did not answer JSON")
        return data


def _api_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")(fn)
    fn = click.option(
        "--url",
        envvar="AIKI_URL",
        show_envvar=True,
        default=DEFAULT_URL,
        show_default=True,
        help="The Aiki server.",
    )(fn)
    return fn


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _ago(ms: int | None) -> str:
    if not ms:
        return "-"
    return f"{duration(max(0, time.time() * 1000 - ms))} ago"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _short_json(value: Any, limit: int = 2000) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "\n... (use --json for all)"


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _show_error(error: dict[str, Any], title: str) -> None:
    where = f" (in task {error['task']})" if error.get("task") else ""
    click.echo(f"{title}{error.get('type')}: {error.get('message')}{where}")
    if error.get("traceback"):
        click.echo(_indent(str(error["traceback"]).rstrip(), "    "))


def _show_run(run: dict[str, Any]) -> None:
    created = run.get("created_at")

    def at(ms: int | None) -> str:
        if not ms:
            return "-"
        offset = f"  (+{duration(ms - created)})" if created and ms != created else ""
        return _when(ms) + offset

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
        ("created", _when(created)),
        ("started", at(run.get("started_at"))),
        ("ended", at(ended)),
        ("duration", took),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<14}{value}")
    click.echo("payload:")
    click.echo(_indent(_short_json(run.get("payload"))))
    if run.get("status") == "completed":
        click.echo("result:")
        click.echo(_indent(_short_json(run.get("result"))))
    error = run.get("error")
    if isinstance(error, dict):
        _show_error(error, "error:        ")
    for i, earlier in enumerate(run.get("errors") or []):
        if isinstance(earlier, dict):
            _show_error(earlier, f"attempt {earlier.get('attempt', i + 1)} failed: ")
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
        click.echo(_indent(_table(headers, rows)))
        for i, t in enumerate(tasks, 1):
            for n, task_error in enumerate(t.get("errors") or [], 1):
                if isinstance(task_error, dict):
                    attempt = task_error.get("attempt", n)
                    _show_error(task_error, f"task {i}. {t['name']} attempt {attempt} failed: ")
    events = timeline(run, tasks)
    if events:
        click.echo("timeline:")
        rows = [[f"+{duration(e['offset_ms'])}", e["text"]] for e in events]
        click.echo(_indent(_table(["AT", "EVENT"], rows)))


_SINCE_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def _parse_time(value: str | None, option: str) -> int | None:
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


# -- runs -----------------------------------------------------------------------------


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
@_api_options
def runs_list(
    status: str | None,
    workflow: str | None,
    version_: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    url: str,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    for name, value in (
        ("status", status),
        ("workflow", workflow),
        ("version", version_),
        ("created_after", _parse_time(since, "--since")),
        ("created_before", _parse_time(until, "--until")),
        ("cursor", cursor),
    ):
        if value is not None and value != "":
            params[name] = value
    data = _Api(url).get("/api/v1/runs", params=params)
    if as_json:
        _print_json(data)
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
        error = r.get("error") or {}
        rows.append(
            [
                r["id"],
                r.get("workflow", ""),
                r.get("version", ""),
                r.get("status", ""),
                _when(created),
                took if ended or not created else f"{took}+",
                str(r.get("attempts", "")),
                f"{error.get('type')}: {error.get('message')}"[:60] if error else "",
            ]
        )
    headers = ["ID", "WORKFLOW", "VERSION", "STATUS", "CREATED", "DURATION", "ATTEMPTS", "ERROR"]
    click.echo(_table(headers, rows))
    if data.get("next_cursor") is not None:
        click.echo(f"\nmore: aiki runs list --cursor {data['next_cursor']}")


@runs.command("show")
@click.argument("run_id")
@_api_options
def runs_show(run_id: str, url: str, as_json: bool) -> None:
    """Show one run: its tasks in order (durations, attempts, errors with tracebacks)
    and its timeline."""
    data = _Api(url).get(f"/api/v1/runs/{_quote(run_id)}")
    if as_json:
        _print_json(data)
    else:
        _show_run(data)


@runs.command("wait")
@click.argument("run_id")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up after this many seconds [wait forever].",
)
@_api_options
def runs_wait(run_id: str, timeout: float | None, url: str, as_json: bool) -> None:
    """Wait until a run ends and show it.

    Exit code 0 if it completed, 1 if it failed or was cancelled, or on timeout.
    """
    api = _Api(url)
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    while True:
        poll = min(25.0, max(0.0, deadline - time.monotonic()))
        try:
            data = api.get(
                f"/api/v1/runs/{_quote(run_id)}/wait",
                params={"timeout": f"{poll:.3f}"},
                timeout=poll + 10.0,
            )
        except KeyboardInterrupt:
            sys.exit(130)
        status = data.get("status")
        if status in TERMINAL or time.monotonic() >= deadline:
            break
    if as_json:
        _print_json(data)
    elif status in TERMINAL:
        _show_run(data)
    if status not in TERMINAL:
        raise CliError(f"run {run_id} did not end within {timeout:g} s (status: {status})")
    if status == "failed":
        error = data.get("error") or {}
        raise CliError(f"run {run_id} failed: {error.get('type')}: {error.get('message')}")
    if status == "cancelled":
        raise CliError(f"run {run_id} was cancelled")


def _control(run_id: str, action: str, body: dict[str, Any], url: str, as_json: bool) -> None:
    try:
        data = _Api(url).post(f"/api/v1/runs/{_quote(run_id)}/{action}", body)
    except CliError as exc:
        if exc.message.startswith(("no run with id", "cannot reach")):
            raise
        raise CliError(f"cannot {action} run {run_id}: {exc.message}") from None
    if as_json:
        _print_json(data)
        return
    run = data.get("run") or {}
    result, status = data.get("result"), run.get("status", "?")
    if action == "cancel" and result in TERMINAL and result != "cancelled":
        click.echo(f"run {run_id} had already ended: {result}")
    else:
        click.echo(f"run {run_id}: {result} (status: {status})")


@runs.command("cancel")
@click.argument("run_id")
@click.option("--reason", default=None, help="Why (recorded as the run's error message).")
@_api_options
def runs_cancel(run_id: str, reason: str | None, url: str, as_json: bool) -> None:
    """Cancel a run (and its child runs). A run that already ended is left as it is."""
    _control(run_id, "cancel", {"reason": reason} if reason else {}, url, as_json)


@runs.command("pause")
@click.argument("run_id")
@_api_options
def runs_pause(run_id: str, url: str, as_json: bool) -> None:
    """Pause a run: its execution stops at once and it is not run again until resumed."""
    _control(run_id, "pause", {}, url, as_json)


@runs.command("resume")
@click.argument("run_id")
@_api_options
def runs_resume(run_id: str, url: str, as_json: bool) -> None:
    """Resume a paused run (it is queued again)."""
    _control(run_id, "resume", {}, url, as_json)


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


# -- schedules ------------------------------------------------------------------------


@cli.group()
def schedules() -> None:
    """List, create and delete schedules (through a server's API)."""


@schedules.command("list")
@_api_options
def schedules_list(url: str, as_json: bool) -> None:
    """List schedules, by id."""
    api = _Api(url)
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {}
    while True:
        data = api.get("/api/v1/schedules", params=params)
        found.extend(data.get("schedules", []))
        if not data.get("next_cursor"):
            break
        params["cursor"] = data["next_cursor"]
    if as_json:
        _print_json({"schedules": found})
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
            _when(s.get("next_at")),
        ]
        for s in found
    ]
    click.echo(_table(["ID", "WORKFLOW", "WHEN", "OVERLAP", "NEXT"], rows))


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
@_api_options
def schedules_create(
    schedule_id: str,
    workflow: str,
    version_: str,
    cron: str | None,
    every: float | None,
    payload: str,
    overlap: str,
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
    body["cron" if cron is not None else "every"] = cron if cron is not None else every
    data = _Api(url).post("/api/v1/schedules", body)
    if as_json:
        _print_json(data)
    else:
        click.echo(f"schedule {schedule_id} saved; next run {_when(data.get('next_at'))}")


@schedules.command("delete")
@click.argument("schedule_id")
@_api_options
def schedules_delete(schedule_id: str, url: str, as_json: bool) -> None:
    """Delete a schedule (runs it started are not affected)."""
    data = _Api(url).delete(f"/api/v1/schedules/{_quote(schedule_id)}")
    if as_json:
        _print_json(data)
    else:
        click.echo(f"schedule {schedule_id} deleted")


# -- workers --------------------------------------------------------------------------


@cli.group()
def workers() -> None:
    """Look at the workers (from their heartbeats, through a server's API)."""


@workers.command("list")
@_api_options
def workers_list(url: str, as_json: bool) -> None:
    """List workers: workflows, runs in flight, last heartbeat (stale after 15 s)."""
    data = _Api(url).get("/api/v1/workers")
    if as_json:
        _print_json(data)
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
            _ago(w.get("last_heartbeat_ms")),
            str(w.get("host") or "-"),
            str(w.get("pid") or "-"),
        ]
        for w in found
    ]
    headers = ["ID", "STATE", "WORKFLOWS", "IN FLIGHT", "HEARTBEAT", "HOST", "PID"]
    click.echo(_table(headers, rows))


def main(argv: Sequence[str] | None = None) -> None:
    """The ``aiki`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="aiki")


if __name__ == "__main__":
    main()
