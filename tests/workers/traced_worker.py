"""The four-step worker of ``four_steps.py`` with OpenTelemetry on, exporting to a file.

Run as ``python tests/workers/traced_worker.py redis://... WORKER_ID SPANS_FILE``: the
OpenTelemetry SDK (a ``TracerProvider`` with a ``SimpleSpanProcessor``) writes every span
as it ends, one JSON object per line, to SPANS_FILE, so the spans of a worker killed
with SIGKILL are on disk up to its last ended span. What a user does with an OTLP
exporter instead is in ``docs/tracing.md``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

if __name__ == "__main__":  # make `workers` (in tests/) importable when run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


def span_record(span: ReadableSpan) -> dict[str, object]:
    """What the tests read of a span: ids in hex, name, kind, attributes, events."""
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "events": [e.name for e in span.events],
        "status": span.status.status_code.name,
    }


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(json.dumps(span_record(span)) + "\n")
        return SpanExportResult.SUCCESS


if __name__ == "__main__":
    url, worker_id, spans_file = sys.argv[1], sys.argv[2], sys.argv[3]
    provider = TracerProvider(resource=Resource.create({"service.name": worker_id}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(spans_file)))
    trace.set_tracer_provider(provider)
    from workers.four_steps import serve

    trio.run(serve, url, worker_id)
