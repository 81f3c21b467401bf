"""Shards on a single Redis: what a sharded version changes, checked without a cluster.

(``tests/test_cluster.py`` runs the same machinery on a real 3-master Redis Cluster.)
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _helpers import running_worker, wait_until

import aiki
from aiki._redis import RedisAddress, connect
from aiki._store._keys import shard_of
from aiki.engine import serve_timers

spread = aiki.workflow("spread")


@aiki.task("inc")
async def inc(x: int) -> int:
    return x + 1


@spread.v("1", shards=8)
async def spread_v1(ctx: aiki.WorkflowContext, payload: int) -> int:
    value = await inc.start(ctx, payload)
    await ctx.sleep("nap", 0.05)
    return value


leaf = aiki.workflow("leaf")


@leaf.v("1")
async def leaf_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return {"leaf": payload}


parent = aiki.workflow("parent")


@parent.v("1", shards=5)
async def parent_v1(ctx: aiki.WorkflowContext, payload: int) -> Any:
    child = await leaf_v1.start_as_child(ctx, payload)
    return await child.wait_for_completion()


@pytest.mark.parametrize("bad", [0, 257, "3", 2.0, True])
def test_shards_must_be_a_whole_number_from_1_to_256(bad: Any) -> None:
    with pytest.raises(aiki.ConfigurationError, match="shards must be a whole number"):
        aiki.workflow("bad-shards").v("1", shards=bad)


def test_cluster_url_option() -> None:
    assert RedisAddress.from_url("redis://h:1?cluster=yes").cluster is True
    assert RedisAddress.from_url("redis://h:1?cluster=no").cluster is False
    assert RedisAddress.from_url("redis://h:1").cluster is None
    with pytest.raises(aiki.ConfigurationError, match="cluster must be yes or no"):
        RedisAddress.from_url("redis://h:1?cluster=maybe")


async def test_redis_py_refuses_a_cluster_url(redis_url: str) -> None:
    from aiki._redis import open_asyncio_bridge

    async with open_asyncio_bridge("redis-py"):
        with pytest.raises(aiki.ConfigurationError, match="Redis Cluster"):
            await connect(f"{redis_url}?cluster=yes", implementation="redis-py")
        # ``cluster=no`` is Aiki's option: it is not passed on to redis-py.
        redis = await connect(f"{redis_url}?cluster=no", implementation="redis-py")
        assert await redis.command("PING") in (b"PONG", "PONG")
        await redis.aclose()


async def test_a_sharded_version_spreads_runs_and_everything_still_works(
    client: aiki.Client,
) -> None:
    assert not client.store.redis.cluster
    # Published while the deployment had one shard: the worker registering 8 shards
    # copies it to the new ones, so runs ending there expire too.
    await client.store.set_retention(3600.0)
    assert await client.store.shard_count() == 1
    async with running_worker(client, spread), trio.open_nursery() as nursery:
        await nursery.start(serve_timers, client.store)  # the sleeps' timers, every shard
        handles = [await spread_v1.start(client, i) for i in range(40)]
        assert len({shard_of(h.id) for h in handles}) >= 4
        assert {shard_of(h.id) for h in handles} <= set(range(8))
        with trio.fail_after(30):
            assert [await h.wait_for_completion() for h in handles] == list(range(1, 41))
        nursery.cancel_scope.cancel()
    store = client.store
    for h in handles:  # ended runs expire in their own shard (its config copy)
        assert int(await store.redis.command("PTTL", store.keys.run(h.id))) > 0
    # Listing merges the shards' indexes, newest first, and pages with the cursor.
    first = await store.list_runs(limit=15)
    assert len(first) == 15
    created = [r.created_at or 0 for r in first]
    assert created == sorted(created, reverse=True)
    rest = await store.list_runs(limit=100, before=created[-1])
    assert all((r.created_at or 0) < created[-1] for r in rest)
    everything = await store.list_runs(limit=100)
    assert {r.id for r in everything} == {h.id for h in handles}


async def test_repeated_reference_id_meets_the_first_start_in_its_shard(
    client: aiki.Client,
) -> None:
    first = await spread_v1.start(client, 1, reference_id="order-42")
    again = await spread_v1.start(client, 1, reference_id="order-42")
    other = await spread_v1.start(client, 1, reference_id="order-43")
    assert again.id == first.id != other.id


async def test_a_worker_follows_shards_registered_after_it_started(client: aiki.Client) -> None:
    """The leaf worker starts when the deployment has one shard; a parent version with 5
    shards registers later. Its children live in the parent's shards, so the leaf worker
    must start reading those (within its 2 s registry interval)."""
    async with running_worker(client, leaf, id="leaf-only") as leaf_worker:
        async with running_worker(client, parent, id="parent-only"):
            handles = [await parent_v1.start(client, i) for i in range(10)]
            assert any(shard_of(h.id) != 0 for h in handles)
            with trio.fail_after(30):
                results = [await h.wait_for_completion() for h in handles]
        assert results == [{"leaf": i} for i in range(10)]

        async def follows() -> bool:
            return leaf_worker.executions_finished >= 10

        await wait_until(follows, what="the leaf worker ran every child")


bulk = aiki.workflow("bulk")


@bulk.v("1", shards=6)
async def bulk_v1(ctx: aiki.WorkflowContext, payload: int) -> int:
    return await inc.start(ctx, payload)


async def test_a_sharded_backlog_is_read_and_taken_per_shard(client: aiki.Client) -> None:
    """Runs queued in six shards before the worker starts: it reads and takes them with
    one script per shard (each script stays in its shard's slot), each run once."""
    handles = [await bulk_v1.start(client, i) for i in range(60)]
    async with running_worker(client, bulk, max_concurrent_workflow_runs=8) as worker:
        with trio.fail_after(60):
            results = [await h.wait_for_completion() for h in handles]
        assert worker.taken_with_read > 0
    assert results == list(range(1, 61))
    for handle in handles:
        assert (await client.get_run(handle.id)).attempts == 1


async def test_the_shard_count_never_goes_down(client: aiki.Client) -> None:
    """Runs already in shard 7 must stay readable (and their timers fired) after the
    version is redeployed with fewer shards."""
    store = client.store
    await store.register_workflows([("spread", "1")], "w1", shards={("spread", "1"): 8})
    assert await store.shard_count() == 8
    await store.register_workflows([("spread", "1")], "w2", shards={("spread", "1"): 2})
    assert await store.shard_count() == 8


async def test_listing_pages_through_runs_created_in_the_same_millisecond(
    client: aiki.Client,
) -> None:
    """start_many creates hundreds of runs within a few milliseconds: a listing that
    needs several pages per shard neither skips nor repeats runs sharing a millisecond."""
    handles = await leaf_v1.start_many(client, list(range(150)))
    handles += await bulk_v1.start_many(client, list(range(450)))  # ~75 per shard
    listed = await client.store.list_runs(limit=1000)
    assert len(listed) == 600
    assert {r.id for r in listed} == {h.id for h in handles}
    created = [r.created_at or 0 for r in listed]
    assert created == sorted(created, reverse=True)
    some = await client.store.list_runs(limit=120)
    assert len({r.id for r in some}) == 120
    assert [r.id for r in some] == [r.id for r in listed[:120]] or len(set(created)) < 600
