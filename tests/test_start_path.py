"""The one start path (``aiki._start``): what a start accepts and refuses, naming the
field at fault, and what ``start_run`` does against a real Redis: run ids, the conflict
policy, a registered version's shards and timeout for callers without its code, and a
start retried through a Redis outage.

The client and the HTTP API both start runs through it, so these are the rules of both.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
import trio

import aiki
from aiki._store import reference_shard, shard_of
from aiki.embedded import RedisServerProcess
from aiki.engine import MAX_MS, StartRequest, encode_payload, start_run


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"workflow": ""}, "workflow"),
        ({"version": 3}, "version"),
        ({"reference_id": ""}, "reference_id"),
        ({"reference_id": 12}, "reference_id"),
        ({"on_conflict": "ignore"}, "on_conflict"),
        ({"delay": -1.0}, "delay"),
        ({"delay": math.nan}, "delay"),
        ({"delay": 1.0, "start_at": datetime.now(UTC)}, "start_at"),
        ({"start_at": datetime(2030, 1, 1)}, "start_at"),  # naive
        ({"start_at_ms": True}, "start_at_ms"),
        ({"start_at_ms": -1}, "start_at_ms"),
        ({"start_at_ms": MAX_MS + 1}, "start_at_ms"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"sensitive": "yes"}, "sensitive"),
        ({"shards": 0}, "shards"),
        ({"shards": 257}, "shards"),
    ],
)
def test_a_refused_start_names_its_field(kwargs: dict[str, Any], field: str) -> None:
    args = {"workflow": "wf", "version": "1", "payload": {"a": 1}} | kwargs
    with pytest.raises(aiki.ConfigurationError) as info:
        StartRequest.build(args.pop("workflow"), args.pop("version"), args.pop("payload"), **args)
    assert info.value.field == field
    assert field in str(info.value)


def test_a_payload_that_is_not_json_or_too_large_is_refused_as_the_payload() -> None:
    with pytest.raises(aiki.InvalidPayload) as bad:
        StartRequest.build("wf", "1", {"a": {1, 2}})
    assert bad.value.field == "payload" and not isinstance(bad.value, aiki.PayloadTooLarge)
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(aiki.InvalidPayload) as deep:
        StartRequest.build("wf", "1", nested)
    assert deep.value.field == "payload"
    with pytest.raises(aiki.PayloadTooLarge) as big:
        StartRequest.build("wf", "1", "é" * 600, max_payload_bytes=1000)
    # counted as UTF-8 bytes of the compact JSON (600 two-byte chars and two quotes)
    assert (big.value.size, big.value.limit, big.value.field) == (1202, 1000, "payload")
    assert "limit is 1000" in str(big.value)
    assert encode_payload("é" * 400, 1000) == '"' + "é" * 400 + '"'


def test_when_a_run_starts_is_one_unix_time_in_ms() -> None:
    at = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    by_datetime = StartRequest.build("wf", "1", start_at=at)
    assert by_datetime.start_at_ms == int(at.timestamp() * 1000)
    assert StartRequest.build("wf", "1", start_at_ms=123).start_at_ms == 123
    # A delay stays relative: the start script counts it on Redis's clock (virtual in a
    # time-skipping test environment), not on this machine's.
    by_delay = StartRequest.build("wf", "1", delay=60.0)
    assert (by_delay.start_at_ms, by_delay.start_delay_ms) == (None, 60_000)
    plain = StartRequest.build("wf", "1", [1, 2], timeout=5, sensitive=True)
    assert (plain.payload_json, plain.timeout, plain.sensitive, plain.start_at_ms) == (
        "[1,2]",
        5.0,
        True,
        None,
    )


async def test_start_run_applies_the_conflict_policy(client: aiki.Client) -> None:
    store = client.store
    first = await start_run(store, StartRequest.build("sp", "1", {"n": 1}, reference_id="r-1"))
    assert first.created
    again = await start_run(store, StartRequest.build("sp", "1", {"n": 1}, reference_id="r-1"))
    assert (again.run_id, again.created) == (first.run_id, False)
    with pytest.raises(aiki.RunConflict):
        await start_run(store, StartRequest.build("sp", "1", {"n": 2}, reference_id="r-1"))
    existing = await start_run(
        store,
        StartRequest.build("sp", "1", {"n": 2}, reference_id="r-1", on_conflict="return_existing"),
    )
    assert (existing.run_id, existing.created) == (first.run_id, False)
    run = await store.get_run(first.run_id)
    assert run is not None and run.payload == {"n": 1} and run.status == "queued"


async def test_a_registered_start_takes_the_versions_shards_and_timeout(
    client: aiki.Client,
) -> None:
    """What the HTTP API does for callers without the workflow's code."""
    store = client.store
    await store.register_workflows(
        [("reg", "1"), ("reg", "2")], "w-1", {("reg", "2"): 12.5}, {("reg", "2"): 4}
    )
    outcome = await start_run(
        store, StartRequest.build("reg", "2", None, reference_id="ref-9"), registered=True
    )
    assert (outcome.request.shards, outcome.request.timeout) == (4, 12.5)
    assert shard_of(outcome.run_id) == reference_shard("reg", "ref-9", 4)
    stored = await store.redis.command("HGET", store.keys.run(outcome.run_id), "timeout_ms")
    assert int(stored) == 12_500
    own = await start_run(store, StartRequest.build("reg", "2", None, timeout=3), registered=True)
    assert own.request.timeout == 3.0  # a start's own timeout wins

    with pytest.raises(aiki.UnknownWorkflow) as no_version:
        await start_run(store, StartRequest.build("reg", "7", None), registered=True)
    assert no_version.value.known_versions == ["1", "2"]
    assert no_version.value.field == "version"
    assert "known versions: 1, 2" in str(no_version.value)
    with pytest.raises(aiki.UnknownWorkflow) as no_workflow:
        await start_run(store, StartRequest.build("nope", "1", None), registered=True)
    assert (no_workflow.value.known_versions, no_workflow.value.field) == ([], "workflow")
    # nothing was written by the refused starts
    assert len(await store.list_runs(limit=10)) == 2


async def test_a_start_is_retried_through_a_redis_outage(
    client: aiki.Client, redis_server: RedisServerProcess
) -> None:
    """Redis goes away and comes back on the same port (AOF): the start that was made
    meanwhile lands, once, when it returns."""
    store = client.store
    request = StartRequest.build("outage", "1", {"x": 1}, reference_id="o-1")
    redis_server.stop()
    outcome: list[Any] = []

    async def start() -> None:
        outcome.append(await start_run(store, request, retry_for=20.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start)
        await trio.sleep(0.5)
        assert not outcome  # still retrying
        await trio.to_thread.run_sync(redis_server.start)
    assert outcome[0].created
    runs = await store.list_runs(limit=10)
    assert [r.id for r in runs] == [outcome[0].run_id]


async def test_without_retry_an_outage_fails_the_start_at_once(
    client: aiki.Client, redis_server: RedisServerProcess
) -> None:
    redis_server.stop()
    with trio.fail_after(20), pytest.raises(aiki.ConnectionFailed):  # not 30 s of retries
        await start_run(client.store, StartRequest.build("outage", "1"), retry_for=0.0)
