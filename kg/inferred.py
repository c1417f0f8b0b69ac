"""Inferred classes in Neo4j: the facts the reasoner reads, and the labels it writes back.

An inferred class is stored twice on a node: as the class's label (so ``MATCH
(p:SinglePointOfFailure)`` works like any asserted class) and in the ``inferredType`` list
(``tk:inferredType``), which says which labels are inferred and so may be taken away when the
facts change. Asserted classes live in ``rdf_type``; their labels are never removed here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, LiteralString

from rdflib import Graph

from twinkg.kg.mapping import node_triples, relationship_triple
from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.store import GraphStore, labels_for
from twinkg.ontology.errors import MappingError
from twinkg.ontology.vocab import CLASS_LABELS, Label, PropKey, RelType

_ASSET_OR_EVENT = "(n:" + token(Label.ASSET) + " OR n:" + token(Label.EVENT) + ")"

FACT_NODES = NamedQuery(
    "inferred.fact_nodes",
    "MATCH (n:Resource) WHERE "
    + _ASSET_OR_EVENT
    + " RETURN n.uri AS uri, coalesce(n.rdf_type, []) AS types, "
    "[k IN $keys WHERE n[k] IS NOT NULL | [k, n[k]]] AS props ORDER BY uri",
)

RICH_FACT_NODES = NamedQuery(
    "inferred.rich_fact_nodes",
    "MATCH (n:Resource) WHERE "
    + _ASSET_OR_EVENT
    + " WITH n, [k IN $keys WHERE n[k] IS NOT NULL | [k, n[k]]] AS props WHERE size(props) > 0"
    " RETURN n.uri AS uri, coalesce(n.rdf_type, []) AS types, props ORDER BY uri",
)

# Grouped by their types, as stored: one row per list, however many nodes. Whether a node is
# linked is read from FACT_RELATIONSHIPS (needed anyway), not asked of Neo4j per node here.
KEYLESS_FACT_NODES = NamedQuery(
    "inferred.keyless_fact_nodes",
    "MATCH (n:Resource) WHERE " + _ASSET_OR_EVENT + " AND all(k IN $keys WHERE n[k] IS NULL)"
    " RETURN coalesce(n.rdf_type, []) AS types, collect(n.uri) AS uris",
)

FACT_RELATIONSHIPS = NamedQuery(
    "inferred.fact_relationships",
    "MATCH (n:Resource) WHERE "
    + _ASSET_OR_EVENT
    + " MATCH (n)-[r]->(b:Resource) WHERE type(r) IN $types "
    "AND (b:" + token(Label.ASSET) + " OR b:" + token(Label.EVENT) + ") "
    "RETURN n.uri AS start, type(r) AS type, b.uri AS end ORDER BY start, type, end",
)

INFERRED_STATE = NamedQuery(
    "inferred.state",
    "MATCH (n:Resource) WHERE n.inferredType IS NOT NULL "
    "RETURN n.uri AS uri, n.inferredType AS inferred, coalesce(n.rdf_type, []) AS types "
    "UNION "
    "UNWIND $uris AS u MATCH (n:Resource {uri: u}) "
    "RETURN n.uri AS uri, n.inferredType AS inferred, coalesce(n.rdf_type, []) AS types",
)

SET_INFERRED_TYPES = NamedQuery(
    "inferred.set_types",
    "UNWIND $rows AS row MATCH (n:Resource {uri: row.uri}) "
    "SET n.inferredType = row.types RETURN count(n) AS written",
)


def _label_statement(label: Label, verb: LiteralString, name: str) -> NamedQuery:
    return NamedQuery(
        name,
        "UNWIND $uris AS u MATCH (n:Resource {uri: u}) "
        + verb
        + " n:"
        + token(label)
        + " RETURN count(n) AS written",
    )


def add_label(label: Label) -> NamedQuery:
    """Give the nodes ``$uris`` the (inferred) ``label``."""
    return _label_statement(label, "SET", "inferred.add_label")


def remove_label(label: Label) -> NamedQuery:
    """Take the (no longer inferred) ``label`` off the nodes ``$uris``."""
    return _label_statement(label, "REMOVE", "inferred.remove_label")


@dataclass(frozen=True, slots=True)
class WriteCounts:
    """How many (node, inferred class) pairs a write added and removed."""

    added: int
    removed: int


def read_facts(
    store: GraphStore, *, keys: Iterable[PropKey], rel_types: Iterable[RelType]
) -> Graph:
    """Every asset and event node as RDF: asserted types, the ``keys`` properties, and the
    ``rel_types`` relationships between two such nodes (stored inferred labels are left out).

    The reference read: :func:`read_stored_facts` gives the same facts with the bare nodes
    apart, which is what the reclassification uses."""
    graph = Graph()
    wanted = sorted(k.value for k in keys)
    for row in store.read(FACT_NODES, keys=wanted):
        node_triples(row["uri"], row["types"], dict(row["props"]), into=graph)
    for row in store.read(FACT_RELATIONSHIPS, types=sorted(r.value for r in rel_types)):
        graph.add(relationship_triple(row["start"], row["type"], row["end"]))
    return graph


@dataclass(frozen=True, slots=True)
class StoredFacts:
    """The facts of :func:`read_facts`, with the bare nodes apart.

    ``graph`` holds every asset and event node that has one of the keys or a relationship to or
    from another such node, with its types, those properties and those relationships. ``bare``
    maps a set of class IRIs to the IRIs of the other nodes, those the facts know only by their
    types (the window aggregates, mostly), sorted. Read this way, the bare nodes cost one
    string each instead of an RDF term and a triple per type.
    """

    graph: Graph
    bare: Mapping[frozenset[str], tuple[str, ...]]


def read_stored_facts(
    store: GraphStore, *, keys: Iterable[PropKey], rel_types: Iterable[RelType]
) -> StoredFacts:
    """The facts of :func:`read_facts` (the same triples in all), the bare nodes grouped by
    their types instead of turned into RDF."""
    graph = Graph()
    wanted = sorted(k.value for k in keys)
    types = sorted(r.value for r in rel_types)
    for row in store.read(RICH_FACT_NODES, keys=wanted):
        node_triples(row["uri"], row["types"], dict(row["props"]), into=graph)
    linked: set[str] = set()
    for row in store.read(FACT_RELATIONSHIPS, types=types):
        graph.add(relationship_triple(row["start"], row["type"], row["end"]))
        linked.update((row["start"], row["end"]))
    bare: dict[frozenset[str], list[str]] = defaultdict(list)
    for row in store.read(KEYLESS_FACT_NODES, keys=wanted):
        for uri in row["uris"]:
            if uri in linked:  # its types go with its links
                node_triples(uri, row["types"], {}, into=graph)
            else:
                bare[frozenset(row["types"])].append(uri)
    return StoredFacts(graph, {k: tuple(sorted(v)) for k, v in bare.items()})


def _label(iri: str) -> Label:
    try:
        return CLASS_LABELS[iri]
    except KeyError:
        raise MappingError(f"inferred class {iri} is not a class of the ontology") from None


def _as_list(value: Any) -> list[str]:
    # A one-element list exported and re-imported comes back as a plain string.
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def write_inferred(store: GraphStore, inferred: Mapping[str, frozenset[str]]) -> WriteCounts:
    """Make the stored inferred classes those of ``inferred`` (node IRI → class IRIs).

    In ONE transaction: labels inferred before but not now are removed (unless the node asserts
    the class or a subclass of it), new ones are added, and ``inferredType`` is set to the
    sorted class IRIs (removed when none). Nodes ``inferred`` names but the graph lacks are
    ignored. Counts are (node, class) pairs.
    """
    for classes in inferred.values():
        for iri in classes:
            _label(iri)
    state = store.read(INFERRED_STATE, uris=sorted(inferred))
    adds: dict[Label, list[str]] = defaultdict(list)
    removes: dict[Label, list[str]] = defaultdict(list)
    rows: list[dict[str, Any]] = []
    added = removed = 0
    for row in sorted(state, key=lambda r: str(r["uri"])):
        uri, before = row["uri"], set(_as_list(row["inferred"]))
        now = set(inferred.get(uri, frozenset()))
        if before == now and isinstance(row["inferred"], list | None):
            continue
        asserted = set(labels_for([t for t in row["types"] if t in CLASS_LABELS]))
        for iri in sorted(now - before):
            adds[_label(iri)].append(uri)
        for iri in sorted(before - now):
            if iri in CLASS_LABELS and _label(iri) not in asserted:
                removes[_label(iri)].append(uri)
        added, removed = added + len(now - before), removed + len(before - now)
        rows.append({"uri": uri, "types": sorted(now) or None})
    statements: list[tuple[NamedQuery, Mapping[str, Any]]] = [
        (remove_label(label), {"uris": uris}) for label, uris in sorted(removes.items())
    ]
    statements += [(add_label(label), {"uris": uris}) for label, uris in sorted(adds.items())]
    if rows:
        statements.append((SET_INFERRED_TYPES, {"rows": rows}))
        store.execute(statements, touches=[row["uri"] for row in rows])
    return WriteCounts(added, removed)
