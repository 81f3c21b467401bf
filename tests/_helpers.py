"""Helpers shared by the tests (import them with ``from _helpers import ...``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import aiki

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# Short times so that fault tests stay fast: a dead worker's message is claimed after
# ~1 s, and an idle read comes back every 0.2 s.
FAST_CLAIM = 1.0
FAST_BLOCK = 0.2


def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes (workers): same imports as the tests."""
    env = dict(os.environ)
    parts = [str(ROOT / "src"), str(ROOT), str(TESTS)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.asynccontextmanager
async def running_worker(
    client: aiki.Client,
    *workflows: aiki.Workflow | aiki.WorkflowVersion,
    id: str | None = None,
    max_concurrent_workflow_runs: int = 10,
    claim_min_idle_time: float = FAST_CLAIM,
    block_time: float = FAST_BLOCK,
    shutdown_grace: float = 1.0,
    fire_timers: bool = True,
    **kw: Any,
) -> AsyncIterator[aiki.Worker]:
    """``async with running_worker(client, wf) as worker:`` — started via
    ``nursery.start`` (so it is subscribed when the body runs), stopped after."""
    worker = aiki.worker(
        client,
        id=id,
        max_concurrent_workflow_runs=max_concurrent_workflow_runs,
        subscriber=aiki.RedisStreams(
            claim_min_idle_time=claim_min_idle_time, block_time=block_time, **kw
        ),
        shutdown_grace=shutdown_grace,
        fire_timers=fire_timers,
    )
    for wf in workflows:
        worker.workflow_registry.add(wf)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.start)
        try:
            yield worker
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(15):
                await worker.stop()
            nursery.cancel_scope.cancel()


async def all_slots_free(worker: aiki.Worker) -> None:
    """Until ``worker`` has no execution in flight. Why wait: a run's new status (ended,
    parked) is in Redis, and its waiter told, as soon as the script ran; the worker
    releases the slot only when its execution gets the script's reply, a moment later."""
    await wait_until(
        lambda: worker.in_flight == 0 and worker.free_slots == worker.max_concurrent_workflow_runs,
        what="every worker slot free",
    )


async def wait_until(
    predicate: Any, *, timeout: float = 20.0, interval: float = 0.02, what: str = ""
) -> None:
    """Poll an async (or sync) predicate until it is true; fail the test after
    ``timeout`` seconds (a safety net against hangs, not a timing assertion)."""
    with trio.move_on_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return
            await trio.sleep(interval)
    pytest.fail(f"condition not reached within {timeout} s: {what or predicate!r}")


_DUMP = {
    "string": ("GET",),
    "hash": ("HGETALL",),
    "list": ("LRANGE", "0", "-1"),
    "set": ("SMEMBERS",),
    "zset": ("ZRANGE", "0", "-1", "WITHSCORES"),
    "stream": ("XRANGE", "-", "+"),
}


async def scan_redis(client: aiki.Client) -> list[str]:
    """Every key in the client's (private) Redis and every value, as text: SCAN over
    all keys, each dumped by its type (strings, hashes, lists, sets, sorted sets with
    scores, stream entries). For "Redis holds none of X" checks: search the joined
    text. A key of a type this does not know fails the test (not silently skipped)."""
    redis = client.store.redis
    out: list[str] = []
    cursor = "0"
    while True:
        reply = await redis.command("SCAN", cursor, "COUNT", "1000")
        cursor = _text(reply[0])
        for key in sorted(_text(k) for k in reply[1]):
            kind = _text(await redis.command("TYPE", key))
            if kind == "none":  # gone since the SCAN (expired, pruned)
                continue
            command = _DUMP.get(kind)
            assert command is not None, f"scan_redis: key {key!r} of unknown type {kind!r}"
            out.append(key)
            out.append(repr(await redis.command(command[0], key, *command[1:])))
        if cursor == "0":
            return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def take(
    store: Any, workflow: str, version: str, run_id: str, worker: str, message_id: str
) -> Any:
    """Take ``run_id`` for ``worker`` as if its message ``message_id`` was read from
    the version's stream (the store's take, raising its refusal): a TakenRun."""
    from aiki._store import Message, TakeRefused, shard_of

    stream = store.keys.stream(workflow, version, shard_of(run_id))
    _held, taken = await store.take_run(Message(stream, message_id, {"run": run_id}), worker)
    if isinstance(taken, TakeRefused):
        raise taken
    return taken
