"""A plant's data contracts, judged on the graph as it will be once the plant is written.

A plant file may describe new nodes, restate stored ones and reference stored ones. Checked alone,
a file that references a stored asset fails on that asset (its tag and criticality are not in the
file), so its first error names the store's data, not the file's problem. Here the file is
merged with the part of the stored graph it touches (:func:`twinkg.kg.plant_context.stored_context`)
the way the write will merge it (a property the file states replaces the stored one; edges add
up), the merged graph is validated, and only the results the file brings are kept: those not
already in the stored part alone. A reference that points at nothing (not in the file, not stored,
not a term of the ontology) is reported by name. See
docs/decisions/0039-closed-unit-lists-and-plant-files-checked-with-the-graph.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF

from twinkg.kg.mapping import records_to_rdf
from twinkg.kg.plant_context import stored_context
from twinkg.kg.records import GraphRecords
from twinkg.kg.store import GraphStore
from twinkg.ontology.catalog import load_ontology
from twinkg.ontology.errors import ContractViolationError
from twinkg.ontology.vocab import TK
from twinkg.reasoner.validation import Severity, ValidationOutcome, Violation, validate
from twinkg.shapes.registry import ingest_shapes


@dataclass(frozen=True, slots=True)
class DanglingReference:
    """A relationship of the file whose object is nowhere: not in the file, not stored, not a
    term of the ontology."""

    subject: str
    predicate: str
    target: str


@dataclass(frozen=True, slots=True)
class PlantCheck:
    """What a plant brings that breaks its contracts, once merged with the stored graph."""

    violations: tuple[Violation, ...]
    """The SHACL results of the merged graph that the stored part alone does not have."""
    dangling: tuple[DanglingReference, ...]
    outcome: ValidationOutcome
    """The full pySHACL outcome over the merged graph (its report graph, for the record)."""

    @property
    def blocking(self) -> tuple[Violation, ...]:
        """The file's results of severity ``sh:Violation``."""
        return tuple(v for v in self.violations if v.severity is Severity.VIOLATION)

    @property
    def conforms(self) -> bool:
        """No dangling reference and no blocking result."""
        return not self.dangling and not self.blocking


@cache
def _ontology_terms() -> frozenset[str]:
    return frozenset(str(s) for s in load_ontology().subjects() if isinstance(s, URIRef))


def merged(plant: Graph, stored: Graph) -> Graph:
    """``stored`` with ``plant`` written over it as the seed writes it: a datatype property or
    the types the plant states for a node replace the stored ones; relationships add up."""
    graph = Graph()
    graph += stored
    for s, p in {(s, p) for s, p, o in plant if isinstance(o, Literal) or p == RDF.type}:
        graph.remove((s, p, None))
    graph += plant
    return graph


def _named(plant: Graph) -> set[str]:
    """The IRIs ``plant`` names as subjects or objects, ontology terms aside."""
    terms = _ontology_terms()
    nodes = set(plant.subjects()) | {o for o in plant.objects() if isinstance(o, URIRef)}
    return {str(n) for n in nodes if isinstance(n, URIRef) and str(n) not in terms}


def _dangling(plant: Graph, whole: Graph) -> tuple[DanglingReference, ...]:
    described = {str(s) for s in whole.subjects()}
    terms = _ontology_terms()
    found = {
        DanglingReference(str(s), str(p), str(o))
        for s, p, o in plant
        if isinstance(o, URIRef) and p != RDF.type and str(o) not in described | terms
    }
    return tuple(sorted(found, key=lambda d: (d.target, d.subject, d.predicate)))


def check_plant(plant: GraphRecords, *, store: GraphStore | None = None) -> PlantCheck:
    """The plant's records against the current asset, sensor and event contracts, merged with
    the stored graph they touch when ``store`` is given (alone otherwise).

    Reads the store, never writes it. The graph may change between this check and the write;
    the seed is one transaction, so a later writer cannot leave half a plant, but a concurrent
    change to the referenced nodes is not re-checked.
    """
    data = records_to_rdf(plant)
    stored = Graph()
    if store is not None:
        tags = [str(t) for t in data.objects(None, TK.tag)]
        stored = stored_context(store, uris=_named(data), tags=tags)
    whole = merged(data, stored)
    shapes, ontology = ingest_shapes(), load_ontology()
    outcome = validate(whole, shapes, ontology=ontology)
    found = outcome.violations
    if found and len(stored):
        # What the stored part already had (or lacks only because it was read one hop deep)
        # is not the file's doing.
        before = set(validate(stored, shapes, ontology=ontology).violations)
        found = tuple(v for v in found if v not in before)
    return PlantCheck(found, _dangling(data, whole), outcome)


def _where(violation: Violation) -> str:
    return f"{violation.focus_node} {violation.path or ''}".strip()


def require_conformance(name: str, check: PlantCheck) -> None:
    """Raise :class:`ContractViolationError` (one line) unless ``check`` conforms.

    A dangling reference is named first unless a contract result already explains its target
    (a unit outside the closed lists, say): it is usually why the other results arise.
    """
    explained = {v.value for v in check.blocking}
    dangling = [d for d in check.dangling if d.target not in explained]
    problems = len(dangling) + len(check.blocking)
    if dangling:
        first = dangling[0]
        raise ContractViolationError(
            f"{name} breaks its data contracts in {problems} place(s); first: {first.subject} "
            f"{first.predicate}: {first.target} is not in the file, not stored and not a term "
            "of the ontology"
        )
    if check.blocking:
        first_result = check.blocking[0]
        raise ContractViolationError(
            f"{name} breaks its data contracts in {problems} place(s); "
            f"first: {_where(first_result)}: {first_result.message}"
        )
