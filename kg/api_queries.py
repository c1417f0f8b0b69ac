"""The named Cypher queries behind the API's asset views and input checks (the agents' own live in
agent_queries).

Filters travel as parameters: an asset kind is compared with ``labels(a)``, so a label named in a
request is never spliced into Cypher.
"""

from __future__ import annotations

from twinkg.kg.queries import NamedQuery, token
from twinkg.ontology.vocab import Label, PropKey, RelType

_R, _ASSET = token(Label.RESOURCE), token(Label.ASSET)
_EVENT, _CONCERNS = token(Label.EVENT), token(RelType.CONCERNS)
_OCCURRED = token(PropKey.OCCURRED_AT)

_PART_OF, _STATUS = token(RelType.PART_OF), token(PropKey.STATUS)
_FINDING = f"(f:{token(Label.ALARM)} OR f:{token(Label.ANOMALY)})"

ASSETS = NamedQuery(
    "api.assets",
    f"MATCH (a:{_R}:{_ASSET}) WHERE $label IS NULL OR $label IN labels(a) "
    "WITH a ORDER BY a.uri SKIP $offset LIMIT $limit "
    f"CALL (a) {{ OPTIONAL MATCH (a)-[:{_PART_OF}]->(p:{_R}) "
    "RETURN p.uri AS part_of ORDER BY part_of LIMIT 1 } "
    f"CALL (a) {{ OPTIONAL MATCH (f:{_R})-[:{_CONCERNS}]->(a) "
    f"WHERE {_FINDING} AND f.{_STATUS} = 'open' RETURN count(f) AS open_findings }} "
    "RETURN a.uri AS uri, a.tag AS tag, a.rdfs_label AS label, coalesce(a.rdf_type, []) AS types, "
    f"coalesce(a.{token(PropKey.INFERRED_TYPE)}, []) AS inferred, "
    "a.criticality AS criticality, a.operationalStatus AS status, part_of, open_findings "
    "ORDER BY uri",
)
"""Assets (optionally those with one label), a page at a time, in IRI order, each with the
asset it is part of (the first by IRI, when several), its inferred classes and its open
findings (alarms and anomalies)."""

ASSET_EVENTS = NamedQuery(
    "api.asset_events",
    f"MATCH (e:{_R}:{_EVENT})-[:{_CONCERNS}]->(:{_R} {{uri: $asset}}) "
    f"WITH e ORDER BY e.{_OCCURRED} DESC, e.uri LIMIT $limit "
    "RETURN e.uri AS uri, coalesce(e.rdf_type, []) AS types, e.occurredAt AS occurred_at, "
    "e.endedAt AS ended_at, e.severity AS severity, e.status AS status, "
    "e.anomalyScore AS score",
)
"""The newest events (anomalies, alarms, state changes) that concern an asset."""

QUANTITY_KIND = NamedQuery(
    "api.quantity_kind",
    f"MATCH (q:{_R}:{token(Label.QUDT_QUANTITY_KIND)} {{uri: $uri}}) RETURN q.uri AS uri",
)
"""The quantity kind with IRI ``$uri`` (no row when the graph has none)."""
