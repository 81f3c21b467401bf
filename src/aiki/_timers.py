"""The timer daemon: moves parked runs whose time has come back into their streams.

Retry delays (and, later, sleeps and delayed starts) park a run in the ``timers``
sorted set instead of holding a worker slot. The server runs this daemon; several
servers may run it at once, because firing a timer is one atomic script that removes the
timer before enqueueing (exactly one caller wins). Each shard has its own timers; the
daemon looks at every shard the deployment uses (re-read every few seconds).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import trio

from ._errors import ConnectionFailed
from ._store import Store

log = logging.getLogger("aiki.timers")

SHARDS_REFRESH = 2.0
"""Seconds between two looks at how many shards the deployment uses."""


async def serve_timers(
    store: Store,
    *,
    interval: float = 0.25,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Fire due timers until cancelled, looking at least every ``interval`` seconds."""
    task_status.started()
    outage = False
    shards, refresh_at = 1, 0.0
    while True:
        try:
            if trio.current_time() >= refresh_at:
                shards = await store.shard_count()
                refresh_at = trio.current_time() + SHARDS_REFRESH
            fired = due = 0
            for shard in range(shards):
                f, d, _next_due = await store.fire_timers(shard)
                fired, due = fired + f, max(due, d)
        except Exception as exc:  # a daemon never dies of one bad reply
            if not outage:
                if isinstance(exc, ConnectionFailed):
                    log.warning("timer daemon cannot reach Redis (%s); retrying", exc)
                else:
                    log.exception("timer daemon failed; retrying")
                outage = True
            await trio.sleep(min(5.0, interval * 4) * random.uniform(0.8, 1.2))
            continue
        if outage:
            log.warning("timer daemon reaches Redis again")
            outage = False
        if fired:
            log.debug("fired %d timers", fired)
        if due >= 200:
            continue  # a backlog: keep going without sleeping
        await trio.sleep(interval * random.uniform(0.8, 1.2))
