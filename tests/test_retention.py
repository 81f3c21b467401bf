"""Ended runs expire after the configured retention, with their index entries."""

from __future__ import annotations

import trio
from _helpers import running_worker, wait_until

import aiki
from examples.order_processing import EXAMPLE_ORDER, order_processing, order_processing_v1


async def test_ended_runs_expire_with_index_entries(client: aiki.Client) -> None:
    store = client.store
    await store.set_retention(1.0)
    async with running_worker(client, order_processing):
        ended = await order_processing_v1.start(client, EXAMPLE_ORDER)
        await ended.wait_for_completion(timeout=30)
    pending = await order_processing_v1.start(client, EXAMPLE_ORDER)  # never runs: queued
    assert {r.id for r in await store.list_runs()} == {ended.id, pending.id}
    ttl = await store.redis.command("PTTL", store.keys.run(ended.id))
    assert 0 < int(ttl) <= 1000
    await trio.sleep(1.2)
    for key in (store.keys.run(ended.id), store.keys.tasks(ended.id)):
        assert await store.redis.command("EXISTS", key) == 0
    assert await store.prune_ended() == 1
    assert {r.id for r in await store.list_runs()} == {pending.id}
    # The run that has not ended is kept whatever its age.
    assert await store.redis.command("EXISTS", store.keys.run(pending.id)) == 1
    assert int(await store.redis.command("PTTL", store.keys.run(pending.id))) == -1


async def test_without_retention_runs_are_kept(client: aiki.Client) -> None:
    store = client.store
    async with running_worker(client, order_processing):
        handle = await order_processing_v1.start(client, EXAMPLE_ORDER)
        await handle.wait_for_completion(timeout=30)
    assert int(await store.redis.command("PTTL", store.keys.run(handle.id))) == -1
    assert await store.prune_ended() == 0
    await wait_until(lambda: _listed(client, handle.id), what="still listed")


async def _listed(client: aiki.Client, run_id: str) -> bool:
    return run_id in {r.id for r in await client.store.list_runs()}
