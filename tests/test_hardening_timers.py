"""#16 item 8: timers fire WITHOUT a server.

Durable sleeps, retry delays longer than the inline limit and event-wait timeouts are
parked on the timers set; today only an ``aiki server`` moves them back into the
streams, so with embedded workers and Redis-direct starts the runs stay parked forever.
Here: one in-process worker and a Redis-direct client, and NO server.
"""

from __future__ import annotations

from typing import Any

import trio
from _helpers import running_worker

import aiki

ATTEMPTS: dict[str, int] = {}

sleeper = aiki.workflow("hard-timer-sleep")


@sleeper.v("1")
async def sleeper_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    await ctx.sleep("s", 0.5)
    return "slept"


@aiki.task("hard-timer-flaky", retry=aiki.Retry.fixed(max_attempts=3, delay=1.0))
async def flaky(token: str) -> str:
    ATTEMPTS[token] = ATTEMPTS.get(token, 0) + 1
    if ATTEMPTS[token] == 1:
        raise RuntimeError("first attempt fails")
    return f"attempt {ATTEMPTS[token]}"


retrying = aiki.workflow("hard-timer-retry")


@retrying.v("1")
async def retrying_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return await flaky.start(ctx, payload)


waiter = aiki.workflow("hard-timer-event")


@waiter.v("1")
async def waiter_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    try:
        return await ctx.wait_for_event("never-sent", timeout=0.5)
    except aiki.EventTimeout:
        return "timed out"


async def test_durable_sleep_ends_without_a_server(client: aiki.Client) -> None:
    async with running_worker(client, sleeper):
        handle = await sleeper_v1.start(client, None)
        with trio.fail_after(20):
            assert await handle.wait_for_completion(timeout=10) == "slept"


async def test_retry_delay_beyond_the_inline_limit_ends_without_a_server(
    client: aiki.Client,
) -> None:
    # The worker retries inline only up to 0.5 s: a 1 s delay parks the run on a timer.
    async with running_worker(client, retrying):
        handle = await retrying_v1.start(client, "t-retry")
        with trio.fail_after(20):
            assert await handle.wait_for_completion(timeout=10) == "attempt 2"


async def test_event_timeout_fires_without_a_server(client: aiki.Client) -> None:
    async with running_worker(client, waiter):
        handle = await waiter_v1.start(client, None)
        with trio.fail_after(20):
            assert await handle.wait_for_completion(timeout=10) == "timed out"


async def test_two_workers_share_the_timer_duty_once(client: aiki.Client) -> None:
    """Several workers move timers safely: each run resumes and completes once."""
    async with running_worker(client, sleeper), running_worker(client, sleeper):
        handles = [await sleeper_v1.start(client, i) for i in range(10)]
        with trio.fail_after(30):
            for handle in handles:
                assert await handle.wait_for_completion(timeout=10) == "slept"
        for handle in handles:
            run = await client.get_run(handle.id)
            assert run.status == "completed"


ticker = aiki.workflow("hard-timer-tick")


@ticker.v("1")
async def ticker_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return payload


async def test_a_worker_warns_once_that_overdue_schedules_need_a_server(
    client: aiki.Client, caplog: Any
) -> None:
    """Workers fire timers, never schedules: with no server, a schedule silently stops.
    A worker says so once (one warning), and fires no occurrence itself."""
    import logging

    await client.store.save_schedule(
        "overdue", '{"workflow": "hard-timer-tick", "version": "1"}', 1
    )  # due at 1 ms after the epoch: long overdue
    caplog.set_level(logging.WARNING, logger="aiki.worker")
    async with running_worker(client, ticker):
        await trio.sleep(2.5)  # more than one registry interval
    warnings = [r for r in caplog.records if "overdue" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "aiki server" in warnings[0].getMessage()
    assert await client.store.list_runs(limit=10) == []  # the worker fired nothing
