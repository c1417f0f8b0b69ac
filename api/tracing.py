"""OpenTelemetry traces: off by default, OTLP over HTTP when ``TWINKG_OTLP_ENDPOINT`` is set.

The code is instrumented with the OpenTelemetry API only (``opentelemetry.trace``): a span per
agent run (``twinkg.agents.run``, with its run id), per agent node (``twinkg.agent.<node>``; the
record node's carries the decision's provenance IRI as ``twinkg.decision``) and per store call
(``twinkg.store <query name>``). Without a configured provider these spans are the API's no-op
spans and cost next to nothing. :func:`configure` installs the SDK's provider for the process,
exporting in batches to the collector, once; the API server, ``twinkg run`` and
``twinkg connect mqtt`` call it at start.
"""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from twinkg.api.settings import Settings

_lock = threading.Lock()
_installed: list[TracerProvider] = []


def provider(processor: SpanProcessor, *, service: str = "twinkg") -> TracerProvider:
    """Install a tracer provider feeding ``processor`` for this process (once: a second call
    returns the first provider, as OpenTelemetry allows one global provider)."""
    with _lock:
        if _installed:
            return _installed[0]
        made = TracerProvider(resource=Resource.create({"service.name": service}))
        made.add_span_processor(processor)
        trace.set_tracer_provider(made)
        _installed.append(made)
        return made


def configure(settings: Settings, *, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Export this process's spans to ``TWINKG_OTLP_ENDPOINT`` (``None``, and nothing
    installed, when it is unset and no ``exporter`` is given)."""
    if exporter is None:
        if settings.otlp_endpoint is None:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint)
    return provider(BatchSpanProcessor(exporter), service=settings.otel_service_name)
