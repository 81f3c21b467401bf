"""``aiki server`` and ``aiki dev``: the HTTP API and the dashboard, until a signal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import trio

import aiki

from .._serve import ServerHandle, serve_server
from .._settings import Settings, codecs_from_keys_file
from ._base import (
    CliError,
    cli,
    durability_option,
    log_options,
    run,
    settings_from_env,
    setup_cli_logging,
)
from ._signals import Trigger, serve_until_signal

_ALLOWED_ORIGIN_HELP = (
    "A web origin (https://ops.example.com) besides the server's own whose pages may "
    "send POST/DELETE requests; repeat for more [env AIKI_ALLOWED_ORIGINS, comma-separated]."
)


_CODEC_KEYS_FILE_HELP = (
    "A file of encryption keys (one '<key id>:<base64 key>' per line, the current key "
    "first) to show data that clients encrypted (aiki.codecs.Encryption) decrypted in the "
    "API, the CLI and the dashboard [env AIKI_CODEC_KEYS_FILE, or AIKI_CODEC_KEYS]."
)


def _codecs(path: str | None) -> tuple[Any, ...] | None:
    """The --codec-keys-file codecs, or None (then the environment applies)."""
    if not path:
        return None
    try:
        return codecs_from_keys_file(path, "--codec-keys-file")
    except aiki.ConfigurationError as exc:
        raise CliError(str(exc)) from None


def _origins(given: tuple[str, ...]) -> tuple[str, ...] | None:
    """The --allowed-origin values, or None (then AIKI_ALLOWED_ORIGINS applies)."""
    return tuple(given) if given else None


# How long a graceful stop may take before it is cut short: Hypercorn's grace for
# in-flight requests (5 s), then time for the app to close its daemons and connections.
SHUTDOWN_GRACE = 15.0


async def serve_http(
    settings: Settings, access_log: bool, banner: Callable[[ServerHandle], None]
) -> None:
    """Serve until SIGINT/SIGTERM (graceful); a second signal stops at once."""

    async def serve(shutdown_trigger: Trigger, *, task_status: Any) -> None:
        async with trio.open_nursery() as nursery:
            try:
                handle = await nursery.start(
                    lambda task_status: serve_server(
                        settings,
                        task_status=task_status,
                        shutdown_trigger=shutdown_trigger,
                        access_log=access_log,
                    )
                )
            except OSError as exc:
                raise CliError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
            task_status.started(handle)

    await serve_until_signal(
        serve, stopping="stopping gracefully", started=banner, grace=SHUTDOWN_GRACE
    )


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
@click.option("--allowed-origin", "allowed_origins", multiple=True, help=_ALLOWED_ORIGIN_HELP)
@click.option("--codec-keys-file", type=click.Path(dir_okay=False), help=_CODEC_KEYS_FILE_HELP)
@durability_option
@log_options
def server(
    redis_url: str | None,
    host: str | None,
    port: int | None,
    prefix: str | None,
    access_log: bool,
    allowed_origins: tuple[str, ...],
    codec_keys_file: str | None,
    durability: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the HTTP API server (and the dashboard, at /) against a Redis.

    Stops gracefully on SIGINT/SIGTERM. Other settings come from AIKI_* variables
    (AIKI_MAX_PAYLOAD_BYTES, AIKI_MAX_WAIT).
    """
    settings = settings_from_env(
        redis_url=redis_url,
        host=host,
        port=port,
        prefix=prefix,
        allowed_origins=_origins(allowed_origins),
        durability=durability,
        codecs=_codecs(codec_keys_file),
    )
    if settings.redis_url is None:
        raise CliError(
            "no Redis URL: pass --redis-url or set AIKI_REDIS_URL "
            "(or run `aiki dev` for a server with an embedded Redis)"
        )
    setup_cli_logging(log_level, log_format)

    def banner(handle: ServerHandle) -> None:
        click.echo(f"Aiki server on {handle.base_url} (Ctrl-C to stop)")

    run(serve_http, settings, access_log, banner)


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
@click.option("--allowed-origin", "allowed_origins", multiple=True, help=_ALLOWED_ORIGIN_HELP)
@click.option("--codec-keys-file", type=click.Path(dir_okay=False), help=_CODEC_KEYS_FILE_HELP)
@durability_option
@log_options
def dev(
    data_dir: str,
    host: str | None,
    port: int | None,
    redis_port: int | None,
    access_log: bool,
    allowed_origins: tuple[str, ...],
    codec_keys_file: str | None,
    durability: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the server with an embedded Redis (AOF persistence in --data-dir).

    For development: state survives restarts in the data directory. Stops gracefully
    (server first, then Redis) on SIGINT/SIGTERM.
    """
    setup_cli_logging(log_level, log_format)
    data_path = str(Path(data_dir).expanduser().resolve())
    base = settings_from_env(
        host=host,
        port=port,
        data_dir=data_path,
        allowed_origins=_origins(allowed_origins),
        durability=durability,
        codecs=_codecs(codec_keys_file),
    )

    async def serve_dev() -> None:
        from aiki.embedded import find_redis_server, open_embedded_redis

        # With fsync, a server binary that has WAITAOF (the bundled Valkey at worst).
        binary = find_redis_server(waitaof=base.durability == "fsync")
        async with open_embedded_redis(
            data_dir=data_path, port=redis_port or None, binary=binary
        ) as redis:
            settings = settings_from_env(
                redis_url=redis.url,
                host=base.host,
                port=base.port,
                data_dir=data_path,
                allowed_origins=base.allowed_origins,
                durability=base.durability,
                codecs=base.codecs,
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

            await serve_http(settings, access_log, banner)

    run(serve_dev)
