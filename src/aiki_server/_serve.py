"""Serve the app with Hypercorn inside the caller's trio program.

``await nursery.start(serve_server, settings)`` returns a :class:`ServerHandle` once the
server is connected to Redis and its socket accepts connections. It stops when its scope
is cancelled (at once) or when ``shutdown_trigger`` returns (gracefully: no new
connections, in-flight requests get Hypercorn's grace period). The library installs no
signal handlers; the CLI does.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

from ._factory import create_app
from ._settings import Settings
from ._state import app_state

log = logging.getLogger("aiki_server")


@dataclass(frozen=True)
class ServerHandle:
    """A running server: where to reach it, and its app."""

    base_url: str
    host: str
    port: int
    app: QuartTrio

    @property
    def redis_url(self) -> str | None:
        """The Redis the server uses (the embedded one's URL when it started one)."""
        return app_state(self.app).redis_url


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _connect_host(host: str) -> str:
    """A host a client can connect to: wildcard binds are reached over loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return _bind_host(host)


def hypercorn_config(settings: Settings, *, access_log: bool = False) -> Config:
    config = Config()
    config.bind = [f"{_bind_host(settings.host)}:{settings.port}"]
    # Log through the standard logging tree; the embedding program decides handlers.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = logging.getLogger("hypercorn.access") if access_log else None
    config.graceful_timeout = 5.0
    return config


async def serve_server(
    settings: Settings,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    app: QuartTrio | None = None,
    access_log: bool = False,
) -> None:
    """Run the Aiki server until cancelled or until ``shutdown_trigger`` returns.

    ``task_status.started(ServerHandle)`` is called once the server is connected to Redis
    and listening (``settings.port == 0`` picks a free port: see ``handle.port``).
    ``app`` serves an app already made by :func:`create_app` instead of a new one.

    With ``settings.redis_url=None`` it first starts an embedded Redis child process with
    its AOF in ``settings.data_dir`` (a temporary directory if that is ``None`` too) and
    stops it after the server: for development, demos and tests, never production.
    """
    if settings.redis_url is None and app is None:
        from aiki.embedded import open_embedded_redis

        async with open_embedded_redis(data_dir=settings.data_dir) as redis:
            where = settings.data_dir or f"{redis.data_dir} (temporary: deleted on exit)"
            log.warning("no redis_url: embedded Redis at %s, AOF in %s", redis.url, where)
            await serve_server(
                replace(settings, redis_url=redis.url),
                task_status=task_status,
                shutdown_trigger=shutdown_trigger,
                access_log=access_log,
            )
        return
    app = app if app is not None else create_app(settings)
    state = app_state(app)
    config = hypercorn_config(settings, access_log=access_log)
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(serve, app, config, shutdown_trigger=shutdown_trigger, mode="asgi")
            )
            if state.startup_error is not None:
                # Hypercorn can report "listening" just before its failed lifespan
                # startup takes it down: never hand out a handle to a dead server.
                raise state.startup_error
            port = int(binds[0].rsplit(":", 1)[1])
            host = _connect_host(settings.host)
            handle = ServerHandle(
                base_url=f"http://{host}:{port}", host=settings.host, port=port, app=app
            )
            log.info("aiki server listening on %s", handle.base_url)
            task_status.started(handle)
    except BaseException as exc:
        # A failed start reaches us as Hypercorn's LifespanFailureError (in groups):
        # raise the real cause (e.g. ConnectionFailed: Redis unreachable) instead.
        cause = state.startup_error
        if cause is not None and not _is_cancellation(exc):
            raise cause from None
        raise


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled | KeyboardInterrupt)
