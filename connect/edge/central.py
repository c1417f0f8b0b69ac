"""The central side of edge decisions: each forwarded record checked, then appended to the
twin's provenance chain as a decision record, in the edge chain's order, exactly once.

A record arrives as the edge wrote it (``connect.edge.chain``). Before anything is written:

* it must parse, name the edge and site of its topic, and its hash must match its content
  (``edge_decision_invalid``);
* record *n* is recorded only after record *n − 1* of the same edge, and its previous hash must
  be the hash recorded with *n − 1* (``edge_out_of_order``: the edge sends it again later;
  ``edge_chain_broken``: a different record under a recorded index or a link that differs);
* the same record again is a duplicate and writes nothing.

The decision record (``kg.provenance.record``, one transaction, hash-chained like every
decision) is ``DECISION_BASE + "edge/{site}/{node}/{seq}"``, a ``prov:Activity`` associated with
the edge as a software agent (per bundle version), using the bundle's safety shapes and an
evidence entity (``…/evidence/0``) holding the rule and bundle (``queryParameters``), the
readings (``resultRows``) and the edge's own record hash (``contentHash``). A stop or alarm
adds the proposed action and the edge guard's report; a stop the edge applied adds its effect,
and the target's status becomes ``stopped`` as it did on the plant.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twinkg.connect.edge.bundle import canonical
from twinkg.connect.edge.chain import record_hash
from twinkg.connect.edge.rules import RuleAction, parse_rule
from twinkg.connect.mqtt.topics import EdgeTopic
from twinkg.kg import provenance
from twinkg.kg.edge_records import ASSET_EXISTS, EDGE_HASHES
from twinkg.kg.records import GraphRecords, RecordBuilder
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import (
    EdgeChainBrokenError,
    EdgeDecisionRefusedError,
    EdgeOutOfOrderError,
    InvalidInputError,
)
from twinkg.ontology.namespaces import AGENT_BASE, DECISION_BASE, SHAPES_BASE
from twinkg.ontology.vocab import TK, RelType

OUTCOMES = ("applied", "refused", "escalated", "alarm")


@dataclass(frozen=True, slots=True)
class EdgeRecorded:
    """What became of one forwarded record: ``applied`` (recorded now) or ``duplicate``."""

    kind: str
    decision: str
    chain_index: int


@dataclass(frozen=True, slots=True)
class _Forwarded:
    seq: int
    prev: str
    hash: str
    body: dict[str, Any]


def _parse(topic: EdgeTopic, payload: bytes) -> _Forwarded:
    try:
        row = json.loads(payload)
        seq, prev, stated, body = int(row["seq"]), str(row["prev"]), str(row["hash"]), row["body"]
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeDecisionRefusedError(f"not an edge decision record: {exc!r}") from None
    if not isinstance(body, dict) or seq < 1:
        raise EdgeDecisionRefusedError("an edge decision record has a body and a seq of 1 or more")
    if record_hash(prev, body) != stated:
        raise EdgeDecisionRefusedError(f"edge record {seq}: its content does not match its hash")
    if body.get("edge") != topic.node or body.get("site") != topic.site:
        raise EdgeDecisionRefusedError(f"edge record {seq} is not from {topic.site}/{topic.node}")
    if body.get("outcome") not in OUTCOMES:
        raise EdgeDecisionRefusedError(f"edge record {seq}: outcome is not one of {OUTCOMES}")
    return _Forwarded(seq, prev, stated, body)


def _fields(body: dict[str, Any]) -> tuple[datetime, dict[str, Any], list[Any], dict[str, Any]]:
    try:
        at = datetime.fromisoformat(str(body["at"])).astimezone(UTC)
        bundle = body["bundle"]
        readings = body["readings"]
        int(bundle["version"]), str(bundle["sha256"]), str(bundle["shapes_version"])
        parse_rule(body["rule"])
    except (ValueError, KeyError, TypeError, InvalidInputError) as exc:
        raise EdgeDecisionRefusedError(f"an edge decision record field is wrong: {exc}") from None
    if not isinstance(readings, list) or not all(
        isinstance(r, list)
        and len(r) == 2
        and isinstance(r[1], int | float)
        and math.isfinite(r[1])
        for r in readings
    ):
        raise EdgeDecisionRefusedError("an edge decision's readings are [time, value] pairs")
    return at, bundle, readings, body["rule"]


def records(topic: EdgeTopic, record: _Forwarded, d: str) -> tuple[GraphRecords, bool]:
    """The decision record of a forwarded edge record, and whether it stops its target."""
    at, bundle, readings, rule_json = _fields(record.body)
    rule = parse_rule(rule_json)
    body, b = record.body, RecordBuilder()
    outcome = str(body["outcome"])
    b.node(
        d,
        TK.Decision,
        runId=f"edge/{topic.site}/{topic.node}",
        step=record.seq,
        outcome=outcome,
        reason=str(body.get("reason", ""))[:4000] or None,
        asOf=at,
        plannerKind="edge-rule",
        prov_startedAtTime=at,
        prov_endedAtTime=at,
        graphVersion=str(bundle.get("graph_version", "")) or None,
        rdfs_comment=f"decided on edge {topic.node} of {topic.site} under bundle "
        f"v{bundle['version']}",
    )
    agent = b.node(
        f"{AGENT_BASE}edge/{topic.site}/{topic.node}/bundle-{int(bundle['version'])}",
        TK.TwinAgent,
        rdfs_label=f"TwinKG edge {topic.node}",
        codeVersion=f"bundle v{int(bundle['version'])} sha256 {bundle['sha256']}",
    )
    b.rel(RelType.PROV_WAS_ASSOCIATED_WITH, d, agent)
    version = str(bundle["shapes_version"])
    shapes = b.node(
        f"{SHAPES_BASE}safety/{version}",
        TK.ShapeSet,
        rdfs_label="TwinKG safety shapes",
        version=version,
    )
    b.rel(RelType.PROV_USED, d, shapes)
    evidence = b.node(
        f"{d}/evidence/0",
        TK.QueryEvidence,
        ordinal=0,
        queryName=f"edge-rule:{rule.id}",
        queryParameters=canonical(
            {"rule": rule_json, "bundle": bundle, "seq": record.seq, "prev": record.prev}
        ).decode(),
        resultRows=canonical(readings).decode(),
        contentHash=record.hash,
    )
    b.rel(RelType.PROV_USED, d, evidence)
    if rule.action is not RuleAction.ALARM:  # an alarm proposes nothing to act on
        action = b.node(
            f"{d}/action",
            TK.ProposedAction,
            actionKind=rule.action.value,
            proposedAt=at,
            confidence=1.0,
            rationale=f"rule {rule.id}: {rule.sensor} above {rule.above:g}, {rule.count} readings",
            argumentsHash=hashlib.sha256(canonical(rule_json)).hexdigest(),
        )
        b.rel(RelType.TARGETS, action, rule.target)
        b.rel(RelType.DEMANDED_BY, action, rule.demanded_by)
        b.rel(RelType.PROV_WAS_GENERATED_BY, action, d)
        report = b.node(
            f"{d}/report",
            TK.ValidationReport,
            conforms=bool(body.get("conforms", False)),
            verdict=str(body.get("verdict", "")),
            reportText="\n".join(str(m) for m in body.get("messages", []))[:20000],
            rdfs_comment="judged on the edge with the bundle's shapes and policies",
        )
        b.rel(RelType.PROV_WAS_GENERATED_BY, report, d)
        b.rel(RelType.PROV_WAS_DERIVED_FROM, report, shapes)
    stops = outcome == "applied" and rule.action is RuleAction.CONTROLLED_STOP
    if stops:
        effect = b.node(
            f"{d}/effect",
            TK.StateChange,
            occurredAt=at,
            status="applied",
            rdfs_label=f"controlled stop by edge {topic.node}",
            toStatus="stopped",
        )
        b.rel(RelType.CONCERNS, effect, rule.target)
        b.rel(RelType.PROV_WAS_GENERATED_BY, effect, d)
    return b.records(), stops


class EdgeDecisions:
    """Records forwarded edge decisions in the twin's provenance. ``target_check(topic,
    target)`` may refuse a decision's target (an :class:`InvalidInputError`) before anything is
    recorded: the twin's service refuses one on another site than the edge's (decision 0085)."""

    def __init__(
        self,
        store: GraphStore,
        *,
        target_check: Callable[[EdgeTopic, str], None] | None = None,
    ) -> None:
        self.store = store
        self.target_check = target_check

    def handle(self, topic: EdgeTopic, payload: bytes) -> EdgeRecorded:
        """Check and record one forwarded record (refusals are :class:`InvalidInputError`
        subclasses; a store failure propagates so the message is tried again)."""
        record = _parse(topic, payload)
        d = f"{DECISION_BASE}edge/{topic.site}/{topic.node}/{record.seq}"
        before = f"{DECISION_BASE}edge/{topic.site}/{topic.node}/{record.seq - 1}"
        known = {r["uri"]: r["edge_hash"] for r in self.store.read(EDGE_HASHES, uris=[d, before])}
        if d in known:
            if known[d] != record.hash:
                raise EdgeChainBrokenError(f"{d} is recorded with another edge hash")
            return EdgeRecorded("duplicate", d, provenance.receipt(self.store, d).chain_index)
        if record.seq == 1 and record.prev:
            raise EdgeChainBrokenError("the first edge record names a previous hash")
        if record.seq > 1 and before not in known:
            raise EdgeOutOfOrderError(f"{before} is not recorded yet")
        if record.seq > 1 and known[before] != record.prev:
            raise EdgeChainBrokenError(f"{d} does not link to {before} as recorded")
        graph_records, stops = records(topic, record, d)
        target = str(record.body["rule"]["target"])
        if not self.store.read(ASSET_EXISTS, uri=target):
            raise EdgeDecisionRefusedError(f"the edge action's target {target} is not in the graph")
        if self.target_check is not None:
            self.target_check(topic, target)
        changes = [provenance.StatusChange(target, "stopped")] if stops else []
        receipt = provenance.record(self.store, graph_records, decision=d, changes=changes)
        return EdgeRecorded("applied" if receipt.created else "duplicate", d, receipt.chain_index)
