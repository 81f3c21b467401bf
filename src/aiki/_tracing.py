"""OpenTelemetry: spans for starts, executions and task attempts, one trace per run.

Why the trace context is stored with the run: a run is started in one process (a web
request, a CLI call, a parent workflow) and executed in another, possibly several times
(a crash, a claim, a sleep). The starter's context (its W3C ``traceparent`` and
``tracestate`` headers, as JSON) is written into the run's hash by the start script, and
every execution continues it, so a request that starts a run shows the whole run under
its trace, whichever worker executes it and however often.

The spans (all from the tracer named ``aiki``):

* ``aiki.start <workflow>`` (PRODUCER), in the starter: the start script's call;
* ``aiki.run <workflow>`` (CONSUMER), one per execution of a run, its parent the start
  span; sleeps, event waits, child starts, retries, a claim and the way the execution
  ended (completed, suspended, failed) are its span events;
* ``aiki.task <task>`` (INTERNAL), one per task attempt that executes (a task replayed
  from its record executes nothing and has no span), a child of the execution's span;
  a child workflow's executions are children of the parent's execution span.

Only ``opentelemetry-api`` is a dependency: with no SDK installed (or none configured)
the API is a no-op and this module does no more than one check per start/execution;
exporters are the user's choice (``docs/tracing.md``).

Tracing never fails a start, a run or a task: the SDK calls the user's span processors
and propagators in our code (a span's start and end, ``inject``/``extract``) and lets
their exceptions through, so every such call here is guarded; a failure is logged
(the first at WARNING with its traceback, the rest at DEBUG) and the work goes on
without that span or context.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

__all__ = [
    "Span",
    "continue_trace",
    "current_ids",
    "event",
    "fail",
    "run_span",
    "start_span",
    "task_span",
    "trace_carrier",
    "trace_headers",
]

_tracer = trace.get_tracer("aiki")
_NO_SDK = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
log = logging.getLogger("aiki.tracing")
_warned = False


def _broken(what: str) -> None:
    """Log a failure of the configured SDK (called from an ``except`` block)."""
    global _warned
    level, _warned = (logging.DEBUG if _warned else logging.WARNING), True
    log.log(level, "tracing: %s failed; the work goes on without it", what, exc_info=True)


@contextmanager
def _span(name: str, **options: Any) -> Iterator[Span | None]:
    """``start_as_current_span(name, **options)``, guarded (see the module's docstring):
    None in the block if the span could not start; an error on its end is logged, and
    the block's own exception, if any, propagates unchanged."""
    try:
        manager = _tracer.start_as_current_span(name, **options)
        span = manager.__enter__()
    except Exception:
        _broken(f"starting span {name!r}")
        yield None
        return
    try:
        yield span
    except BaseException as exc:
        _end(manager, name, exc)
        raise
    _end(manager, name, None)


def _end(manager: Any, name: str, exc: BaseException | None) -> None:
    try:
        if exc is None:
            manager.__exit__(None, None, None)
        else:
            manager.__exit__(type(exc), exc, exc.__traceback__)
    except Exception as raised:
        if raised is not exc:
            _broken(f"ending span {name!r}")


# Why not just ``trace.get_tracer_provider()``: until a provider is set, it looks the
# environment variable up on every call (``os.environ`` decodes keys: ~4 % of a worker's
# CPU, several calls per run). The API sets its module global once a provider is set,
# in code or from that variable; while it is None and the variable was absent at
# import, there is no SDK. (Without that global in some API version, ask every time.)
_ENV_PROVIDER = OTEL_PYTHON_TRACER_PROVIDER in os.environ
_GLOBAL_KNOWN = hasattr(trace, "_TRACER_PROVIDER")


def _recording() -> bool:
    """Whether an SDK is configured (otherwise spans would be no-ops: skip them)."""
    if _GLOBAL_KNOWN and not _ENV_PROVIDER and trace._TRACER_PROVIDER is None:
        return False
    return not isinstance(trace.get_tracer_provider(), _NO_SDK)


def trace_headers() -> dict[str, str]:
    """The current trace context as headers (``traceparent``...), empty if none.

    Also without an SDK: a context extracted from an incoming request still travels."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        try:
            propagate.inject(carrier)
        except Exception:
            _broken("injecting the trace context")
            return {}
    return carrier


def trace_carrier() -> str:
    """:func:`trace_headers` as the JSON stored with a run, or '' if none."""
    carrier = trace_headers()
    return json.dumps(carrier, separators=(",", ":")) if carrier else ""


@contextmanager
def continue_trace(headers: Mapping[str, str] | Any) -> Iterator[None]:
    """Make the trace context of incoming request ``headers`` current (the server's
    start route: a run started over HTTP joins its caller's trace). ``headers``: a
    mapping, or anything with ``items()`` and ``in`` (werkzeug's ``Headers``)."""
    if "traceparent" not in headers:
        yield
        return
    carrier = {name.lower(): value for name, value in headers.items()}
    try:
        token = otel_context.attach(propagate.extract(carrier))
    except Exception:
        _broken("extracting the trace context")
        yield
        return
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def start_span(workflow: str, version: str) -> Iterator[Span | None]:
    """The span of one start (the caller sets ``aiki.run.id`` once it is known)."""
    if not _recording():
        yield None
        return
    with _span(
        f"aiki.start {workflow}",
        kind=SpanKind.PRODUCER,
        attributes={"aiki.workflow": workflow, "aiki.version": version},
    ) as span:
        yield span


def _parent(carrier: str) -> Any:
    """The context stored with a run, or None (a new trace) if it has none or it is bad."""
    if not carrier:
        return None
    try:
        headers = json.loads(carrier)
    except ValueError:
        return None
    if not isinstance(headers, dict):
        return None
    try:
        return propagate.extract(headers)
    except Exception:
        _broken("extracting the trace context")
        return None


@contextmanager
def run_span(
    run_id: str,
    workflow: str,
    version: str,
    *,
    carrier: str,
    revision: int,
    attempt: int,
    claimed: bool,
) -> Iterator[Span | None]:
    """The span of one execution of a run, continuing the trace stored with it."""
    if not _recording():
        yield None
        return
    with _span(
        f"aiki.run {workflow}",
        context=_parent(carrier),
        kind=SpanKind.CONSUMER,
        attributes={
            "aiki.run.id": run_id,
            "aiki.workflow": workflow,
            "aiki.version": version,
            "aiki.run.revision": revision,
            "aiki.run.attempt": attempt,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        if claimed and span is not None:
            span.add_event("aiki.claimed", {"aiki.run.revision": revision})
        yield span


@contextmanager
def task_span(name: str, address: str, attempt: int) -> Iterator[Span | None]:
    """The span of one task attempt (the caller marks a failure with :func:`fail`)."""
    if not _recording():
        yield None
        return
    with _span(
        f"aiki.task {name}",
        attributes={"aiki.task": name, "aiki.task.address": address, "aiki.task.attempt": attempt},
    ) as span:
        yield span


def event(name: str, /, **attributes: str | int | float | bool) -> None:
    """A span event on the current span (the execution's, in workflow code)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)


def fail(span: Span | None, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc`` (an execution's outcome)."""
    if span is None:
        return
    try:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
    except Exception:  # e.g. an exception whose __str__ raises
        _broken("recording a failure on a span")


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids as hex (for log records), or None."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
