"""The engine's daemons: timers (run by the server AND every worker), schedules and
retention (run by the server).

Each is one step function on the ONE supervise loop (``aiki._backoff.supervise``): a
step does one round of work and says how long to wait before the next; a step that
fails is logged once per outage (and its recovery once) and retried with backoff, so a
daemon never dies of one bad reply and never floods the log while Redis is away.
Several servers may run every daemon at once: firing a timer or a schedule occurrence
is one script that exactly one caller wins, and pruning is idempotent.

* ``serve_timers``: moves parked runs whose time has come (retry delays, sleeps, event
  timeouts, delayed starts) back into their streams, in every shard the deployment uses
  (its count re-read every few seconds). Workers run it too, so durable timers fire
  without a server.
* ``watch_generation``: notices that Redis lost the deployment's state (its generation
  token changed: FLUSHALL, a restart without persistence, a failover to an empty
  replica) and lets its owner write back what it owns (the server: the retention).
* ``serve_schedules``: fires due schedule occurrences (``aiki._schedules``).
* ``serve_retention``: publishes the retention of ended runs to every shard's config
  (the scripts that end a run set its keys' expiry from it) and drops expired runs from
  the indexes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._backoff import Backoff, jittered, supervise
from ._schedules import fire_due_schedules
from ._store import Store

log = logging.getLogger("aiki.daemons")

SHARDS_REFRESH = 2.0
"""Seconds between two looks at how many shards the deployment uses."""

MIN_TIMER_WAIT = 0.01
"""The shortest sleep before a timer known to be due soon (never a busy loop)."""

TIMER_BATCH = 200
"""Timers fired per shard and script; a shard with this many due goes on at once."""


async def serve_timers(
    store: Store,
    *,
    interval: float = 0.25,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Fire due timers until cancelled, looking at least every ``interval`` seconds.

    Between two looks it sleeps until the next timer it knows of is due (by Redis's
    clock), but never longer than ``interval`` (jittered): a timer parked meanwhile with
    an earlier due time is then at most ``interval`` late. So the idle cost is one small
    script per shard per ``interval``, however many processes share the duty (the
    server with 0.25 s; every worker too, with a longer interval)."""
    shards, refresh_at = 1, 0.0

    async def step() -> float:
        nonlocal shards, refresh_at
        if trio.current_time() >= refresh_at:
            shards = await store.shard_count()
            refresh_at = trio.current_time() + SHARDS_REFRESH
        fired = due = 0
        wait = jittered(interval)
        for shard in range(shards):
            f, d, next_due = await store.fire_timers(shard, TIMER_BATCH)
            fired, due = fired + f, max(due, d)
            if next_due is not None:
                wait = min(wait, max(next_due, MIN_TIMER_WAIT))
        if fired:
            log.debug("fired %d timers", fired)
        return 0.0 if due >= TIMER_BATCH else wait  # a backlog: go on

    await supervise(
        "timer daemon",
        step,
        log=log,
        backoff=Backoff(initial=interval, maximum=min(5.0, interval * 4)),
        task_status=task_status,
    )


async def serve_schedules(
    store: Store, *, interval: float = 0.25, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """The schedule daemon: fire due occurrences until cancelled."""

    async def step() -> float:
        await fire_due_schedules(store)
        return jittered(interval)

    await supervise(
        "schedule daemon",
        step,
        log=log,
        backoff=Backoff(initial=interval, maximum=interval),
        task_status=task_status,
    )


async def serve_retention(
    store: Store,
    retention: float | None,
    *,
    interval: float = 30.0,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """The retention daemon: publish the retention, then prune the index periodically
    (with no retention, publish that and stop)."""
    await store.set_retention(retention)
    if retention is None:
        task_status.started()
        return
    every = min(interval, max(retention, 0.5))

    async def step() -> float:
        # Shards added since (a version registered with more) get the setting too.
        await store.set_retention(retention)
        removed = await store.prune_ended()
        if removed:
            log.info("retention: dropped %d expired runs from the index", removed)
        return jittered(every)

    await supervise(
        "retention daemon",
        step,
        log=log,
        backoff=Backoff(initial=every, maximum=every),
        task_status=task_status,
    )


async def watch_generation(
    store: Store,
    on_reset: Callable[[], Awaitable[None]],
    *,
    interval: float = 2.0,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Look at the deployment's generation token every ``interval`` seconds; when it is
    not the one seen before (Redis came back empty), log it once and ``await
    on_reset()`` (which writes back what this process owns and counts the outage)."""
    seen: str | None = None
    resetting = False  # logged once, even when on_reset() needs retries

    async def step() -> float:
        nonlocal seen, resetting
        generation = await store.generation()
        if seen is not None and generation != seen:
            if not resetting:
                log.warning(
                    "Redis lost this deployment's state (emptied, restarted without "
                    "persistence or failed over?); writing back this server's settings"
                )
                resetting = True
            await on_reset()
            resetting = False
        seen = generation
        return jittered(interval)

    await supervise(
        "generation watch",
        step,
        log=log,
        backoff=Backoff(initial=interval / 4, maximum=interval),
        task_status=task_status,
    )
