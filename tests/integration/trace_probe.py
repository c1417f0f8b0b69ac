"""Run one guarded proposal with tracing on and print the finished spans as JSON lines (run by
``test_tracing.py`` in its own process: OpenTelemetry allows one tracer provider per process).

Reads the Neo4j target from ``TWINKG_NEO4J_URI`` / ``_USER`` / ``_PASSWORD`` and the home from
``TWINKG_HOME``; the graph must hold the SKAB testbed."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from twinkg.agents.state import ActionKind
from twinkg.api import tracing
from twinkg.api.resources import open_store
from twinkg.api.settings import load_settings
from twinkg.api.twin import agents_twin

PUMP = "https://w3id.org/twinkg/plant/skab-testbed/pump"
AS_OF = "2020-02-08T19:06:30+00:00"


def main() -> None:
    settings = load_settings()
    exporter = InMemorySpanExporter()
    provider = tracing.configure(settings, exporter=exporter)
    assert provider is not None
    with open_store(settings) as store, agents_twin(settings, store) as twin:
        action = twin.new_action(ActionKind.CONTROLLED_STOP, PUMP, 0.95, as_of=AS_OF)
        result = twin.propose(action, as_of=AS_OF)
    provider.force_flush()
    print(json.dumps({"decision": result.steps[-1].decision}))
    for span in exporter.get_finished_spans():
        context = span.context
        parent = span.parent
        print(
            json.dumps(
                {
                    "name": span.name,
                    "trace": format(context.trace_id, "032x") if context else None,
                    "span": format(context.span_id, "016x") if context else None,
                    "parent": format(parent.span_id, "016x") if parent else None,
                    "attributes": dict(span.attributes or {}),
                }
            )
        )


if __name__ == "__main__":
    main()
