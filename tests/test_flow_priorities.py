"""Priorities (docs/flow-control.md#priorities), on real Redis and real workers.

Orders are read from what the runs logged when they finished (the Redis list ``done``,
written by the ``flow-work`` task), never from durations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from _helpers import running_worker, wait_until
from workers import flow_worker
from workers.flow_worker import prioritized, prioritized_v1
from workers.processes import TESTS, worker_process

import aiki
from aiki._store import GROUP, Message, Store, StreamReader, TakeRefused

FLOW_WORKER = TESTS / "workers" / "flow_worker.py"
WF, V = "flow-prioritized", "1"


@pytest.fixture(autouse=True)
def _log_to_this_redis(redis_port: int) -> None:
    flow_worker.redis_port = redis_port  # the in-process workers' tasks log there


async def _done(store: Store) -> list[str]:
    return [x.decode() for x in await store.redis.command("LRANGE", "done", "0", "-1")]


async def _queued(store: Store, run_id: str) -> bool:
    """The run waits in its version's priority queue, its message in the held stream."""
    score = await store.redis.command("ZSCORE", store.keys.queue(WF, V), run_id)
    message = await store.redis.command("HGET", store.keys.run(run_id), "message")
    return score is not None and message is not None and message.decode().startswith("1-")


# -- bad input ----------------------------------------------------------------------------

BAD = [-1, 101, True, 1.5, "5", None]


@pytest.mark.parametrize("bad", BAD)
async def test_a_bad_priority_is_refused_at_start_and_nothing_is_written(
    client: aiki.Client, bad: Any
) -> None:
    with pytest.raises(aiki.ConfigurationError, match="priority") as one:
        await prioritized_v1.start(client, {"label": "x"}, priority=bad)
    with pytest.raises(aiki.ConfigurationError, match="priority") as many:
        await prioritized_v1.start_many(client, [{"label": "a"}, {"label": "b"}], priority=bad)
    with pytest.raises(aiki.ConfigurationError, match="priority") as scheduled:
        aiki.Schedule("s", WF, V, every=60, priority=bad)
    assert one.value.field == many.value.field == scheduled.value.field == "priority"
    assert (await client.list_runs()).runs == []
    assert await client.store.redis.command("KEYS", "*stream*") == []


async def test_a_bad_priority_is_a_422_over_http(settings: Any) -> None:
    from test_server import HANG_GUARD, running_server
    from test_server import running_worker as server_worker

    async with (
        running_server(settings) as server,
        server_worker(settings.redis_url, settings.prefix, prioritized),
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        for bad in (-1, 101, True, 1.5, "5"):
            r = await http.post(
                "/api/v1/runs", json={"workflow": WF, "version": V, "payload": {}, "priority": bad}
            )
            assert r.status_code == 422, r.text
            assert r.json()["error"]["field"] == "priority", r.text
        r = await http.post(
            "/api/v1/schedules",
            json={"id": "s", "workflow": WF, "version": V, "every": 60, "priority": 101},
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "priority", r.text
        assert (await client.list_runs()).runs == []
        assert await client.list_schedules() == []
        # A good one is stored and shown; the OpenAPI document declares the field.
        r = await http.post(
            "/api/v1/runs",
            json={"workflow": WF, "version": V, "payload": {"label": "h"}, "priority": 42},
        )
        assert r.status_code == 201, r.text
        run = (await http.get(f"/api/v1/runs/{r.json()['id']}")).json()
        assert run["priority"] == 42
        page = (await http.get(f"/runs/{run['id']}", headers={"Accept": "text/html"})).text
        assert 'id="run-priority">42<' in page
        spec = (await http.get("/api/v1/openapi.json")).json()
        start = spec["components"]["schemas"]["StartRunRequest"]["properties"]["priority"]
        assert (start["minimum"], start["maximum"], start["type"]) == (0, 100, "integer")
        assert "priority" in spec["components"]["schemas"]["Run"]["properties"]
        # A client over HTTP only sends it too, and refuses a bad one before sending.
        async with aiki.client(base_url=server.base_url) as over_http:
            handle = await prioritized_v1.start(over_http, {"label": "h2"}, priority=7)
            assert (await over_http.get_run(handle.id)).priority == 7
            with pytest.raises(aiki.ConfigurationError, match="priority"):
                await prioritized_v1.start(over_http, {"label": "h3"}, priority=-3)


# -- the order runs are taken in ------------------------------------------------------------


async def test_waiting_runs_are_taken_by_priority_then_in_order(client: aiki.Client) -> None:
    """Runs queued before a 1-slot worker starts: taken best first, FIFO within one
    priority, the runs without a priority (0) last in the order they came."""
    plan = [("a", 0), ("b", 5), ("c", 0), ("d", 90), ("e", 5), ("f", 100), ("g", 0), ("h", 90)]
    handles = [
        await prioritized_v1.start(client, {"label": label}, priority=priority)
        for label, priority in plan
    ]
    assert [(await client.get_run(h.id)).priority for h in handles] == [p for _, p in plan]
    async with running_worker(client, prioritized, max_concurrent_workflow_runs=1):
        await wait_until(lambda: _count(client.store, len(plan)), what="every run done")
    assert await _done(client.store) == ["f", "d", "h", "b", "e", "a", "c", "g"]


async def _count(store: Store, n: int) -> bool:
    return len(await _done(store)) >= n


async def test_high_priority_runs_overtake_a_backlog_of_500(client: aiki.Client) -> None:
    """The acceptance test: 500 runs without a priority are queued (the worker already
    busy with them), then 10 with one; all 10 finish before 10 % of the 500. More
    precisely, of the 500, only those that had finished when the 10 were queued, those
    executing then (at most the worker's slots) and those taken into the slots the last
    of the 10 left free (fewer than the slots) finish before the last of the 10."""
    slots = 4
    store = client.store
    async with running_worker(client, prioritized, max_concurrent_workflow_runs=slots):
        await prioritized_v1.start_many(
            client, [{"label": f"low-{i}", "work": 0.01} for i in range(500)]
        )
        await wait_until(lambda: _count(store, 10), what="the backlog is being worked on")
        await prioritized_v1.start_many(
            client, [{"label": f"high-{i}", "work": 0.01} for i in range(10)], priority=50
        )
        done_when_queued = len(await _done(store))
        await wait_until(lambda: _count(store, 510), timeout=120, what="every run done")
        done = await _done(store)
    last_high = max(i for i, label in enumerate(done) if label.startswith("high-"))
    lows_before = sum(1 for label in done[:last_high] if label.startswith("low-"))
    assert lows_before < 50, done[: last_high + 1]
    assert lows_before <= done_when_queued + 2 * slots - 1, (lows_before, done_when_queued)
    assert sorted(done) == sorted(
        [f"low-{i}" for i in range(500)] + [f"high-{i}" for i in range(10)]
    )


async def test_priority_survives_a_retry_delay(client: aiki.Client) -> None:
    """A run whose first attempt fails waits 1 s ``awaiting_retry`` (no slot held), then
    goes back in line with its priority: ahead of a backlog queued meanwhile."""
    store = client.store
    async with running_worker(client, prioritized, max_concurrent_workflow_runs=1):
        handle = await prioritized_v1.start(
            client, {"label": "retried", "fail_once": True}, priority=60
        )
        await wait_until(
            lambda: _status_is(client, handle.id, "awaiting_retry"), what="the retry delay"
        )
        await prioritized_v1.start_many(
            client, [{"label": f"low-{i}", "work": 0.2} for i in range(100)]
        )
        assert await handle.wait_for_completion(timeout=60) == "retried"
        position = (await _done(store)).index("retried")
    run = await client.get_run(handle.id)
    assert run.priority == 60 and len(run.errors or []) == 1
    # Without its priority it would queue behind all 100 (20 s of work on one slot).
    assert position < 50, position


async def _status_is(client: aiki.Client, run_id: str, status: str) -> bool:
    return (await client.get_run(run_id)).status == status


async def test_priority_survives_a_worker_killed_and_its_run_claimed(
    client: aiki.Client, redis_url: str, tmp_path: Path
) -> None:
    """A worker process is SIGKILLed while it executes a run with a priority (taken from
    the priority queue: its message is in the held stream). Another worker claims it
    there; after its durable sleep the run goes back in line with its priority, ahead
    of the backlog."""
    store = client.store
    async with worker_process(redis_url, "prio-1", tmp_path, "1", script=FLOW_WORKER) as first:
        handle = await prioritized_v1.start(
            client, {"label": "claimed", "hold": True, "nap": 0.5}, priority=70
        )
        await wait_until(
            lambda: _holding(store, handle.id), timeout=30, what="the first worker holds it"
        )
        await first.kill()
    held = await store.redis.command("XPENDING", store.keys.held(WF, V), GROUP)
    assert int(held[0]) == 1  # its message: pending with the dead worker, in the held stream
    await prioritized_v1.start_many(
        client, [{"label": f"low-{i}", "work": 0.2} for i in range(100)]
    )
    await store.redis.command("SET", "release", "1")
    async with running_worker(
        client, prioritized, max_concurrent_workflow_runs=1, claim_min_idle_time=1.0
    ) as second:
        assert await handle.wait_for_completion(timeout=60) == "claimed"
        position = (await _done(store)).index("claimed")
        assert second.claims_taken_over >= 1
    run = await client.get_run(handle.id)
    assert run.priority == 70 and run.worker == second.id
    assert position < 50, position


async def _holding(store: Store, run_id: str) -> bool:
    return run_id.encode() in await store.redis.command("LRANGE", "holding", "0", "-1")


# -- every transition that puts a run back in line keeps its priority ------------------------


async def _take_next(store: Store, worker: str = "w") -> tuple[Message, Any]:
    """Read the next message of the version's stream as a worker does, and take."""
    stream = store.keys.stream(WF, V)
    reply = await store.redis.command(
        "XREADGROUP", "GROUP", GROUP, worker, "COUNT", "1", "STREAMS", stream, ">"
    )
    (read,) = StreamReader(store.redis, store.redis, worker, [[stream]])._messages(reply)
    return await store.take_run(read, worker)


async def test_every_requeue_keeps_the_priority(client: aiki.Client) -> None:
    store = client.store
    await store.create_groups([(WF, V)], range(1))
    plain = await store.start_run(WF, V, "{}")
    run_id = await store.start_run(WF, V, "{}", priority=7)
    assert await _queued(store, run_id) and not await _queued(store, plain)

    async def take() -> tuple[Message, Any]:
        # The plain run's message comes first in the stream, yet the take takes ours.
        held, taken = await _take_next(store)
        assert not isinstance(taken, TakeRefused) and taken.id == run_id, taken
        assert held.stream == store.keys.held(WF, V) and held.id.startswith("1-")
        return held, taken

    # a durable timer (sleep, retry delay, delayed start)
    held, taken = await take()
    await store.park_run(taken, held.id, status="sleeping", wake_at_ms=1)
    assert (await store.fire_timers())[0] == 1 and await _queued(store, run_id)
    # an event
    held, taken = await take()
    await store.park_run(taken, held.id, status="awaiting_event", event=("go", 0))
    await store.send_event(run_id, "go", "1")
    assert await _queued(store, run_id)
    # pause (fenced out while running), resume
    held, taken = await take()
    assert await store.pause_run(run_id) == "paused" and not await _queued(store, run_id)
    await store.resume_run(run_id)
    assert await _queued(store, run_id)
    # a worker stopping hands it back
    held, taken = await take()
    await store.requeue_run(taken, held.id)
    assert await _queued(store, run_id)
    # taken, dead-lettered (say its worker had no code for it), requeued by an operator
    held, taken = await take()
    await store.dead_letter(held.stream, held.id, {"run": run_id}, "no code")
    (letter,), _ = await store.list_dead_letters()
    assert await store.requeue_dead_letter(letter.id) == "queued"
    assert await _queued(store, run_id)
    # waiting for a child, woken by its end (the child inherited the priority)
    held, taken = await take()
    child = await store.start_run(WF, V, "{}", parent_id=run_id)
    await store.park_run(taken, held.id, status="awaiting_child_workflow", child_id=child)
    child_held, child_taken = await _take_next(store)
    assert child_taken.id == child and child_held.id.startswith("1-")
    await store.finish_run(child_taken, child_held.id, result_json="1")
    assert await _queued(store, run_id)
    # failed, then retried by an operator
    held, taken = await take()
    await store.finish_run(taken, held.id, error={"type": "Boom", "message": "x"})
    # its held message is acked and deleted: the one left is the plain run's (waiting)
    assert await store.redis.command("XLEN", store.keys.held(WF, V)) == 1
    await store.retry_run(run_id)
    assert await _queued(store, run_id)
    # the plain run was put back at its place (priority 0) each time and is taken now
    held, taken = await take()
    await store.finish_run(taken, held.id, result_json="1")
    spare, plain_taken = await _take_next(store)
    assert plain_taken.id == plain and spare.id.startswith("1-")  # from the queue now
    # a cancelled waiting run leaves the queue; the doorbell it rang finds none: "spare"
    cancelled = await store.start_run(WF, V, "{}", priority=3)
    await store.cancel_run(cancelled)
    assert not await _queued(store, cancelled)
    _read, outcome = await _take_next(store)
    assert isinstance(outcome, TakeRefused) and outcome.reason == "spare"
    assert await store.redis.command("XLEN", store.keys.stream(WF, V)) == 0  # acked, deleted


async def test_a_schedules_runs_have_its_priority(client: aiki.Client) -> None:
    from aiki.engine import trigger_schedule

    await prioritized_v1.schedule(client, "nightly", {"label": "s"}, every=3600, priority=25)
    (listed,) = await client.list_schedules()
    assert listed["priority"] == 25
    run_id = await trigger_schedule(client.store, "nightly")
    assert (await client.get_run(run_id)).priority == 25
    assert await _queued(client.store, run_id)


async def test_a_concurrency_slot_handed_over_keeps_the_priority(client: aiki.Client) -> None:
    store = client.store
    await store.create_groups([(WF, V)], range(1))
    first = await store.start_run(WF, V, "{}", concurrency_key="k", concurrency_limit=1, priority=9)
    second = await store.start_run(
        WF, V, "{}", concurrency_key="k", concurrency_limit=1, priority=9
    )
    assert (await client.get_run(second)).status == "awaiting_concurrency"
    held, taken = await _take_next(store)
    assert taken.id == first
    await store.finish_run(taken, held.id, result_json="1")  # its slot goes to `second`
    assert await _queued(store, second)


async def test_a_child_inherits_its_parents_priority(client: aiki.Client) -> None:
    store = client.store
    parent = await store.start_run(WF, V, "{}", priority=33)
    child = await store.start_run(WF, V, "{}", parent_id=parent)
    other = await store.start_run(WF, V, "{}", parent_id=parent, priority=0)
    assert (await client.get_run(child)).priority == 33
    assert (await client.get_run(other)).priority == 0


async def test_runs_without_a_priority_touch_no_priority_key(client: aiki.Client) -> None:
    """The default costs nothing: no queue, no held message, no doorbell."""
    store = client.store
    async with running_worker(client, prioritized, max_concurrent_workflow_runs=2):
        handles = await prioritized_v1.start_many(client, [{"label": str(i)} for i in range(20)])
        for handle in handles:
            await handle.wait_for_completion(timeout=30)
        assert await store.redis.command("EXISTS", store.keys.queue(WF, V)) == 0
        # Nothing was ever added to the held stream: its first id would be 1-0 again.
        probe = await store.redis.command("XADD", store.keys.held(WF, V), "1-*", "probe", "1")
        assert probe in (b"1-0", "1-0")
    assert {(await client.get_run(h.id)).priority for h in handles} == {0}
