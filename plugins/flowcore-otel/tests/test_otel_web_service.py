"""The web-service example with flowcore-otel installed, over real HTTP: each step's
``flowcore.run`` span is a child of the request's server span, in the trace the client began.

The service runs in a process of its own (``traced_web_service.py``: the SDK set up at start-up,
spans written to a file, OpenTelemetry's ASGI middleware around the app); the test is the client,
which opens a span around each request and sends it along as a ``traceparent`` header.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import format_span_id, format_trace_id

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]  # flowcore's checkout: the example is examples/web_service.py


class TracedService:
    """The example, running: its URL, and the spans it wrote."""

    def __init__(self, url: str, spans: Path) -> None:
        self.url = url
        self.spans_file = spans

    def spans(self) -> list[dict[str, Any]]:
        text = self.spans_file.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def spans_of_trace(self, trace_id: str, wanted: int) -> list[dict[str, Any]]:
        """The spans of trace ``trace_id`` once there are ``wanted`` flowcore.run spans in it
        (the server span ends just after the answer is sent)."""
        deadline = time.monotonic() + 10
        while True:
            found = [s for s in self.spans() if s["context"]["trace_id"] == trace_id]
            runs = [s for s in found if s["name"] == "flowcore.run"]
            servers = [s for s in found if s["kind"] == "SpanKind.SERVER"]
            if len(runs) >= wanted and len(servers) >= wanted:
                return found
            assert time.monotonic() < deadline, f"spans of trace {trace_id} missing: {found}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedService]:
    home = tmp_path_factory.mktemp("traced-web")
    spans, log = home / "spans.jsonl", home / "server.log"
    spans.touch()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "FLOWCORE_LOAD_PLUGINS": "otel",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "traced_web_service.py"), str(spans)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the traced web service did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield TracedService(found.group(1), spans)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def client_tracer():
    """The client's own tracing: a span around each request, sent as ``traceparent``."""
    provider = TracerProvider()
    yield provider.get_tracer("the-client")
    provider.shutdown()


def hex_id(span_id: int) -> str:
    return "0x" + format_span_id(span_id)


def traced_request(client: httpx.Client, tracer: Any, method: str, path: str, **kw: Any):
    """A request inside a client span of its own; the answer and that span's context."""
    with tracer.start_as_current_span(f"client {method} {path}") as span:
        headers: dict[str, str] = {}
        inject(headers)  # traceparent: this span
        answer = client.request(method, path, headers=headers, **kw)
    return answer, span.get_span_context()


def test_a_step_over_http_is_traced_under_the_request_span(service, client_tracer):
    with httpx.Client(base_url=service.url, timeout=10) as client:
        session_id = client.post("/sessions").json()["id"]
        answer, sent = traced_request(client, client_tracer, "POST", f"/sessions/{session_id}/run")
    assert answer.status_code == 200, answer.text

    trace_id = "0x" + format_trace_id(sent.trace_id)
    spans = service.spans_of_trace(trace_id, wanted=1)
    [server] = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    [run] = [s for s in spans if s["name"] == "flowcore.run"]
    assert server["parent_id"] == hex_id(sent.span_id)  # the request continued the client's trace
    assert run["parent_id"] == server["context"]["span_id"]  # the step is the request's child
    assert run["attributes"] == {
        "flowcore.session_id": session_id,
        "flowcore.graph_id": "order_support",
        "flowcore.task_id": "ask_order",
        "flowcore.status": "WaitingForInput",
        "flowcore.version": 2,
    }
    below_run = sorted(
        (s for s in spans if s["parent_id"] == run["context"]["span_id"]),
        key=lambda s: s["start_time"],
    )
    assert [s["name"] for s in below_run] == ["flowcore.load", "flowcore.task", "flowcore.save"]
    assert below_run[1]["attributes"]["flowcore.outcome"] == "WaitForInput"


def answer_traced(service, client_tracer, endpoint: str, message: str):
    """A new session's first step, then ``message`` POSTed to its ``endpoint`` (run or stream)
    in a client span of its own: the answer, and the spans of that request's trace."""
    with httpx.Client(base_url=service.url, timeout=10) as client:
        session_id = client.post("/sessions").json()["id"]
        client.post(f"/sessions/{session_id}/run")
        answer, sent = traced_request(
            client,
            client_tracer,
            "POST",
            f"/sessions/{session_id}/{endpoint}",
            json={"message": message},
        )
    return answer, service.spans_of_trace("0x" + format_trace_id(sent.trace_id), wanted=1)


def test_a_streamed_step_over_http_is_traced_under_the_request_span(service, client_tracer):
    answer, spans = answer_traced(service, client_tracer, "stream", "A-1001")
    assert answer.status_code == 200
    assert "event: result" in answer.text

    [server] = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    [run] = [s for s in spans if s["name"] == "flowcore.run"]
    assert run["parent_id"] == server["context"]["span_id"]
    assert run["attributes"]["flowcore.status"] == "Paused"
    [attempt] = [s for s in spans if s["name"] == "flowcore.task"]
    assert attempt["parent_id"] == run["context"]["span_id"]
    assert attempt["attributes"]["flowcore.task_id"] == "ask_order"


def test_a_failed_step_over_http_is_an_error_span_under_the_request(service, client_tracer):
    # The order service is unreachable for this order.
    answer, spans = answer_traced(service, client_tracer, "run", "A-9999")
    assert answer.status_code == 500

    [server] = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    [run] = [s for s in spans if s["name"] == "flowcore.run"]
    [attempt] = [s for s in spans if s["name"] == "flowcore.task"]
    assert run["parent_id"] == server["context"]["span_id"]
    assert run["status"]["status_code"] == "ERROR"
    assert attempt["status"]["status_code"] == "ERROR"
    assert attempt["attributes"]["flowcore.outcome"] == "failed"
    [event] = attempt["events"]
    assert event["attributes"]["exception.type"] == "ConnectionError"
