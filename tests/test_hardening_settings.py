"""#16 item 9 (the smaller ones): settings checked at construction, the real error of a
workflow that fails inside a nursery, and a duplicate live worker id."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
from _helpers import running_worker, wait_until

import aiki

fans_out = aiki.workflow("hard-fans-out")


@aiki.task("hard-fails")
async def fails(_: Any) -> None:
    raise aiki.NonRetryableError("task says no")


@fans_out.v("1")
async def fans_out_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    async def boom() -> None:
        raise ValueError("boom inside the nursery")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(boom)
        nursery.start_soon(trio.sleep, 0.01)
    return "unreachable"


idle = aiki.workflow("hard-idle")


@idle.v("1")
async def idle_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    return payload


async def test_an_error_inside_a_nursery_is_recorded_as_itself(client: aiki.Client) -> None:
    async with running_worker(client, fans_out):
        handle = await fans_out_v1.start(client, None)
        with pytest.raises(aiki.WorkflowFailed):
            await handle.wait_for_completion(timeout=20)
        run = await client.get_run(handle.id)
    assert run.error is not None
    assert run.error["type"] == "ValueError", run.error
    assert run.error["message"] == "boom inside the nursery", run.error


@pytest.mark.parametrize("value", [-1.0, 0.0])
def test_negative_claim_interval_is_refused(value: float) -> None:
    with pytest.raises(aiki.ConfigurationError, match="claim_interval"):
        aiki.RedisStreams(claim_interval=value)


@pytest.mark.parametrize(
    "field",
    [
        "claim_min_idle_time",
        "block_time",
        "claim_interval",
        "heartbeat_interval",
    ],
)
def test_nan_stream_times_are_refused(field: str) -> None:
    with pytest.raises(aiki.ConfigurationError, match=field):
        aiki.RedisStreams(**{field: math.nan})


@pytest.mark.parametrize(
    "field,value",
    [
        ("shutdown_grace", math.nan),
        ("transition_retry_for", math.nan),
        ("inline_retry_max_delay", math.nan),
    ],
)
async def test_nan_worker_times_are_refused(client: aiki.Client, field: str, value: float) -> None:
    with pytest.raises(aiki.ConfigurationError, match=field):
        aiki.worker(client, **{field: value})


@pytest.mark.parametrize("value", [1.5, "2", True])
async def test_integer_settings_must_be_integers(client: aiki.Client, value: Any) -> None:
    with pytest.raises(aiki.ConfigurationError, match="max_concurrent_workflow_runs"):
        aiki.worker(client, max_concurrent_workflow_runs=value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 1.5, "delay": 1.0},
        {"max_attempts": 2, "delay": math.nan},
        {"max_attempts": 2, "delay": math.inf},
    ],
)
def test_retry_policies_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(aiki.ConfigurationError):
        aiki.Retry.fixed(**kwargs)


async def test_a_second_live_worker_with_the_same_id_refuses_to_start(
    client: aiki.Client,
) -> None:
    async with running_worker(client, idle, id="hard-dup"):
        second = aiki.worker(client, id="hard-dup")
        second.workflow_registry.add(idle)
        # run() itself raises (a helper's nursery would wrap it in an ExceptionGroup).
        with trio.fail_after(20), pytest.raises(aiki.ConfigurationError, match="hard-dup") as e:
            await second.run()
        assert e.value.field == "id"
        # The first one still works.
        handle = await idle_v1.start(client, 7)
        assert await handle.wait_for_completion(timeout=20) == 7


async def test_a_worker_id_is_free_again_after_a_clean_stop(client: aiki.Client) -> None:
    """Guard for the fix above: a stopped worker's id can be used again at once."""
    async with running_worker(client, idle, id="hard-reuse"):
        pass
    async with running_worker(client, idle, id="hard-reuse"):
        handle = await idle_v1.start(client, 8)
        assert await handle.wait_for_completion(timeout=20) == 8


fans_out_twice = aiki.workflow("hard-fans-out-twice")


@fans_out_twice.v("1")
async def fans_out_twice_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    async def fail(exc: Exception) -> None:
        raise exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fail, KeyError("first"))
        nursery.start_soon(fail, TypeError("second"))
    return "unreachable"


async def test_several_errors_in_a_nursery_record_the_first_and_name_the_others(
    client: aiki.Client,
) -> None:
    async with running_worker(client, fans_out_twice):
        handle = await fans_out_twice_v1.start(client, None)
        with pytest.raises(aiki.WorkflowFailed):
            await handle.wait_for_completion(timeout=20)
        run = await client.get_run(handle.id)
    assert run.error is not None
    types = {"KeyError", "TypeError"}
    assert run.error["type"] in types, run.error
    other = (types - {run.error["type"]}).pop()
    assert other in run.error["message"], run.error  # the other one is named
    assert "ExceptionGroup" not in run.error["type"]
    # The traceback shows both, and where they were raised.
    assert "first" in run.error["traceback"] and "second" in run.error["traceback"]


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"shutdown_grace": -1}, "shutdown_grace"),
        ({"max_concurrent_workflow_runs": 0}, "max_concurrent_workflow_runs"),
        ({"transition_retry_for": math.inf}, "transition_retry_for"),
        ({"id": ""}, "id"),
    ],
)
async def test_worker_settings_errors_name_the_field(
    client: aiki.Client, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(aiki.ConfigurationError) as e:
        aiki.worker(client, **kwargs)
    assert e.value.field == field and field in str(e.value)


def test_retry_errors_name_the_field() -> None:
    with pytest.raises(aiki.ConfigurationError) as e:
        aiki.Retry.fixed(max_attempts=True, delay=1.0)  # type: ignore[arg-type]
    assert e.value.field == "max_attempts"
    with pytest.raises(aiki.ConfigurationError) as e:
        aiki.Retry.exponential(3, base_delay=1.0, factor=math.nan)
    assert e.value.field == "factor"
    assert aiki.Retry.fixed(max_attempts=2, delay=0).base_delay == 0  # zero delay is fine


async def test_the_id_of_a_worker_that_died_is_free_once_its_heartbeat_is_stale(
    client: aiki.Client,
) -> None:
    """A worker killed without removing its entry (SIGKILL, power loss) must not block
    its restart for good: the entry frees itself once its heartbeat is stale."""
    import json
    import time

    dead = {
        "id": "hard-crashed",
        "instance": "an-instance-that-died",
        "host": "elsewhere",
        "pid": 1,
        # Stopped heart-beating 5 s ago: stale after 6 s, so a restart waits about 1 s.
        "last_heartbeat_ms": int(time.time() * 1000) - 5000,
    }
    await client.store.publish_worker("hard-crashed", dead)
    with trio.fail_after(20):
        async with running_worker(client, idle, id="hard-crashed"):
            handle = await idle_v1.start(client, 9)
            assert await handle.wait_for_completion(timeout=20) == 9
            entries = await client.store.worker_entries()
            assert json.loads(entries["hard-crashed"])["instance"] != dead["instance"]


async def test_two_workers_starting_with_one_id_at_once_cannot_both_start(
    client: aiki.Client,
) -> None:
    """The id is claimed by one script: of two simultaneous starts exactly one wins."""
    outcomes: list[str] = []
    stop = trio.Event()

    async def start_one() -> None:
        w = aiki.worker(client, id="hard-race")
        w.workflow_registry.add(idle)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(w.run)
                outcomes.append("started")
                await stop.wait()
                await w.stop()
        except* aiki.ConfigurationError:
            outcomes.append("refused")

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(start_one)
            nursery.start_soon(start_one)
            await wait_until(lambda: len(outcomes) == 2, what="both starts decided")
            stop.set()
    assert sorted(outcomes) == ["refused", "started"]
