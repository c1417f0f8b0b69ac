"""The context of a proposed action, read from Neo4j as RDF for the safety shapes.

What the guard needs to judge an action on an asset, and no more: the asset and every asset it
is (transitively) part of; the operating envelopes the asset has; the policies (trust thresholds,
approval requirements, lockout/tagout permits, interlocks, envelopes) that apply to the asset or
to an asset it is part of; the interlocks that trip it; its duty/standby partner with that
partner's status; and the partner's other duty/standby partners with theirs (whom a shared
standby may already run in place of). Nodes come back with their asserted classes only
(``rdf_type``); the guard validates with the ontology so that RDFS inference sees the
superclasses. Nodes and relationships become triples exactly as
:meth:`kg.store.GraphStore.export` makes them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from rdflib import Graph

from twinkg.kg.mapping import canonical_times, node_triples, relationship_triple
from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import InvalidInputError
from twinkg.ontology.vocab import Label, PropKey, RelType

_RESOURCE, _ASSET = token(Label.RESOURCE), token(Label.ASSET)
_PART_OF, _HAS_ENVELOPE = token(RelType.PART_OF), token(RelType.HAS_ENVELOPE)
_APPLIES_TO, _TRIPS = token(RelType.APPLIES_TO), token(RelType.TRIPS)
_STANDBY_FOR, _HAS_STANDBY = token(RelType.STANDBY_FOR), token(RelType.HAS_STANDBY)
_POLICY, _ENVELOPE = token(Label.POLICY), token(Label.OPERATING_ENVELOPE)
_INTERLOCK = token(Label.INTERLOCK)

CONTEXT_NODES = NamedQuery(
    "context.nodes",
    f"MATCH (t:{_RESOURCE} {{uri: $uri}}) WHERE t:{_ASSET} "
    f"CALL (t) {{ OPTIONAL MATCH (t)-[:{_PART_OF}*1..]->(a:{_ASSET}) "
    "RETURN collect(DISTINCT a) AS ancestors } "
    "WITH t, [t] + ancestors AS scope "
    f"CALL (t) {{ OPTIONAL MATCH (t)-[:{_HAS_ENVELOPE}]->(e:{_ENVELOPE}) "
    "RETURN collect(DISTINCT e) AS envelopes } "
    f"CALL (scope) {{ UNWIND scope AS s OPTIONAL MATCH (p:{_POLICY})-[:{_APPLIES_TO}]->(s) "
    "RETURN collect(DISTINCT p) AS policies } "
    f"CALL (t) {{ OPTIONAL MATCH (i:{_INTERLOCK})-[:{_TRIPS}]->(t) "
    "RETURN collect(DISTINCT i) AS interlocks } "
    f"CALL (t) {{ OPTIONAL MATCH (t)-[:{_STANDBY_FOR}|{_HAS_STANDBY}]-(q:{_ASSET}) "
    "RETURN collect(DISTINCT q) AS partners } "
    # a shared standby's other duty pumps: whom it may already run in place of
    f"CALL (t, partners) {{ UNWIND partners AS q "
    f"OPTIONAL MATCH (q)-[:{_STANDBY_FOR}|{_HAS_STANDBY}]-(o:{_ASSET}) WHERE o <> t "
    "RETURN collect(DISTINCT o) AS others } "
    "UNWIND scope + envelopes + policies + interlocks + partners + others AS n "
    "WITH DISTINCT n "
    "RETURN n.uri AS uri, coalesce(n.rdf_type, []) AS types, properties(n) AS props "
    "ORDER BY uri",
)
"""The context's nodes: ``uri``, asserted ``types`` and all ``props`` of each."""

CONTEXT_RELATIONSHIPS = NamedQuery(
    "context.relationships",
    f"MATCH (a:{_RESOURCE})-[r]->(b:{_RESOURCE}) WHERE a.uri IN $uris "
    "AND (b.uri IN $uris OR type(r) IN $leaf_types) "
    "RETURN a.uri AS start, type(r) AS type, b.uri AS end ORDER BY start, type, end",
)
"""Relationships among the context's nodes, plus those to terms the shapes match by IRI."""

# Relationships that point at terms the shapes compare by IRI only (a quantity kind, a role).
_LEAF_TYPES = (RelType.FOR_QUANTITY_KIND, RelType.REQUIRED_ROLE)
_NOT_PROPERTIES = (PropKey.URI.value, PropKey.RDF_TYPE.value)


def context_from_rows(
    node_rows: Sequence[Mapping[str, Any]], rel_rows: Sequence[Mapping[str, Any]]
) -> Graph:
    """The context as RDF from the rows of :data:`CONTEXT_NODES` and
    :data:`CONTEXT_RELATIONSHIPS` (live, or read back from a decision's record)."""
    graph = Graph()
    for row in node_rows:
        props = {k: v for k, v in row["props"].items() if k not in _NOT_PROPERTIES}
        graph += canonical_times(node_triples(row["uri"], row["types"], props))
    for rel in rel_rows:
        graph.add(relationship_triple(rel["start"], rel["type"], rel["end"]))
    return graph


def context_params(node_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The parameters of :data:`CONTEXT_RELATIONSHIPS` for the nodes found."""
    return {"uris": [row["uri"] for row in node_rows], "leaf_types": [t.value for t in _LEAF_TYPES]}


def graph_version(context: Graph) -> str:
    """SHA-256 of the context's canonical N-Triples: what an approval binds to."""
    lines = context.serialize(format="nt").splitlines()
    text = "\n".join(sorted(line for line in lines if line.strip()))
    return hashlib.sha256(text.encode()).hexdigest()


def action_context(store: GraphStore, asset_iri: str) -> Graph:
    """The context of an action on ``asset_iri``, as RDF (see the module docstring).

    Raises :class:`InvalidInputError` when the graph holds no asset with that IRI.
    """
    rows = store.read(CONTEXT_NODES, uri=asset_iri)
    if not rows:
        raise InvalidInputError(f"no asset with IRI {asset_iri!r} in the graph")
    return context_from_rows(rows, store.read(CONTEXT_RELATIONSHIPS, **context_params(rows)))
