"""Regressions for bugs found in review: each failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _helpers import wait_until

import aiki
from aiki.testing import open_test_environment
from aiki_server import Settings, serve_server

CALLS: dict[str, int] = {}


@aiki.task("rr-flaky", retry=aiki.Retry.fixed(2, 0.8))
async def rr_flaky(x: int) -> int:
    CALLS["flaky"] = CALLS.get("flaky", 0) + 1
    if CALLS["flaky"] == 1:
        raise ValueError("first attempt fails")
    return x


@aiki.task("rr-slow")
async def rr_slow(x: int) -> int:
    await trio.sleep(0.3)
    return x


@aiki.task("rr-bad")
async def rr_bad(x: int) -> int:
    raise ValueError(f"bad {x}")


@aiki.task("rr-echo")
async def rr_echo(x: Any) -> Any:
    return x


rr = aiki.workflow("rr")


@rr.v("fan-suspend")
async def fan_suspend(ctx: aiki.WorkflowContext, _: object) -> dict[str, int]:
    out: dict[str, int] = {}

    async def one(task: aiki.Task[int], x: int) -> None:
        out[str(x)] = await task.start(ctx, x)

    async with trio.open_nursery() as nursery:  # one branch parks for a retry delay
        nursery.start_soon(one, rr_flaky, 1)
        nursery.start_soon(one, rr_slow, 2)
    return out


@rr.v("fan-fail")
async def fan_fail(ctx: aiki.WorkflowContext, _: object) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rr_bad.start, ctx, 1)


@rr.v("own-too-slow")
async def own_too_slow(ctx: aiki.WorkflowContext, _: object) -> None:
    with trio.fail_after(0.01):
        await trio.sleep(1)


@rr.v("sleepy")
async def sleepy(ctx: aiki.WorkflowContext, seconds: float) -> str:
    await ctx.sleep("nap", seconds)
    return "woke"


@rr.v("events")
async def events(ctx: aiki.WorkflowContext, _: object) -> Any:
    return await ctx.wait_for_event("data", timeout=30)


@rr.v("child")
async def child(ctx: aiki.WorkflowContext, x: int) -> int:
    return await rr_echo.start(ctx, x)


@rr.v("late-parent")
async def late_parent(ctx: aiki.WorkflowContext, x: int) -> Any:
    handle = await child.start_as_child(ctx, x)
    await ctx.sleep("let-the-child-expire", 1.5)
    try:
        return await handle.wait_for_completion()
    except aiki.RunNotFound:
        return "child gone"


async def test_suspension_inside_a_nursery_parks_the_run_and_keeps_the_worker() -> None:
    CALLS.clear()
    async with open_test_environment(rr) as env:
        handle = await fan_suspend.start(env.client, None)
        assert await handle.wait_for_completion(timeout=20) == {"1": 1, "2": 2}
        other = await sleepy.start(env.client, 0.0)  # the same worker is still serving
        assert await other.wait_for_completion(timeout=20) == "woke"
    assert CALLS["flaky"] == 2


async def test_task_failure_in_a_nursery_records_the_task_error() -> None:
    async with open_test_environment(rr) as env:
        handle = await fan_fail.start(env.client, None)
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=20)
    assert (info.value.error_type, info.value.error_message) == ("ValueError", "bad 1")


async def test_workflow_own_too_slow_error_is_not_a_workflow_timeout() -> None:
    async with open_test_environment(rr) as env:
        handle = await own_too_slow.start(env.client, None)
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=20)
    assert info.value.error_type == "TooSlowError"


async def test_wakeup_while_paused_is_kept() -> None:
    async with open_test_environment(rr) as env:
        handle = await sleepy.start(env.client, 3600.0)

        async def sleeping() -> bool:
            return await handle.status() == "sleeping"

        await wait_until(sleeping, what="run sleeping")
        await handle.pause()
        assert await handle.wakeup("nap") == 1
        await handle.resume()
        assert await handle.wait_for_completion(timeout=20) == "woke"


async def test_event_data_keeps_its_exact_json() -> None:
    data = {"big": 12345678901234567, "empty": [], "nested": {"list": []}, "f": 0.1}
    async with open_test_environment(rr) as env:
        handle = await events.start(env.client, None)
        await handle.send_event("data", data)
        assert await handle.wait_for_completion(timeout=20) == data


async def test_parent_of_an_expired_child_fails_cleanly_instead_of_looping() -> None:
    async with open_test_environment(rr) as env:
        await env.client.store.set_retention(0.3)
        handle = await late_parent.start(env.client, 5)
        assert await handle.wait_for_completion(timeout=20) == "child gone"
        run = await handle.describe()
        assert run.attempts <= 3  # parked and woken, not spinning


async def test_transient_redis_errors_are_ridden_through() -> None:
    async with open_test_environment(rr, claim_min_idle_time=2.0) as env:
        redis = env.client.store.redis
        handle = await fan_suspend.start(env.client, None)
        CALLS["flaky"] = 1  # no failing attempt this time
        await redis.command("CONFIG", "SET", "maxmemory", "1")  # every write: OOM
        await trio.sleep(1.0)
        await redis.command("CONFIG", "SET", "maxmemory", "0")
        assert await handle.wait_for_completion(timeout=30) == {"1": 1, "2": 2}
        assert env.worker.in_flight == 0


@aiki.task("rr-hang")
async def rr_hang(x: int) -> int:
    await trio.sleep_forever()
    return x  # pragma: no cover


@rr.v("limited", timeout=0.5)
async def limited(ctx: aiki.WorkflowContext, x: int) -> int:
    return await rr_hang.start(ctx, x)


def _http_server(redis_url: str, *, task_status: Any) -> Any:
    """The Aiki server for ``open_test_environment(http_server=...)`` (the SDK's test
    environment runs the daemons itself and never imports the server)."""
    settings = Settings(redis_url=redis_url, host="127.0.0.1", port=0, daemons=False)
    return serve_server(settings, task_status=task_status)


async def test_runs_started_without_the_code_get_the_version_timeout() -> None:
    """HTTP starts and schedule occurrences know no workflow code: they take the
    timeout the version's worker registered."""
    async with open_test_environment(rr, http_server=_http_server) as env:
        assert env.base_url is not None
        async with aiki.client(base_url=env.base_url) as http:
            over_http = await limited.start(http, 1)
            await limited.schedule(http, "limited-once", 2, every=0.3)
            with pytest.raises(aiki.WorkflowFailed) as info:
                await over_http.wait_for_completion(timeout=20)
            assert info.value.error_type == "WorkflowTimeout"

            async def scheduled_failed() -> bool:
                runs = await env.client.store.list_runs(limit=20)
                return any(r.payload == 2 and r.status == "failed" for r in runs)

            await wait_until(scheduled_failed, what="a scheduled run timed out")
            await http.delete_schedule("limited-once")
        runs = await env.client.store.list_runs(limit=20)
        failed = next(r for r in runs if r.payload == 2 and r.status == "failed")
        assert failed.error is not None and failed.error["type"] == "WorkflowTimeout"
