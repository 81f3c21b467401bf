"""Time skipping (issue #20): a test environment whose clock is virtual and jumps ahead
whenever every run waits on time (aiki._time_skipping, the clock-offset key read by
every script's now_ms, aiki._clock).

Wall time is never asserted: the virtual clock and the outcomes are. trio.fail_after
bounds are generous guards against a hang, not measurements."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing
from _helpers import wait_until

import aiki
import aiki.testing
from aiki._time_skipping import TimeSkipper
from aiki.embedded import open_embedded_redis

DAY = 86_400.0

attempts: dict[str, int] = {}


@aiki.task("ts-flaky-charge", retry=aiki.Retry.fixed(max_attempts=3, delay=3600))
async def flaky_charge(payload: dict[str, Any]) -> str:
    attempts[payload["order"]] = attempts.get(payload["order"], 0) + 1
    if attempts[payload["order"]] == 1:
        raise ConnectionError("payment provider unavailable")
    await trio.sleep(0.05)  # real time governs task code
    return f"charged {payload['order']}"


subscription = aiki.workflow("ts-subscription")


@subscription.v("1.0.0")
async def subscription_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    await ctx.sleep("trial", 30 * DAY)
    try:
        answer = await ctx.wait_for_event("confirmation", timeout=7 * DAY)
    except aiki.EventTimeout:
        answer = "no answer"
    charged = await flaky_charge.start(ctx, {"order": payload["order"]})
    return {"answer": answer, "charged": charged}


report = aiki.workflow("ts-daily-report")


@report.v("1.0.0")
async def report_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    return "reported"


async def test_long_waits_retries_and_a_daily_schedule_finish_on_the_virtual_clock() -> None:
    attempts.clear()
    with trio.fail_after(60):  # a guard against a hang; the test asserts no wall time
        async with aiki.testing.open_test_environment(
            subscription, report, time_skipping=True
        ) as env:
            start = env.now()
            handle = await subscription_v1.start(env.client, {"order": "o-1"})
            assert await handle.wait_for_completion(timeout=30) == {
                "answer": "no answer",
                "charged": "charged o-1",
            }
            finished = env.now()
            # 30 days of sleep + 7 days of event wait + a 1 hour retry delay
            assert finished - start >= timedelta(days=37, hours=1)
            assert finished - start < timedelta(days=38)
            assert attempts == {"o-1": 2}
            run = await env.client.get_run(handle.id, with_tasks=True)
            assert run is not None
            sleep = run.tasks["sleep:trial:0"]
            assert sleep["wake_at"] - sleep["started_at"] == 30 * 86_400_000
            event = run.tasks["event:confirmation:0"]
            assert event["status"] == "timed_out"
            charge = next(r for r in run.tasks.values() if r.get("task") == "ts-flaky-charge")
            assert charge["status"] == "completed" and charge["attempts"] == 2
            # The retry waited its hour on the virtual clock, not at once.
            failed_at = charge["errors"][0]["at"]
            assert charge["started_at"] - failed_at >= 3_600_000

            # A daily schedule, counted exactly: the clock moves only by env.sleep.
            async with env.auto_time_skipping_disabled():
                created = env.now()
                await report_v1.schedule(env.client, "daily-report", every=DAY)
                await env.sleep(3 * DAY + 60)
                await env.client.delete_schedule("daily-report")
                assert env.now() - created >= timedelta(days=3, seconds=60)
            runs = await env.client.store.list_runs(workflow="ts-daily-report", limit=100)
            assert sorted(r.status for r in runs) == ["completed"] * 3
            assert all(r.result == "reported" for r in runs)


async def test_env_sleep_fires_timers_in_order_and_stops_at_its_target() -> None:
    order: list[str] = []

    @aiki.task("ts-note")
    async def note(payload: str) -> str:
        order.append(payload)
        return payload

    steps = aiki.workflow("ts-steps")

    @steps.v("1.0.0")
    async def steps_v1(ctx: aiki.WorkflowContext, payload: Any) -> int:
        for hour in range(1, 4):
            await ctx.sleep(f"h{hour}", 3600)
            await note.start(ctx, f"after hour {hour}")
        return 3

    with trio.fail_after(60):
        async with aiki.testing.open_test_environment(steps, time_skipping=True) as env:
            async with env.auto_time_skipping_disabled():
                handle = await steps_v1.start(env.client)
                await _until_status(handle, "sleeping")
                before = env.now()
                await env.sleep(2 * 3600 + 60)  # two sleeps end inside, the third not
                assert order == ["after hour 1", "after hour 2"]
                assert await handle.status() == "sleeping"
                assert env.now() - before >= timedelta(hours=2, seconds=60)
            # automatic skipping again: the last hour passes by itself
            assert await handle.wait_for_completion(timeout=30) == 3
            assert order == ["after hour 1", "after hour 2", "after hour 3"]


async def test_an_event_sent_before_the_timeout_is_received() -> None:
    waits = aiki.workflow("ts-waits")

    @waits.v("1.0.0")
    async def waits_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
        return await ctx.wait_for_event("approval", timeout=7 * DAY)

    with trio.fail_after(60):
        async with aiki.testing.open_test_environment(waits, time_skipping=True) as env:
            async with env.auto_time_skipping_disabled():
                handle = await waits_v1.start(env.client)
                await _until_status(handle, "awaiting_event")
                await env.sleep(6 * DAY)  # a day before the timeout
                await handle.send_event("approval", {"ok": True})
                assert await handle.wait_for_completion(timeout=30) == {"ok": True}


async def test_delayed_starts_and_workflow_timeouts_use_the_virtual_clock() -> None:
    slow = aiki.workflow("ts-slow")

    @slow.v("1.0.0", timeout=DAY)
    async def slow_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
        await ctx.sleep("too-long", 2 * DAY)
        return "never"

    quick = aiki.workflow("ts-quick")

    @quick.v("1.0.0")
    async def quick_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
        return "started"

    with trio.fail_after(60):
        async with aiki.testing.open_test_environment(slow, quick, time_skipping=True) as env:
            before = env.now()
            timing_out = await slow_v1.start(env.client)
            with pytest.raises(aiki.WorkflowFailed) as failed:
                await timing_out.wait_for_completion(timeout=30)
            assert failed.value.error_type == "WorkflowTimeout"
            assert timedelta(days=1) <= env.now() - before < timedelta(days=2)

            before = env.now()
            delayed = await quick_v1.start(env.client, delay=5 * DAY)
            assert await delayed.wait_for_completion(timeout=30) == "started"
            run = await env.client.get_run(delayed.id)
            assert run is not None and run.started_at is not None
            assert run.started_at - run.created_at >= 5 * 86_400_000
            assert env.now() - before >= timedelta(days=5)


async def test_without_time_skipping_no_offset_is_written() -> None:
    """Production paths never see a virtual clock: the offset key is absent, and the
    scripts' clock is Redis TIME."""
    async with aiki.testing.open_test_environment(subscription) as env:
        assert env.time_skipper is None
        handle = await subscription_v1.start(env.client, {"order": "o-2"})
        await _until_status(handle, "sleeping")
        store = env.client.store
        assert await store.redis.command("EXISTS", store.keys.clock_offset(0)) == 0
        seconds, micros = await store.redis.command("TIME")
        redis_ms = int(seconds) * 1000 + int(micros) // 1000
        assert abs(await store.clock_ms() - redis_ms) < 60_000
        with pytest.raises(RuntimeError, match="time_skipping=True"):
            async with env.auto_time_skipping_disabled():
                pass


async def test_the_virtual_clock_only_moves_forward() -> None:
    async with open_embedded_redis() as server, aiki.client(redis_url=server.url) as c:
        store = c.store
        real = await store.clock_ms()
        now, offset = await store.advance_clock(real + 10 * 86_400_000)
        assert now >= real + 10 * 86_400_000 and offset > 0
        again, same = await store.advance_clock(real)  # behind: nothing changes
        assert same == offset and again >= now
        assert await store.clock_ms() >= real + 10 * 86_400_000


@pytest.mark.aiki_workflows(subscription)
@pytest.mark.aiki_env_options(time_skipping=True)
async def test_the_pytest_fixture_skips_time(aiki_env: aiki.testing.TestEnvironment) -> None:
    attempts.clear()
    handle = await subscription_v1.start(aiki_env.client, {"order": "o-3"})
    with trio.fail_after(60):
        result = await handle.wait_for_completion(timeout=30)
    assert result == {"answer": "no answer", "charged": "charged o-3"}


async def _until_status(handle: Any, status: str) -> None:
    async def reached() -> bool:
        return bool(await handle.status() == status)

    await wait_until(reached, what=f"status {status}")


@pytest.mark.parametrize("time_skipping", [False, True])
async def test_env_sleep_rejects_bad_durations_with_or_without_time_skipping(
    time_skipping: bool,
) -> None:
    """The same clear errors in both kinds of environment (without time skipping,
    env.sleep used to hand the value to trio.sleep: inf slept forever, True slept a
    second, "1" failed on a comparison), and a duration the clock cannot represent is
    refused before it moves the clock (1e15 s once broke every script's clock reading)."""
    async with aiki.testing.open_test_environment(subscription, time_skipping=time_skipping) as env:
        for bad in ("1", True, None):
            with pytest.raises(TypeError, match="seconds must be a number"):
                await env.sleep(bad)  # type: ignore[arg-type]
        for bad in (-1, float("nan"), float("inf"), float("-inf"), 1e15):
            with pytest.raises(ValueError, match="seconds must be"):
                await env.sleep(bad)
        before = env.now()
        await env.sleep(0)
        assert env.now() - before < timedelta(days=1)  # nothing moved it far
        assert await env.client.store.clock_ms() < 10**14


async def test_an_environment_without_workflows_says_how_to_give_them() -> None:
    with pytest.raises(aiki.ConfigurationError, match="aiki_workflows") as refused:
        async with aiki.testing.open_test_environment():
            pass
    assert refused.value.field == "workflows"


async def test_overlapping_blocks_without_automatic_skipping_keep_it_off() -> None:
    """Two tasks of one test each in an ``auto_time_skipping_disabled`` block: the first
    to leave used to switch automatic jumps back on under the other."""
    skipper = TimeSkipper(store=None)  # type: ignore[arg-type]  # the flag needs no Redis
    a_left, b_in = trio.Event(), trio.Event()

    async def a() -> None:
        async with skipper.auto_skipping_disabled():
            await b_in.wait()
        a_left.set()

    async def b() -> None:
        async with skipper.auto_skipping_disabled():
            b_in.set()
            await a_left.wait()
            assert not skipper.auto  # still inside b's block
        assert skipper.auto

    async with trio.open_nursery() as nursery:
        nursery.start_soon(a)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(b)
