"""OpenTelemetry with an SDK configured, for the ways a run does not simply complete
(aiki._tracing): a failed and retried task attempt, a task timeout, a run cancelled
inside a task, paused and resumed, and a workflow timeout, each with the spans and
span events it should leave; and a broken span processor (a user's) never fails a run.

The worker runs in this process (aiki.testing), so one in-memory exporter sees all."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _helpers import wait_until
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from workers.traced_worker import span_record

import aiki
import aiki.testing


@pytest.fixture(scope="module")
def provider() -> TracerProvider:
    """The global tracer provider can be set once per process: set it or reuse it."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    return current


@pytest.fixture
def exporter(provider: TracerProvider) -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


def spans_of(exporter: InMemorySpanExporter, run_id: str) -> list[dict[str, Any]]:
    """The finished spans of one run: its executions and their tasks."""
    runs = [s for s in exporter.get_finished_spans() if _run_id(s) == run_id]
    ids = {s.get_span_context().span_id for s in runs}  # type: ignore[union-attr]
    tasks = [
        s
        for s in exporter.get_finished_spans()
        if s.parent and s.parent.span_id in ids and _run_id(s) is None
    ]
    return [span_record(s) for s in [*runs, *tasks]]


def _run_id(span: ReadableSpan) -> Any:
    return (span.attributes or {}).get("aiki.run.id")


tries: dict[str, int] = {}


@aiki.task("to-flaky", retry=aiki.Retry.fixed(max_attempts=3, delay=0.01))
async def flaky(key: str) -> str:
    tries[key] = tries.get(key, 0) + 1
    if tries[key] == 1:
        raise ConnectionError("first try fails")
    return "ok"


@aiki.task("to-slow", timeout=0.2)
async def slow(seconds: float) -> str:
    await trio.sleep(seconds)
    return "slept"


@aiki.task("to-forever")
async def forever(_: Any) -> str:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


outcomes = aiki.workflow("to-outcomes")


@outcomes.v("1")
async def outcomes_v1(ctx: aiki.WorkflowContext, payload: dict[str, Any]) -> str:
    kind = payload["kind"]
    if kind == "retry":
        return await flaky.start(ctx, payload["key"])
    if kind == "task-timeout":
        return await slow.start(ctx, 30.0)
    if kind == "sleep":
        await ctx.sleep("nap", 0.3)
        return "woke"
    return await forever.start(ctx, None)


timed = aiki.workflow("to-timed")


@timed.v("1", timeout=0.5)
async def timed_v1(ctx: aiki.WorkflowContext, payload: Any) -> str:
    return await forever.start(ctx, None)


async def test_failed_retried_and_timed_out_attempts_have_error_spans(
    exporter: InMemorySpanExporter,
) -> None:
    with trio.fail_after(60):
        async with aiki.testing.open_test_environment(outcomes, timed) as env:
            retried = await outcomes_v1.start(env.client, {"kind": "retry", "key": "a"})
            assert await retried.wait_for_completion(timeout=20) == "ok"
            timed_out = await outcomes_v1.start(env.client, {"kind": "task-timeout"})
            with pytest.raises(aiki.WorkflowFailed) as failed:
                await timed_out.wait_for_completion(timeout=20)
            assert failed.value.error_type == "TaskTimeout"
            deadline = await timed_v1.start(env.client, None)
            with pytest.raises(aiki.WorkflowFailed) as failed:
                await deadline.wait_for_completion(timeout=20)
            assert failed.value.error_type == "WorkflowTimeout"

    spans = spans_of(exporter, retried.id)
    attempts = [s for s in spans if s["name"] == "aiki.task to-flaky"]
    assert [(s["attributes"]["aiki.task.attempt"], s["status"]) for s in attempts] == [
        (1, "ERROR"),
        (2, "UNSET"),
    ]
    assert "exception" in attempts[0]["events"]
    (run,) = [s for s in spans if s["name"] == "aiki.run to-outcomes"]
    assert "aiki.task_retry" in run["events"] and "aiki.completed" in run["events"]

    spans = spans_of(exporter, timed_out.id)
    (attempt,) = [s for s in spans if s["name"] == "aiki.task to-slow"]
    assert attempt["status"] == "ERROR"
    assert [s["status"] for s in spans if s["name"] == "aiki.run to-outcomes"] == ["ERROR"]

    spans = spans_of(exporter, deadline.id)
    runs = [s for s in spans if s["name"] == "aiki.run to-timed"]
    assert runs and "aiki.timed_out" in runs[-1]["events"]
    assert runs[-1]["status"] == "ERROR"  # the run failed (WorkflowTimeout): an error


async def test_cancel_and_pause_with_an_sdk_end_the_spans_and_the_runs(
    exporter: InMemorySpanExporter,
) -> None:
    with trio.fail_after(60):
        async with aiki.testing.open_test_environment(outcomes) as env:
            stuck = await outcomes_v1.start(env.client, {"kind": "forever"})

            async def running() -> bool:
                return await stuck.status() == "running"

            await wait_until(running, timeout=20, what="the run inside its task")
            await stuck.cancel("operator")
            with pytest.raises(aiki.WorkflowCancelled):
                await stuck.wait_for_completion(timeout=20)

            napping = await outcomes_v1.start(env.client, {"kind": "sleep"})
            await napping.pause()
            await trio.sleep(0.5)
            await napping.resume()
            assert await napping.wait_for_completion(timeout=20) == "woke"

    # Every span that was started ended (the exporter only sees ended spans).
    names = [s["name"] for s in spans_of(exporter, stuck.id)]
    assert "aiki.run to-outcomes" in names
    assert any(s["name"] == "aiki.run to-outcomes" for s in spans_of(exporter, napping.id))


class Broken(SpanProcessor):
    """A user's span processor with a bug: raises on every call."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("broken span processor (on_start)")

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("broken span processor (on_end)")


async def test_a_broken_span_processor_never_fails_a_run(provider: TracerProvider) -> None:
    broken = Broken()
    provider.add_span_processor(broken)
    try:
        with trio.fail_after(60):
            async with aiki.testing.open_test_environment(outcomes) as env:
                handle = await outcomes_v1.start(env.client, {"kind": "retry", "key": "b"})
                assert await handle.wait_for_completion(timeout=20) == "ok"
                napping = await outcomes_v1.start(env.client, {"kind": "sleep"})
                assert await napping.wait_for_completion(timeout=20) == "woke"
    finally:
        # The SDK has no remove_span_processor: empty the list this test added to.
        multi = provider._active_span_processor
        multi._span_processors = tuple(p for p in multi._span_processors if p is not broken)
