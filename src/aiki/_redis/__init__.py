"""The one place that talks to Redis. Nothing else in Aiki imports a Redis library.

Three implementations sit behind one small interface (``_interface.Redis``):

* ``native`` (default under trio): trio sockets and hiredis's C parser, for a single
  Redis server; a Redis Cluster URL or node is handed to GLIDE's cluster client.
* ``glide`` (default under asyncio): Valkey GLIDE's async client, native on trio and
  asyncio; the one for Redis Cluster.
* ``redis-py``: redis-py's asyncio client, through trio-asyncio under trio, for set-ups
  built on redis-py (Sentinel, custom pools).

Choose with ``redis_client=`` on the client (workers and the server follow their client
or settings) or the ``AIKI_REDIS_CLIENT`` environment variable.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from .._errors import ConfigurationError
from ._interface import Arg, GroupMissing, Lua, Redis, RedisAddress, ScriptRefused

IMPLEMENTATIONS = ("glide", "native", "redis-py")
ENV_REDIS_CLIENT = "AIKI_REDIS_CLIENT"

__all__ = [
    "ENV_REDIS_CLIENT",
    "IMPLEMENTATIONS",
    "Arg",
    "GroupMissing",
    "Lua",
    "Redis",
    "RedisAddress",
    "ScriptRefused",
    "connect",
    "default_implementation",
    "open_asyncio_bridge",
    "open_redis",
    "resolve_implementation",
]


def default_implementation() -> str:
    """``native`` in a trio program (cheapest per call, measured), ``glide`` elsewhere
    (asyncio, or no event loop yet)."""
    import sniffio

    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "glide"
    return "native" if library == "trio" else "glide"


def resolve_implementation(name: str | None = None) -> str:
    """The implementation to use: ``name``, else ``$AIKI_REDIS_CLIENT``, else the
    default for the running event loop (``default_implementation``)."""
    chosen = name or os.environ.get(ENV_REDIS_CLIENT) or default_implementation()
    if chosen not in IMPLEMENTATIONS:
        source = "redis_client" if name else ENV_REDIS_CLIENT
        raise ConfigurationError(
            f"{source} must be one of {', '.join(IMPLEMENTATIONS)}, got {chosen!r}"
        )
    return chosen


async def connect(
    url: str,
    *,
    name: str = "aiki",
    blocking: bool = False,
    request_timeout: float = 5.0,
    implementation: str | None = None,
) -> Redis:
    """Open one connection to the Redis at ``url``.

    ``blocking=True`` marks a connection reserved for blocking reads; its
    ``request_timeout`` must exceed the longest BLOCK issued on it.
    """
    chosen = resolve_implementation(implementation)
    if chosen == "native":
        from . import _native

        return await _native.connect(
            url, name=name, blocking=blocking, request_timeout=request_timeout
        )
    if chosen == "redis-py":
        from . import _redispy

        return await _redispy.connect(
            url, name=name, blocking=blocking, request_timeout=request_timeout
        )
    from . import _glide

    return await _glide.connect(url, name=name, blocking=blocking, request_timeout=request_timeout)


@contextlib.asynccontextmanager
async def open_asyncio_bridge(implementation: str, *, force: bool = False) -> AsyncIterator[None]:
    """Open a trio-asyncio loop if this trio program needs one and has none: for redis-py
    (``implementation == "redis-py"``) or asyncio task code (``force``). Under asyncio, or
    when a loop is already open, it does nothing."""
    import sniffio

    if (implementation == "redis-py" or force) and sniffio.current_async_library() == "trio":
        import trio_asyncio

        if trio_asyncio.current_loop.get() is None:
            async with trio_asyncio.open_loop():
                yield
            return
    yield


@contextlib.asynccontextmanager
async def open_redis(url: str, **kwargs: Any) -> AsyncIterator[Redis]:
    """``async with open_redis(url) as redis:`` — connect, and always close."""
    redis = await connect(url, **kwargs)
    try:
        yield redis
    finally:
        await redis.aclose()
