"""``/metrics`` after known activity, parsed with prometheus_client's own parser: run
counts by workflow and version, task durations and retries, queues and workers, all
read from a real Redis that a real worker wrote to."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import trio
from _helpers import running_worker, wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_server import HANG_GUARD, open_store, running_server

import aiki
from aiki.embedded import RedisServerProcess
from aiki_server import Settings
from aiki_server._observe import RunTotals

metered = aiki.workflow("metrics-flow")
_flaky_attempts: dict[str, int] = {}


@aiki.task("metrics-step")
async def metrics_step(payload: dict[str, Any]) -> int:
    if payload.get("fail"):
        raise ValueError("metrics boom")
    return int(payload["n"])


@aiki.task("metrics-hang")
async def metrics_hang(payload: Any) -> None:
    await trio.sleep_forever()


@aiki.task("metrics-flaky", retry=aiki.Retry.fixed(3, 0.0))
async def metrics_flaky(key: str) -> str:
    _flaky_attempts[key] = _flaky_attempts.get(key, 0) + 1
    if _flaky_attempts[key] == 1:
        raise RuntimeError("first attempt fails")
    return key


@metered.v("1")
async def metered_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> int:
    if payload.get("hang"):
        await metrics_hang.start(ctx, None)
    return await metrics_step.start(ctx, payload)


@metered.v("2")
async def metered_v2(ctx: aiki.WorkflowContext, key: str) -> str:
    return await metrics_flaky.start(ctx, key)


@pytest.fixture
def settings(module_redis: RedisServerProcess) -> Settings:
    return Settings(
        redis_url=module_redis.url, port=0, prefix=f"t{uuid.uuid4().hex[:10]}", daemons=False
    )


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_count_runs_tasks_queues_and_workers(settings: Settings) -> None:
    assert settings.redis_url is not None
    async with (
        aiki.client(redis_url=settings.redis_url, prefix=settings.prefix) as client,
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        before = await scrape(http)
        assert value(before, "aiki_redis_up") == 1
        assert value(before, "aiki_workers", state="live") == 0

        async with running_worker(
            client, metered, id="metrics-worker", max_concurrent_workflow_runs=7
        ):
            for n in range(3):
                assert (
                    await (await metered_v1.start(client, {"n": n})).wait_for_completion(
                        timeout=HANG_GUARD
                    )
                    == n
                )
            failing = await metered_v1.start(client, {"n": 9, "fail": True})
            with pytest.raises(aiki.WorkflowFailed):
                await failing.wait_for_completion(timeout=HANG_GUARD)
            hanging = await metered_v1.start(client, {"n": 0, "hang": True})

            async def running() -> bool:
                return await hanging.status() == "running"

            await wait_until(running, what="the hanging run is running")
            flaky = await metered_v2.start(client, "k1")
            assert await flaky.wait_for_completion(timeout=HANG_GUARD) == "k1"

            during = await scrape(http)
            wv1 = {"workflow": "metrics-flow", "version": "1"}
            assert value(during, "aiki_runs_in_progress", status="running", **wv1) == 1
            assert value(during, "aiki_workers", state="live") == 1
            assert value(during, "aiki_worker_capacity", worker="metrics-worker") == 7
            # Worker entries are written every 2 s: in flight is 1 once the next one lands.
            await wait_until(
                lambda: _in_flight(http, "metrics-worker", 1), what="worker reports 1 in flight"
            )
            await hanging.cancel("enough")
            with pytest.raises(aiki.WorkflowCancelled):
                await hanging.wait_for_completion(timeout=HANG_GUARD)

        # A version registered by nobody running: its runs wait in the stream.
        await client.store.register_workflows([("metrics-flow", "3")], "nobody")
        for _ in range(2):
            await client.store.start_run("metrics-flow", "3", json.dumps(None))

        after = await scrape(http)
        again = await scrape(http)

    wv1 = {"workflow": "metrics-flow", "version": "1"}
    wv2 = {"workflow": "metrics-flow", "version": "2"}
    wv3 = {"workflow": "metrics-flow", "version": "3"}
    for samples in (after, again):  # a second scrape counts nothing twice
        assert value(samples, "aiki_runs_started_total", **wv1) == 5
        assert value(samples, "aiki_runs_completed_total", **wv1) == 3
        assert value(samples, "aiki_runs_failed_total", **wv1) == 1
        assert value(samples, "aiki_runs_cancelled_total", **wv1) == 1
        assert value(samples, "aiki_runs_started_total", **wv2) == 1
        assert value(samples, "aiki_runs_completed_total", **wv2) == 1
        assert value(samples, "aiki_runs_started_total", **wv3) == 2
        assert value(samples, "aiki_runs_in_progress", status="queued", **wv3) == 2
        assert value(samples, "aiki_runs_in_progress", status="running", **wv1) is None
        # Task durations: 3 completed + 1 failed metrics-step; the flaky task retried once.
        assert value(samples, "aiki_task_duration_seconds_count", task="metrics-step", **wv1) == 4
        assert (
            value(
                samples, "aiki_task_duration_seconds_bucket", task="metrics-step", le="+Inf", **wv1
            )
            == 4
        )
        assert value(samples, "aiki_task_retries_total", task="metrics-flaky", **wv2) == 1
        assert value(samples, "aiki_task_duration_seconds_count", task="metrics-flaky", **wv2) == 1
        assert value(samples, "aiki_run_duration_seconds_count", status="completed", **wv1) == 3
        assert value(samples, "aiki_run_retries_total", **wv1) == 0
        # Queues: version 3 has two messages nobody read; version 1 has none left.
        assert value(samples, "aiki_queue_depth", **wv3) == 2
        assert value(samples, "aiki_queue_pending", **wv3) == 0
        oldest = value(samples, "aiki_queue_oldest_message_age_seconds", **wv3)
        assert oldest is not None and 0 <= oldest < 60
        assert value(samples, "aiki_queue_depth", **wv1) == 0
        assert value(samples, "aiki_dead_letters") == 0
        # The worker stopped and removed its registry entry.
        assert value(samples, "aiki_workers", state="live") == 0
        assert value(samples, "aiki_redis_up") == 1

    # Totals come from Redis state: a new server (no memory of the above) agrees.
    async with (
        running_server(settings) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
    ):
        fresh = await scrape(http)
    for name in ("started", "completed", "failed", "cancelled"):
        metric = f"aiki_runs_{name}_total"
        assert value(fresh, metric, **wv1) == value(after, metric, **wv1), name


async def _in_flight(http: httpx.AsyncClient, worker: str, n: int) -> bool:
    return value(await scrape(http), "aiki_worker_in_flight", worker=worker) == n


async def test_metrics_answer_when_redis_is_down() -> None:
    redis = RedisServerProcess()
    await redis.start_async()
    try:
        settings = Settings(redis_url=redis.url, port=0, prefix="down", daemons=False)
        async with (
            running_server(settings) as server,
            httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http,
        ):
            assert value(await scrape(http), "aiki_redis_up") == 1
            await trio.to_thread.run_sync(redis.kill)
            down = await scrape(http)
            assert value(down, "aiki_redis_up") == 0
    finally:
        await trio.to_thread.run_sync(redis.cleanup)


async def test_run_totals_page_through_runs_created_in_the_same_millisecond(
    settings: Settings,
) -> None:
    """The totals read the runs index by score; many runs with one score (a burst in
    one millisecond) span pages and each is counted exactly once."""
    assert settings.redis_url is not None
    async with open_store(settings.redis_url, settings.prefix) as store:
        commands: list[list[Any]] = []
        for i in range(23):
            run_id = f"r{i:03d}"
            status = ["completed", "failed", "running"][i % 3]
            commands.append(
                ["HSET", store.keys.run(run_id), "id", run_id, "workflow", "burst"]
                + ["version", "1", "status", status, "created_at", "1000"]
            )
            commands.append(["ZADD", store.keys.runs_index(), "1000" if i < 20 else "1001", run_id])
        await store.redis.batch(commands)
        totals = RunTotals()
        totals.CHUNK = 4
        await totals.refresh(store)
        await totals.refresh(store)
        assert totals.started[("burst", "1")] == 23
        assert totals.ended[("burst", "1", "completed")] == 8
        assert totals.ended[("burst", "1", "failed")] == 8
        assert totals.in_progress()[("burst", "1", "running")] == 7
        # A run in progress that ends is moved to the totals on the next refresh.
        await store.redis.command("HSET", store.keys.run("r002"), "status", "cancelled")
        await totals.refresh(store)
        assert totals.ended[("burst", "1", "cancelled")] == 1
        assert totals.in_progress()[("burst", "1", "running")] == 6
        assert totals.started[("burst", "1")] == 23
