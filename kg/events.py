"""What the twin decided, in the order it was recorded: the rows its event stream is made of.

Decisions carry their place in the provenance chain (``tk:chainIndex``, 1, 2, …, indexed), so
"every decision after N" is one indexed range read, complete and in commit order: the chain's
head lock serialises the records (``kg.provenance``). Each row names the action the decision
proposed (if any), the asset it targets, and that asset's area and site (the nearest ones up its
``tk:partOf`` chain), so an event can be published on the topic of the plant's own structure.
:data:`EVENT_HEADS` says where both streams (decisions, and findings by the change log) stand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twinkg.kg.queries import NamedQuery, token
from twinkg.ontology.vocab import Label, PropKey, RelType

_DECISION, _ACTION = token(Label.DECISION), token(Label.PROPOSED_ACTION)
_AREA, _SITE = token(Label.AREA), token(Label.SITE)
_GEN, _USED = token(RelType.PROV_WAS_GENERATED_BY), token(RelType.PROV_USED)
_TARGETS, _PART_OF = token(RelType.TARGETS), token(RelType.PART_OF)
_INDEX, _TAG = token(PropKey.CHAIN_INDEX), token(PropKey.TAG)
_ENDED = token(PropKey.PROV_ENDED_AT_TIME)
# The nearest area and site up the partOf chain of the asset ``t``.
_PLACE = (
    "CALL (t) { "
    f"OPTIONAL MATCH p = (t)-[:{_PART_OF}*0..12]->(x:{_AREA}) "
    "RETURN x AS area ORDER BY length(p) LIMIT 1 } "
    "CALL (t) { "
    f"OPTIONAL MATCH p = (t)-[:{_PART_OF}*0..12]->(x:{_SITE}) "
    "RETURN x AS site ORDER BY length(p) LIMIT 1 } "
)

DECISIONS_AFTER = NamedQuery(
    "events.decisions_after",
    f"MATCH (d:{_DECISION}) WHERE d.{_INDEX} > $after "
    f"WITH d ORDER BY d.{_INDEX} LIMIT $limit "
    "CALL (d) { "
    f"OPTIONAL MATCH (a:{_ACTION}) WHERE (a)-[:{_GEN}]->(d) OR (d)-[:{_USED}]->(a) "
    f"OPTIONAL MATCH (a)-[:{_TARGETS}]->(t) "
    "RETURN a, t LIMIT 1 } "
    + _PLACE
    + f"RETURN d.uri AS uri, d.{_INDEX} AS chain_index, d.outcome AS outcome, "
    f"d.reason AS reason, d.plannerKind AS planner, toString(d.{_ENDED}) AS at, "
    f"a.uri AS action, a.{token(PropKey.ACTION_KIND)} AS action_kind, "
    f"t.uri AS asset, t.{_TAG} AS asset_tag, area.uri AS area, area.{_TAG} AS area_tag, "
    f"site.uri AS site, site.{_TAG} AS site_tag "
    f"ORDER BY d.{_INDEX}",
)
"""Up to ``$limit`` decisions with a chain index above ``$after``, oldest first."""


@dataclass(frozen=True, slots=True)
class DecisionEvent:
    """One recorded decision as the event stream tells it."""

    uri: str
    chain_index: int
    outcome: str
    reason: str | None
    planner: str | None
    at: str | None
    action: str | None
    action_kind: str | None
    asset: str | None
    asset_tag: str | None
    area: str | None
    area_tag: str | None
    site: str | None
    site_tag: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DecisionEvent:
        """From a row of :data:`DECISIONS_AFTER`."""
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


PLACES = NamedQuery(
    "events.places",
    f"UNWIND $assets AS uri MATCH (t:{token(Label.RESOURCE)} {{uri: uri}}) "
    + _PLACE
    + f"RETURN t.uri AS asset, t.{_TAG} AS asset_tag, area.uri AS area, area.{_TAG} AS area_tag, "
    f"site.uri AS site, site.{_TAG} AS site_tag",
)
"""Each asset of ``$assets`` with its tag and the nearest area and site up its ``partOf``
chain (as :data:`DECISIONS_AFTER` names a decision's target)."""

_MONITORS = token(RelType.MONITORS)

SENSOR_SITES = NamedQuery(
    "events.sensor_sites",
    f"UNWIND $sensors AS uri MATCH (s:{token(Label.RESOURCE)} {{uri: uri}}) "
    "CALL (s) { "
    f"OPTIONAL MATCH p = (s)-[:{_PART_OF}*0..12]->(x:{_SITE}) "
    "RETURN x AS own ORDER BY length(p) LIMIT 1 } "
    "CALL (s) { "
    f"OPTIONAL MATCH p = (s)-[:{_MONITORS}]->()-[:{_PART_OF}*0..12]->(x:{_SITE}) "
    "RETURN x AS watched ORDER BY length(p) LIMIT 1 } "
    "WITH s, coalesce(own, watched) AS site "
    f"RETURN s.uri AS sensor, site.uri AS site, site.{_TAG} AS site_tag",
)
"""Each of ``$sensors`` the graph holds, with its site: the nearest one up its own ``partOf``
chain, else the nearest one up the chain of what it monitors (a generated plant's sensors only
monitor their equipment); ``site`` is null for a sensor on no site."""


_ANOMALY, _ALARM = token(Label.ANOMALY), token(Label.ALARM)
_CONCERNS = token(RelType.CONCERNS)

FINDINGS_AMONG = NamedQuery(
    "events.findings_among",
    f"UNWIND $uris AS u MATCH (e:{token(Label.RESOURCE)} {{uri: u}}) "
    f"WHERE e:{_ANOMALY} OR e:{_ALARM} "
    f"CALL (e) {{ OPTIONAL MATCH (e)-[:{_CONCERNS}]->(t) RETURN t ORDER BY t.uri LIMIT 1 }} "
    + _PLACE
    + f"RETURN e.uri AS uri, CASE WHEN e:{_ALARM} THEN 'alarm' ELSE 'anomaly' END AS type, "
    f"toString(e.{token(PropKey.OCCURRED_AT)}) AS started, "
    f"toString(e.{token(PropKey.ENDED_AT)}) AS ended, "
    f"e.{token(PropKey.ANOMALY_SCORE)} AS score, e.{token(PropKey.SAMPLE_COUNT)} AS points, "
    f"e.{token(PropKey.SEVERITY)} AS severity, e.{token(PropKey.STATUS)} AS status, "
    f"e.{token(PropKey.RDFS_LABEL)} AS label, "
    f"t.uri AS asset, t.{_TAG} AS asset_tag, area.uri AS area, area.{_TAG} AS area_tag, "
    f"site.uri AS site, site.{_TAG} AS site_tag "
    "ORDER BY uri",
)
"""The findings (anomalies and alarms) among the nodes ``$uris``, each with the asset it
concerns and that asset's area and site, as they stand now."""


@dataclass(frozen=True, slots=True)
class FindingEvent:
    """One finding as the event stream tells it, with the change log entry that touched it."""

    seq: int
    uri: str
    type: str
    started: str | None
    ended: str | None
    score: float | None
    points: int | None
    severity: str | None
    status: str | None
    label: str | None
    asset: str | None
    asset_tag: str | None
    area: str | None
    area_tag: str | None
    site: str | None
    site_tag: str | None

    @classmethod
    def from_row(cls, seq: int, row: dict[str, Any]) -> FindingEvent:
        """From a row of :data:`FINDINGS_AMONG` for the change ``seq``."""
        fields = {name: row[name] for name in cls.__dataclass_fields__ if name != "seq"}
        return cls(seq=seq, **fields)


_LOG, _SEQ = token(Label.CHANGE_LOG), token(PropKey.SEQ)

EVENT_HEADS = NamedQuery(
    "events.heads",
    f"CALL () {{ OPTIONAL MATCH (c:{token(Label.RESOURCE)} {{uri: $chain}}) "
    f"RETURN coalesce(c.{_INDEX}, 0) AS decisions }} "
    f"CALL () {{ OPTIONAL MATCH (h:{_LOG}) RETURN coalesce(max(h.{_SEQ}), 0) AS changes }} "
    "RETURN decisions, changes",
)
"""The newest decision's chain index (the chain head ``$chain`` counts the records, written in
their transactions) and the change log's last ``seq`` (its counter): 0 for either when none."""
