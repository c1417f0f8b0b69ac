"""The named Cypher queries the agents run to observe, diagnose, plan and ask for approval.

Every query here is recorded by name and parameters in a decision's provenance, with the rows it
returned, so a replay can feed the same facts to the same code. Times travel as ISO 8601 text and
are rebuilt with ``datetime()`` in Cypher; rows come back with Neo4j's ISO text.
"""

from __future__ import annotations

from typing import LiteralString

from twinkg.kg.queries import NamedQuery, token
from twinkg.ontology.vocab import Label, PropKey, RelType

_R, _ASSET, _SENSOR = token(Label.RESOURCE), token(Label.ASSET), token(Label.SENSOR)
_ANOMALY, _ALARM, _DECISION = token(Label.ANOMALY), token(Label.ALARM), token(Label.DECISION)
_MODE, _TRUST = token(Label.FAILURE_MODE), token(Label.TRUST_SCORE)
_ENVELOPE, _THRESHOLD = token(Label.OPERATING_ENVELOPE), token(Label.TRUST_THRESHOLD)
_PERSON, _EVENT = token(Label.PERSON), token(Label.EVENT)
_CONCERNS, _USED, _PART_OF = (
    token(RelType.CONCERNS),
    token(RelType.PROV_USED),
    token(RelType.PART_OF),
)
_MONITORS, _QK, _SCORE_OF = (
    token(RelType.MONITORS),
    token(RelType.HAS_QUANTITY_KIND),
    token(RelType.SCORE_OF),
)
_SUSCEPTIBLE, _MAN_AS, _MAN_IN = (
    token(RelType.SUSCEPTIBLE_TO),
    token(RelType.MANIFESTS_AS),
    token(RelType.MANIFESTS_IN),
)
_FEEDS, _DRIVES, _FAILURE_MODE = (
    token(RelType.FEEDS),
    token(RelType.DRIVES),
    token(RelType.FAILURE_MODE),
)
_HAS_ENVELOPE, _FOR_QK, _APPLIES_TO = (
    token(RelType.HAS_ENVELOPE),
    token(RelType.FOR_QUANTITY_KIND),
    token(RelType.APPLIES_TO),
)
_STANDBY_FOR, _HAS_STANDBY, _HAS_ROLE = (
    token(RelType.STANDBY_FOR),
    token(RelType.HAS_STANDBY),
    token(RelType.HAS_ROLE),
)
_INFORMED_BY, _WINDOW_OF = token(RelType.PROV_WAS_INFORMED_BY), token(RelType.WINDOW_OF)
_HAS_SYMPTOM, _IN_QK, _DIRECTION = (
    token(RelType.HAS_SYMPTOM),
    token(RelType.IN_QUANTITY_KIND),
    token(PropKey.DIRECTION),
)
_STATUS, _OCCURRED, _AS_OF = (
    token(PropKey.STATUS),
    token(PropKey.OCCURRED_AT),
    token(PropKey.AS_OF),
)

# An asset is in scope when no scope is given, when it is the scope, or when it is part of it.
_IN_SCOPE = (
    "($scope IS NULL OR a.uri = $scope OR "
    f"EXISTS {{ (a)-[:{_PART_OF}*1..]->(:{_R} {{uri: $scope}}) }})"
)

_FINDING = (
    f"e.{_OCCURRED} <= datetime($as_of) "
    f"AND e.{_OCCURRED} >= datetime($as_of) - duration({{seconds: $lookback_s}}) "
    f"AND (e:{_ANOMALY} OR (e:{_ALARM} AND e.{_STATUS} = 'open'))"
)

OPEN_FINDINGS = NamedQuery(
    "agents.monitor.open_findings",
    # Two branches, so each gets its own plan: without a scope, the recent events through their
    # time index; with one, the assets in it (the scope and what is transitively part of it,
    # from the scope's IRI) and their events. One plan for both started from the events and
    # walked every one's part-of path: 14 ms at 10,000 assets with one finding per pump.
    "CALL { "
    "UNWIND CASE WHEN $scope IS NULL THEN [true] ELSE [] END AS everywhere "
    f"MATCH (e:{_EVENT}) WHERE {_FINDING} "
    f"MATCH (e)-[:{_CONCERNS}]->(a:{_ASSET}) RETURN e, a "
    "UNION ALL "
    f"MATCH (a:{_ASSET})-[:{_PART_OF}*0..]->(:{_R} {{uri: $scope}}) WITH DISTINCT a "
    f"MATCH (e:{_EVENT})-[:{_CONCERNS}]->(a) WHERE {_FINDING} RETURN e, a "
    "} "
    f"WITH e, a WHERE NOT EXISTS {{ (:{_DECISION})-[:{_USED}]->(e) }} "
    f"RETURN e.uri AS uri, CASE WHEN e:{_ALARM} THEN 'alarm' ELSE 'anomaly' END AS kind, "
    "a.uri AS asset, e.occurredAt AS occurred_at, e.endedAt AS ended_at, "
    "e.severity AS severity, e.anomalyScore AS score "
    "ORDER BY occurred_at, uri LIMIT $limit",
)
"""Anomalies and open alarms of the last ``lookback_s`` seconds on assets in scope that no
decision has used yet (the window keeps the scan to recent events, through their time index)."""

STALE_SENSORS = NamedQuery(
    "agents.monitor.stale_sensors",
    # Two branches, as open findings: a scoped run starts at its scope's IRI and reaches the
    # sensors of the assets in it. One plan for both scanned every sensor of the plant on every
    # decision (52,000 at 100,000 assets, 16-27 ms).
    "CALL { "
    "UNWIND CASE WHEN $scope IS NULL THEN [true] ELSE [] END AS everywhere "
    f"MATCH (s:{_SENSOR})-[:{_MONITORS}]->(a:{_ASSET}) RETURN s, a "
    "UNION ALL "
    f"MATCH (a:{_ASSET})-[:{_PART_OF}*0..]->(:{_R} {{uri: $scope}}) WITH DISTINCT a "
    f"MATCH (s:{_SENSOR})-[:{_MONITORS}]->(a) RETURN s, a "
    "} "
    "WITH s, a WHERE s.lastObservedAt IS NOT NULL "
    "AND s.lastObservedAt < datetime($as_of) - duration({seconds: $stale_s}) "
    f"AND NOT EXISTS {{ MATCH (d:{_DECISION})-[:{_USED}]->()-[:{_WINDOW_OF}]->(s) "
    f"WHERE d.{_AS_OF} >= s.lastObservedAt }} "
    "RETURN s.uri AS uri, 'stale_sensor' AS kind, a.uri AS asset, "
    "s.lastObservedAt AS occurred_at ORDER BY occurred_at, uri LIMIT $limit",
)
"""Sensors silent for longer than ``stale_s`` seconds before ``as_of`` that no decision since
has looked at (used a telemetry window of)."""

_STATE_CHANGE, _GENERATED_BY = token(Label.STATE_CHANGE), token(RelType.PROV_WAS_GENERATED_BY)
_OP_STATUS, _TO_STATUS, _HOLD_OFF = (
    token(PropKey.OPERATIONAL_STATUS),
    token(PropKey.TO_STATUS),
    token(PropKey.RESTART_HOLD_OFF),
)

RESTART_DUE = NamedQuery(
    "agents.monitor.restart_due",
    f"MATCH (a:{_ASSET}) WHERE a.{_OP_STATUS} = 'stopped' AND a.{_HOLD_OFF} IS NOT NULL "
    f"AND {_IN_SCOPE} "
    f"MATCH (c:{_STATE_CHANGE})-[:{_CONCERNS}]->(a) WHERE c.{_TO_STATUS} = 'stopped' "
    f"AND c.{_OCCURRED} <= datetime($as_of) - duration({{seconds: a.{_HOLD_OFF}}}) "
    f"AND EXISTS {{ (c)-[:{_GENERATED_BY}]->(:{_DECISION}) }} "
    f"AND NOT EXISTS {{ (:{_DECISION})-[:{_USED}]->(c) }} "
    f"AND NOT EXISTS {{ MATCH (later:{_STATE_CHANGE})-[:{_CONCERNS}]->(a) "
    f"WHERE later.{_OCCURRED} > c.{_OCCURRED} }} "
    "RETURN c.uri AS uri, 'restart_due' AS kind, a.uri AS asset, c.occurredAt AS occurred_at "
    "ORDER BY occurred_at, uri LIMIT $limit",
)
"""Assets in scope that one of the agents' own controlled stops took down (the decision's
``tk:StateChange`` to "stopped", the asset's latest), still stopped, whose ``tk:restartHoldOff``
has passed since, and whose stop no decision has used yet: once a restart is decided on (applied,
refused or sent to a person), the stop is used, and only a new stop makes a new case. Assets
without a hold-off are restarted by people only (decision 0049)."""

_ACTION, _TARGETS = token(Label.PROPOSED_ACTION), token(RelType.TARGETS)
_KIND_OF_ACTION = token(PropKey.ACTION_KIND)
_GENERATED_BY_NAME = RelType.PROV_WAS_GENERATED_BY.value  # as type(r) gives it, unquoted

WATCHED = NamedQuery(
    "agents.monitor.watched",
    f"MATCH (d:{_DECISION}) WHERE d.{_AS_OF} <= datetime($as_of) "
    f"AND d.{_AS_OF} > datetime($as_of) - duration({{seconds: $watch_s}}) "
    # the action a decision decided on: the one it proposed, or the one it was given
    f"MATCH (d)-[r:{_GENERATED_BY}|{_USED}]-(p:{_ACTION}) "
    f"WHERE startNode(r) = CASE type(r) WHEN '{_GENERATED_BY_NAME}' THEN p ELSE d END "
    f"MATCH (p)-[:{_TARGETS}]->(a:{_ASSET}) WHERE {_IN_SCOPE} "
    f"WITH a, d, p ORDER BY d.{_AS_OF} DESC, d.chainIndex DESC, d.uri DESC "
    f"WITH a, collect({{kind: p.{_KIND_OF_ACTION}, outcome: d.outcome, at: d.{_AS_OF}}})[0] "
    "AS latest WHERE latest.kind = 'gather_data' AND latest.outcome = 'applied' "
    "RETURN a.uri AS asset, latest.at AS since ORDER BY asset",
)
"""Assets in scope whose latest decision of the last ``watch_s`` seconds before ``as_of`` (the
agents' own, or on an action proposed to them) was to watch (gather data, applied): their new
anomalies wait until the watch ends (decision 0052)."""

ASSET_PROFILE = NamedQuery(
    "agents.diagnose.asset",
    f"MATCH (a:{_R}:{_ASSET} {{uri: $asset}}) "
    f"OPTIONAL MATCH (a)-[:{_SUSCEPTIBLE}]->(m:{_MODE}) "
    f"OPTIONAL MATCH (m)-[:{_MAN_AS}*0..1]->(sym:{_MODE})-[:{_MAN_IN}]->(q) "
    "WITH a, m, collect(DISTINCT q.uri) AS kinds "
    f"CALL (m) {{ OPTIONAL MATCH (m)-[:{_MAN_AS}*0..1]->(:{_MODE})-[:{_HAS_SYMPTOM}]->(p)"
    f"-[:{_IN_QK}]->(k) WITH DISTINCT k.uri AS kind, p.{_DIRECTION} AS direction "
    "ORDER BY kind, direction "
    "RETURN collect(CASE WHEN kind IS NOT NULL THEN {kind: kind, direction: direction} END) "
    "AS signature } "
    "RETURN a.uri AS asset, a.tag AS tag, a.criticality AS criticality, "
    "a.operationalStatus AS status, coalesce(a.rdf_type, []) AS types, "
    "m.uri AS mode, m.iso14224Code AS code, coalesce(m.mitigatedBy, []) AS mitigations, "
    "kinds, signature ORDER BY mode",
)
"""The asset and, per failure mode it is susceptible to, the quantity kinds it shows in and its
signature: the (quantity kind, direction) of each symptom pattern (its own and those of the modes
it manifests as)."""

ASSET_SENSORS = NamedQuery(
    "agents.diagnose.sensors",
    f"MATCH (s:{_SENSOR})-[:{_MONITORS}]->(:{_R} {{uri: $asset}}) "
    f"OPTIONAL MATCH (s)-[:{_QK}]->(q) "
    f"CALL (s) {{ OPTIONAL MATCH (t:{_TRUST})-[:{_SCORE_OF}]->(s) "
    f"WHERE t.{_AS_OF} <= datetime($as_of) "
    f"RETURN t ORDER BY t.{_AS_OF} DESC, t.uri LIMIT 1 }} "
    "RETURN s.uri AS sensor, s.tag AS tag, q.uri AS quantity_kind, "
    "s.samplingPeriod AS period, t.uri AS trust, t.confidence AS confidence, "
    "t.qualityScore AS quality, t.freshnessScore AS freshness, t.anomalyScore AS anomaly "
    "ORDER BY sensor",
)
"""The sensors on the asset, each with its latest trust score as of the run."""

NEIGHBOUR_SENSORS = NamedQuery(
    "agents.diagnose.neighbour_sensors",
    f"MATCH (a:{_R} {{uri: $asset}}) "
    f"CALL (a) {{ OPTIONAL MATCH (n:{_ASSET})-[:{_FEEDS}]->(a) "
    "RETURN collect(DISTINCT {uri: n.uri, relation: 'upstream'}) AS up } "
    f"CALL (a) {{ OPTIONAL MATCH (a)-[:{_FEEDS}]->(n:{_ASSET}) "
    "RETURN collect(DISTINCT {uri: n.uri, relation: 'downstream'}) AS down } "
    f"CALL (a) {{ OPTIONAL MATCH (n:{_ASSET})-[:{_DRIVES}]->(a) "
    "RETURN collect(DISTINCT {uri: n.uri, relation: 'driver'}) AS drivers } "
    f"CALL (a) {{ OPTIONAL MATCH (a)-[:{_PART_OF}]->(n:{_ASSET}) "
    "RETURN collect(DISTINCT {uri: n.uri, relation: 'system'}) AS systems } "
    "UNWIND up + down + drivers + systems AS item WITH a, item WHERE item.uri IS NOT NULL "
    f"MATCH (s:{_SENSOR})-[:{_MONITORS}]->(n:{_R} {{uri: item.uri}}) "
    f"WHERE NOT (s)-[:{_MONITORS}]->(a) "
    f"MATCH (s)-[:{_QK}]->(q) "
    f"WHERE EXISTS {{ (a)-[:{_SUSCEPTIBLE}]->(:{_MODE})-[:{_MAN_AS}*0..1]->(:{_MODE})"
    f"-[:{_MAN_IN}]->(q) }} "
    f"CALL (s) {{ OPTIONAL MATCH (t:{_TRUST})-[:{_SCORE_OF}]->(s) "
    f"WHERE t.{_AS_OF} <= datetime($as_of) "
    f"RETURN t ORDER BY t.{_AS_OF} DESC, t.uri LIMIT 1 }} "
    "WITH s, q, t, n, min(item.relation) AS relation "
    "RETURN s.uri AS sensor, s.tag AS tag, q.uri AS quantity_kind, "
    "s.samplingPeriod AS period, t.uri AS trust, t.confidence AS confidence, "
    "t.qualityScore AS quality, t.freshnessScore AS freshness, t.anomalyScore AS anomaly, "
    "n.uri AS asset, relation ORDER BY sensor",
)
"""Sensors on the asset's neighbours (one hop up- or downstream, its drivers, the systems it is
part of) that measure a quantity kind one of its failure modes manifests in: evidence for or
against those modes, with the latest trust score as of the run: one row per sensor and neighbour
it monitors (a neighbour related in two ways gets the first relation in alphabetical order)."""

NEIGHBOURS = NamedQuery(
    "agents.diagnose.neighbours",
    f"MATCH (a:{_R} {{uri: $asset}}) "
    f"CALL (a) {{ OPTIONAL MATCH p = (n:{_ASSET})-[:{_FEEDS}*1..2]->(a) "
    "RETURN collect(DISTINCT {uri: n.uri, relation: 'upstream', hops: length(p)}) AS up } "
    f"CALL (a) {{ OPTIONAL MATCH p = (a)-[:{_FEEDS}*1..2]->(n:{_ASSET}) "
    "RETURN collect(DISTINCT {uri: n.uri, relation: 'downstream', hops: length(p)}) AS down } "
    f"CALL (a) {{ OPTIONAL MATCH (n:{_ASSET})-[:{_DRIVES}]->(a) "
    "RETURN collect(DISTINCT {uri: n.uri, relation: 'driver', hops: 1}) AS drivers } "
    "UNWIND up + down + drivers AS item WITH item WHERE item.uri IS NOT NULL "
    f"MATCH (n:{_R} {{uri: item.uri}}) "
    f"CALL (n) {{ OPTIONAL MATCH (e:{_R})-[:{_CONCERNS}]->(n) WHERE (e:{_ANOMALY} OR "
    f"(e:{_ALARM} AND e.{_STATUS} = 'open')) AND e.{_OCCURRED} <= datetime($as_of) "
    "RETURN count(e) AS findings } "
    "RETURN n.uri AS uri, n.tag AS tag, item.relation AS relation, min(item.hops) AS hops, "
    "n.operationalStatus AS status, findings ORDER BY relation, hops, uri",
)
"""Equipment up- and downstream (two hops of ``feeds``) and drivers, with their findings."""

HISTORY = NamedQuery(
    "agents.diagnose.history",
    f"MATCH (a:{_R} {{uri: $asset}}) "
    f"MATCH (e:{_EVENT})-[:{_FAILURE_MODE}]->(m:{_MODE}), (e)-[:{_CONCERNS}]->(b:{_ASSET}) "
    f"WHERE (b = a OR b.rdf_type = a.rdf_type) AND e.{_OCCURRED} <= datetime($as_of) "
    "RETURN m.uri AS mode, count(DISTINCT e) AS events, "
    "count(DISTINCT CASE WHEN b = a THEN e END) AS on_asset ORDER BY mode",
)
"""Past events with a failure mode on this asset or on equipment of the same class."""

POLICIES = NamedQuery(
    "agents.plan.policies",
    f"MATCH (a:{_R} {{uri: $asset}}) "
    f"CALL (a) {{ OPTIONAL MATCH (a)-[:{_HAS_ENVELOPE}]->(e:{_ENVELOPE})-[:{_FOR_QK}]->(q) "
    "RETURN collect(CASE WHEN e IS NOT NULL THEN {uri: e.uri, quantity_kind: q.uri, "
    "minimum: e.minValue, maximum: e.maxValue, max_rate: e.maxRateOfChange} END) AS envelopes } "
    f"CALL (a) {{ OPTIONAL MATCH (a)-[:{_STANDBY_FOR}|{_HAS_STANDBY}]-(p:{_ASSET}) "
    "RETURN collect(DISTINCT CASE WHEN p IS NOT NULL THEN {uri: p.uri, tag: p.tag, "
    "status: p.operationalStatus, duty_role: p.dutyRole} END) AS partners } "
    f"CALL (a) {{ OPTIONAL MATCH (a)-[:{_PART_OF}*0..]->(s)<-[:{_APPLIES_TO}]-(t:{_THRESHOLD}) "
    "RETURN max(t.threshold) AS threshold } "
    "RETURN envelopes, partners, threshold",
)
"""The target's envelopes, its duty/standby partner and the strictest trust threshold (empty
lists when it has none: ``collect`` skips the nulls an unmatched OPTIONAL MATCH gives)."""

PERSON = NamedQuery(
    "agents.approval.person",
    f"MATCH (p:{_R}:{_PERSON} {{uri: $person}}) "
    f"OPTIONAL MATCH (p)-[:{_HAS_ROLE}]->(r) "
    "RETURN p.uri AS uri, p.rdfs_label AS label, collect(r.uri) AS roles",
)
"""A person and the roles they hold."""

DECISION_SUMMARY = NamedQuery(
    "agents.decision.summary",
    f"MATCH (d:{_R}:{_DECISION} {{uri: $decision}}) "
    f"OPTIONAL MATCH (later:{_DECISION})-[:{_INFORMED_BY}]->(d) "
    "RETURN d.uri AS uri, d.runId AS run_id, d.step AS step, d.outcome AS outcome, "
    "d.reason AS reason, d.asOf AS as_of, d.plannerKind AS planner, "
    "d.prov_startedAtTime AS started, d.prov_endedAtTime AS ended, "
    "d.chainIndex AS chain_index, collect(later.uri) AS followed_by",
)
"""A decision's headline and any later decision of the same run."""

AWAITING = NamedQuery(
    "agents.decision.awaiting",
    f"MATCH (d:{_DECISION}) WHERE d.outcome = 'awaiting_approval' "
    f"AND NOT EXISTS {{ (:{_DECISION})-[:{_INFORMED_BY}]->(d) }} "
    "RETURN d.uri AS uri, d.runId AS run_id, d.prov_startedAtTime AS started, "
    "d.prov_endedAtTime AS ended ORDER BY started, uri LIMIT $limit",
)
"""Decisions still waiting for a person (``ended`` dates the request)."""

_NOT_EVIDENCE = " OR ".join(
    f"e:{token(label)}"
    for label in (
        Label.QUERY_EVIDENCE,  # the rows of a query: the things it found are listed instead
        Label.MODEL_TRANSCRIPT,
        Label.SHAPE_SET,
        Label.ONTOLOGY_RELEASE,
        Label.PROPOSED_ACTION,
        Label.DECISION,
    )
)


def _evidence(run: LiteralString) -> LiteralString:
    """What the decisions of run ``run`` (a parameter or a variable) used, as approval
    evidence rows, at most ``$limit`` of each kind."""
    return (
        f"MATCH (d:{_DECISION}) WHERE d.runId = {run} "
        f"MATCH (d)-[:{_USED}]->(e) WHERE NOT ({_NOT_EVIDENCE}) "
        "WITH DISTINCT e "
        f"OPTIONAL MATCH (e)-[:{token(RelType.WINDOW_OF)}|{_SCORE_OF}|{_CONCERNS}]->(x) "
        "WITH e, collect(DISTINCT x.uri) AS about "
        "RETURN e.uri AS uri, labels(e) AS labels, properties(e) AS facts, about LIMIT $limit "
        "UNION "
        f"MATCH (d:{_DECISION})<-[:{token(RelType.PROV_WAS_GENERATED_BY)}]-"
        f"(h:{token(Label.HYPOTHESIS)}) WHERE d.runId = {run} "
        f"OPTIONAL MATCH (h)-[:{token(RelType.HYPOTHESIZED_MODE)}]->(m) "
        "RETURN h.uri AS uri, labels(h) AS labels, "
        "h {.*, mode: m.uri, modeLabel: m.rdfs_label} AS facts, [] AS about LIMIT $limit"
    )


APPROVAL_EVIDENCE = NamedQuery("agents.approval.evidence", _evidence("$run_id"))
"""What a run's decisions used, for the person asked to approve: findings, telemetry windows
(and their sensors), trust scores (and their subjects), policies, and the failure modes the
diagnosis ranked (its hypotheses); the query rows, shapes, ontology and action are left out."""

APPROVALS_EVIDENCE = NamedQuery(
    "agents.approval.evidence_of_runs",
    f"UNWIND $run_ids AS run_id CALL (run_id) {{ {_evidence('run_id')} }} "
    "RETURN run_id, uri, labels, facts, about",
)
""":data:`APPROVAL_EVIDENCE` of several runs in one round trip (the inbox), each row with its
``run_id``."""

CRITICALITIES = NamedQuery(
    "agents.approval.criticalities",
    f"UNWIND $assets AS asset MATCH (a:{_R}:{_ASSET} {{uri: asset}}) "
    "RETURN a.uri AS asset, a.criticality AS criticality",
)
"""The criticality class of each asset that exists (the targets of waiting requests)."""

RUN_DECISIONS = NamedQuery(
    "agents.decision.of_run",
    f"MATCH (d:{_DECISION}) WHERE d.runId = $run_id "
    "RETURN d.uri AS uri, d.step AS step, d.outcome AS outcome ORDER BY step",
)
"""The decisions a run has recorded, in order."""

LATEST_OBSERVATION = NamedQuery(
    "agents.latest_observation",
    f"MATCH (s:{_SENSOR}) WHERE s.lastObservedAt IS NOT NULL "
    "RETURN max(s.lastObservedAt) AS latest",
)
"""The newest reading's time: what ``--as-of data`` judges against (replays of old data)."""

RECENT_DECISIONS = NamedQuery(
    "agents.decision.recent",
    f"MATCH (d:{_DECISION}) WHERE d.chainIndex IS NOT NULL "
    "WITH d ORDER BY d.chainIndex DESC LIMIT $limit "
    f"OPTIONAL MATCH (a:{token(Label.PROPOSED_ACTION)}) "
    f"WHERE (a)-[:{token(RelType.PROV_WAS_GENERATED_BY)}]->(d) OR (d)-[:{_USED}]->(a) "
    f"OPTIONAL MATCH (a)-[:{token(RelType.TARGETS)}]->(t) "
    "RETURN d.uri AS uri, d.chainIndex AS chain_index, d.outcome AS outcome, d.reason AS reason, "
    "d.plannerKind AS planner, a.actionKind AS kind, t.tag AS target "
    "ORDER BY chain_index DESC",
)
"""The latest decisions, newest first, with the action each proposed (if it proposed one)."""
