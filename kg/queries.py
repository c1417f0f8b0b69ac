"""Named Cypher: what every query is made of, and the statements the graph store runs itself.

:class:`NamedQuery` (a statement with a stable name, used in logs, errors and provenance) and
:func:`token` are what every module's queries are built from; most queries live beside the code
that runs them (``kg.agent_queries``, ``kg.api_queries``, ``kg.context``, ``kg.provenance``,
``kg.lineage``, ...). Here are the statements of ``kg.store.GraphStore``: the schema (the uri
constraint and the indexes), the counts, the export reads, the seeding writes (batched
``CREATE`` and ``MERGE`` of nodes and relationships, temporal values rebuilt in Cypher from ISO
text); and the example questions ``twinkg show`` asks (:data:`DEMO_QUERIES`).

Values always travel as ``$parameters``. Labels and relationship types cannot be parameters in
an index-backed ``MERGE``, so the statements that need them splice members of the generated
enums through :func:`token` only, never request or model text.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import LiteralString

from twinkg.ontology.vocab import TK, Label, PropKey, RelType


@dataclass(frozen=True, slots=True)
class NamedQuery:
    """A Cypher statement with a stable name (used in logs, errors and provenance).

    ``plain`` says the statement returns only strings, numbers, booleans, nulls and lists of
    them (its Cypher turns anything else into text): its rows are taken as the driver gives
    them, without the per-value conversion of :meth:`GraphStore.read`.
    """

    name: str
    cypher: LiteralString
    plain: bool = False


def token(value: Label | RelType | PropKey) -> LiteralString:
    """A label, relationship type or property key, quoted for splicing into Cypher."""
    # Enum values are generated from the ontology and match [A-Za-z][A-Za-z0-9_]*; that makes
    # them safe to splice, which is why only enum members are accepted here.
    if not isinstance(value, (Label, RelType, PropKey)):
        raise TypeError(f"not a vocabulary token: {value!r}")
    return "`" + value.value + "`"


# The label every node carries and the key that identifies it (Label.RESOURCE, PropKey.URI).
URI_CONSTRAINT = NamedQuery(
    "schema.uri_unique",
    "CREATE CONSTRAINT resource_uri_unique IF NOT EXISTS FOR (n:Resource) REQUIRE n.uri IS UNIQUE",
)

DECISION_CHAIN_INDEX = NamedQuery(
    "schema.decision_chain_index",
    "CREATE INDEX decision_chain_index IF NOT EXISTS FOR (d:Decision) ON (d.chainIndex)",
)

DECISION_HASH_INDEX = NamedQuery(
    "schema.decision_hash_index",
    "CREATE INDEX decision_hash_index IF NOT EXISTS FOR (d:Decision) ON (d.recordHash)",
)
"""Finds the record a trusted head hash names (``twinkg verify --since``) by a seek."""

EVENT_TIME_INDEX = NamedQuery(
    "schema.event_time_index",
    "CREATE INDEX event_occurred_at IF NOT EXISTS FOR (e:Event) ON (e.occurredAt)",
)

BATCH_HASH_INDEX = NamedQuery(
    "schema.ingest_batch_hash_index",
    "CREATE INDEX ingest_batch_hash IF NOT EXISTS FOR (b:IngestBatch) ON (b.contentHash)",
)
"""Every ingest asks whether its content hash was stored before (``telemetry.batch_by_hash``):
without it that look-up reads every batch node ever stored."""

MESSAGE_HASH_INDEX = NamedQuery(
    "schema.ingest_message_hash_index",
    "CREATE INDEX ingest_message_hash IF NOT EXISTS FOR (m:IngestMessage) ON (m.contentHash)",
)
"""The same look-up for the messages a worker ingested together as one batch (decision 0067)."""

LEASE_CONSTRAINT = NamedQuery(
    "schema.asset_lease_unique",
    "CREATE CONSTRAINT asset_lease_unique IF NOT EXISTS "
    "FOR (l:AssetLease) REQUIRE l.leaseOf IS UNIQUE",
)
"""One lease per asset (kg/leases.py): two racing first takes cannot both create one."""

# The graph's nodes are :Resource; the change log (kg/outbox.py) is not counted.
COUNTS = NamedQuery(
    "stats.counts",
    "CALL () { MATCH (n:Resource) RETURN count(n) AS nodes } "
    "CALL () { MATCH ()-[r]->() RETURN count(r) AS relationships } "
    "RETURN nodes, relationships",
)

EXPORT_NODES = NamedQuery(
    "export.nodes",
    "MATCH (n:Resource) WHERE n.uri STARTS WITH $prefix "
    "RETURN n.uri AS uri, coalesce(n.rdf_type, []) AS types, properties(n) AS props "
    "ORDER BY uri",
)

EXPORT_RELATIONSHIPS = NamedQuery(
    "export.relationships",
    "MATCH (a:Resource)-[r]->(b:Resource) WHERE a.uri STARTS WITH $prefix "
    "RETURN a.uri AS start, type(r) AS type, b.uri AS end ORDER BY start, type, end",
)

EXPORT_NODES_OF = NamedQuery(
    "export.nodes_of",
    "UNWIND $uris AS u MATCH (n:Resource {uri: u}) "
    "RETURN n.uri AS uri, coalesce(n.rdf_type, []) AS types, properties(n) AS props",
)
"""The nodes ``$uris`` that exist, as :data:`EXPORT_NODES` gives them (the projection's
catch-up reads the current state of what a change touched)."""

EXPORT_RELATIONSHIPS_OF = NamedQuery(
    "export.relationships_of",
    "UNWIND $uris AS u MATCH (a:Resource {uri: u})-[r]->(b:Resource) "
    "RETURN a.uri AS start, type(r) AS type, b.uri AS end",
)
"""The relationships leaving the nodes ``$uris``."""

# The ontology exactly as loaded (decision 0038): one node outside the :Resource graph (so it is
# neither counted nor exported as twin data), holding canonical N-Triples and their SHA-256.
PUT_ONTOLOGY_SOURCE = NamedQuery(
    "seed.ontology_source",
    "MERGE (o:OntologySource {iri: $iri}) WITH o WHERE coalesce(o.sha256 <> $sha256, true) "
    "SET o.ntriples = $ntriples, o.sha256 = $sha256, o.version = $version",
)

ONTOLOGY_SOURCE = NamedQuery(
    "export.ontology_source",
    "MATCH (o:OntologySource) RETURN o.iri AS iri, o.ntriples AS ntriples, o.sha256 AS sha256 "
    "ORDER BY iri",
)


EXISTING_URIS = NamedQuery(
    "seed.existing_uris",
    "UNWIND $uris AS u MATCH (n:Resource {uri: u}) "
    "RETURN collect(n.uri) AS uris, collect(elementId(n)) AS ids",
)


def _labels(labels: Sequence[Label]) -> LiteralString:
    return "".join(":" + token(label) for label in labels if label is not Label.RESOURCE)


class TemporalKind(enum.Enum):
    """The Cypher function that rebuilds a temporal value from its ISO text."""

    DATE = "date"
    DATETIME = "datetime"
    LOCAL_DATETIME = "localdatetime"


@dataclass(frozen=True, slots=True)
class Temporal:
    """A temporal property of a batch of rows, sent as ISO text in ``row.t``."""

    key: PropKey
    kind: TemporalKind
    is_list: bool

    def __lt__(self, other: object) -> bool:  # enums do not order; their values do
        if not isinstance(other, Temporal):
            return NotImplemented
        return (self.key.value, self.kind.value, self.is_list) < (
            other.key.value,
            other.kind.value,
            other.is_list,
        )


def _temporal_values(temporal: Sequence[Temporal]) -> list[tuple[LiteralString, LiteralString]]:
    """Each temporal property's key and the Cypher that rebuilds it from ``row.t``."""
    values: list[tuple[LiteralString, LiteralString]] = []
    for t in temporal:
        name = token(t.key)
        function = {
            TemporalKind.DATE: "date",
            TemporalKind.DATETIME: "datetime",
            TemporalKind.LOCAL_DATETIME: "localdatetime",
        }[t.kind]
        value: LiteralString = (
            "[x IN row.t." + name + " | " + function + "(x)]"
            if t.is_list
            else function + "(row.t." + name + ")"
        )
        values.append((name, value))
    return values


def _set_temporal(temporal: Sequence[Temporal]) -> LiteralString:
    clauses: list[LiteralString] = [
        "n." + name + " = " + value for name, value in _temporal_values(temporal)
    ]
    return (" SET " + ", ".join(clauses)) if clauses else ""


def _differs(temporal: Sequence[Temporal]) -> LiteralString:
    """Whether a merged node's properties differ from ``row``'s (value or type): Neo4j counts a
    SET of an unchanged value as an update, and the change log appends only on updates."""
    tests: list[LiteralString] = [
        "any(k IN keys(row.props) WHERE NOT coalesce("
        "n[k] = row.props[k] AND valueType(n[k]) = valueType(row.props[k]), false))"
    ]
    tests += [
        "NOT coalesce(n." + name + " = " + value + ", false)"
        for name, value in _temporal_values(temporal)
    ]
    return " OR ".join(tests)


def create_nodes(labels: Sequence[Label], temporal: Sequence[Temporal] = ()) -> NamedQuery:
    """CREATE a batch of nodes that do not exist yet (the uri constraint guards races);
    ``temporal`` properties arrive as ISO text and are rebuilt in Cypher."""
    return NamedQuery(
        "seed.create_nodes",
        "UNWIND $rows AS row CREATE (n:Resource" + _labels(labels) + " {uri: row.uri}) "
        "SET n += row.props"
        + _set_temporal(temporal)
        + " RETURN collect(row.uri) AS uris, collect(elementId(n)) AS ids",
    )


def merge_nodes(labels: Sequence[Label], temporal: Sequence[Temporal] = ()) -> NamedQuery:
    """MERGE a batch of nodes by ``uri`` and give them ``labels`` and their properties; a node
    whose properties already hold these values is left alone (no update is counted)."""
    extra = _labels(labels)
    set_labels: LiteralString = f" SET n{extra}" if extra else ""
    return NamedQuery(
        "seed.merge_nodes",
        "UNWIND $rows AS row MERGE (n:Resource {uri: row.uri})"
        + set_labels
        + " WITH n, row CALL (n, row) { WITH n, row WHERE "
        + _differs(temporal)
        + " SET n += row.props"
        + _set_temporal(temporal)
        + " } RETURN collect(row.uri) AS uris, collect(elementId(n)) AS ids",
    )


def _relationships(rel_type: RelType, verb: LiteralString) -> NamedQuery:
    return NamedQuery(
        f"seed.{verb.lower()}_relationships",
        "UNWIND $rows AS row "
        "MATCH (a) WHERE elementId(a) = row.start MATCH (b) WHERE elementId(b) = row.end "
        + verb
        + " (a)-[:"
        + token(rel_type)
        + "]->(b) RETURN count(*) AS written",
    )


def create_relationships(rel_type: RelType) -> NamedQuery:
    """CREATE a batch of relationships of which at least one end was just created."""
    return _relationships(rel_type, "CREATE")


def merge_relationships(rel_type: RelType) -> NamedQuery:
    """MERGE a batch of relationships between nodes that already existed."""
    return _relationships(rel_type, "MERGE")


@dataclass(frozen=True, slots=True)
class DemoQuery:
    """A question an engineer would ask the twin, the read-only query that answers it."""

    question: str
    query: NamedQuery
    params: dict[str, str]


DEMO_QUERIES = (
    DemoQuery(
        "Which labels does each centrifugal pump carry (its class and every superclass)?",
        NamedQuery(
            "demo.pump_labels",
            "MATCH (p:CentrifugalPump) RETURN p.tag AS tag, p.rdfs_label AS name, "
            "labels(p) AS labels ORDER BY tag LIMIT 10",
        ),
        {},
    ),
    DemoQuery(
        "Where does CentrifugalPump sit in the class hierarchy?",
        NamedQuery(
            "demo.class_chain",
            "MATCH path = (c:owl_Class {uri: $cls})-[:RDFS_SUB_CLASS_OF*0..]->(top) "
            "WHERE NOT (top)-[:RDFS_SUB_CLASS_OF]->() "
            "RETURN [n IN nodes(path) | n.rdfs_label] AS chain",
        ),
        {"cls": str(TK.CentrifugalPump)},
    ),
    DemoQuery(
        "Which sensors monitor which equipment, in which unit and range?",
        NamedQuery(
            "demo.sensors",
            "MATCH (s:Sensor)-[:MONITORS]->(a:Asset) "
            "OPTIONAL MATCH (s)-[:HAS_UNIT]->(u) "
            "RETURN a.tag AS asset, s.externalId AS column, last(split(u.uri, '/')) AS unit, "
            "s.physicalMin AS min, s.physicalMax AS max ORDER BY asset, column LIMIT 20",
        ),
        {},
    ),
    DemoQuery(
        "Which ISO 14224 failure modes is each pump susceptible to?",
        NamedQuery(
            "demo.failure_modes",
            "MATCH (p:Pump)-[:SUSCEPTIBLE_TO]->(f:FailureMode) "
            "RETURN p.tag AS pump, f.rdfs_label AS failure_mode, f.iso14224Code AS code "
            "ORDER BY pump, code LIMIT 20",
        ),
        {},
    ),
    DemoQuery(
        "How does the process flow (which equipment feeds which)?",
        NamedQuery(
            "demo.flow",
            "MATCH (a:Equipment)-[:FEEDS]->(b:Equipment) "
            "RETURN a.tag AS upstream, b.tag AS downstream ORDER BY upstream LIMIT 20",
        ),
        {},
    ),
    DemoQuery(
        "Which operating envelopes and policies guard the plant?",
        NamedQuery(
            "demo.policies",
            "MATCH (p:Policy) OPTIONAL MATCH (a:Asset)-[:HAS_ENVELOPE]->(p) "
            "OPTIONAL MATCH (p)-[:APPLIES_TO]->(b:Asset) "
            "RETURN last(split(p.rdf_type[0], '#')) AS kind, p.rdfs_label AS policy, "
            "coalesce(a.tag, b.tag) AS asset, p.minValue AS min, p.maxValue AS max "
            "ORDER BY kind, policy LIMIT 20",
        ),
        {},
    ),
    DemoQuery(
        "Which anomalies and alarms has the telemetry raised, on which asset?",
        NamedQuery(
            "demo.events",
            "MATCH (e:Event)-[:CONCERNS]->(a:Asset) WHERE e:Anomaly OR e:Alarm "
            "RETURN a.tag AS asset, last(split(e.rdf_type[0], '#')) AS event, "
            "toString(e.occurredAt) AS at, round(e.anomalyScore, 2) AS score, "
            "e.severity AS severity "
            "ORDER BY at, event LIMIT 20",
        ),
        {},
    ),
    DemoQuery(
        "What did the reasoner infer, and how far can each asset's data be trusted?",
        NamedQuery(
            "demo.inferred_and_trust",
            "MATCH (a:Asset) WHERE a.inferredType IS NOT NULL "
            "OPTIONAL MATCH (t:TrustScore)-[:SCORE_OF]->(a) "
            "WITH a, t ORDER BY t.asOf DESC "
            "WITH a, head(collect(t)) AS t "
            "RETURN a.tag AS asset, [c IN a.inferredType | last(split(c, '#'))] AS inferred, "
            "round(t.confidence, 2) AS confidence, round(t.anomalyScore, 2) AS anomaly "
            "ORDER BY asset LIMIT 20",
        ),
        {},
    ),
)
