"""Aiki on a real 3-master Redis Cluster.

A cluster node refuses any command or script whose keys are in more than one hash slot
(CROSSSLOT), and redirects commands for slots it does not serve (MOVED): these tests
running at all is the proof that every transition stays in one slot. They run the
order-processing workflow (over the SDK and over HTTP, through a server on the cluster),
a sharded workflow whose runs spread over several masters with children, durable sleeps,
events and a schedule; concurrency keys; retry timers, wake-ups, pause/resume, cancel,
delayed starts and a graceful worker stop; and the crash-recovery scenario: a worker
SIGKILLed inside a task, its runs finished by another worker, every completed task
executed exactly once.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from _cluster import RedisCluster
from _helpers import running_worker, wait_until
from _resp import acommand
from workers import cluster_worker, processes
from workers.cluster_worker import charge_order_v1, receipt

import aiki
from aiki._store._keys import shard_of
from aiki.embedded import RedisServerProcess
from aiki_server import Settings, serve_server
from examples.order_processing import EXAMPLE_ORDER, order_processing, order_processing_v1

CLUSTER_WORKER = processes.TESTS / "workers" / "cluster_worker.py"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    found = RedisCluster(tmp_path_factory.mktemp("cluster"), masters=3)
    try:
        found.start()
        yield found
    finally:
        found.cleanup()


fanout = aiki.workflow("fanout")


@aiki.task("square")
async def square(x: int) -> int:
    return x * x


@fanout.v("1", shards=6)
async def fanout_v1(ctx: aiki.WorkflowContext, payload: int) -> Any:
    squared = await square.start(ctx, payload)
    child = await receipt.get_version("1").start_as_child(  # type: ignore[union-attr]
        ctx, {"order": f"fanout-{payload}", "amount": squared}
    )
    await ctx.sleep("settle", 0.2)
    approval = await ctx.wait_for_event("approved", timeout=30)
    return {"squared": squared, "receipt": await child.wait_for_completion(), **approval}


async def test_order_processing_and_primitives_on_a_cluster(cluster: RedisCluster) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=cluster.url, port=0, prefix=prefix, retention=3600.0)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_server, settings)
        async with (
            aiki.client(redis_url=cluster.url, prefix=prefix) as client,
            aiki.client(base_url=server.base_url) as http_client,
        ):
            assert client.store.redis.cluster  # found out by asking the node
            async with running_worker(
                client, order_processing, fanout, receipt, max_concurrent_workflow_runs=30
            ):
                listener = client._backend.listener  # type: ignore[attr-defined]
                await listener.ensure_listening()  # subscribed before the runs can end
                # The seed's order-processing workflow: over Redis directly and over HTTP.
                handles = [await order_processing_v1.start(client, EXAMPLE_ORDER) for _ in range(8)]
                handles += [
                    await order_processing_v1.start(http_client, EXAMPLE_ORDER) for _ in range(4)
                ]
                with trio.fail_after(60):
                    results = [await h.wait_for_completion() for h in handles]
                assert all(r == results[0] for r in results)
                # The waits were answered by run-ended notifications published inside the
                # finishing scripts on whichever master served each run's slot.
                assert listener.messages_received >= 8
                assert results[0]["success"] is True and results[0]["charged"] == 29.0

                # A version with shards=6: its runs (and their children) spread over slots
                # served by different masters.
                runs = [await fanout_v1.start(client, i) for i in range(18)]
                shards = {shard_of(r.id) for r in runs}
                assert len(shards) >= 3 and shards <= set(range(6))
                masters = {cluster.port_of_key(client.store.keys.run(r.id)) for r in runs}
                assert len(masters) >= 2, "sharded runs all landed on one master"

                # Every run is sleeping or waiting for its event: none holds a slot.
                async def all_waiting() -> bool:
                    got = [await client.get_run(r.id) for r in runs]
                    return all(g.status == "awaiting_event" for g in got)

                await wait_until(all_waiting, timeout=60, what="fan-out runs await the event")
                for i, run in enumerate(runs):
                    via = http_client if i % 2 else client
                    await via.get_handle(run.id).send_event("approved", {"by": f"op{i}"})
                with trio.fail_after(60):
                    done = [await r.wait_for_completion() for r in runs]
                for i, result in enumerate(done):
                    assert result == {
                        "squared": i * i,
                        "receipt": {"receipt_for": f"fanout-{i}", "amount": i * i},
                        "by": f"op{i}",
                    }
                for run in runs:  # each child lives in its parent's shard
                    record = await client.get_run(run.id, with_tasks=True)
                    child_ids = [
                        t["child_id"] for t in (record.tasks or {}).values() if "child_id" in t
                    ]
                    assert child_ids and all(shard_of(c) == shard_of(run.id) for c in child_ids)

                # A schedule fires on the cluster (its runs live in shard 0).
                await receipt.get_version("1").schedule(  # type: ignore[union-attr]
                    client, "every-half-second", {"order": "sched", "amount": 1}, every=0.5
                )

                async def fired_twice() -> bool:
                    listed = await client.store.list_runs(workflow="receipt", limit=100)
                    return sum(1 for r in listed if r.status == "completed") >= 2 + len(runs)

                await wait_until(fired_twice, timeout=30, what="the schedule fired twice")
                await client.delete_schedule("every-half-second")

                # Listing merges every shard's index, newest first, over the API too.
                async with httpx.AsyncClient(base_url=server.base_url) as http:
                    listed = (await http.get("/api/v1/runs", params={"limit": 500})).json()
                    ids = {r["id"] for r in listed["runs"]}
                    assert {h.id for h in handles} | {r.id for r in runs} <= ids
                    created = [r["created_at"] for r in listed["runs"]]
                    assert created == sorted(created, reverse=True)
                    assert (await http.get("/readyz")).status_code == 200
                    metrics = (await http.get("/metrics")).text
                    assert 'aiki_runs_started_total{version="1",workflow="fanout"} 18.0' in metrics
        nursery.cancel_scope.cancel()


async def test_worker_sigkilled_on_a_cluster_runs_finish_elsewhere_once(
    cluster: RedisCluster, redis_server: RedisServerProcess, tmp_path: Path
) -> None:
    # Tasks count their executions in a standalone Redis, outside the cluster.
    port = redis_server.port
    assert port is not None
    cluster_worker.counter_port = port
    async with aiki.client(redis_url=cluster.url) as client:
        async with processes.worker_process(
            cluster.url, "cluster-a", tmp_path, str(port), script=CLUSTER_WORKER
        ) as worker_a:
            runs = [
                await charge_order_v1.start(client, {"order": f"o{i}", "units": i + 1})
                for i in range(9)
            ]
            assert len({shard_of(r.id) for r in runs}) >= 2

            async def all_inside_charge() -> bool:
                for r in runs:
                    if await acommand(port, "GET", f"count:{r.id}:charge") != b"1":
                        return False
                return True

            await wait_until(all_inside_charge, timeout=60, what="worker A inside charge")
            worker_a.send_signal(signal.SIGKILL)
            await worker_a.proc.wait()
            assert worker_a.returncode == -signal.SIGKILL

        await acommand(port, "SET", "release", "1")
        async with processes.worker_process(
            cluster.url, "cluster-b", tmp_path, str(port), script=CLUSTER_WORKER
        ):
            with trio.fail_after(60):
                results = [await r.wait_for_completion() for r in runs]

    for i, (run, result) in enumerate(zip(runs, results, strict=True)):
        units = i + 1
        assert result == {
            "order": f"o{i}",
            "charged": units * 10,
            "shipped": True,
            "receipt": {"receipt_for": f"o{i}", "amount": units * 10},
        }
        counts = {
            task: int(await acommand(port, "GET", f"count:{run.id}:{task}") or 0)
            for task in ("reserve", "charge", "ship")
        }
        # reserve was recorded before the crash: never run again. charge was cut short by
        # the kill, so it ran again (at-least-once for an interrupted task). ship once.
        assert counts == {"reserve": 1, "charge": 2, "ship": 1}, run.id


napper = aiki.workflow("napper")
_flaky_calls: dict[str, int] = {}


@aiki.task("flaky", retry=aiki.Retry.fixed(3, delay=0.6))
async def flaky(key: str) -> str:
    # Fails once per key; the 0.6 s retry delay parks the run (awaiting_retry, a timer).
    _flaky_calls[key] = _flaky_calls.get(key, 0) + 1
    if _flaky_calls[key] == 1:
        raise RuntimeError("first try fails")
    return key


@napper.v("1", shards=4)
async def napper_v1(ctx: aiki.WorkflowContext, payload: str) -> str:
    await flaky.start(ctx, f"{ctx.run_id}")
    await ctx.sleep("long", 3600)
    return f"woke {payload}"


gated = aiki.workflow("gated")
_gate = {"open": False}


@aiki.task("wait-for-gate")
async def wait_for_gate(x: int) -> int:
    while not _gate["open"]:  # noqa: ASYNC110
        await trio.sleep(0.01)
    return x


@gated.v("1", shards=4)
async def gated_v1(ctx: aiki.WorkflowContext, payload: int) -> int:
    return await wait_for_gate.start(ctx, payload)


async def test_control_retries_and_timers_on_a_cluster(cluster: RedisCluster) -> None:
    """The transitions the other tests do not reach: retry timers, wake-ups, pause and
    resume, cancel, an operator's retry, delayed starts, and a graceful worker stop
    handing runs back."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    async with (
        aiki.client(redis_url=cluster.url, prefix=prefix) as client,
        trio.open_nursery() as nursery,
    ):
        from aiki.engine import serve_timers

        await nursery.start(serve_timers, client.store)
        async with running_worker(client, napper, max_concurrent_workflow_runs=20):
            runs = [await napper_v1.start(client, str(i)) for i in range(8)]
            later = await napper_v1.start(client, "later", delay=0.5)
            assert await later.status() == "scheduled"
            assert len({shard_of(r.id) for r in [*runs, later]}) >= 2

            async def all_sleeping() -> bool:
                return all([await r.status() == "sleeping" for r in [*runs, later]])

            await wait_until(all_sleeping, timeout=60, what="every run retried, then asleep")
            assert await runs[0].pause() == "paused"
            assert await runs[0].resume() in ("queued", "sleeping")
            assert await runs[1].cancel("not needed") == "cancelled"
            for run in [*runs[:1], *runs[2:], later]:
                assert await run.wakeup("long") == 1
            with trio.fail_after(60):
                for i, run in enumerate(runs):
                    if i != 1:
                        assert await run.wait_for_completion() == f"woke {i}"
                assert await later.wait_for_completion() == "woke later"
            assert (await runs[1].describe()).status == "cancelled"
            # An operator's retry of the cancelled run (its keys, computed in Lua too, are
            # all in the run's slot): the flaky task is not run again; it sleeps again.
            calls = _flaky_calls[runs[1].id]
            assert await runs[1].retry() == "queued"

            async def asleep_again() -> bool:
                return await runs[1].status() == "sleeping"

            await wait_until(asleep_again, timeout=60, what="the retried run asleep again")
            assert await runs[1].wakeup("long") == 1
            with trio.fail_after(60):
                assert await runs[1].wait_for_completion() == "woke 1"
            assert _flaky_calls[runs[1].id] == calls
        # A graceful stop while runs execute hands them straight back to their streams.
        _gate["open"] = False
        held = [await gated_v1.start(client, i) for i in range(4)]
        async with running_worker(
            client, gated, max_concurrent_workflow_runs=20, shutdown_grace=0.1
        ):

            async def all_running() -> bool:
                return all([await r.status() == "running" for r in held])

            await wait_until(all_running, timeout=60, what="gated runs executing")
        assert all([await r.status() == "queued" for r in held])  # requeued at once
        _gate["open"] = True
        async with running_worker(client, gated, max_concurrent_workflow_runs=20):
            with trio.fail_after(60):
                assert [await r.wait_for_completion() for r in held] == [0, 1, 2, 3]
        nursery.cancel_scope.cancel()


async def test_a_backlog_on_a_cluster_is_read_and_taken_per_slot(cluster: RedisCluster) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}"
    async with aiki.client(redis_url=cluster.url, prefix=prefix) as client:
        handles = [await gated_v1.start(client, i) for i in range(40)]
        _gate["open"] = True
        async with running_worker(client, gated, max_concurrent_workflow_runs=6) as worker:
            with trio.fail_after(60):
                assert [await h.wait_for_completion() for h in handles] == list(range(40))
            assert worker.taken_with_read > 0


async def test_the_native_client_hands_a_cluster_node_to_glide(cluster: RedisCluster) -> None:
    """A cluster node's HELLO says ``mode: cluster``: the native implementation connects
    through GLIDE's cluster client instead (it follows MOVED/ASK)."""
    from aiki._redis import connect

    for _ in range(2):  # the second time from what the first one learnt
        redis = await connect(cluster.url, implementation="native")
        try:
            assert redis.cluster and type(redis).__name__ == "GlideRedis"
            assert await redis.command("SET", "{a}x", "1") == "OK"
        finally:
            await redis.aclose()


# -- flow control on a cluster (docs/flow-control.md) -------------------------------------

flow_cluster = aiki.workflow("flow-cluster")


@aiki.task("flow-cluster-slow", timeout=0.3, retry=aiki.Retry.fixed(2, 0.05))
async def flow_cluster_slow(n: int) -> str:
    if aiki.task_context().attempt == 1:
        await trio.sleep(5)  # cancelled by the timeout
    return "second attempt"


@aiki.task("flow-cluster-beat", heartbeat_timeout=0.5, retry=aiki.Retry.fixed(2, 0.05))
async def flow_cluster_beat(n: int) -> Any:
    ctx = aiki.task_context()
    if ctx.attempt == 1:
        ctx.heartbeat({"n": n})
        await trio.sleep(5)  # silent: cancelled by the heartbeat timeout
    return ctx.last_heartbeat


@aiki.task(
    "flow-cluster-rated",
    rate_limit=aiki.RateLimit(1, per=60.0, name="flow-cluster", key=lambda n: f"k{n % 2}"),
)
async def flow_cluster_rated(n: int) -> int:
    return n


@flow_cluster.v("1", shards=6)
async def flow_cluster_v1(ctx: aiki.WorkflowContext, n: int) -> Any:
    return [
        await flow_cluster_slow.start(ctx, n),
        await flow_cluster_beat.start(ctx, n),
        await flow_cluster_rated.start(ctx, n),
    ]


async def test_flow_control_on_a_cluster(cluster: RedisCluster) -> None:
    """Task deadlines (in each run's shard slot, with its timers), rate limits (a slot per
    limit and key) and a run parked for a token, across several masters."""
    prefix = f"f{uuid.uuid4().hex[:8]}"
    async with (
        aiki.client(redis_url=cluster.url, prefix=prefix) as client,
        running_worker(client, flow_cluster, max_concurrent_workflow_runs=20),
    ):
        runs = [await flow_cluster_v1.start(client, n) for n in range(6)]
        assert len({shard_of(r.id) for r in runs}) >= 2

        async def settled() -> bool:
            statuses = [await r.status() for r in runs]
            return statuses.count("completed") == 2 and statuses.count("awaiting_rate_limit") == 4

        await wait_until(settled, timeout=60, what="one run per key done, the rest parked")
        done = [r for r in runs if await r.status() == "completed"]
        for run in done:
            n = runs.index(run)
            assert await run.wait_for_completion() == ["second attempt", {"n": n}, n]
        assert {runs.index(r) % 2 for r in done} == {0, 1}  # one per key
        for run in runs:
            if run not in done:
                assert await run.cancel("enough") == "cancelled"


ranked = aiki.workflow("ranked")
RANKED_DONE: list[str] = []


@aiki.task("ranked-step")
async def ranked_step(label: str) -> str:
    if label.startswith("low-"):
        await trio.sleep(0.1)  # the backlog takes 4 s on one slot
    RANKED_DONE.append(label)
    return label


@ranked.v("1", shards=4)
async def ranked_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    if payload.get("child"):
        child = await ranked_v1.start_as_child(ctx, {"label": payload["label"] + "-child"})
        await child.wait_for_completion()
    if payload.get("nap"):
        await ctx.sleep("nap", 0.2)
    return await ranked_step.start(ctx, payload["label"])


async def test_priorities_on_a_cluster(cluster: RedisCluster) -> None:
    """Each shard's priority queue and held stream live in its slot, with its stream:
    runs with a priority overtake a backlog spread over 4 shards (so several masters),
    keep their priority through a durable sleep, a child inherits it, and a waiting one
    can be paused, resumed and cancelled."""
    prefix = f"p{uuid.uuid4().hex[:8]}"
    RANKED_DONE.clear()
    async with aiki.client(redis_url=cluster.url, prefix=prefix) as client:
        store = client.store
        await ranked_v1.start_many(client, [{"label": f"low-{i}"} for i in range(40)])
        high = [
            await ranked_v1.start(
                client, {"label": f"high-{i}", "nap": i % 2, "child": i == 0}, priority=90
            )
            for i in range(8)
        ]
        assert len({shard_of(h.id) for h in high}) >= 2
        waiting = await ranked_v1.start(client, {"label": "paused"}, priority=50)
        assert await waiting.pause() == "paused"
        assert await waiting.resume() == "queued"
        cancelled = await ranked_v1.start(client, {"label": "cancelled"}, priority=50)
        assert await cancelled.cancel("no") == "cancelled"
        async with running_worker(client, ranked, max_concurrent_workflow_runs=1):
            for h in high:
                await h.wait_for_completion(timeout=60)
            await waiting.wait_for_completion(timeout=60)
            lows_before = sum(1 for x in RANKED_DONE if x.startswith("low-"))
        child_of_first = (await store.get_run(high[0].id, with_tasks=True)).tasks
        (child_id,) = [r["child_id"] for r in child_of_first.values() if r.get("child_id")][:1]
        assert (await client.get_run(child_id)).priority == 90  # inherited
    # One read per shard in turn, each taking its shard's best. A high-priority run that
    # never leaves the queue (no nap, no child) waits only for the first executions of
    # the 8 high ones (at most) and, per shard turn, one read of each of the 3 other
    # shards: at most 3 x 8 runs without a priority finish before the last of them.
    # (Not "before half of the backlog": runs napping on a durable timer leave the
    # queue, and how many low ones run meanwhile depends on when timers fire: a test
    # once counted 22 under load.)
    plain = [f"high-{i}" for i in (2, 4, 6)]
    last = max(RANKED_DONE.index(label) for label in plain)
    lows_ahead = sum(1 for label in RANKED_DONE[:last] if label.startswith("low-"))
    assert lows_ahead <= 3 * len(high), " ".join(RANKED_DONE)
    assert lows_before < 40, " ".join(RANKED_DONE)  # every prioritized run overtook some
    assert "cancelled" not in RANKED_DONE


metered = aiki.workflow("metered")
METERED_HOLDER: dict[str, str] = {}  # key -> the run between its first entry and its end
METERED_OVERLAPS: list[str] = []


@metered.v("1", shards=6, concurrency=aiki.Concurrency(1, key=lambda p: p["key"]))
async def metered_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    key = payload["key"]
    if METERED_HOLDER.setdefault(key, ctx.run_id) != ctx.run_id:
        METERED_OVERLAPS.append(f"{ctx.run_id} entered while {METERED_HOLDER[key]} held {key}")
    await ctx.sleep("nap", 0.05)  # parked, the run keeps its key's slot
    del METERED_HOLDER[key]
    return key


async def test_concurrency_keys_on_a_cluster(cluster: RedisCluster) -> None:
    """A key's runs all live in the key's shard (so its holders, waiting list, runs and
    stream share one slot): with shards=6 over 3 masters, 8 keys of limit 1 spread over
    several slots, no two runs of a key overlap (also across a durable sleep), a waiting
    run can be cancelled, and nothing is left behind."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    METERED_HOLDER.clear()
    METERED_OVERLAPS.clear()
    async with aiki.client(redis_url=cluster.url, prefix=prefix) as client:
        handles = await metered_v1.start_many(client, [{"key": f"k{i % 8}"} for i in range(32)])
        by_key: dict[str, set[int]] = {}
        for i, h in enumerate(handles):
            by_key.setdefault(f"k{i % 8}", set()).add(shard_of(h.id))
        assert all(len(shards) == 1 for shards in by_key.values())  # one shard per key
        assert len({s for shards in by_key.values() for s in shards}) >= 2
        assert await handles[-1].status() == "awaiting_concurrency"
        assert await handles[-1].cancel("not needed") == "cancelled"
        async with running_worker(client, metered, max_concurrent_workflow_runs=20):
            results = [await h.wait_for_completion(timeout=60) for h in handles[:-1]]
        assert results == [f"k{i % 8}" for i in range(31)]
        assert METERED_OVERLAPS == []
        leftovers = []
        for port in cluster.ports:
            leftovers += await acommand(port, "KEYS", f"{prefix}:*concurrency*")
        assert leftovers == []
