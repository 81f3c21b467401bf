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


async def set_retention(store: Store, seconds: float | None) -> None:
    """Make ended runs expire ``seconds`` after they end (None: keep them)."""
    k = store.keys
    if seconds is None:
        await store.redis.command("HDEL", k.config, "retention_ms")
    else:
        await store.redis.command("HSET", k.config, "retention_ms", str(int(seconds * 1000)))


async def prune_index(store: Store, *, batch: int = 500) -> int:
    """Drop index entries of runs that ended longer ago than the retention."""
    k = store.keys
    raw = await store.redis.command("HGET", k.config, "retention_ms")
    if raw is None:
        return 0
    cutoff = int(time.time() * 1000) - int(raw)
    removed = 0
    while True:
        ids = await store.redis.command(
            "ZRANGE", k.ended, "-inf", str(cutoff), "BYSCORE", "LIMIT", "0", str(batch)
        )
        if not ids:
            return removed
        await store.redis.batch([["ZREM", k.runs_index, *ids], ["ZREM", k.ended, *ids]])
        removed += len(ids)


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
            removed = await prune_index(store)
            if removed:
                log.info("retention: dropped %d expired runs from the index", removed)
        except ConnectionFailed as exc:
            log.warning("retention daemon cannot reach Redis (%s); retrying", exc)
        except Exception:  # a daemon never dies of one bad reply
            log.exception("retention daemon failed; retrying")
        await trio.sleep(min(interval, max(retention, 0.5)) * random.uniform(0.8, 1.2))
