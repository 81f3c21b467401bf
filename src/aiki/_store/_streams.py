"""The stream side of a worker: consumer-group reads, heartbeats and claims.

(The user-facing options are ``aiki.RedisStreams``, in ``aiki.subscribers``.)

* Reads use ``XREADGROUP ... COUNT n BLOCK t`` on a connection of their own (GLIDE
  multiplexes one connection, and a BLOCK would stall everything queued behind it),
  asking for no more messages than the worker has free slots, across its streams in a
  rotating order so one busy workflow version cannot starve another.
* One ``XREADGROUP`` only names streams of one shard (one hash slot, as Redis Cluster
  requires). With several shards, a read first looks at every shard at once without
  blocking (one pipelined round trip), and only when all are empty blocks on one shard
  in turn for a share of the block time.
* Heartbeats reset the idle time of the messages being executed (``XCLAIM ... JUSTID``),
  but only while this worker still owns them (a Lua check against ``XPENDING``), so a
  worker that was paused cannot steal back a message that another worker claimed.
* Claims take over messages idle longer than ``claim_min_idle_time`` (``XAUTOCLAIM``):
  the executions of workers that crashed or stopped answering, in the versions' streams
  and in their held streams (the messages of runs with a priority, which are never read
  with ``>``: the take script claims each for its worker; see ``lua/lib.lua``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .._redis import Redis
from ._keys import GROUP, Keys
from ._scripts import Heartbeat


@dataclass(frozen=True)
class Message:
    """One stream entry: which stream, its id, and its fields."""

    stream: str
    id: str
    fields: dict[str, str]
    #: Taken over from another (dead) consumer by XAUTOCLAIM, not read as new.
    claimed: bool = False

    @property
    def run_id(self) -> str | None:
        return self.fields.get("run")

    @property
    def is_doorbell(self) -> bool:
        """A doorbell names no run: it asks for the best run of the version's priority
        queue (``lua/lib.lua``, ``take_next``)."""
        return "doorbell" in self.fields

    @property
    def key(self) -> tuple[str, str]:
        """(stream, id): what identifies a message; an id alone is unique per stream only."""
        return (self.stream, self.id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if raw is None:
        return out
    if isinstance(raw, dict):
        return {_text(k): _text(v) for k, v in raw.items()}
    for item in raw:
        if isinstance(item, list | tuple) and len(item) == 2:
            out[_text(item[0])] = _text(item[1])
    if not out and len(raw) % 2 == 0:  # flat [f, v, f, v]
        out = {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw), 2)}
    return out


def _entries(stream: str, raw: Any) -> list[Message]:
    """Stream entries as GLIDE returns them: {id: [[f, v], ...]} or [[id, [f, v]], ...]."""
    if not raw:
        return []
    if isinstance(raw, dict):
        return [Message(stream, _text(i), _fields(f)) for i, f in raw.items()]
    return [Message(stream, _text(e[0]), _fields(e[1])) for e in raw]


class StreamReader:
    """The stream commands of one worker (one consumer in the group on each stream).

    ``shards`` lists, per shard (by shard number), the streams to read in it."""

    def __init__(
        self, redis: Redis, blocking: Redis, consumer: str, shards: list[list[str]]
    ) -> None:
        self.redis = redis
        self.blocking = blocking
        self.consumer = consumer
        self._rotation = 0
        self._shard_turn = 0
        self.set_shards(shards)

    def set_shards(self, shards: list[list[str]]) -> None:
        """Read these streams from now on (the deployment's shard count grew)."""
        self.shards = [list(streams) for streams in shards if streams]
        self.streams = [stream for streams in self.shards for stream in streams]
        #: What claims (and the read of our own pending messages) look at: the streams
        #: and their held streams.
        self.claimed_streams = [
            s for stream in self.streams for s in (stream, Keys.held_of(stream))
        ]
        self._shard_of = {s: number for number, streams in enumerate(shards) for s in streams}

    def by_shard(self, streams: list[str]) -> dict[int, list[str]]:
        """``streams`` grouped by shard number (one XREADGROUP may only name one's)."""
        grouped: dict[int, list[str]] = {}
        for stream in streams:
            grouped.setdefault(self._shard_of[stream], []).append(stream)
        return grouped

    def _next_order(self, free: int) -> list[str]:
        n = len(self.streams)
        start = self._rotation % n
        self._rotation += 1
        order = self.streams[start:] + self.streams[:start]
        # COUNT applies per stream: read at most `free` streams so the total of
        # messages returned can never exceed the free slots.
        return order[: max(1, min(free, n))]

    def _xreadgroup(self, streams: list[str], count: int, block: float | None) -> list[str]:
        return [
            "XREADGROUP",
            "GROUP",
            GROUP,
            self.consumer,
            "COUNT",
            str(count),
            *([] if block is None else ["BLOCK", str(max(10, int(block * 1000)))]),
            "STREAMS",
            *streams,
            *([">"] * len(streams)),
        ]

    def plan(self, free: int) -> tuple[list[str], int]:
        """The streams to read next (in turn) and the COUNT for each, so that at most
        ``free`` messages come back in all."""
        streams = self._next_order(free)
        return streams, max(1, free // len(streams))

    async def read(self, free: int, block_time: float) -> list[Message]:
        """New messages, at most ``free``; waits up to ``block_time`` for some."""
        streams, count = self.plan(free)
        if len(self.shards) == 1:
            # With fewer free slots than streams, only some streams are read at a time;
            # the block is shortened so a full rotation still takes about block_time.
            block = block_time * len(streams) / len(self.streams)
            reply = await self.blocking.command(*self._xreadgroup(streams, count, block))
            return self._messages(reply)
        replies = await self.redis.batch(
            [self._xreadgroup(group, count, None) for group in self.by_shard(streams).values()]
        )
        messages: list[Message] = []
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
            messages += self._messages(reply)
        if messages:
            return messages
        # Nothing anywhere: wait on one shard (each in turn) for its share of the block.
        shard = self.shards[self._shard_turn % len(self.shards)]
        self._shard_turn += 1
        waited = shard[: max(1, min(free, len(shard)))]
        reply = await self.blocking.command(
            *self._xreadgroup(waited, max(1, free // len(waited)), block_time / len(self.shards))
        )
        return self._messages(reply)

    async def read_own_pending(self, free: int) -> list[Message]:
        """Messages delivered to this consumer earlier and never acked (at start)."""
        out: list[Message] = []
        for stream in self.claimed_streams:
            if len(out) >= free:
                break
            reply = await self.redis.command(
                "XREADGROUP",
                "GROUP",
                GROUP,
                self.consumer,
                "COUNT",
                str(free - len(out)),
                "STREAMS",
                stream,
                "0",
            )
            out.extend(m for m in self._messages(reply) if m.fields)
        return out

    def _messages(self, reply: Any) -> list[Message]:
        if not reply:
            return []
        out: list[Message] = []
        items = reply.items() if isinstance(reply, dict) else reply
        for stream, entries in items:
            out.extend(_entries(_text(stream), entries))
        return out

    async def autoclaim(self, free: int, min_idle_time: float) -> list[Message]:
        """Take over up to ``free`` messages idle longer than ``min_idle_time``."""
        out: list[Message] = []
        for stream in self.claimed_streams:
            cursor = "0-0"
            while len(out) < free:
                reply = await self.redis.command(
                    "XAUTOCLAIM",
                    stream,
                    GROUP,
                    self.consumer,
                    str(int(min_idle_time * 1000)),
                    cursor,
                    "COUNT",
                    str(free - len(out)),
                )
                cursor = _text(reply[0])
                out.extend(replace(m, claimed=True) for m in _entries(stream, reply[1]) if m.fields)
                if cursor == "0-0":
                    break
        return out

    async def heartbeat(self, in_flight: dict[str, list[str]]) -> set[tuple[str, str]]:
        """Refresh the idle time of in-flight messages; returns the (stream, id) of those
        another worker has claimed meanwhile."""
        lost: set[tuple[str, str]] = set()
        for stream, ids in in_flight.items():
            if not ids:
                continue
            reply = await Heartbeat(
                stream=stream, group=GROUP, consumer=self.consumer, ids=ids
            ).call(self.redis)
            lost.update((stream, _text(i)) for i in reply or [])
        return lost
