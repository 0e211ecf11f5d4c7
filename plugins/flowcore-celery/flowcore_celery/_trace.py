"""W3C trace context across the broker, through the OpenTelemetry API when it is installed.

``submit`` writes the current context into the message's headers (``traceparent``,
``tracestate``); the worker reads it back and runs the step inside it, so whatever tracer the
worker has (flowcore-otel's ``flowcore.run`` span, a span of the application's own) nests under
the span that was current at submit. Without ``opentelemetry`` installed both ends do nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate

    ENABLED = True
except ImportError:  # pragma: no cover - exercised where opentelemetry is not installed
    ENABLED = False

__all__ = ["ENABLED", "carrier_of", "headers_to_send", "inside"]


def headers_to_send() -> dict[str, str]:
    """The current trace context as message headers (empty without OpenTelemetry or a span)."""
    if not ENABLED:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def carrier_of(headers: Mapping[str, Any]) -> dict[str, str]:
    """The trace-context headers among a received message's ``headers``."""
    if not ENABLED:
        return {}
    return {
        name: value
        for name in propagate.get_global_textmap().fields
        if isinstance(value := headers.get(name), str)
    }


@contextlib.contextmanager
def inside(carrier: Mapping[str, str]) -> Iterator[None]:
    """Run the block inside the trace context that ``carrier`` holds (as is, when it is empty)."""
    if not ENABLED or not carrier:
        yield
        return
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)
