"""The named Cypher queries behind the plant graph (``GET /assets/graph``, decision 0076): the
plant, or one area of it, as equipment, the flows between it and the sensors on it.

The assets are chosen in Cypher, in IRI order, and cut at ``$limit`` there, so a plant of
100,000 assets costs the page it shows: the twin asks for one more than it shows to know whether
any was left out. The whole plant starts from the assets' label; an area from its node (the uri
constraint) and walks ``partOf`` down. Sensors are no nodes of their own in the count: each
comes with the assets it monitors.
"""

from __future__ import annotations

from twinkg.kg.queries import NamedQuery, token
from twinkg.ontology.vocab import Label, PropKey, RelType

_R, _ASSET, _SENSOR = token(Label.RESOURCE), token(Label.ASSET), token(Label.SENSOR)
_TRUST, _SCORE_OF = token(Label.TRUST_SCORE), token(RelType.SCORE_OF)
_PART_OF, _CONCERNS = token(RelType.PART_OF), token(RelType.CONCERNS)
_FEEDS, _DRIVES, _MONITORS = token(RelType.FEEDS), token(RelType.DRIVES), token(RelType.MONITORS)
_TAG, _STATUS, _AS_OF = token(PropKey.TAG), token(PropKey.STATUS), token(PropKey.AS_OF)
_INFERRED, _LABEL = token(PropKey.INFERRED_TYPE), token(PropKey.RDFS_LABEL)
_CRITICALITY, _OP_STATUS = token(PropKey.CRITICALITY), token(PropKey.OPERATIONAL_STATUS)
_CONFIDENCE = token(PropKey.CONFIDENCE)
_FINDING = f"(f:{token(Label.ALARM)} OR f:{token(Label.ANOMALY)})"

# What every node of the graph shows, for the node bound to ``n``: the asset it is part of (the
# first by IRI, when several) and its open findings, as ``GET /assets`` counts them.
_NODE = (
    f"CALL (n) {{ OPTIONAL MATCH (n)-[:{_PART_OF}]->(p:{_R}) "
    "RETURN p.uri AS parent ORDER BY parent LIMIT 1 } "
    f"CALL (n) {{ OPTIONAL MATCH (f:{_R})-[:{_CONCERNS}]->(n) "
    f"WHERE {_FINDING} AND f.{_STATUS} = 'open' RETURN count(f) AS open_findings }} "
)
_NODE_COLUMNS = (
    f"n.uri AS uri, n.{_TAG} AS tag, n.{_LABEL} AS label, coalesce(n.rdf_type, []) AS types, "
    f"coalesce(n.{_INFERRED}, []) AS inferred, n.{_CRITICALITY} AS criticality, "
    f"n.{_OP_STATUS} AS status, parent, open_findings"
)

# Per asset: its flows and drives out (to any asset: the twin keeps those to shown ones) and,
# when ``$sensors``, the sensors that monitor it.
_ASSET_ROWS = (
    "WITH a AS n "
    + _NODE
    + f"CALL (n) {{ OPTIONAL MATCH (n)-[r:{_FEEDS}|{_DRIVES}]->(b:{_R}:{_ASSET}) "
    "RETURN collect(CASE WHEN b IS NOT NULL THEN {kind: type(r), target: b.uri} END) AS out } "
    f"CALL (n) {{ OPTIONAL MATCH (s:{_R}:{_SENSOR})-[:{_MONITORS}]->(n) WHERE $sensors "
    "RETURN collect(s.uri) AS sensors } "
    f"RETURN {_NODE_COLUMNS}, out, sensors ORDER BY uri"
)

AREA_BY_IRI = NamedQuery(
    "plant_graph.area_by_iri",
    f"MATCH (a:{_R} {{uri: $iri}}) WHERE a:{_ASSET} RETURN a.uri AS uri",
)
"""The asset (an area, a line, a piece of equipment) with IRI ``$iri``: a seek on the uri
constraint; no row when there is none."""

AREA_BY_TAG = NamedQuery(
    "plant_graph.area_by_tag",
    f"MATCH (a:{_R}:{_ASSET}) WHERE a.{_TAG} = $tag RETURN a.uri AS uri ORDER BY uri LIMIT 1",
)
"""The first asset by IRI tagged ``$tag`` (tags have no index: this reads every asset's tag, so
the twin asks it only when no asset has the IRI given)."""

PLANT_ASSETS = NamedQuery(
    "plant_graph.assets",
    f"MATCH (a:{_R}:{_ASSET}) WHERE NOT a:{_SENSOR} "
    "WITH a ORDER BY a.uri LIMIT $limit " + _ASSET_ROWS,
)
"""The plant's first ``$limit`` assets other than sensors, in IRI order, each with its parent,
open findings, classes, flows and drives out, and (when ``$sensors``) its sensors' IRIs."""

AREA_ASSETS = NamedQuery(
    "plant_graph.area_assets",
    f"MATCH (root:{_R} {{uri: $area}}) "
    f"MATCH (a:{_R}:{_ASSET})-[:{_PART_OF}*0..]->(root) WHERE NOT a:{_SENSOR} "
    "WITH DISTINCT a ORDER BY a.uri LIMIT $limit " + _ASSET_ROWS,
)
"""As :data:`PLANT_ASSETS`, for the asset ``$area`` and the assets (transitively) part of it."""

SENSORS = NamedQuery(
    "plant_graph.sensors",
    f"UNWIND $uris AS u MATCH (n:{_R} {{uri: u}}) "
    + _NODE
    + f"CALL (n) {{ OPTIONAL MATCH (t:{_TRUST})-[:{_SCORE_OF}]->(n) "
    f"WHERE t.{_AS_OF} <= datetime($as_of) "
    f"RETURN t.{_CONFIDENCE} AS trust ORDER BY t.{_AS_OF} DESC, t.uri LIMIT 1 }} "
    f"RETURN {_NODE_COLUMNS}, trust ORDER BY uri",
)
"""The sensors ``$uris``, each with its parent, open findings, classes and the confidence of its
latest trust score as of ``$as_of`` (null before any)."""
