"""Loading a seed plant, with the ontology it is an instance of, into the graph store."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rdflib import Dataset, Graph, URIRef
from rdflib.compare import isomorphic, to_canonical_graph
from rdflib.namespace import OWL

from twinkg.kg.mapping import ONTOLOGY_GRAPH, TWIN_GRAPH, rdf_to_records, records_to_rdf
from twinkg.kg.queries import PUT_ONTOLOGY_SOURCE
from twinkg.kg.records import GraphRecords
from twinkg.kg.store import DEFAULT_BATCH, GraphCounts, GraphStore
from twinkg.ontology.catalog import build_catalog, load_ontology, parse_turtle, projection
from twinkg.ontology.errors import InvalidInputError, TurtleSyntaxError
from twinkg.ontology.namespaces import ONTOLOGY_IRI


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


@dataclass(frozen=True, slots=True)
class OntologySource:
    """The ontology exactly as loaded, as the seed stores it beside its projection: canonical
    N-Triples (blank nodes canonically labelled, lines sorted) and their SHA-256."""

    iri: str
    version: str
    ntriples: str
    sha256: str


@cache
def ontology_source() -> OntologySource:
    """The loaded ontology (modules and imports) as :class:`OntologySource`."""
    graph = load_ontology()
    text = to_canonical_graph(graph).serialize(format="nt", encoding="utf-8").decode()
    lines = sorted(line for line in text.splitlines() if line.strip())
    ntriples = "\n".join(lines) + "\n"
    version = graph.value(URIRef(ONTOLOGY_IRI), OWL.versionInfo)
    digest = hashlib.sha256(ntriples.encode()).hexdigest()
    return OntologySource(ONTOLOGY_IRI, str(version), ntriples, digest)


_DATASET_FORMATS = {".trig": "trig", ".nq": "nquads", ".nquads": "nquads"}


def plant_file(path: Path) -> GraphRecords:
    """The records of a plant file: Turtle, or a whole-twin export (TriG or N-Quads, by suffix)
    whose ontology graph must be this twin's ontology, triple for triple.

    Raises :class:`InvalidInputError` (or :class:`TurtleSyntaxError`) with a one-line reason;
    nothing is read from or written to the store.
    """
    fmt = _DATASET_FORMATS.get(path.suffix.lower())
    if fmt is None:
        return rdf_to_records(parse_turtle([path]))
    dataset = Dataset()
    try:
        dataset.parse(path, format=fmt)
    except Exception as exc:  # rdflib raises several unrelated types for bad syntax
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TurtleSyntaxError(f"{path}: malformed {fmt}: {reason}") from exc
    return rdf_to_records(_twin_graph(path, dataset))


def _twin_graph(path: Path, dataset: Dataset) -> Graph:
    graphs = {str(g.identifier): g for g in dataset.graphs() if len(g)}
    unknown = sorted(set(graphs) - {ONTOLOGY_GRAPH, TWIN_GRAPH})
    if unknown:
        raise InvalidInputError(
            f"{path}: triples outside the export's graphs <{ONTOLOGY_GRAPH}> and "
            f"<{TWIN_GRAPH}>, first in <{unknown[0]}>"
        )
    if TWIN_GRAPH not in graphs:
        raise InvalidInputError(f"{path}: no twin graph <{TWIN_GRAPH}>")
    if ONTOLOGY_GRAPH in graphs:
        theirs, ours = graphs[ONTOLOGY_GRAPH], load_ontology()
        if not isomorphic(theirs, ours):
            version = theirs.value(URIRef(ONTOLOGY_IRI), OWL.versionInfo)
            raise InvalidInputError(
                f"{path}: its ontology (version {version}, {len(theirs)} triples) is not this "
                f"twin's (version {ontology_source().version}, {len(ours)} triples); "
                "migrate the export first"
            )
    # The twin graph restates the ontology's projection, which the seed writes from the
    # ontology itself (with_ontology): keep the rest, and refuse a projection that differs.
    projected = _projection_as_exported()
    twin = Graph()
    for triple in graphs[TWIN_GRAPH]:
        if triple not in projected:
            twin.add(triple)
    terms = set(projected.subjects())
    stray = sorted(str(s) for s in set(twin.subjects()) if s in terms)
    if stray:
        raise InvalidInputError(
            f"{path}: the twin graph describes the ontology term <{stray[0]}> otherwise than "
            "the ontology does"
        )
    return twin


@cache
def _projection_as_exported() -> Graph:
    return records_to_rdf(ontology_records())


def with_ontology(plant: GraphRecords) -> GraphRecords:
    """The records a seed writes: the ontology's, then the plant's."""
    return ontology_records().merged_with(plant)


def load(
    store: GraphStore,
    plant: str,
    records: GraphRecords,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> SeedSummary:
    """Create the schema, then write ``records`` (see :func:`with_ontology`) and the ontology as
    loaded (:func:`ontology_source`) in one transaction.

    Idempotent: loading the same records again leaves the graph as it was. A failure leaves the
    graph as it was before the call (the write is one transaction).
    """
    store.ensure_schema()
    before = store.counts()
    source = ontology_source()
    params = {
        "iri": source.iri,
        "version": source.version,
        "ntriples": source.ntriples,
        "sha256": source.sha256,
    }
    store.write(
        records,
        batch_size=batch_size,
        progress=progress,
        statements=[(PUT_ONTOLOGY_SOURCE, params)],
    )
    return SeedSummary(plant, len(records.nodes), len(records.rels), before, store.counts())
