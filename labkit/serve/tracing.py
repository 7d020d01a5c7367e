"""OpenTelemetry tracing of inference: one span per request, when tracing is configured.

Needs ``pip install 'labkit[otel]'``. ``handoff serve --otel`` installs the SDK's tracer
provider with the standard OTLP exporter (endpoint, headers and protocol from the standard
``OTEL_EXPORTER_OTLP_*`` variables; ``OTEL_SERVICE_NAME`` defaults to ``labkit-serve``). A
program that embeds the app and configured OpenTelemetry itself gets spans in its provider;
without a configured provider no span is made (no cost per request).

Each span, ``labkit.infer``, is a child of the caller's trace when the request carries W3C
``traceparent`` (an HTTP header or gRPC metadata) and has the attributes ``labkit.model``,
``labkit.version`` (the concrete version that answered), ``labkit.protocol``,
``labkit.batch.requests``, ``labkit.batch.rows`` and ``labkit.queue_ms``; a refusal sets
the span's status to error with its message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from labkit.errors import MissingDependencyError

__all__ = ["Tracing", "configure_otlp"]

SPAN_NAME = "labkit.infer"
_UNCONFIGURED = {"ProxyTracerProvider", "NoOpTracerProvider"}


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def refuse(self, message: str) -> None:
        pass


_NO_SPAN = contextlib.nullcontext(_NoSpan())


class _Span:
    def __init__(self, span: Any) -> None:
        self._span = span

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def refuse(self, message: str) -> None:
        from opentelemetry.trace import Status, StatusCode

        self._span.set_status(Status(StatusCode.ERROR, message))


class Tracing:
    """Spans for the data plane; inert when OpenTelemetry is absent or not configured."""

    def __init__(self, provider: Any = None) -> None:
        self._tracer: Any = None
        try:
            from opentelemetry import trace
        except ImportError:
            return
        if provider is None:
            provider = trace.get_tracer_provider()
            if type(provider).__name__ in _UNCONFIGURED:
                return
        self._tracer = trace.get_tracer("labkit.serve", tracer_provider=provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def span(
        self, attributes: Mapping[str, Any], carrier: Mapping[str, str] | None = None
    ) -> contextlib.AbstractContextManager[_Span | _NoSpan]:
        if self._tracer is None:
            return _NO_SPAN  # nothing to build per request
        return self._span(attributes, carrier)

    @contextlib.contextmanager
    def _span(
        self, attributes: Mapping[str, Any], carrier: Mapping[str, str] | None
    ) -> Iterator[_Span | _NoSpan]:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        context = propagate.extract(dict(carrier)) if carrier else None
        with self._tracer.start_as_current_span(
            SPAN_NAME,
            context=context,
            kind=SpanKind.SERVER,
            attributes=dict(attributes),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield _Span(span)


def configure_otlp() -> Any:
    """Install the SDK's tracer provider exporting over OTLP (``handoff serve --otel``);
    returns it (call ``shutdown()`` on exit to flush)."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "opentelemetry-sdk", "otel") from exc
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "opentelemetry-exporter-otlp", "otel") from exc
    name = os.environ.get("OTEL_SERVICE_NAME", "labkit-serve")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
