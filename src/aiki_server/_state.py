"""What one app holds while it serves: its Store, run-ended listener, daemons and metrics.

The app factory makes one :class:`AppState` per app; ``before_serving`` runs
:meth:`AppState.run` in the app's nursery (the Redis connection is opened there, not at
import or creation), and the routes reach it with :func:`current_state`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio
from prometheus_client import CollectorRegistry, Counter
from quart import Quart, current_app

from aiki import ConfigurationError
from aiki.engine import (
    Keys,
    RunEndedListener,
    Store,
    connect,
    open_asyncio_bridge,
    open_fsync_barrier,
    resolve_implementation,
    serve_retention,
    serve_schedules,
    serve_timers,
    watch_generation,
)

from ._decode import Decoder
from ._errors import ApiError
from ._metrics import RedisCollector
from ._settings import Settings

log = logging.getLogger("aiki_server")


class AppState:
    """What one app holds while serving: its Store, listener and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Envelopes of clients' codecs, decoded for the API and the dashboard when the
        # settings give the codecs (aiki_server._decode).
        self.decoder = Decoder(settings.codecs)
        self.store: Store | None = None
        self.listener: RunEndedListener | None = None
        self.redis_url: str | None = settings.redis_url
        self.startup_error: BaseException | None = None
        self._scope: trio.CancelScope | None = None
        self._closed = trio.Event()
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aiki_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.redis_resets = Counter(
            "aiki_redis_resets",
            "Times this server found Redis emptied (FLUSHALL, a restart without persistence, "
            "a failover to an empty replica) and wrote its settings back",
            registry=self.registry,
        )
        # Runs, tasks, queues and workers, read from Redis when /metrics is scraped.
        self.collector = RedisCollector()
        self.registry.register(self.collector)

    def shown(self, data: Any) -> Any:
        """An API answer (a run's JSON, a history) as shown: envelopes decoded with the
        server's codecs where it can (``codec_errors`` says where it could not)."""
        return self.decoder.tree(data)

    def require_store(self) -> Store:
        if self.store is None:
            raise ApiError(503, "unavailable", "the server is not connected to Redis yet")
        return self.store

    def require_listener(self) -> RunEndedListener:
        if self.listener is None:
            raise ApiError(503, "unavailable", "the server is not connected to Redis yet")
        return self.listener

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the Redis connection and the listener until cancelled."""
        settings = self.settings
        self._closed = trio.Event()  # an app may be served more than once
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with contextlib.AsyncExitStack() as stack:
                    url = settings.redis_url
                    if url is None:
                        raise ConfigurationError(
                            "the Aiki server needs a Redis URL: set AIKI_REDIS_URL or "
                            "Settings(redis_url=...) (serve_server and `aiki dev` can run an "
                            "embedded Redis instead)"
                        )
                    implementation = resolve_implementation(settings.redis_client)
                    await stack.enter_async_context(open_asyncio_bridge(implementation))
                    redis = await connect(url, name="aiki-server", implementation=implementation)
                    stack.push_async_callback(_shielded(redis.aclose))
                    keys = Keys(settings.prefix)
                    store = Store(redis, keys)
                    await store.check_persistence()  # a warning, once, if Redis keeps nothing
                    if settings.durability == "fsync":
                        barrier = await stack.enter_async_context(
                            open_fsync_barrier(url, keys.fsync_mark, implementation=implementation)
                        )
                        store = store.with_fsync(barrier)
                    listener = RunEndedListener(
                        url, store, name="aiki-server-notify", implementation=implementation
                    )
                    nursery = await stack.enter_async_context(trio.open_nursery())
                    await nursery.start(listener.serve)

                    async def on_reset() -> None:
                        # Workers register their versions, shards and groups again
                        # themselves; the retention is the server's to write back.
                        if settings.daemons:
                            await store.set_retention(settings.retention)
                        self.redis_resets.inc()

                    await nursery.start(watch_generation, store, on_reset)
                    if settings.daemons:
                        # Safe with several servers on one Redis: each timer and each
                        # schedule occurrence is fired by one atomic script, once.
                        await nursery.start(serve_timers, store)
                        await nursery.start(serve_schedules, store)
                        await nursery.start(serve_retention, store, settings.retention)
                    self.redis_url, self.store, self.listener = url, store, listener
                    log.info(
                        "aiki server connected to Redis (prefix %r, durability %s)",
                        settings.prefix,
                        settings.durability,
                    )
                    if self.decoder.keys_given:  # the codecs' reprs name key ids only
                        log.info("showing encoded data decoded with %r", settings.codecs)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self.store = self.listener = None
            self._closed.set()

    async def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._closed.wait()


def _shielded(fn: Any) -> Any:
    async def call() -> None:
        with trio.CancelScope(shield=True):
            await fn()

    return call


def app_state(app: Quart) -> AppState:
    """The :class:`AppState` of an app made by :func:`aiki_server.create_app`."""
    state: AppState = app.extensions["aiki"]
    return state


def current_state() -> AppState:
    """The :class:`AppState` of the app answering the current request."""
    return app_state(current_app)


def single_leaf(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
