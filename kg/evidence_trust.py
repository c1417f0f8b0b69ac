"""The trust scores of the evidence an agent's hypothesis rests on (decision 0035).

The plan node bounds an action's confidence by the lowest trust confidence among the sensors and
findings its top hypothesis rests on. The sensors' scores are the very ``tk:TrustScore`` nodes the
diagnosis read (named by IRI in the symptoms); a finding's subject (the asset an alarm or anomaly
concerns, or a stale sensor) gets its latest score as of the run. The rows are recorded as
evidence like every agent query, so a replay bounds from the same facts.
"""

from __future__ import annotations

from twinkg.kg.queries import NamedQuery, token
from twinkg.ontology.vocab import Label, PropKey, RelType

_R, _TRUST = token(Label.RESOURCE), token(Label.TRUST_SCORE)
_SCORE_OF, _AS_OF = token(RelType.SCORE_OF), token(PropKey.AS_OF)
_CONFIDENCE = token(PropKey.CONFIDENCE)

EVIDENCE_TRUST = NamedQuery(
    "agents.plan.evidence_trust",
    "CALL () { "
    f"UNWIND $scores AS iri MATCH (t:{_R}:{_TRUST} {{uri: iri}}) RETURN t "
    "UNION "
    "UNWIND $subjects AS subject "
    f"CALL (subject) {{ MATCH (t:{_TRUST})-[:{_SCORE_OF}]->(:{_R} {{uri: subject}}) "
    f"WHERE t.{_AS_OF} <= datetime($as_of) "
    f"RETURN t ORDER BY t.{_AS_OF} DESC, t.uri LIMIT 1 }} RETURN t }} "
    f"MATCH (t)-[:{_SCORE_OF}]->(s:{_R}) "
    f"RETURN DISTINCT t.uri AS trust, s.uri AS subject, t.{_CONFIDENCE} AS confidence "
    "ORDER BY subject, trust",
)
"""The trust scores named in ``$scores``, and each of ``$subjects``' latest score as of
``$as_of``: per score its IRI, the subject it is about and its confidence (a subject with no score
gives no row)."""
