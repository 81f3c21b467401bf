"""How workers receive work. Redis Streams is the one strategy (and the default)."""

from ._redis_streams import Message, RedisStreams, StreamReader

__all__ = ["Message", "RedisStreams", "StreamReader"]
