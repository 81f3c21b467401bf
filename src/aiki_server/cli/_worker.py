"""``aiki worker MODULE[:ATTR]``: run a worker for your workflows until a signal.

With ``--processes 1`` the worker runs in this process. With more (the default is one per
CPU), this process becomes a supervisor of that many ``--processes 1`` children
(:mod:`._supervisor`), after checking here that the configuration works
(:func:`check_config`): a mistake ends the command before any child starts.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import click
import trio

import aiki
from aiki.engine import DEFAULT_MAX_RESULT_BYTES

from .._settings import codecs_from_env, codecs_from_keys_file
from ._base import (
    CliError,
    cli,
    durability_option,
    log,
    log_options,
    run,
    setup_cli_logging,
)
from ._loader import load_workflows
from ._signals import Trigger, serve_until_signal
from ._supervisor import Supervisor, SupervisorLink, child_ids, cpu_count


class ProcessCount(click.ParamType):
    """A whole number of processes, at least 1 (``0``, ``-1``, ``x`` are refused, by name)."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"must be a whole number of processes (1 or more), got {value!r}")
        if number < 1:
            self.fail(f"must be 1 or more (worker processes to run), got {number}")
        return number


# Beyond --shutdown-grace for running executions, time to requeue what is left and
# close the connections before a stuck stop is cut short.
SHUTDOWN_MARGIN = 10.0


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
@click.option(
    "--fire-timers/--no-fire-timers",
    default=True,
    show_default=True,
    help="Also fire due timers (sleeps, retry delays, event timeouts, delayed starts), "
    "so runs wake without a server.",
)
@durability_option
@click.option(
    "--processes",
    type=ProcessCount(),
    default=None,
    help="Worker processes to run, under one supervisor: one per CPU by default. Each "
    "gets the id <ID>-<i>; 1 runs the worker in this process, with no supervisor.",
)
@click.option(
    "--supervisor-fd",
    type=click.IntRange(min=0),
    default=None,
    hidden=True,  # set by the supervisor for its children (see _supervisor.py)
)
@click.option(
    "--max-result-bytes",
    envvar="AIKI_MAX_RESULT_BYTES",
    show_envvar=True,
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RESULT_BYTES,
    show_default=True,
    help="Largest task or workflow result recorded (compact JSON bytes); a larger one "
    "fails its attempt.",
)
@click.option(
    "--codec-keys-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Encryption keys (one '<key id>:<base64 key>' per line, the current first) for "
    "the client's codec chain: payloads, results, task records and events are stored "
    "encrypted, and the worker decrypts what it reads [env AIKI_CODEC_KEYS_FILE, or "
    "AIKI_CODEC_KEYS].",
)
@click.option(
    "--encode-errors/--no-encode-errors",
    envvar="AIKI_ENCODE_ERRORS",
    show_envvar=True,
    default=False,
    show_default=True,
    help="With codec keys: also encrypt the error messages and tracebacks it records.",
)
@log_options
def worker(
    target: str,
    redis_url: str,
    prefix: str,
    worker_id: str | None,
    concurrency: int,
    claim_min_idle_time: float,
    block_time: float,
    shutdown_grace: float,
    fire_timers: bool,
    durability: str | None,
    processes: int | None,
    supervisor_fd: int | None,
    max_result_bytes: int,
    codec_keys_file: str | None,
    encode_errors: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run a worker for the workflows in MODULE[:ATTR].

    ATTR names a workflow, a workflow version, or a list of them (for example
    `aiki worker myapp.flows:order_processing`); without it, every workflow defined in
    MODULE. The current directory is importable. SIGINT/SIGTERM stop the worker
    gracefully (running executions get --shutdown-grace seconds); a second one at once.

    With --processes N (default: one per CPU) N worker processes run under this one,
    which restarts a crashed one and stops them all on SIGINT/SIGTERM.
    """
    setup_cli_logging(log_level, log_format)
    items = load_workflows(target)
    try:
        subscriber = aiki.RedisStreams(
            claim_min_idle_time=claim_min_idle_time, block_time=block_time
        )
    except aiki.ConfigurationError as exc:
        raise CliError(str(exc)) from None
    if processes is None:
        processes = 1 if supervisor_fd is not None else cpu_count()
    if supervisor_fd is not None and processes != 1:
        raise CliError("--supervisor-fd is for supervised children: use it with --processes 1")

    codecs = _worker_codecs(codec_keys_file, encode_errors)

    def open_client() -> Any:
        return aiki.client(
            redis_url=redis_url,
            prefix=prefix,
            durability=durability or "none",
            codecs=list(codecs),
            encode_errors=encode_errors,
        )

    def make_worker(client: aiki.Client, id: str | None) -> aiki.Worker:
        w = aiki.worker(
            client,
            id=id,
            max_concurrent_workflow_runs=concurrency,
            subscriber=subscriber,
            shutdown_grace=shutdown_grace,
            fire_timers=fire_timers,
            max_result_bytes=max_result_bytes,
        )
        for item in items:
            w.workflow_registry.add(item)
        return w

    if processes > 1:
        base = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        ids = child_ids(base, processes)
        argv = [sys.executable, "-m", "aiki_server.cli", "worker", target, "--processes", "1"]
        argv += ["--prefix", prefix, "--concurrency", str(concurrency)]
        argv += ["--claim-min-idle-time", repr(claim_min_idle_time)]
        argv += ["--block-time", repr(block_time), "--shutdown-grace", repr(shutdown_grace)]
        argv += ["--fire-timers" if fire_timers else "--no-fire-timers"]
        argv += ["--max-result-bytes", str(max_result_bytes)]
        argv += ["--log-level", log_level, "--log-format", log_format]
        argv += ["--durability", durability] if durability else []
        argv += ["--codec-keys-file", codec_keys_file] if codec_keys_file else []
        argv += ["--encode-errors"] if encode_errors else []
        # The URL goes in the environment: a command line is visible to every user.
        env = dict(os.environ, AIKI_REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
        supervisor = Supervisor(argv, ids, env=env, json_logs=log_format.lower() == "json")

        def supervisor_banner(_: Any) -> None:
            listed = ", ".join(f"{c.name} (id {c.worker_id})" for c in supervisor.children)
            click.echo(
                f"Aiki worker supervisor (pid {os.getpid()}) running {processes} worker "
                f"processes: {listed} (Ctrl-C to stop)"
            )

        async def supervise() -> None:
            await check_config(open_client, make_worker, ids)
            await serve_until_signal(
                supervisor.serve,
                stopping=supervisor.stopping,
                started=supervisor_banner,
                grace=shutdown_grace + SHUTDOWN_MARGIN,
            )

        run(supervise)
        return

    workers: list[aiki.Worker] = []

    async def serve(shutdown_trigger: Trigger, *, task_status: Any) -> None:
        async with open_client() as client:
            w = make_worker(client, worker_id)
            workers.append(w)
            link = SupervisorLink(supervisor_fd) if supervisor_fd is not None else None
            async with trio.open_nursery() as nursery:

                async def stop_when_triggered() -> None:
                    await shutdown_trigger()
                    await w.stop()

                async def stop_when_supervisor_gone() -> None:
                    assert link is not None
                    await link.wait_closed()
                    # A log record, not a notice: the supervisor may have died, and with it
                    # the pipe our stderr goes to (a log record survives that, a write not).
                    log.warning("the supervisor is gone: stopping worker %s", w.id)
                    await w.stop()

                async def run_worker(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                    await w.run(task_status=task_status)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(stop_when_triggered)
                await nursery.start(run_worker)
                if link is not None:
                    nursery.start_soon(stop_when_supervisor_gone)
                    await link.ready()
                task_status.started()

    def stopping() -> str:
        return f"stopping worker {workers[0].id if workers else worker_id or ''}".rstrip()

    def banner(_: Any) -> None:
        w = workers[0]
        names = ", ".join(f"{wv.name}@{wv.version}" for wv in w.workflow_registry)
        click.echo(f"Aiki worker {w.id} running {names} (Ctrl-C to stop)")

    run(
        partial(
            serve_until_signal,
            serve,
            stopping=stopping,
            started=banner,
            grace=shutdown_grace + SHUTDOWN_MARGIN,
        )
    )


async def check_config(
    open_client: Callable[[], Any],
    make_worker: Callable[[aiki.Client, str], aiki.Worker],
    ids: list[str],
) -> None:
    """What a supervisor checks before it starts any child: the client opens (Redis is
    reachable, ``--durability fsync`` has WAITAOF) and each child's worker can be made
    (its id is valid). A mistake here is one line and exit code 1, as for one process;
    found by the children instead, it would be a restart loop."""
    async with open_client() as client:
        for worker_id in ids:
            make_worker(client, worker_id)


def _worker_codecs(path: str | None, encode_errors: bool) -> tuple[Any, ...]:
    """The codecs --codec-keys-file (else AIKI_CODEC_KEYS_FILE / AIKI_CODEC_KEYS) give;
    errors name the option or variable, never a key."""
    try:
        codecs = (
            codecs_from_keys_file(path, "--codec-keys-file")
            if path
            else codecs_from_env(os.environ)
        )
    except aiki.ConfigurationError as exc:
        raise CliError(str(exc)) from None
    if encode_errors and not codecs:
        raise CliError("--encode-errors needs codec keys: --codec-keys-file or AIKI_CODEC_KEYS")
    return codecs
