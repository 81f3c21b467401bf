"""OpenTelemetry end to end (#19): one trace from the caller's start, through each
execution of the run on worker processes (a SIGKILLed one and its successor), to every
task attempt, with correct parent links across the processes; log records carry the
trace and span ids; a run started over HTTP joins its caller's trace.

The test process exports its spans in memory; the worker processes
(``tests/workers/traced_worker.py``) write theirs to a file as each span ends.
"""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Any

import pytest
import trio
from _helpers import running_worker, wait_until
from _resp import acommand
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from workers import processes
from workers.four_steps import expected_result, four_steps_v1
from workers.traced_worker import span_record

import aiki
from aiki.engine import HttpApi
from aiki_server import Settings, serve_server

TRACED_WORKER = Path(__file__).parent / "workers" / "traced_worker.py"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The test process's spans, in memory. The global tracer provider can be set once
    per process: set it the first time, reuse it after."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


def file_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def only(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, (name, [s["name"] for s in spans])
    return found[0]


async def test_one_trace_from_start_to_tasks_across_a_sigkill(
    redis_url: str,
    redis_port: int,
    client: aiki.Client,
    tmp_path: Path,
    exporter: InMemorySpanExporter,
) -> None:
    spans_a, spans_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    tracer = trace.get_tracer("test")
    async with processes.worker_process(
        redis_url, "traced-a", tmp_path, str(spans_a), script=TRACED_WORKER
    ) as worker_a:
        with tracer.start_as_current_span("checkout request"):
            handle = await four_steps_v1.start(client, {"x": 4})

        async def inside_task3() -> bool:
            return bool(await acommand(redis_port, "GET", "count:task3"))

        await wait_until(inside_task3, timeout=30, what="worker A inside task 3")
        worker_a.send_signal(signal.SIGKILL)
        await worker_a.proc.wait()
    await acommand(redis_port, "SET", "release", "1")
    async with processes.worker_process(
        redis_url, "traced-b", tmp_path, str(spans_b), script=TRACED_WORKER
    ):
        assert await handle.wait_for_completion(timeout=30) == expected_result(4)

        async def run_span_written() -> bool:
            # The run ends (and the client hears it) just before the worker's execution
            # span ends and is written: wait for it before the worker is stopped.
            return any(s["name"] == "aiki.run four-steps" for s in file_spans(spans_b))

        await wait_until(run_span_written, timeout=30, what="worker B's execution span")

    # The caller's process: its request span, and the start span under it.
    ours = [span_record(s) for s in exporter.get_finished_spans()]
    request = only(ours, "checkout request")
    start = only([s for s in ours if s["attributes"].get("aiki.run.id") == handle.id],
                 "aiki.start four-steps")  # fmt: skip
    assert start["kind"] == "PRODUCER"
    assert start["parent_id"] == request["span_id"]
    trace_id = request["trace_id"]

    # Worker A (killed inside task 3): tasks 1 and 2 ended under its execution span,
    # which itself never ended (no span of it was exported).
    a = file_spans(spans_a)
    assert sorted(s["name"] for s in a) == ["aiki.task task1", "aiki.task task2"], a
    assert {s["trace_id"] for s in a} == {trace_id}
    execution_a = {s["parent_id"] for s in a}
    assert len(execution_a) == 1

    # Worker B: its execution continues the same trace, under the start span; tasks 3
    # and 4 under it; tasks 1 and 2 were replayed from their records (no span).
    b = file_spans(spans_b)
    run_b = only(b, "aiki.run four-steps")
    assert run_b["trace_id"] == trace_id
    assert run_b["parent_id"] == start["span_id"]
    assert run_b["kind"] == "CONSUMER"
    assert run_b["attributes"]["aiki.run.id"] == handle.id
    assert run_b["attributes"]["aiki.run.revision"] == 2
    assert "aiki.claimed" in run_b["events"] and "aiki.completed" in run_b["events"]
    assert run_b["span_id"] not in execution_a
    tasks_b = sorted(s["name"] for s in b if s["name"].startswith("aiki.task"))
    assert tasks_b == ["aiki.task task3", "aiki.task task4"]
    assert all(
        s["parent_id"] == run_b["span_id"] and s["trace_id"] == trace_id
        for s in b
        if s["name"].startswith("aiki.task")
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(aiki.RunContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_log_records_carry_trace_and_span_ids(exporter: InMemorySpanExporter) -> None:
    handler = _Collect()
    log = logging.getLogger("aiki.test-tracing")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with trace.get_tracer("test").start_as_current_span("work") as span:
            log.info("inside")
        log.info("outside")
    finally:
        log.removeHandler(handler)
    inside, outside = handler.records
    ctx = span.get_span_context()
    assert inside.trace_id == format(ctx.trace_id, "032x")  # type: ignore[attr-defined]
    assert inside.span_id == format(ctx.span_id, "016x")  # type: ignore[attr-defined]
    assert not hasattr(outside, "trace_id")


@aiki.task("traced-shout")
async def shout(text: str) -> str:
    return text.upper()


traced_http = aiki.workflow("traced-http")


traced_child = aiki.workflow("traced-child")


@traced_child.v("1")
async def traced_child_v1(ctx: aiki.WorkflowContext, text: str) -> str:
    return await shout.start(ctx, text + "!")


@traced_http.v("1")
async def traced_http_v1(ctx: aiki.WorkflowContext, payload: dict[str, str]) -> str:
    await ctx.sleep("nap", 0.05)
    child = await traced_child_v1.start_as_child(ctx, payload["text"])
    return await shout.start(ctx, payload["text"]) + await child.wait_for_completion()


async def test_a_run_started_over_http_joins_the_callers_trace(
    redis_url: str, client: aiki.Client, exporter: InMemorySpanExporter
) -> None:
    """The SDK's HTTP client sends ``traceparent``; the server's start continues it, and
    the workers continue the context the server stored: one trace from the caller to the
    task. (Server, worker and caller share this process, so one exporter sees all.)"""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            serve_server, Settings(redis_url=redis_url, host="127.0.0.1", port=0)
        )
        async with (
            running_worker(client, traced_http, traced_child),
            HttpApi(server.base_url) as api,
        ):
            with trace.get_tracer("test").start_as_current_span("api caller"):
                started = await api.start("traced-http", "1", json.dumps({"text": "hi"}))
            ended = await api.wait(started["id"], timeout=20)
            assert (ended["status"], ended["result"]) == ("completed", "HIHI!")
        nursery.cancel_scope.cancel()
    spans = [span_record(s) for s in exporter.get_finished_spans()]
    caller = only(spans, "api caller")
    start = only(spans, "aiki.start traced-http")
    assert start["parent_id"] == caller["span_id"]
    # One execution up to the sleep, then one per wake-up (the sleep, the child's end).
    runs = [s for s in spans if s["name"] == "aiki.run traced-http"]
    assert len(runs) >= 2 and all(r["parent_id"] == start["span_id"] for r in runs)
    assert "aiki.sleep" in runs[0]["events"] and "aiki.suspended" in runs[0]["events"]
    assert any("aiki.child_started" in r["events"] for r in runs)
    assert "aiki.completed" in runs[-1]["events"]
    # The child's execution is a child of the parent's execution that started it.
    starter = next(r for r in runs if "aiki.child_started" in r["events"])
    child_run = only(spans, "aiki.run traced-child")
    assert child_run["parent_id"] == starter["span_id"]
    tasks = [s for s in spans if s["name"] == "aiki.task traced-shout"]
    assert len(tasks) == 2
    run_ids = {r["span_id"] for r in runs} | {child_run["span_id"]}
    assert all(t["parent_id"] in run_ids for t in tasks)
    assert {s["trace_id"] for s in [caller, start, *runs, child_run, *tasks]} == {
        caller["trace_id"]
    }
