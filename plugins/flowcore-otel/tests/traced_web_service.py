"""flowcore's web-service example (examples/web_service.py) as an application that traces itself.

    python traced_web_service.py SPANS_FILE [--token-delay S]

It sets up the OpenTelemetry SDK at start-up, as an application does, with every span written to
SPANS_FILE as one line of JSON (the SDK's console exporter, into a file), and serves the example
on in-memory storage behind OpenTelemetry's ASGI middleware, which opens a server span for each
request (continuing the trace of a ``traceparent`` header). With flowcore-otel installed, each
step's ``flowcore.run`` span is a child of its request's span. The log line ``Uvicorn running
on http://127.0.0.1:PORT`` names the port it chose.
"""

from __future__ import annotations

import argparse
import contextlib

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor


def one_line(span: ReadableSpan) -> str:
    return span.to_json(indent=None) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spans", help="the file every finished span is written to")
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()

    spans = open(args.spans, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=spans, formatter=one_line)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    import uvicorn

    from examples.web_service import create_app, server_config

    app = OpenTelemetryMiddleware(create_app("memory://", token_delay=args.token_delay))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises it again once stopped by SIGINT
        uvicorn.Server(server_config(app, port=0)).run()  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
