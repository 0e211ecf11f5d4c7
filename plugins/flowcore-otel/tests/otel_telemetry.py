"""The OpenTelemetry SDK as flowcore-otel's tests set it up: spans and metrics kept in memory
(the SDK's in-memory span exporter and metric reader), and a runner traced through them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flowcore_otel import OpenTelemetryTracer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from flowcore import (
    Context,
    FlowRunner,
    Graph,
    GraphBuilder,
    InMemorySessionStorage,
    NextAction,
    SessionStorage,
    Task,
    TaskResult,
    task,
)


@dataclass
class Telemetry:
    """What an application's SDK set-up would be, keeping spans and metrics in memory."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def tracer(self) -> OpenTelemetryTracer:
        return OpenTelemetryTracer(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def app_tracer(self) -> Tracer:
        """A tracer of the application's own code (a web handler, a task's LLM call)."""
        return self.tracer_provider.get_tracer("the-application")

    def runner(
        self,
        graph: Graph,
        storage: SessionStorage | None = None,
        **options: Any,
    ) -> FlowRunner:
        """A runner traced by this SDK only (whatever plugins are installed)."""
        return FlowRunner(
            graph,
            storage if storage is not None else InMemorySessionStorage(),
            tracers=[self.tracer()],
            plugins=False,
            **options,
        )

    def spans(self) -> list[ReadableSpan]:
        """The finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        [span] = self.named(name)
        return span

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        """The spans whose parent is ``parent``, in the order they started."""
        found = [
            span
            for span in self.spans()
            if span.parent is not None and span.parent.span_id == parent.context.span_id
        ]
        return sorted(found, key=lambda span: span.start_time or 0)

    def tree(self, root: ReadableSpan) -> list[Any]:
        """``[name, [child tree...]]``, children in the order they started."""
        return [root.name, [self.tree(child) for child in self.children(root)]]

    def metrics(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Each metric's points: ``(attributes, value)``; a histogram's value is its point."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points = found.setdefault(metric.name, [])
                    for point in metric.data.data_points:
                        value = getattr(point, "value", point)
                        points.append((dict(point.attributes or {}), value))
        return found

    def metric(self, name: str) -> Any:
        """The metric itself (name, unit, description, data) as the reader got it."""
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        return metric
        raise AssertionError(f"no metric {name!r}")


def chain(graph_id: str, *tasks: Task, edges: Sequence[tuple[str, str]] = ()) -> Graph:
    """A graph of ``tasks`` (the first one starts) with ``edges`` between them."""
    builder = GraphBuilder(graph_id)
    for each in tasks:
        builder.add_task(each)
    for source, target in edges:
        builder.add_edge(source, target)
    return builder.build()


def pausing(
    task_id: str,
    seconds: float,
    response: str = "done",
    next_action: NextAction = NextAction.WaitForInput,
) -> Task:
    """A task that sleeps ``seconds`` (other steps run meanwhile), then answers ``response``."""

    @task(task_id)
    async def pause(ctx: Context) -> TaskResult:
        await asyncio.sleep(seconds)
        return TaskResult(response, next_action)

    return pause
