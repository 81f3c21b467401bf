"""Run search on the store: the indexes follow every status transition, attributes set by
a workflow are indexed, listings intersect indexes on the server and page stably across
shards, and pruning ended runs removes their index entries.

The listing's speed on 100,000 runs is a benchmark scenario (``benchmarks`` ``search``),
not a timed test; here the work is counted instead.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio
from _helpers import running_worker, take

import aiki
from aiki._store import RUN_STATUSES, RunQuery, Store, TakenRun, shard_of
from aiki._store._scripts import FindRuns

WF, V = "search-wf", "1"


async def _statuses_indexed(store: Store, run_id: str) -> set[str]:
    shard = shard_of(run_id)
    replies = await store.redis.batch(
        [["ZSCORE", store.keys.index("status", s, shard), run_id] for s in RUN_STATUSES]
    )
    return {s for s, score in zip(RUN_STATUSES, replies, strict=True) if score is not None}


async def _check(store: Store, run_id: str, expected: str) -> None:
    run = await store.get_run(run_id)
    assert run is not None and run.status == expected
    assert await _statuses_indexed(store, run_id) == {expected}
    listed = await store.list_runs(status=expected, limit=100)
    assert run_id in {r.id for r in listed}
    for other in RUN_STATUSES:
        if other != expected:
            assert run_id not in {r.id for r in await store.list_runs(status=other, limit=100)}


async def _take(store: Store, run_id: str) -> tuple[TakenRun, str]:
    message = await store.redis.command("HGET", store.keys.run(run_id), "message")
    message = message.decode() if isinstance(message, bytes) else message
    return await take(store, WF, V, run_id, "w1", message), message


async def test_the_status_index_follows_every_transition(client: aiki.Client) -> None:
    store = client.store
    await store.create_groups([(WF, V)], range(1))
    now = int(time.time() * 1000)

    # scheduled -> queued (fire_timers) -> running (take) -> sleeping (park)
    run_id = await store.start_run(WF, V, "{}", start_at_ms=now + 60_000)
    await _check(store, run_id, "scheduled")
    await store.redis.command("ZADD", store.keys.timers(0), str(now - 1), run_id)
    assert (await store.fire_timers(0))[0] == 1
    await _check(store, run_id, "queued")
    taken, message = await _take(store, run_id)
    await _check(store, run_id, "running")
    await store.record_task(taken, "sleep:nap:0", {"status": "sleeping"})
    await store.park_run(taken, message, status="sleeping", wake_at_ms=now + 60_000,
                         sleep_address="sleep:nap:0")  # fmt: skip
    await _check(store, run_id, "sleeping")
    # sleeping -> queued (wake_sleep) -> running -> awaiting_event -> queued (send_event)
    assert await store.wake_sleep(run_id, "nap") == 1
    await _check(store, run_id, "queued")
    taken, message = await _take(store, run_id)
    await store.park_run(taken, message, status="awaiting_event", event=("go", 0))
    await _check(store, run_id, "awaiting_event")
    assert await store.send_event(run_id, "go", "1")
    await _check(store, run_id, "queued")
    # running -> awaiting_retry -> queued (timer) -> running -> queued (requeue)
    taken, message = await _take(store, run_id)
    await store.park_run(taken, message, status="awaiting_retry", wake_at_ms=now - 1)
    await _check(store, run_id, "awaiting_retry")
    assert (await store.fire_timers(0))[0] == 1
    await _check(store, run_id, "queued")
    taken, message = await _take(store, run_id)
    await store.requeue_run(taken, message)
    await _check(store, run_id, "queued")
    # running -> awaiting_child_workflow -> queued (the child ends: wake_parent)
    taken, message = await _take(store, run_id)
    child_id = await store.start_run(WF, V, "{}", parent_id=run_id)
    await store.park_run(taken, message, status="awaiting_child_workflow", child_id=child_id)
    await _check(store, run_id, "awaiting_child_workflow")
    child, child_message = await _take(store, child_id)
    await store.finish_run(child, child_message, result_json="1")
    await _check(store, child_id, "completed")
    await _check(store, run_id, "queued")
    # queued -> paused -> queued (resume); paused from a timer -> its timer again
    assert await store.pause_run(run_id) == "paused"
    await _check(store, run_id, "paused")
    assert await store.resume_run(run_id) == "queued"
    await _check(store, run_id, "queued")
    taken, message = await _take(store, run_id)
    await store.park_run(taken, message, status="awaiting_retry", wake_at_ms=now + 60_000)
    await store.pause_run(run_id)
    await _check(store, run_id, "paused")
    assert await store.resume_run(run_id) == "awaiting_retry"
    await _check(store, run_id, "awaiting_retry")
    # -> failed (finish), and cancelled from queued and from running
    assert (await store.fire_timers(0))[0] == 0
    await store.redis.command("ZADD", store.keys.timers(0), str(now - 1), run_id)
    await store.fire_timers(0)
    taken, message = await _take(store, run_id)
    await store.finish_run(taken, message, error={"type": "E", "message": "no"})
    await _check(store, run_id, "failed")
    other = await store.start_run(WF, V, "{}")
    await store.cancel_run(other)
    await _check(store, other, "cancelled")
    third = await store.start_run(WF, V, "{}")
    await _take(store, third)
    await store.cancel_run(third)
    await _check(store, third, "cancelled")
    # failed / cancelled -> queued (retry_run): back in the queued index
    await store.retry_run(run_id)
    await _check(store, run_id, "queued")
    await store.retry_run(third)
    await _check(store, third, "queued")


# -- attributes set by workflows --------------------------------------------------------

tagged = aiki.workflow("search-tagged")


@tagged.v("1")
async def tagged_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.set_attributes(customer=payload["customer"], tier="gold")
    await ctx.set_attributes({"region.name": "eu"}, tier=None)  # None removes
    return "ok"


async def test_attributes_set_by_a_workflow_are_searchable(client: aiki.Client) -> None:
    async with running_worker(client, tagged):
        handles = [await tagged_v1.start(client, {"customer": c}) for c in ("42", "42", "7")]
        for handle in handles:
            await handle.wait_for_completion(timeout=30)
    store = client.store
    found = await store.list_runs(attributes={"customer": "42"})
    assert {r.id for r in found} == {handles[0].id, handles[1].id}
    assert found[0].attributes == {"customer": "42", "region.name": "eu"}
    assert {r.id for r in await store.list_runs(attributes={"customer": 7})} == {handles[2].id}
    assert await store.list_runs(attributes={"tier": "gold"}) == []  # removed again
    both = {"customer": "42", "region.name": "eu"}
    assert len(await store.list_runs(attributes=both, status="completed")) == 2
    assert await store.list_runs(attributes=both, status="failed") == []
    # The run's indexed set names every index it is in (for pruning).
    members = await store.redis.command("SMEMBERS", store.keys.indexed(handles[2].id))
    names = {m.decode() if isinstance(m, bytes) else m for m in members}
    shard = shard_of(handles[2].id)
    assert names == {
        store.keys.index("workflow", "search-tagged", shard),
        store.keys.index("version", "1", shard),
        store.keys.index("attr:customer", "7", shard),
        store.keys.index("attr:region.name", "eu", shard),
    }


async def test_bad_attributes_are_refused_naming_them(client: aiki.Client) -> None:
    for bad in ({"no:colon": "1"}, {"x": 1.5}, {"x": ""}, {"": "1"}, {"x": "v" * 300}):
        with pytest.raises(aiki.ConfigurationError) as caught:
            await client.store.list_runs(attributes=bad)
        assert caught.value.field is not None and caught.value.field.startswith("attribute")
    with pytest.raises(aiki.ConfigurationError, match="status"):
        await client.store.list_runs(status="bogus")


# -- listing: intersection on the server, stable paging over shards ---------------------


async def _start_many(store: Store, n: int, *, shards: int = 1, **kw: Any) -> list[str]:
    return [await store.start_run(WF, V, "{}", shards=shards, **kw) for _ in range(n)]


async def _newest_first(store: Store, ids: list[str]) -> list[str]:
    """The listing's order: creation ms, then id, both descending."""
    runs = (await store.get_statuses(ids)).values()
    return [i for _, i in sorted(((r.created_at, r.id) for r in runs if r), reverse=True)]


async def test_pages_are_stable_across_shards_and_same_ms_runs(client: aiki.Client) -> None:
    store = client.store
    await store.raise_shards(4)
    ids = await _start_many(store, 120, shards=4)
    newest_first = sorted(
        ((r.created_at, r.id) for r in (await store.get_statuses(ids)).values() if r),
        reverse=True,
    )
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await store.find_runs(RunQuery(workflow=WF), limit=7, after=cursor)
        seen += [r.id for r in page.runs]
        pages += 1
        # Runs started meanwhile are newer than the first page: never listed again.
        await _start_many(store, 1, shards=4)
        if page.next_cursor is None:
            break
        ms, _, last = page.next_cursor.partition(":")
        cursor = (int(ms), last)
    assert seen == [run_id for _, run_id in newest_first]
    assert pages == 18  # 120 runs, 7 a page: the last page has 1 and no cursor


async def test_status_filter_pages_while_runs_change_status(client: aiki.Client) -> None:
    store = client.store
    await store.create_groups([(WF, V)], range(1))
    ids = await _newest_first(store, await _start_many(store, 30))
    query = RunQuery(status="queued")
    first = await store.find_runs(query, limit=10)
    assert [r.id for r in first.runs] == ids[:10]
    # The page's last run leaves the index: the next page still starts right after it.
    await store.cancel_run(first.runs[-1].id)
    ms, _, last = (first.next_cursor or "").partition(":")
    second = await store.find_runs(query, limit=10, after=(int(ms), last))
    assert [r.id for r in second.runs] == ids[10:20]


async def test_a_selective_filter_looks_at_few_entries(client: aiki.Client) -> None:
    """The smallest index drives: with 500 runs and 3 of one reference id, the script
    finds them after looking at 3 entries (counted by limiting its budget)."""
    store = client.store
    await _start_many(store, 500)
    wanted = [await store.start_run(WF, V, "{}", reference_id=f"r-{i}") for i in range(3)]
    await _start_many(store, 100)
    reply = await FindRuns(
        indexes=[
            store.keys.index("workflow", WF, 0),
            store.keys.index("status", "queued", 0),
            store.keys.index("reference", "r-1", 0),
        ],
        base=store.keys.base(0),
        lower="",
        upper="",
        after_ms="",
        after_id="",
        limit=10,
        budget=1,
    ).call(store.redis)
    assert reply[0] in (b"more", "more") and len(reply) == 4  # one entry looked at: found
    assert (reply[3][0].decode() if isinstance(reply[3][0], bytes) else reply[3][0]) == wanted[1]
    found = await store.list_runs(reference_id="r-1", workflow=WF)
    assert [r.id for r in found] == [wanted[1]]


async def test_budgeted_shards_merge_in_order(client: aiki.Client, monkeypatch: Any) -> None:
    """With a tiny budget every shard stops early, often: the merged pages are still
    exact (the shards that stopped highest go on first)."""
    from aiki._store import _listing

    monkeypatch.setattr(_listing, "SEARCH_BUDGET", 3)
    store = client.store
    await store.raise_shards(3)
    ids = await _start_many(store, 40, shards=3)
    cancelled = set(ids[::3])
    for run_id in cancelled:
        await store.cancel_run(run_id)
    expected = sorted(
        ((r.created_at, r.id) for r in (await store.get_statuses(ids)).values() if r),
        reverse=True,
    )
    expected_ids = [i for _, i in expected if i not in cancelled]
    got: list[str] = []
    after = None
    while True:
        page = await store.find_runs(RunQuery(status="queued", workflow=WF), limit=5, after=after)
        got += [r.id for r in page.runs]
        if not page.next_cursor:
            break
        ms, _, last = page.next_cursor.partition(":")
        after = (int(ms), last)
    assert got == expected_ids


async def test_time_bounds_and_a_bare_ms_cursor(client: aiki.Client) -> None:
    store = client.store
    early = await _start_many(store, 3)
    await trio.sleep(0.01)
    late = await _start_many(store, 3)
    runs = await store.get_statuses(early + late)
    split = min(r.created_at or 0 for i, r in runs.items() if i in late and r)
    assert {r.id for r in await store.list_runs(since=split)} >= set(late)
    assert not {r.id for r in await store.list_runs(since=split)} & set(early)
    assert {r.id for r in await store.list_runs(before=split)} == set(early)
    page = await store.find_runs(RunQuery(), limit=10, after=(split, None))
    assert {r.id for r in page.runs} == set(early)


async def test_pruning_removes_index_entries(client: aiki.Client) -> None:
    store = client.store
    await store.create_groups([(WF, V)], range(1))
    await store.set_retention(0.05)
    run_id = await store.start_run(WF, V, "{}", reference_id="gone")
    keep = await store.start_run(WF, V, "{}")
    taken, message = await _take(store, run_id)
    await store.set_attributes(taken, {"customer": "9"})
    await store.finish_run(taken, message, result_json="1")
    await trio.sleep(0.2)
    assert await store.list_runs(attributes={"customer": "9"}) == []  # expired: skipped
    assert await store.prune_ended() == 1
    shard = shard_of(run_id)
    for key in (
        store.keys.index("status", "completed", shard),
        store.keys.index("workflow", WF, shard),
        store.keys.index("reference", "gone", shard),
        store.keys.index("attr:customer", "9", shard),
        store.keys.runs_index(shard),
    ):
        assert await store.redis.command("ZSCORE", key, run_id) is None, key
    assert await store.redis.command("EXISTS", store.keys.indexed(run_id)) == 0
    assert [r.id for r in await store.list_runs()] == [keep]
