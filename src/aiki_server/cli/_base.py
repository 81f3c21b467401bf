"""What every command shares: the ``aiki`` group, its error type, the trio runner that
turns errors a user can act on into one line, logging set-up and common options."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click
import trio

import aiki

from .._logging import LOG_FORMATS, LOG_LEVELS, setup_logging
from .._settings import Settings

DEFAULT_URL = "http://127.0.0.1:9090"

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


def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``trio.run``, with the errors a user can act on turned into one line."""
    from aiki.embedded import EmbeddedRedisError

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


def setup_cli_logging(level: str, fmt: str = "text") -> None:
    global _log_format
    _log_format = fmt.lower()
    setup_logging(level.lower(), _log_format)


def notice(message: str) -> None:
    """A message for the operator on stderr: a log record when logs are JSON lines (so
    that stderr stays machine-readable), else a plain line."""
    if _log_format == "json":
        log.warning(message)
    else:
        click.echo(message, err=True)


def settings_from_env(**overrides: Any) -> Settings:
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
    aiki worker MODULE:ATTR       run workers for your workflows (one per CPU)
    aiki runs list|show|wait      look at runs through a server
    aiki runs start|event|wakeup  start a run, send it an event, end a sleep
    aiki runs cancel|pause|resume control a run
    aiki runs retry               re-run failed runs (one, or a version's)
    aiki dead-letters list|show|discard|requeue
    aiki schedules list|create|delete|pause|resume|trigger-now
    aiki workers list             workers and their heartbeats
    """


def durability_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--durability none|fsync`` (env ``AIKI_DURABILITY``), for the server, ``aiki dev``
    and the worker."""
    return click.option(
        "--durability",
        type=click.Choice(["none", "fsync"]),
        envvar="AIKI_DURABILITY",
        show_envvar=True,
        default=None,
        help="fsync: acknowledge starts, task results and run ends only once Redis has "
        "fsynced them to its AOF (WAITAOF; Redis >= 7.2 or Valkey >= 8, appendonly yes) "
        "[none].",
    )(fn)


def log_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--log-format`` and ``--log-level``, for the commands that keep running."""
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


def api_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--url`` and ``--json``, for the commands that talk to a server."""
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
