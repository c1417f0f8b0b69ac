"""The lineage of a decision: from the action back to raw data, shapes, policies and people.

One read gathers the decision, the decisions of the same run before it (``prov:wasInformedBy``),
everything they own (action, report, evidence, windows, hypotheses, approval, effect), and what
they used or were associated with, followed two more steps back (an alarm to the anomaly it was
derived from, to the ingest batch that produced it; a window to its sensors; an approval to the
person and the roles they hold). The result is RDF, so it exports as Turtle or JSON-LD.
"""

from __future__ import annotations

from rdflib import Graph

from twinkg.kg.mapping import canonical_times, node_triples, relationship_triple
from twinkg.kg.provenance import decision_ref
from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import DecisionNotFoundError
from twinkg.ontology.namespaces import PREFIXES
from twinkg.ontology.vocab import Label, PropKey, RelType

_R, _DECISION = token(Label.RESOURCE), token(Label.DECISION)
_INFORMED = token(RelType.PROV_WAS_INFORMED_BY)
_BACK = "|".join(
    token(r)
    for r in (
        RelType.PROV_USED,
        RelType.PROV_WAS_ASSOCIATED_WITH,
        RelType.PROV_WAS_DERIVED_FROM,
        RelType.PROV_WAS_INFORMED_BY,
        RelType.PROV_WAS_GENERATED_BY,
        RelType.TARGETS,
        RelType.WINDOW_OF,
        RelType.HYPOTHESIZED_MODE,
        RelType.APPROVER_ROLE,
        RelType.APPROVES,
        RelType.CONCERNS,
        RelType.FAILURE_MODE,
        RelType.IN_BATCH,
        RelType.SCORE_OF,
        RelType.HAS_ROLE,
        RelType.DEMANDED_BY,
        RelType.ADDRESSES,
        RelType.SETPOINT_QUANTITY_KIND,
    )
)

LINEAGE = NamedQuery(
    "lineage.subgraph",
    f"MATCH (d:{_R}:{_DECISION} {{uri: $decision}}) "
    f"MATCH (d)-[:{_INFORMED}*0..]->(r:{_DECISION}) "
    "WITH collect(DISTINCT r) AS records "
    f"UNWIND records AS r MATCH (o:{_R}) WHERE o.uri = r.uri OR o.uri STARTS WITH r.uri + '/' "
    "WITH collect(DISTINCT o) AS owned "
    f"UNWIND owned AS o OPTIONAL MATCH (o)-[:{_BACK}*1..3]->(x:{_R}) "
    "WITH owned, collect(DISTINCT x) AS reached "
    "WITH owned + reached AS found UNWIND found AS n WITH DISTINCT found, n "
    f"OPTIONAL MATCH (n)-[e:{_BACK}]->(m:{_R}) WHERE m IN found "
    "WITH n, collect(CASE WHEN m IS NULL THEN NULL ELSE [type(e), m.uri] END) AS out "
    "RETURN n.uri AS uri, coalesce(n.rdf_type, []) AS types, properties(n) AS props, out "
    "ORDER BY uri",
)
"""The decision's records and everything reachable back from them (three steps), each node with
its relationships to the others. Relationships are only ever expanded outwards: shared nodes such
as the shapes release have an incoming edge from every decision."""

_SKIP = (PropKey.URI.value, PropKey.RDF_TYPE.value)


def lineage(store: GraphStore, decision: str) -> Graph:
    """The lineage of ``decision`` (an IRI or ``<run id>/<step>``) as RDF.

    Raises :class:`DecisionNotFoundError` when there is no such decision.
    """
    iri = decision_ref(decision)
    rows = store.read(LINEAGE, decision=iri)
    if not rows:
        raise DecisionNotFoundError(f"no decision {iri!r} in the graph")
    graph = Graph()
    for prefix, namespace in PREFIXES.items():
        graph.bind(prefix, namespace)
    for row in rows:
        props = {k: v for k, v in row["props"].items() if k not in _SKIP}
        node_triples(row["uri"], row["types"], props, into=graph)
        for rel_type, end in row["out"]:
            graph.add(relationship_triple(row["uri"], rel_type, end))
    return canonical_times(graph)
