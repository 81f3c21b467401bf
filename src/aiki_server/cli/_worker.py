"""``aiki worker MODULE[:ATTR]``: run a worker for your workflows until a signal."""

from __future__ import annotations

from functools import partial
from typing import Any

import click
import trio

import aiki
from aiki.engine import DEFAULT_MAX_RESULT_BYTES

from ._base import CliError, cli, durability_option, log_options, run, setup_cli_logging
from ._loader import load_workflows
from ._signals import Trigger, serve_until_signal

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
    "--max-result-bytes",
    envvar="AIKI_MAX_RESULT_BYTES",
    show_envvar=True,
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RESULT_BYTES,
    show_default=True,
    help="Largest task or workflow result recorded (compact JSON bytes); a larger one "
    "fails its attempt.",
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
    max_result_bytes: int,
    log_level: str,
    log_format: str,
) -> None:
    """Run a worker for the workflows in MODULE[:ATTR].

    ATTR names a workflow, a workflow version, or a list of them (for example
    `aiki worker myapp.flows:order_processing`); without it, every workflow defined in
    MODULE. The current directory is importable. SIGINT/SIGTERM stop the worker
    gracefully (running executions get --shutdown-grace seconds); a second one at once.
    """
    setup_cli_logging(log_level, log_format)
    items = load_workflows(target)
    try:
        subscriber = aiki.RedisStreams(
            claim_min_idle_time=claim_min_idle_time, block_time=block_time
        )
    except aiki.ConfigurationError as exc:
        raise CliError(str(exc)) from None

    workers: list[aiki.Worker] = []

    async def serve(shutdown_trigger: Trigger, *, task_status: Any) -> None:
        async with aiki.client(
            redis_url=redis_url, prefix=prefix, durability=durability or "none"
        ) as client:
            w = aiki.worker(
                client,
                id=worker_id,
                max_concurrent_workflow_runs=concurrency,
                subscriber=subscriber,
                shutdown_grace=shutdown_grace,
                fire_timers=fire_timers,
                max_result_bytes=max_result_bytes,
            )
            workers.append(w)
            for item in items:
                w.workflow_registry.add(item)
            async with trio.open_nursery() as nursery:

                async def stop_when_triggered() -> None:
                    await shutdown_trigger()
                    await w.stop()

                nursery.start_soon(stop_when_triggered)
                await w.run(task_status=task_status)
                nursery.cancel_scope.cancel()

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
