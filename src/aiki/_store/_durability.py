"""Acknowledged durable writes (``durability="fsync"``) and the persistence check.

Why: Redis answers a write once it is in memory and in the AOF's buffer; with the usual
``appendfsync everysec`` up to a second of acknowledged writes is lost if Redis (or the
machine) dies before the next fsync. With ``durability="fsync"`` the writes whose
acknowledgement somebody acts on (a start, a task's recorded result, a parked run, a
run's end, an event) are acknowledged only once ``WAITAOF 1 0`` says the AOF holding them
is fsynced.

How, cheaply (:class:`FsyncBarrier`): WAITAOF waits for the *calling connection's* last
write, and it blocks that connection. So the barrier has a connection of its own (a
blocked WAITAOF on the shared, multiplexed connection would stall every command queued
behind it) and sends ``INCR <prefix>:fsync`` then ``WAITAOF`` on it: the
marker's replication offset is after every write Redis processed before it, by any
connection, so one WAITAOF covers all of them. Writers that arrive while a round is in
flight share the next round (group commit): under load, one fsync wait covers many
writes, and a writer waits for at most two rounds.

A Redis without WAITAOF (< 7.2, Valkey < 8), with the AOF off or one that never fsyncs
(``appendfsync no``) is refused when the barrier opens, with an error saying which.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio

from .._errors import ConfigurationError, ConnectionFailed
from .._redis import Redis, RedisAddress, connect

log = logging.getLogger("aiki.durability")

DURABILITY_MODES = ("none", "fsync")
"""``none``: acknowledged when Redis has the write (its own ``appendfsync`` decides when
it reaches the disk). ``fsync``: acknowledged once the AOF holding it is fsynced."""

ENV_DURABILITY = "AIKI_DURABILITY"

# How long one WAITAOF may wait for the fsync before the write counts as unacknowledged
# (a ConnectionFailed: retried like an outage). Redis fsyncs at least once a second with
# ``everysec``; a disk slower than this is an outage for an acknowledged write.
WAITAOF_TIMEOUT = 5.0

__all__ = [
    "DURABILITY_MODES",
    "ENV_DURABILITY",
    "FsyncBarrier",
    "check_durability",
    "open_fsync_barrier",
    "warn_if_not_persistent",
]


class _NotFsynced(ConnectionFailed):
    """WAITAOF ran out of time with the writes still not fsynced."""


def check_durability(owner: str, value: Any) -> str:
    """``value`` if it is a durability mode, else a ConfigurationError naming the field."""
    if not isinstance(value, str) or value not in DURABILITY_MODES:
        raise ConfigurationError(
            f"{owner}(durability=) must be one of {', '.join(map(repr, DURABILITY_MODES))}, "
            f"got {value!r}",
            field="durability",
        )
    return value


class FsyncBarrier:
    """Waits until everything written before :meth:`wait` was called is fsynced.

    Concurrent callers share rounds (one INCR + WAITAOF pipeline each); ``rounds`` counts
    the rounds sent, so tests can bound the batching without timing anything."""

    def __init__(self, redis: Redis, mark_key: str, *, timeout: float = WAITAOF_TIMEOUT) -> None:
        self._redis = redis
        self._mark_key = mark_key
        self._timeout = timeout
        self._started = 0  # rounds begun
        self._done = 0  # the latest round whose WAITAOF confirmed the fsync
        self._sending = False
        self._round_over = anyio.Event()
        self.rounds = 0

    async def wait(self) -> None:
        """Return once the AOF is fsynced past every write made before this call.

        Only a round begun after this call covers it (one already in flight may have
        sent its marker before the caller's write). Raises ConnectionFailed when Redis
        cannot confirm the fsync (down, or not within the timeout); the caller then treats
        its write as unacknowledged, like any other outage."""
        target = self._started + 1
        while self._done < target:
            if self._sending:
                await self._round_over.wait()
                continue
            self._sending = True
            self._started += 1
            this = self._started
            try:
                await self._round()
                self._done = this
            finally:
                # Success or not (an error, a cancellation), the waiters go on: they are
                # covered by this round or begin the next one themselves.
                self._sending = False
                over, self._round_over = self._round_over, anyio.Event()
                over.set()

    async def _round(self) -> None:
        self.rounds += 1
        timeout_ms = int(self._timeout * 1000)
        # Two round trips, not one pipeline: a WAITAOF that arrives with its INCR in the
        # same read is blocked before Redis has even written the INCR to the AOF, and
        # then waits for Redis's next cron tick (~100 ms) to be looked at again.
        try:
            await self._redis.command("INCR", self._mark_key)
            reply = await self._redis.command("WAITAOF", "1", "0", str(timeout_ms))
        except ConnectionFailed:
            raise
        except Exception as exc:  # an error reply: unknown command, AOF off, NOPERM
            raise ConnectionFailed(f"Redis did not confirm the fsync: {exc}") from exc
        if _local_acks(reply) < 1:
            raise _NotFsynced(f"Redis did not fsync its AOF within {self._timeout:g} s (WAITAOF)")

    async def probe(self, address: RedisAddress) -> None:
        """One round now, at start-up: a Redis that cannot do this is refused here, with
        an error saying why, rather than at the first acknowledged write."""
        where = f"the Redis at {address.host}:{address.port}"
        if await self._appendfsync() == "no":
            raise ConfigurationError(
                f"durability='fsync': {where} has appendfsync no, so it never fsyncs its "
                "AOF itself (use appendfsync everysec or always)",
                field="durability",
            )
        try:
            await self._round()
        except _NotFsynced:
            raise ConfigurationError(
                f"durability='fsync': {where} did not fsync its AOF within "
                f"{self._timeout:g} s (appendfsync no never fsyncs: use everysec or always)",
                field="durability",
            ) from None
        except ConnectionFailed as exc:
            cause = exc.__cause__
            text = str(cause if cause is not None else exc)
            lowered = text.lower()
            if "unknown command" in lowered:
                raise ConfigurationError(
                    f"durability='fsync' needs WAITAOF (Redis >= 7.2 or Valkey >= 8); {where} "
                    f"does not have it ({text.strip()})",
                    field="durability",
                ) from None
            if "appendonly" in lowered:
                raise ConfigurationError(
                    f"durability='fsync' needs the AOF: {where} has it off (set appendonly yes)",
                    field="durability",
                ) from None
            if cause is not None:  # an error reply (NOPERM, ...): not an outage
                raise ConfigurationError(
                    f"durability='fsync': {where} refused WAITAOF: {text.strip()}",
                    field="durability",
                ) from None
            raise

    async def _appendfsync(self) -> str:
        """Redis's ``appendfsync`` policy ('' when CONFIG is not allowed, as on some
        managed services: then the first round's timeout tells)."""
        try:
            return _config_value(await self._redis.command("CONFIG", "GET", "appendfsync"))
        except ConnectionFailed:
            raise
        except Exception:
            return ""


def _local_acks(reply: Any) -> int:
    """WAITAOF's first number: how many local AOFs (0 or 1) have the writes fsynced."""
    if isinstance(reply, list | tuple) and reply:
        try:
            return int(reply[0])
        except (TypeError, ValueError):
            return 0
    return 0


@contextlib.asynccontextmanager
async def open_fsync_barrier(
    url: str, mark_key: str, *, implementation: str | None = None
) -> AsyncIterator[FsyncBarrier]:
    """A barrier on a connection of its own to ``url``, checked at once (:meth:`probe`)."""
    redis = await connect(
        url,
        name="aiki-fsync",
        blocking=True,  # WAITAOF blocks its connection
        request_timeout=WAITAOF_TIMEOUT + 5.0,
        implementation=implementation,
    )
    try:
        if redis.cluster:
            raise ConfigurationError(
                "durability='fsync' is not supported on Redis Cluster yet (WAITAOF would "
                "have to run on every primary)",
                field="durability",
            )
        barrier = FsyncBarrier(redis, mark_key)
        await barrier.probe(redis.address)
        yield barrier
    finally:
        with anyio.CancelScope(shield=True):
            await redis.aclose()


_warned: set[tuple[str, int]] = set()


async def warn_if_not_persistent(redis: Redis) -> bool:
    """Log one warning per process and Redis address when that Redis keeps nothing on
    disk (AOF off and no RDB snapshots): a restart empties it, and every run with it.
    Returns whether it is persistent (True when it cannot tell: ``CONFIG`` may be
    forbidden on a managed Redis, which then has its own persistence settings)."""
    address = redis.address
    if redis.cluster:
        return True
    try:
        info, save = await redis.batch([["INFO", "persistence"], ["CONFIG", "GET", "save"]])
    except ConnectionFailed:
        return True
    if isinstance(info, BaseException) or isinstance(save, BaseException):
        return True
    aof = _info_field(info, "aof_enabled") == "1"
    rdb = bool(_config_value(save))
    if aof or rdb:
        return True
    where = (address.host, address.port)
    if where not in _warned:
        _warned.add(where)
        log.warning(
            "the Redis at %s:%s has persistence off (appendonly no, no save points): a "
            "restart empties it and every run in it is lost; turn on appendonly yes",
            address.host,
            address.port,
        )
    return False


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _info_field(info: Any, name: str) -> str | None:
    for line in _text(info).splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def _config_value(reply: Any) -> str:
    """The value of a one-parameter ``CONFIG GET`` (a flat list, or a RESP3 map)."""
    if isinstance(reply, dict):
        values = list(reply.values())
    elif isinstance(reply, list | tuple):
        values = list(reply[1::2])
    else:
        return ""
    return _text(values[0]).strip() if values else ""
