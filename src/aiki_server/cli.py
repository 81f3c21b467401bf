"""The ``aiki`` command line: run a server, a dev stack or a worker; look at runs.

``aiki server`` and ``aiki dev`` serve the HTTP API; ``aiki worker MODULE:ATTR`` runs a
worker for your workflows; ``aiki runs list|show|wait`` talk to a server over HTTP.
This is the only place in Aiki that installs signal handlers: SIGINT/SIGTERM stop a
server or worker gracefully, a second signal stops it at once. Errors are one line on
stderr with exit code 1.
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

from ._serve import ServerHandle, serve_server
from ._settings import Settings

DEFAULT_URL = "http://127.0.0.1:9090"
LOG_LEVELS = ("debug", "info", "warning", "error")
TERMINAL = ("completed", "failed", "cancelled")

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


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
    aiki server --redis-url URL   the HTTP API server
    aiki worker MODULE:ATTR       run a worker for your workflows
    aiki runs list|show|wait      look at runs through a server
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
                        click.echo(
                            f"{signal.Signals(signum).name}: stopping gracefully "
                            "(again to stop at once)",
                            err=True,
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
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        default="info",
        show_default=True,
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
) -> None:
    """Run the HTTP API server against a Redis.

    Stops gracefully on SIGINT/SIGTERM. Other settings come from AIKI_* variables
    (AIKI_MAX_PAYLOAD_BYTES, AIKI_MAX_WAIT).
    """
    settings = _settings(redis_url=redis_url, host=host, port=port, prefix=prefix)
    if settings.redis_url is None:
        raise CliError(
            "no Redis URL: pass --redis-url or set AIKI_REDIS_URL "
            "(or run `aiki dev` for a server with an embedded Redis)"
        )
    _setup_logging(log_level)

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
) -> None:
    """Run the server with an embedded Redis (AOF persistence in --data-dir).

    For development: state survives restarts in the data directory. Stops gracefully
    (server first, then Redis) on SIGINT/SIGTERM.
    """
    _setup_logging(log_level)
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
                    f"  API:      {handle.base_url}/api/v1\n"
                    f"  health:   {handle.base_url}/healthz\n"
                    f"  metrics:  {handle.base_url}/metrics\n"
                    f"  Redis:    {redis.url}  (AOF in {data_path})\n"
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
) -> None:
    """Run a worker for the workflows in MODULE[:ATTR].

    ATTR names a workflow, a workflow version, or a list of them (for example
    `aiki worker myapp.flows:order_processing`); without it, every workflow defined in
    MODULE. The current directory is importable. SIGINT/SIGTERM stop the worker
    gracefully (running executions get --shutdown-grace seconds); a second one at once.
    """
    _setup_logging(log_level)
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
                                click.echo(
                                    f"{signal.Signals(signum).name}: stopping worker {w.id} "
                                    "(again to stop at once)",
                                    err=True,
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


# -- runs (over HTTP) -----------------------------------------------------------------


class _Api:
    """A small synchronous client of the server's HTTP API for the CLI."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    def get(self, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.get(path, **kwargs)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise CliError(f"cannot reach the Aiki server at {self.url}: {reason}") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            if response.status_code == 404 and error.get("type") == "run_not_found":
                raise CliError(error.get("message") or "no such run")
            message = error.get("message") or response.text[:200] or response.reason_phrase
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


def _show_run(run: dict[str, Any]) -> None:
    fields = [
        ("id", run.get("id")),
        ("workflow", f"{run.get('workflow')} @ {run.get('version')}"),
        ("status", run.get("status")),
        ("attempts", run.get("attempts")),
        ("worker", run.get("worker") or "-"),
        ("reference id", run.get("reference_id") or "-"),
        ("created", _when(run.get("created_at"))),
        ("started", _when(run.get("started_at"))),
        ("ended", _when(run.get("ended_at"))),
    ]
    for name, value in fields:
        click.echo(f"{name + ':':<14}{value}")
    click.echo("payload:")
    click.echo(_indent(_short_json(run.get("payload"))))
    if run.get("status") == "completed":
        click.echo("result:")
        click.echo(_indent(_short_json(run.get("result"))))
    error = run.get("error")
    if error:
        click.echo(f"error:        {error.get('type')}: {error.get('message')}")
    tasks = run.get("tasks") or []
    if tasks:
        click.echo(f"tasks ({len(tasks)}):")
        rows = [
            [
                str(t.get("name") or t.get("task") or t.get("address")),
                str(t.get("status", "-")),
                str(t.get("attempts", "-")),
                str(t.get("address")),
            ]
            for t in tasks
        ]
        click.echo(_indent(_table(["TASK", "STATUS", "ATTEMPTS", "ADDRESS"], rows)))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@cli.group()
def runs() -> None:
    """List, show and wait for workflow runs (through a server's HTTP API)."""


@runs.command("list")
@click.option("--status", default=None, help="Only runs with this status.")
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Runs per page."
)
@click.option("--cursor", default=None, help="Show the page after this cursor (from a list).")
@_api_options
def runs_list(
    status: str | None,
    workflow: str | None,
    limit: int,
    cursor: str | None,
    url: str,
    as_json: bool,
) -> None:
    """List runs, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if workflow:
        params["workflow"] = workflow
    if cursor:
        params["cursor"] = cursor
    data = _Api(url).get("/api/v1/runs", params=params)
    if as_json:
        _print_json(data)
        return
    runs_ = data.get("runs", [])
    if not runs_:
        click.echo("no runs")
        return
    rows = [
        [
            r["id"],
            r.get("workflow", ""),
            r.get("version", ""),
            r.get("status", ""),
            _when(r.get("created_at")),
            _when(r.get("ended_at")),
        ]
        for r in runs_
    ]
    click.echo(_table(["ID", "WORKFLOW", "VERSION", "STATUS", "CREATED", "ENDED"], rows))
    if data.get("next_cursor") is not None:
        click.echo(f"\nmore: aiki runs list --cursor {data['next_cursor']}")


@runs.command("show")
@click.argument("run_id")
@_api_options
def runs_show(run_id: str, url: str, as_json: bool) -> None:
    """Show one run, with its tasks."""
    data = _Api(url).get(f"/api/v1/runs/{run_id}")
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
                f"/api/v1/runs/{run_id}/wait",
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


def main(argv: Sequence[str] | None = None) -> None:
    """The ``aiki`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="aiki")


if __name__ == "__main__":
    main()
