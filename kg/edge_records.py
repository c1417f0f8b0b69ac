"""What the central twin reads to record an edge's decisions in its chain's order (decision
0059): the edge hash of decisions already recorded, and whether an action's target exists."""

from __future__ import annotations

from twinkg.kg.queries import NamedQuery, token
from twinkg.ontology.vocab import Label, PropKey

_RESOURCE, _ASSET = token(Label.RESOURCE), token(Label.ASSET)
_CONTENT_HASH = token(PropKey.CONTENT_HASH)

EDGE_HASHES = NamedQuery(
    "edge.hashes",
    f"UNWIND $uris AS u MATCH (e:{_RESOURCE} {{uri: u + '/evidence/0'}}) "
    f"RETURN u AS uri, e.{_CONTENT_HASH} AS edge_hash",
)
"""The edge record hash each recorded edge decision carries on its evidence."""

ASSET_EXISTS = NamedQuery(
    "edge.asset_exists",
    f"MATCH (a:{_RESOURCE}:{_ASSET} {{uri: $uri}}) RETURN a.uri AS uri",
)
"""Whether an edge action's target is an asset in the graph."""
