"""Retry policies (``aiki.Retry``) for tasks and workflows, checked against what the
run records: each failed attempt's ``at`` (ms) and ``retry_in`` (s) in a task record's
``errors``, the run's ``errors`` for workflow-level retries, and the recorded start and
end times of the attempts. Delays are checked as lower bounds only (a retry never comes
early); nothing here asserts an upper bound on time.

Delays up to the worker's ``inline_retry_max_delay`` (0.5 s) are waited out in the
worker; longer ones park the run ``awaiting_retry`` (no worker slot) until the timer
daemon puts it back in its stream.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from _helpers import all_slots_free, running_worker, wait_until

import aiki
from aiki.engine import serve_timers

# Attempts per test key, counted in this process (workers here run in-process).
ATTEMPTS: dict[str, int] = {}

# Truncating times to whole milliseconds can make a gap look up to 1 ms shorter.
MS_SLACK = 2


def attempt_of(key: str) -> int:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    return ATTEMPTS[key]


@pytest.fixture(autouse=True)
def _fresh_attempts() -> None:
    ATTEMPTS.clear()


@contextlib.asynccontextmanager
async def timer_daemon(client: aiki.Client) -> AsyncIterator[None]:
    """The server's timer daemon, run in this process."""
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_timers, client.store)
        yield
        nursery.cancel_scope.cancel()


class Flaky(Exception):
    pass


class Fatal(aiki.NonRetryableError):
    pass


def flaky_task(name: str, retry: aiki.Retry) -> aiki.Task[Any]:
    """A task that fails (Flaky) until its ``fail`` count of attempts is used up."""

    async def fn(payload: Any) -> Any:
        n = attempt_of(payload["key"])
        if payload.get("fatal"):
            raise Fatal(f"attempt {n}: give up")
        if n <= payload["fail"]:
            raise Flaky(f"attempt {n} failed")
        return {"ok": n}

    return aiki.task(name, retry=retry)(fn)


fixed_task = flaky_task("flaky-fixed", aiki.Retry.fixed(3, 0.2))
exp_task = flaky_task(
    "flaky-exponential", aiki.Retry.exponential(5, base_delay=0.05, max_delay=0.15, factor=2)
)
jitter_task = flaky_task(
    "flaky-jittered", aiki.Retry.jittered(5, base_delay=0.1, max_delay=0.3, factor=2)
)
short_task = flaky_task("flaky-short", aiki.Retry.fixed(3, 0.05))
long_task = flaky_task("flaky-long", aiki.Retry.fixed(2, 1.0))

TASKS = {t.name: t for t in (fixed_task, exp_task, jitter_task, short_task, long_task)}

tasks_wf = aiki.workflow("retry-tasks")


@tasks_wf.v("1")
async def tasks_v1(ctx: aiki.WorkflowContext, payload: Any) -> Any:
    task = TASKS[payload["task"]]
    return await task.start(ctx, payload)


@aiki.task("stamp")
async def stamp(attempt: int) -> int:
    """Completes at once: its record's start and end times stamp a workflow attempt."""
    return attempt


def flaky_workflow(version: str, retry: aiki.Retry) -> aiki.WorkflowVersion:
    async def run(ctx: aiki.WorkflowContext, payload: Any) -> Any:
        await stamp.start(ctx, ctx.attempt)
        attempt_of(payload["key"])
        if payload.get("fatal"):
            raise Fatal("no point trying again")
        if ctx.attempt <= payload["fail"]:
            raise Flaky(f"workflow attempt {ctx.attempt} failed")
        return {"attempt": ctx.attempt}

    return wf_retry.v(version, retry=retry)(run)


wf_retry = aiki.workflow("retry-workflow")
wf_fixed = flaky_workflow("fixed", aiki.Retry.fixed(3, 0.2))
wf_exp = flaky_workflow("exponential", aiki.Retry.exponential(4, base_delay=0.1, max_delay=0.25))
wf_jitter = flaky_workflow("jittered", aiki.Retry.jittered(4, base_delay=0.1, max_delay=0.3))
wf_long = flaky_workflow("long", aiki.Retry.fixed(2, 1.0))
wf_short = flaky_workflow("short", aiki.Retry.fixed(2, 0.05))


async def only_task_record(client: aiki.Client, run_id: str, name: str) -> dict[str, Any]:
    run = await client.get_run(run_id, with_tasks=True)
    assert run.tasks is not None
    records = [r for r in run.tasks.values() if r["task"] == name]
    assert len(records) == 1, run.tasks
    return records[0]


def check_gaps(record: dict[str, Any]) -> None:
    """Each retry started no earlier than ``retry_in`` after the failure before it."""
    errors = record["errors"]
    for before, after in zip(errors, errors[1:], strict=False):
        # The next attempt started at least retry_in after `before`, and ended later.
        assert after["at"] - before["at"] >= before["retry_in"] * 1000 - MS_SLACK
    last_failure = errors[-1]
    if "retry_in" in last_failure:  # the final attempt was a retry of it
        assert record["started_at"] - last_failure["at"] >= last_failure["retry_in"] * 1000 - (
            MS_SLACK
        )


# -- aiki.Retry.delay() -------------------------------------------------------------------


def test_retry_delay_fixed() -> None:
    policy = aiki.Retry.fixed(4, 0.25)
    assert [policy.delay(n) for n in range(1, 6)] == [0.25] * 5
    assert [policy.should_retry(n) for n in range(1, 5)] == [True, True, True, False]


def test_retry_delay_exponential_is_capped() -> None:
    policy = aiki.Retry.exponential(10, base_delay=0.5, max_delay=3.0, factor=2)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert aiki.Retry.exponential(100).delay(60) == 300.0  # the default cap
    tripled = aiki.Retry.exponential(10, base_delay=1.0, max_delay=100.0, factor=3)
    assert [tripled.delay(n) for n in range(1, 6)] == [1.0, 3.0, 9.0, 27.0, 81.0]


def test_retry_delay_jittered_is_within_zero_and_the_exponential_delay() -> None:
    policy = aiki.Retry.jittered(10, base_delay=0.5, max_delay=3.0, factor=2)
    exponential = aiki.Retry.exponential(10, base_delay=0.5, max_delay=3.0, factor=2)
    rng = random.Random(4)
    for n in range(1, 8):
        samples = [policy.delay(n, rng) for _ in range(2000)]
        bound = exponential.delay(n)
        assert all(0.0 <= s <= bound for s in samples)
        # Full jitter: spread over the whole range, not clustered at one end.
        assert min(samples) < 0.1 * bound and max(samples) > 0.9 * bound
    # The same random source gives the same delays.
    assert [policy.delay(3, random.Random(7)) for _ in range(3)] == [
        policy.delay(3, random.Random(7))
    ] * 3


def test_retry_never_and_non_retryable() -> None:
    never = aiki.Retry.never()
    assert not never.should_retry(1)
    assert aiki.Retry().strategy == "never"
    policy = aiki.Retry.fixed(5, 0.1)
    assert policy.should_retry(1, Flaky("x"))
    assert not policy.should_retry(1, Fatal("x"))  # NonRetryableError: never again
    assert not policy.should_retry(5, Flaky("x"))  # max_attempts counts the first one


@pytest.mark.parametrize(
    "make",
    [
        lambda: aiki.Retry.fixed(0, 1.0),
        lambda: aiki.Retry.fixed(3, -1.0),
        lambda: aiki.Retry.exponential(3, factor=0.5),
        lambda: aiki.Retry("sometimes", 3),  # type: ignore[arg-type]
    ],
)
def test_retry_rejects_bad_options(make: Any) -> None:
    with pytest.raises(aiki.ConfigurationError):
        make()


# -- task retries -------------------------------------------------------------------------


async def test_task_fixed_delay_retries_inline(client: aiki.Client) -> None:
    async with running_worker(client, tasks_wf):  # no timer daemon: inline or nothing
        handle = await tasks_v1.start(client, {"task": "flaky-fixed", "key": "f", "fail": 2})
        assert await handle.wait_for_completion(timeout=30) == {"ok": 3}
    record = await only_task_record(client, handle.id, "flaky-fixed")
    assert record["status"] == "completed" and record["attempts"] == 3
    assert [(e["attempt"], e["type"], e["retry_in"]) for e in record["errors"]] == [
        (1, "Flaky", 0.2),
        (2, "Flaky", 0.2),
    ]
    check_gaps(record)
    run = await client.get_run(handle.id)
    assert run.attempts == 1  # one execution: the retries waited in the worker
    assert ATTEMPTS["f"] == 3


async def test_task_exponential_delays_grow_and_are_capped(client: aiki.Client) -> None:
    async with running_worker(client, tasks_wf):
        handle = await tasks_v1.start(client, {"task": "flaky-exponential", "key": "e", "fail": 4})
        assert await handle.wait_for_completion(timeout=30) == {"ok": 5}
    record = await only_task_record(client, handle.id, "flaky-exponential")
    assert [e["retry_in"] for e in record["errors"]] == pytest.approx([0.05, 0.1, 0.15, 0.15])
    assert [e["attempt"] for e in record["errors"]] == [1, 2, 3, 4]
    check_gaps(record)


async def test_task_jittered_delays_stay_within_the_exponential_bound(
    client: aiki.Client,
) -> None:
    async with running_worker(client, tasks_wf):
        handle = await tasks_v1.start(client, {"task": "flaky-jittered", "key": "j", "fail": 4})
        assert await handle.wait_for_completion(timeout=30) == {"ok": 5}
    record = await only_task_record(client, handle.id, "flaky-jittered")
    bounds = [0.1, 0.2, 0.3, 0.3]  # base 0.1, factor 2, capped at 0.3
    delays = [e["retry_in"] for e in record["errors"]]
    assert len(delays) == 4
    assert all(0.0 <= d <= b for d, b in zip(delays, bounds, strict=True))
    check_gaps(record)


async def test_task_retries_exhausted_fail_the_run(client: aiki.Client) -> None:
    async with running_worker(client, tasks_wf):
        handle = await tasks_v1.start(client, {"task": "flaky-short", "key": "x", "fail": 99})
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=30)
    assert info.value.error_type == "Flaky"
    assert info.value.details["task"] == "flaky-short"
    record = await only_task_record(client, handle.id, "flaky-short")
    assert record["status"] == "failed" and record["attempts"] == 3
    assert [e["attempt"] for e in record["errors"]] == [1, 2, 3]
    assert "retry_in" not in record["errors"][-1]  # the last failure is final
    assert record["error"]["message"] == "attempt 3 failed"
    check_gaps(record)
    assert ATTEMPTS["x"] == 3


async def test_task_non_retryable_error_stops_at_once(client: aiki.Client) -> None:
    async with running_worker(client, tasks_wf):
        handle = await tasks_v1.start(
            client, {"task": "flaky-fixed", "key": "n", "fail": 0, "fatal": True}
        )
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=30)
    assert info.value.error_type == "Fatal"
    record = await only_task_record(client, handle.id, "flaky-fixed")
    assert record["status"] == "failed" and record["attempts"] == 1
    assert len(record["errors"]) == 1 and "retry_in" not in record["errors"][0]
    assert record["error"]["non_retryable"] is True
    assert ATTEMPTS["n"] == 1
    run = await client.get_run(handle.id)
    assert run.attempts == 1 and run.error is not None and run.error["non_retryable"] is True


async def test_long_task_delay_parks_the_run_until_the_timer_daemon_fires(
    client: aiki.Client,
) -> None:
    # fire_timers=False: this proves the server's timer daemon (workers fire them too).
    async with running_worker(client, tasks_wf, fire_timers=False) as worker:
        handle = await tasks_v1.start(client, {"task": "flaky-long", "key": "l", "fail": 1})
        await wait_until(lambda: _status_is(handle, "awaiting_retry"), timeout=30, what="parked")
        # Parked: no execution, no slot, a durable timer at the retry time.
        await all_slots_free(worker)
        record = await only_task_record(client, handle.id, "flaky-long")
        assert record["status"] == "awaiting_retry"
        assert record["errors"][0]["retry_in"] == 1.0
        retry_at = record["retry_at"]
        assert retry_at == record["errors"][0]["at"] + 1000
        score = await client.store.redis.command("ZSCORE", client.store.keys.timers(), handle.id)
        assert int(float(score)) == retry_at
        # Without a timer daemon nothing moves it, even after its time has come.
        await wait_until(lambda: _redis_now_ms(client, retry_at), timeout=30, what="retry time")
        await trio.sleep(0.3)
        assert await handle.status() == "awaiting_retry"
        assert ATTEMPTS["l"] == 1

        async with timer_daemon(client):
            assert await handle.wait_for_completion(timeout=30) == {"ok": 2}
    record = await only_task_record(client, handle.id, "flaky-long")
    assert record["status"] == "completed" and record["attempts"] == 2
    check_gaps(record)
    run = await client.get_run(handle.id)
    assert run.attempts == 2  # a second execution, after the timer fired
    assert await client.store.redis.command("ZSCORE", client.store.keys.timers(), handle.id) is None


async def _status_is(handle: aiki.RunHandle, status: str) -> bool:
    return await handle.status() == status


async def _redis_now_ms(client: aiki.Client, at_least: int) -> bool:
    seconds, micros = await client.store.redis.command("TIME")
    return int(seconds) * 1000 + int(micros) // 1000 >= at_least


# -- workflow retries ---------------------------------------------------------------------


async def stamps(client: aiki.Client, run_id: str) -> list[dict[str, Any]]:
    """The stamp task's records, one per workflow attempt, in attempt order."""
    run = await client.get_run(run_id, with_tasks=True)
    assert run.tasks is not None
    return sorted(
        (r for r in run.tasks.values() if r["task"] == "stamp"), key=lambda r: r["result"]
    )


@pytest.mark.parametrize(
    ("version", "bounds"),
    [
        (wf_fixed, [0.2, 0.2]),
        (wf_exp, [0.1, 0.2, 0.25]),
        (wf_jitter, [0.1, 0.2, 0.3]),
    ],
    ids=["fixed", "exponential", "jittered"],
)
async def test_workflow_retries_with_recorded_delays(
    client: aiki.Client, version: aiki.WorkflowVersion, bounds: list[float]
) -> None:
    fails = len(bounds)
    async with running_worker(client, wf_retry):  # no timer daemon: these retry inline
        handle = await version.start(client, {"key": "w", "fail": fails})
        assert await handle.wait_for_completion(timeout=30) == {"attempt": fails + 1}
    run = await client.get_run(handle.id)
    assert run.errors is not None
    assert [(e["attempt"], e["type"]) for e in run.errors] == [
        (n, "Flaky") for n in range(1, fails + 1)
    ]
    delays = [e["retry_in"] for e in run.errors]
    if version is wf_jitter:
        assert all(0.0 <= d <= b for d, b in zip(delays, bounds, strict=True))
    else:
        assert delays == pytest.approx(bounds)
    assert run.attempts == fails + 1  # one execution per attempt
    assert ATTEMPTS["w"] == fails + 1
    # Each attempt's first task started no earlier than retry_in after the previous
    # attempt's ended (its failure came after that).
    records = await stamps(client, handle.id)
    assert [r["result"] for r in records] == list(range(1, fails + 2))
    for before, after, delay in zip(records, records[1:], delays, strict=False):
        assert after["started_at"] - before["ended_at"] >= delay * 1000 - MS_SLACK


async def test_workflow_non_retryable_error_stops_at_once(client: aiki.Client) -> None:
    async with running_worker(client, wf_retry):
        handle = await wf_fixed.start(client, {"key": "wn", "fail": 0, "fatal": True})
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=30)
    assert info.value.error_type == "Fatal"
    run = await client.get_run(handle.id)
    assert run.status == "failed" and run.attempts == 1
    assert run.error is not None and run.error["non_retryable"] is True
    assert len(run.error["attempts"]) == 1
    assert not run.errors  # never parked for a retry
    assert ATTEMPTS["wn"] == 1


async def test_workflow_with_retry_does_not_retry_a_non_retryable_task_failure(
    client: aiki.Client,
) -> None:
    """A NonRetryableError in a task that the workflow lets propagate also stops the
    workflow's own retries."""
    fatal_in_task = aiki.workflow("retry-fatal-task")

    @fatal_in_task.v("1", retry=aiki.Retry.fixed(5, 0.05))
    async def run_it(ctx: aiki.WorkflowContext, payload: Any) -> Any:
        attempt_of("wft-workflow")
        return await short_task.start(ctx, payload)

    async with running_worker(client, fatal_in_task):
        handle = await run_it.start(client, {"key": "wft", "fail": 0, "fatal": True})
        with pytest.raises(aiki.WorkflowFailed):
            await handle.wait_for_completion(timeout=30)
    assert ATTEMPTS == {"wft": 1, "wft-workflow": 1}
    run = await client.get_run(handle.id)
    assert run.attempts == 1


async def test_workflow_retries_exhausted(client: aiki.Client) -> None:
    async with running_worker(client, wf_retry):
        handle = await wf_short.start(client, {"key": "wx", "fail": 99})
        with pytest.raises(aiki.WorkflowFailed) as info:
            await handle.wait_for_completion(timeout=30)
    assert info.value.error_message == "workflow attempt 2 failed"
    run = await client.get_run(handle.id)
    assert run.status == "failed" and run.attempts == 2
    assert run.errors is not None and [e["attempt"] for e in run.errors] == [1]
    assert run.error is not None and [e["attempt"] for e in run.error["attempts"]] == [1, 2]
    assert ATTEMPTS["wx"] == 2


async def test_long_workflow_delay_parks_the_run_until_the_timer_daemon_fires(
    client: aiki.Client,
) -> None:
    # fire_timers=False: this proves the server's timer daemon (workers fire them too).
    async with running_worker(client, wf_retry, fire_timers=False) as worker:
        handle = await wf_long.start(client, {"key": "wl", "fail": 1})
        await wait_until(lambda: _status_is(handle, "awaiting_retry"), timeout=30, what="parked")
        await all_slots_free(worker)
        run = await client.get_run(handle.id)
        assert run.errors is not None and [e["retry_in"] for e in run.errors] == [1.0]
        score = await client.store.redis.command("ZSCORE", client.store.keys.timers(), handle.id)
        wake_at = int(float(score))
        await wait_until(lambda: _redis_now_ms(client, wake_at), timeout=30, what="retry time")
        await trio.sleep(0.3)
        assert await handle.status() == "awaiting_retry"  # only the timer daemon moves it
        assert ATTEMPTS["wl"] == 1

        async with timer_daemon(client):
            assert await handle.wait_for_completion(timeout=30) == {"attempt": 2}
    run = await client.get_run(handle.id)
    assert run.attempts == 2
    records = await stamps(client, handle.id)
    assert records[1]["started_at"] - records[0]["ended_at"] >= 1000 - MS_SLACK
    assert records[1]["started_at"] >= wake_at - MS_SLACK
