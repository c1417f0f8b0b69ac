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
    ``rel_types`` relationships between two such nodes (stored inferred labels are left out)."""
    graph = Graph()
    wanted = sorted(k.value for k in keys)
    for row in store.read(FACT_NODES, keys=wanted):
        graph += node_triples(row["uri"], row["types"], dict(row["props"]))
    for row in store.read(FACT_RELATIONSHIPS, types=sorted(r.value for r in rel_types)):
        graph.add(relationship_triple(row["start"], row["type"], row["end"]))
    return graph


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
