"""How workers receive work. Redis Streams is the one strategy (and the default).

Only the options live here; the stream commands are the store's (``aiki._store``), which
is the one package that talks to Redis. ``Message`` and ``StreamReader`` are re-exported
for code that imported them from here.
"""

from .._store import Message, StreamReader
from ._redis_streams import RedisStreams

__all__ = ["Message", "RedisStreams", "StreamReader"]
