"""The redis-py implementation of Aiki's Redis interface, for redis-py based set-ups.

redis-py's asyncio client cannot run on trio directly; under trio each call goes through
trio-asyncio (``aio_as_trio`` on a trio-asyncio loop that the client, worker or server
opened). Under asyncio (a FastAPI app using the client) it is awaited as it is. It costs
more CPU per call than GLIDE from trio (see docs/asyncio.md), which is why it is not the
default: choose it with ``redis_client="redis-py"`` or ``AIKI_REDIS_CLIENT=redis-py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sniffio

from .._errors import ConfigurationError, ConnectionFailed
from ._interface import Arg, Lua, RedisAddress, parse_refusal

T = TypeVar("T")


def _map_error(exc: BaseException) -> BaseException:
    import redis.exceptions as rex

    if isinstance(exc, rex.ResponseError):
        return parse_refusal(str(exc)) or exc
    if isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError):
        return ConnectionFailed(f"Redis: {exc}")
    return exc


class RedisPyRedis:
    """One redis-py connection pool (single connection for blocking / pub/sub use)."""

    cluster = False  # Redis Cluster is served by the glide implementation only

    def __init__(self, client: Any, address: RedisAddress, *, blocking: bool, loop: Any) -> None:
        self._client = client
        self.address = address
        self.blocking = blocking
        self._loop = loop  # the trio-asyncio loop, or None under asyncio
        self._pubsub: Any = None

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        try:
            if self._loop is not None:
                import trio_asyncio

                return await trio_asyncio.aio_as_trio(fn, loop=self._loop)(*args)
            return await fn(*args)
        except Exception as exc:
            raise _map_error(exc) from exc

    async def command(self, *args: Arg) -> Any:
        return await self._call(self._client.execute_command, *args)

    async def load_script(self, lua: Lua) -> None:
        await self.command("SCRIPT", "LOAD", lua.source)

    async def script(self, lua: Lua, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        async def run() -> Any:
            import redis.exceptions as rex

            argv = [lua.sha, len(keys), *keys, *(str(a) for a in args)]
            try:
                return await self._client.execute_command("EVALSHA", *argv)
            except rex.NoScriptError:
                await self._client.execute_command("SCRIPT", "LOAD", lua.source)
                return await self._client.execute_command("EVALSHA", *argv)

        return await self._call(run)

    async def batch(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        if not commands:
            return []

        async def run() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                for cmd in commands:
                    pipe.execute_command(*cmd)
                return list(await pipe.execute(raise_on_error=False))

        replies = await self._call(run)
        return [_map_error(r) if isinstance(r, Exception) else r for r in replies]

    async def subscribe(self, *channels: str) -> None:
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await self._call(self._pubsub.subscribe, *channels)

    async def next_message(self) -> tuple[str, bytes]:
        async def run() -> tuple[str, bytes]:
            while True:
                msg = await self._pubsub.get_message(timeout=None)
                if msg is not None and msg.get("type") == "message":
                    channel = msg["channel"]
                    return (
                        channel.decode() if isinstance(channel, bytes) else channel,
                        msg["data"]
                        if isinstance(msg["data"], bytes)
                        else str(msg["data"]).encode(),
                    )

        return await self._call(run)

    async def aclose(self) -> None:
        async def run() -> None:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
            with contextlib.suppress(Exception):
                await self._client.aclose()

        with contextlib.suppress(Exception):
            await self._call(run)


async def connect(
    url: str, *, name: str = "aiki", blocking: bool = False, request_timeout: float = 5.0
) -> RedisPyRedis:
    try:
        import redis.asyncio as aredis
    except ImportError:
        raise ConfigurationError(
            "redis_client='redis-py' needs the redis package: pip install 'aiki[redis-py]'"
        ) from None
    address = RedisAddress.from_url(url)
    if address.cluster:
        raise ConfigurationError(
            "redis_client='redis-py' serves a single Redis server; use the default "
            "glide client for Redis Cluster"
        )
    url = _without_cluster_option(url)
    loop = None
    if sniffio.current_async_library() == "trio":
        import trio_asyncio

        loop = trio_asyncio.current_loop.get()
        if loop is None:
            raise ConfigurationError(
                "redis-py under trio needs a trio-asyncio loop: open the client, worker or "
                "server with redis_client='redis-py' (they open one), or run inside "
                "`async with trio_asyncio.open_loop():`"
            )
    timeout = None if blocking else request_timeout

    async def make() -> Any:
        client = aredis.Redis.from_url(
            url,
            client_name=name,
            socket_timeout=timeout,
            socket_connect_timeout=5.0,
            single_connection_client=blocking,
            protocol=3,
        )
        # Raw replies, as GLIDE gives them (RESP3 maps as dicts): no per-command parsing.
        client.response_callbacks.clear()
        await client.ping()
        return client

    try:
        if loop is not None:
            import trio_asyncio

            client = await trio_asyncio.aio_as_trio(make, loop=loop)()
        else:
            client = await make()
    except Exception as exc:
        raise ConnectionFailed(
            f"cannot connect to Redis at {address.host}:{address.port}: {exc}"
        ) from None
    return RedisPyRedis(client, address, blocking=blocking, loop=loop)


def _without_cluster_option(url: str) -> str:
    """``url`` without Aiki's own ``cluster=`` query option (redis-py would reject it)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "cluster"]
    return urlunsplit(parts._replace(query=urlencode(query)))
