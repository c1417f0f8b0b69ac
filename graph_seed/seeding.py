"""Loading a seed plant, with the ontology it is an instance of, into the graph store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from twinkg.kg.mapping import rdf_to_records, records_to_rdf
from twinkg.kg.records import GraphRecords
from twinkg.kg.store import DEFAULT_BATCH, GraphCounts, GraphStore
from twinkg.ontology.catalog import build_catalog, load_ontology, projection
from twinkg.ontology.errors import ContractViolationError
from twinkg.reasoner.validation import Severity, ValidationOutcome, validate
from twinkg.shapes.registry import ingest_shapes


@dataclass(frozen=True, slots=True)
class SeedSummary:
    """What a seed wrote, and the graph's totals before and after."""

    plant: str
    nodes: int
    relationships: int
    before: GraphCounts
    after: GraphCounts


@cache
def ontology_records() -> GraphRecords:
    """The ontology's projection (classes, properties, hierarchy, individuals) as records."""
    graph = load_ontology()
    return rdf_to_records(projection(graph, build_catalog(graph)))


def with_ontology(plant: GraphRecords) -> GraphRecords:
    """The records a seed writes: the ontology's, then the plant's."""
    return ontology_records().merged_with(plant)


def check_plant(plant: GraphRecords) -> ValidationOutcome:
    """The plant's records against the current asset, sensor and event contracts."""
    return validate(records_to_rdf(plant), ingest_shapes(), ontology=load_ontology())


def require_conformance(name: str, outcome: ValidationOutcome) -> None:
    """Raise :class:`ContractViolationError` when ``outcome`` holds a blocking result."""
    blocking = outcome.of_severity(Severity.VIOLATION)
    if blocking:
        first = blocking[0]
        where = f"{first.focus_node} {first.path or ''}".strip()
        raise ContractViolationError(
            f"{name} breaks its data contracts in {len(blocking)} place(s); "
            f"first: {where}: {first.message}"
        )


def load(
    store: GraphStore,
    plant: str,
    records: GraphRecords,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> SeedSummary:
    """Create the schema, then write ``records`` (see :func:`with_ontology`) in one transaction.

    Idempotent: loading the same records again leaves the graph as it was. A failure leaves the
    graph as it was before the call (the write is one transaction).
    """
    store.ensure_schema()
    before = store.counts()
    store.write(records, batch_size=batch_size, progress=progress)
    return SeedSummary(plant, len(records.nodes), len(records.rels), before, store.counts())
