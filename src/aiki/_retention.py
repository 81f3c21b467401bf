"""Retention: ended runs do not stay in Redis forever.

The server writes the retention (``Settings.retention``) to ``<prefix>:config``; the
scripts that end a run (``finish_run``, ``cancel_run``) read it and set an expiry on the
run's keys, so they vanish even if no server runs; and this daemon drops the expired
runs' entries from the runs index and the ``ended`` set.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import trio

from ._errors import ConnectionFailed
from ._store import Store

log = logging.getLogger("aiki.retention")


async def set_retention(store: Store, seconds: float | None, shards: int | None = None) -> None:
    """Make ended runs expire ``seconds`` after they end (None: keep them), in every
    shard's config (the scripts read their own shard's copy)."""
    k = store.keys
    count = await store.shard_count() if shards is None else shards
    if seconds is None:
        commands = [["HDEL", k.config(s), "retention_ms"] for s in range(count)]
    else:
        ms = str(int(seconds * 1000))
        commands = [["HSET", k.config(s), "retention_ms", ms] for s in range(count)]
    for reply in await store.redis.batch(commands):
        if isinstance(reply, BaseException):
            raise reply


async def prune_index(store: Store, *, batch: int = 500) -> int:
    """Drop index entries of runs that ended longer ago than the retention."""
    k = store.keys
    removed = 0
    for shard in range(await store.shard_count()):
        raw = await store.redis.command("HGET", k.config(shard), "retention_ms")
        if raw is None:
            continue
        cutoff = int(time.time() * 1000) - int(raw)
        while True:
            ids = await store.redis.command(
                "ZRANGE", k.ended(shard), "-inf", str(cutoff), "BYSCORE", "LIMIT", "0", str(batch)
            )
            if not ids:
                break
            await store.redis.batch(
                [["ZREM", k.runs_index(shard), *ids], ["ZREM", k.ended(shard), *ids]]
            )
            removed += len(ids)
    return removed


async def serve_retention(
    store: Store,
    retention: float | None,
    *,
    interval: float = 30.0,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """The retention daemon: publish the retention, then prune the index periodically."""
    await set_retention(store, retention)
    task_status.started()
    if retention is None:
        return
    while True:
        try:
            # Shards added since (a version registered with more) get the setting too.
            await set_retention(store, retention)
            removed = await prune_index(store)
            if removed:
                log.info("retention: dropped %d expired runs from the index", removed)
        except ConnectionFailed as exc:
            log.warning("retention daemon cannot reach Redis (%s); retrying", exc)
        except Exception:  # a daemon never dies of one bad reply
            log.exception("retention daemon failed; retrying")
        await trio.sleep(min(interval, max(retention, 0.5)) * random.uniform(0.8, 1.2))
