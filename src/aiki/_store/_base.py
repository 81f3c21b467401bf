"""What every group of store operations stands on: the connection, the key names, and
the reads the others build on (a run, many runs' statuses, the shard count).

The :class:`~aiki._store.Store` is one class assembled from one mixin per concept
(starting, taken runs, control, deployment, listing, observing, schedules, streams,
pub/sub); each mixin derives from :class:`StoreBase`, so it can use these reads.
"""

from __future__ import annotations

from typing import Any, Self

from .._errors import RunNotFound
from .._redis import Lua, Redis
from ._durability import FsyncBarrier
from ._keys import MAX_SHARDS, Keys
from ._records import RunRecord, pairs


class StoreBase:
    """The connection and the key names (by prefix), and the shared reads."""

    def __init__(
        self, redis: Redis, keys: Keys | None = None, *, fsync: FsyncBarrier | None = None
    ) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        # With ``durability="fsync"``: the writes somebody acts on return only once the
        # AOF holding them is fsynced (see ``_durability``).
        self.fsync = fsync

    def with_fsync(self, fsync: FsyncBarrier | None) -> Self:
        """This store (same connection and keys) acknowledging writes through ``fsync``
        (a worker with its own ``durability`` on its client's connection)."""
        return type(self)(self.redis, self.keys, fsync=fsync)

    async def acknowledged(self) -> None:
        """Return once the writes made before this call are durable as the store's
        durability asks (at once without ``fsync``). After each acknowledged write, and
        before telling a waiter that a run ended (the end was written by another process;
        the barrier covers every connection's writes)."""
        if self.fsync is not None:
            await self.fsync.wait()

    async def ping(self) -> bool:
        """Whether Redis answers ``PING`` (the server's readiness probe); a cluster
        client answers for every primary, and all of them must answer."""
        pong = await self.redis.command("PING")
        replies = list(pong.values()) if isinstance(pong, dict) else [pong]
        return bool(replies) and all(reply in (b"PONG", "PONG") for reply in replies)

    async def get_run(self, run_id: str, *, with_tasks: bool = False) -> RunRecord | None:
        k = self.keys
        if with_tasks:
            data, tasks = await self.redis.batch(
                [["HGETALL", k.run(run_id)], ["HGETALL", k.tasks(run_id)]]
            )
            for reply in (data, tasks):
                if isinstance(reply, BaseException):
                    raise reply
            run = pairs(data)
            return RunRecord.from_hash(run, pairs(tasks)) if run else None
        run = pairs(await self.redis.command("HGETALL", k.run(run_id)))
        return RunRecord.from_hash(run) if run else None

    async def get_statuses(self, run_ids: list[str]) -> dict[str, RunRecord | None]:
        """Many runs in one round trip (the notification listener's re-check)."""
        replies = await self.redis.batch([["HGETALL", self.keys.run(r)] for r in run_ids])
        out: dict[str, RunRecord | None] = {}
        for run_id, reply in zip(run_ids, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply
            data = pairs(reply)
            out[run_id] = RunRecord.from_hash(data) if data else None
        return out

    async def shard_count(self) -> int:
        """How many shards the deployment uses: the most any version has ever been
        registered with (workers read every shard, because a child run lives in its
        parent's). It never goes down: runs already in a shard must stay readable (and
        their timers fired) after a version is redeployed with fewer shards."""
        raw = await self.redis.command("GET", self.keys.shards)
        return min(max(1, int(raw or 1)), MAX_SHARDS)

    async def _existing(self, run_id: str) -> RunRecord:
        run = await self.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return run

    async def _batch_with_script(self, lua: Lua, commands: list[list[Any]]) -> list[Any]:
        """``commands`` (EVALSHAs of ``lua`` among them) in one pipeline. The script is
        loaded first (on every node of a cluster), in the same pipeline when Redis is one
        server, so the EVALSHAs always find it."""
        if self.redis.cluster:
            await self.redis.load_script(lua)
            return await self.redis.batch(commands)
        replies = await self.redis.batch([["SCRIPT", "LOAD", lua.source], *commands])
        return replies[1:]
