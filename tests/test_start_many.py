"""start_many: many runs started in one round trip, each created atomically."""

from __future__ import annotations

import pytest
from _helpers import running_worker

import aiki
from aiki._redis import connect
from examples.order_processing import EXAMPLE_ORDER, order_processing, order_processing_v1


def _order(n: int) -> dict:
    return {**EXAMPLE_ORDER, "email": f"customer-{n}@example.com"}


async def test_start_many_runs_all_and_uses_one_round_trip(
    client: aiki.Client, redis_url: str
) -> None:
    admin = await connect(redis_url)
    try:
        await admin.command("CONFIG", "RESETSTAT")
        handles = await order_processing_v1.start_many(client, [_order(n) for n in range(300)])
        stats = (await admin.command("INFO", "commandstats")).decode()
    finally:
        await admin.aclose()
    # 300 start scripts ran, all sent as one pipeline (one EVALSHA per run, no retries).
    assert "cmdstat_evalsha:calls=300," in stats
    assert len({h.id for h in handles}) == 300
    async with running_worker(client, order_processing, max_concurrent_workflow_runs=50):
        results = [await h.wait_for_completion(timeout=60) for h in handles]
    assert [r["confirmation_sent_to"] for r in results] == [
        f"customer-{n}@example.com" for n in range(300)
    ]


async def test_start_many_rejects_a_bad_payload_before_writing(client: aiki.Client) -> None:
    with pytest.raises(aiki.InvalidPayload):
        await order_processing_v1.start_many(client, [_order(1), {"bad": object()}])
    assert await client.store.redis.command("ZCARD", client.store.keys.runs_index()) == 0
