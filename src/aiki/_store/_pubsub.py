"""Pub/sub subscriptions (run-ended notices, control orders), each on a connection of
its own: a subscribed connection can do nothing else."""

from __future__ import annotations

from types import TracebackType

import anyio

from .._redis import Redis, connect


class Subscription:
    """Messages of one channel, on a connection of its own. ``receive()`` waits for the
    next message's data; ``aclose()`` (or leaving ``async with``) closes it."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self.channel = channel

    async def receive(self) -> bytes:
        """The next message's data. A lost connection raises ConnectionFailed (the
        connection reconnects and resubscribes by itself; messages published meanwhile
        are lost, as pub/sub's are)."""
        _channel, data = await self._redis.next_message()
        return data

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._redis.aclose()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_subscription(
    url: str,
    channel: str,
    *,
    name: str,
    implementation: str | None = None,
    request_timeout: float = 5.0,
) -> Subscription:
    """Connect to ``url`` and subscribe to ``channel`` (closing the connection again if
    subscribing fails)."""
    redis = await connect(
        url, name=name, request_timeout=request_timeout, implementation=implementation
    )
    try:
        await redis.subscribe(channel)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await redis.aclose()
        raise
    return Subscription(redis, channel)
