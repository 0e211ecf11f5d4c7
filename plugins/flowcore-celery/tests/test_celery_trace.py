"""The trace context crosses the broker: a worker's ``flowcore.run`` spans (flowcore-otel's)
nest under the span that was current when the step was submitted."""

from __future__ import annotations

import json

import flowcore_celery
import pytest
from celery import Celery
from celery_services import Workers
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowcore import FlowRunner

pytestmark = pytest.mark.slow


async def test_the_workers_run_spans_nest_under_the_submitting_span(
    app: Celery, runner: FlowRunner, prefix: str, workers: Workers
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await runner.create_session(prefix)

    with provider.get_tracer("claims-web").start_as_current_span("POST /claims"):
        result = flowcore_celery.submit(app, prefix)
    assert result.get(timeout=30)["status"] == "Completed"

    (submitting,) = exporter.get_finished_spans()
    spans = [
        json.loads(line) for line in (workers.directory / "spans.jsonl").read_text().splitlines()
    ]
    runs = [s for s in spans if s["name"] == "flowcore.run" and s["session_id"] == prefix]
    assert len(runs) == 3  # one per step, in the drive's two messages
    for run in runs:
        assert run["trace_id"] == f"{submitting.context.trace_id:032x}"
        assert run["parent_id"] == f"{submitting.context.span_id:016x}"


def test_without_a_current_span_no_trace_headers_are_sent() -> None:
    from flowcore_celery import _trace

    assert _trace.headers_to_send() == {}
