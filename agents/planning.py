"""Planning: what a planner is given, what it returns, and the default rule-based planner.

A planner proposes; it never decides. It gets a :class:`PlanningCase` (data: the asset, what was
observed, the ranked hypotheses, the policies read from the graph) and returns a :class:`Plan`:
the candidates it weighed and the one it proposes. The guard then judges the proposal against
the safety shapes. The default :class:`RulePlanner` needs no network and is deterministic; an
LLM planner (``agents.llm_planner``) implements the same protocol.

The rule planner scores each feasible candidate by a utility that trades the short horizon
(reduce the risk the top hypothesis poses) against the long one (keep the line's throughput):
``u · risk_reduction + (1 − u) · throughput``, with ``u`` the case's urgency. Actions the failure
mode lists as mitigations (``tk:mitigatedBy`` in the graph) reduce its risk fully; others only
partly. A restart-due case (a stopped asset whose restart hold-off has passed) weighs two
candidates only: restart it (its throughput back) or keep it stopped and watch (decision 0049).

Whatever the planner, an action's confidence never exceeds the trust of the evidence its top
hypothesis rests on (decision 0035): :func:`rests_on` names that evidence, :func:`evidence_trust`
attaches each piece's ``tk:TrustScore`` confidence (quality, freshness and anomaly),
:func:`confidence_bound` takes the lowest, and :func:`bound_action` caps the action with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from twinkg.agents.state import (
    ActionKind,
    Candidate,
    ConfidenceBound,
    EvidenceTrust,
    Finding,
    Hypothesis,
    ProposedAction,
    Symptom,
    Trigger,
)


class Envelope(BaseModel):
    """An operating envelope of the target, from the graph."""

    model_config = ConfigDict(frozen=True)

    uri: str
    quantity_kind: str
    minimum: float
    maximum: float
    max_rate: float | None = None


class Partner(BaseModel):
    """The target's duty/standby partner, from the graph."""

    model_config = ConfigDict(frozen=True)

    uri: str
    tag: str | None = None
    status: str | None = None
    duty_role: str | None = None


class PlanningCase(BaseModel):
    """Everything a planner may use, as data."""

    model_config = ConfigDict(frozen=True)

    asset: str
    tag: str | None = None
    criticality: str | None = None
    status: str | None = None
    as_of: str
    findings: list[Finding]
    hypotheses: list[Hypothesis]
    symptoms: list[Symptom]
    mitigations: dict[str, list[str]] = Field(default_factory=dict)  # mode IRI → action kinds
    envelopes: list[Envelope] = Field(default_factory=list)
    partners: list[Partner] = Field(default_factory=list)
    trust_threshold: float | None = None
    confidence: float  # data trust × hypothesis score, capped by the evidence's trust bound
    urgency: float  # in [0, 1], from the findings' severity and the top hypothesis


class Plan(BaseModel):
    """A planner's answer: the candidates weighed and the action proposed (None: nothing)."""

    model_config = ConfigDict(frozen=True)

    planner: str  # "rules" | "llm" | "external"
    candidates: list[Candidate] = Field(default_factory=list)
    action: ProposedAction | None = None
    model: str | None = None
    prompt_version: str | None = None
    transcript: list[dict[str, Any]] = Field(default_factory=list)


class Planner(Protocol):
    """Proposes an action for a case. ``kind`` is recorded in the provenance."""

    kind: str

    def plan(self, case: PlanningCase) -> Plan:
        """The candidates and the proposal for ``case``."""
        ...


# (risk reduction when the kind mitigates the top hypothesis, throughput kept). A work order
# fixes the cause but later; a stop removes the risk and the throughput; gathering data
# changes nothing yet.
_EFFECT: dict[ActionKind, tuple[float, float]] = {
    ActionKind.CONTROLLED_STOP: (1.0, 0.0),
    ActionKind.SWITCH_TO_STANDBY: (0.9, 0.95),
    ActionKind.SETPOINT_CHANGE: (0.8, 0.85),
    ActionKind.WORK_ORDER: (0.5, 1.0),
    ActionKind.RESTART: (0.0, 1.0),
    ActionKind.GATHER_DATA: (0.0, 1.0),
}
_UNLISTED = 0.3  # share of the risk reduction an action gets when it is no listed mitigation
_SETPOINT_STEP = 0.10  # reduce a setpoint by this share of its current value
_RAMP_MARGIN = 2.0  # ramp at half the envelope's maximum rate of change, at least 60 s
_MIN_RAMP_S = 60.0
_FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"


class RulePlanner:
    """The default planner: policies from the graph, no network, the same answer every time."""

    kind = "rules"

    def plan(self, case: PlanningCase) -> Plan:
        """Score every feasible candidate; propose the best (ties: the safer, gentler kind)."""
        if any(f.kind == Trigger.RESTART_DUE for f in case.findings):
            return self._restart(case)
        if not case.hypotheses:
            action = self._action(case, ActionKind.GATHER_DATA, None, "no hypothesis explains it")
            return Plan(planner=self.kind, candidates=[], action=action)
        top = case.hypotheses[0]
        listed = case.mitigations.get(top.mode, [])
        candidates: list[Candidate] = []
        for kind in ActionKind:
            if kind is ActionKind.RESTART:
                continue  # only for a restart-due case (above)
            feasible = self._feasible(case, kind, top)
            if feasible is None:
                continue
            risk, throughput = _EFFECT[kind]
            if kind.value not in listed and kind is not ActionKind.GATHER_DATA:
                risk *= _UNLISTED
            utility = case.urgency * risk + (1 - case.urgency) * throughput
            candidates.append(
                Candidate(
                    action=feasible,
                    utility=round(utility, 6),
                    risk_reduction=risk,
                    throughput=throughput,
                )
            )
        order = list(ActionKind)
        candidates.sort(key=lambda c: (-c.utility, order.index(c.action.kind)))
        return Plan(planner=self.kind, candidates=candidates, action=candidates[0].action)

    def _restart(self, case: PlanningCase) -> Plan:
        """Restart a stopped asset (its throughput back) or keep it stopped and watch."""
        why = f"{case.tag or case.asset} stopped by a controlled stop; its restart hold-off passed"
        hold = self._action(case, ActionKind.GATHER_DATA, None, f"{why}: keep it stopped, watch")
        candidates = [Candidate(action=hold, utility=0.0, risk_reduction=0.0, throughput=0.0)]
        if case.status == "stopped":
            start = self._action(case, ActionKind.RESTART, None, f"{why}: start it again")
            candidates.insert(
                0, Candidate(action=start, utility=1.0, risk_reduction=0.0, throughput=1.0)
            )
        return Plan(planner=self.kind, candidates=candidates, action=candidates[0].action)

    def _feasible(  # noqa: PLR0911 - one case per action kind
        self, case: PlanningCase, kind: ActionKind, top: Hypothesis
    ) -> ProposedAction | None:
        why = f"{_short(top.mode)} (score {top.score:.2f}) on {case.tag or case.asset}"
        if kind is ActionKind.SETPOINT_CHANGE:
            return self._setpoint(case, top, why)
        if kind is ActionKind.SWITCH_TO_STANDBY:
            ready = [p for p in case.partners if p.status in ("standby", "running")]
            if not ready or case.status != "running":
                return None
            return self._action(case, kind, top.mode, f"{why}: start standby {ready[0].tag}")
        if kind is ActionKind.CONTROLLED_STOP:
            if case.status != "running":
                return None
            return self._action(case, kind, top.mode, f"{why}: stop before it gets worse")
        if kind is ActionKind.WORK_ORDER:
            return self._action(case, kind, top.mode, f"{why}: inspect and repair")
        return self._action(case, kind, top.mode, f"{why}: watch more data first")

    def _setpoint(self, case: PlanningCase, top: Hypothesis, why: str) -> ProposedAction | None:
        """Reduce the flow setpoint by a tenth, inside the envelope, ramped gently."""
        envelope = next((e for e in case.envelopes if e.quantity_kind == _FLOW), None)
        current = _baseline(case.symptoms, _FLOW)
        if envelope is None or current is None or case.status != "running":
            return None
        proposed = max(envelope.minimum, min(envelope.maximum, current * (1 - _SETPOINT_STEP)))
        if proposed >= current:
            return None
        rate = envelope.max_rate or 0.0
        ramp = max(_MIN_RAMP_S, _RAMP_MARGIN * (current - proposed) / rate if rate else 0.0)
        return ProposedAction(
            kind=ActionKind.SETPOINT_CHANGE,
            target=case.asset,
            confidence=case.confidence,
            proposed_at=case.as_of,
            quantity_kind=_FLOW,
            current_setpoint=round(current, 6),
            proposed_setpoint=round(proposed, 6),
            ramp_s=round(ramp, 3),
            failure_mode=top.mode,
            rationale=f"{why}: reduce flow {current:.1f} → {proposed:.1f} over {ramp:.0f} s",
        )

    @staticmethod
    def _action(
        case: PlanningCase, kind: ActionKind, mode: str | None, rationale: str
    ) -> ProposedAction:
        return ProposedAction(
            kind=kind,
            target=case.asset,
            confidence=case.confidence,
            proposed_at=case.as_of,
            failure_mode=mode,
            rationale=rationale,
        )


def _baseline(symptoms: Sequence[Symptom], quantity_kind: str) -> float | None:
    values = [s.baseline_mean for s in symptoms if s.quantity_kind == quantity_kind]
    return values[0] if values else None


def _short(iri: str) -> str:
    return iri.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def rests_on(
    hypotheses: Sequence[Hypothesis], symptoms: Sequence[Symptom], findings: Sequence[Finding]
) -> tuple[list[Symptom], list[str]]:
    """The symptoms and the finding subjects the top hypothesis rests on.

    The symptoms are those of the quantity kinds the top hypothesis explains, whichever asset the
    sensor belongs to (a neighbour's sensor that measures what the failure mode manifests in
    counts); when it explains none, or there is no hypothesis, every symptom measured. The
    findings are all the case's: an alarm or anomaly rests on the asset it concerns, a stale
    sensor on itself.
    """
    explained = set(hypotheses[0].explained) if hypotheses else set()
    used = [s for s in symptoms if s.quantity_kind in explained]
    if not used:
        used = list(symptoms)
    subjects = sorted({f.uri if f.kind == "stale_sensor" else f.asset for f in findings})
    return used, subjects


def _confidence(row: Mapping[str, Any] | None) -> float:
    value = None if row is None else row.get("confidence")
    if value is None or not math.isfinite(float(value)):
        return 0.0  # no trust score (or none that says how far): no evidence is not trust
    return min(1.0, max(0.0, float(value)))


def evidence_trust(
    symptoms: Sequence[Symptom], subjects: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> list[EvidenceTrust]:
    """Each piece of evidence with its trust confidence, from the rows of
    ``kg.evidence_trust.EVIDENCE_TRUST`` (``trust``, ``subject``, ``confidence``).

    A symptom's sensor keeps the very score the diagnosis read (its ``trust_score``); a finding's
    subject takes its weakest score among the rows. Evidence with no score has confidence 0.
    """
    by_score = {str(r["trust"]): r for r in rows if r.get("trust")}
    out: dict[tuple[str, str | None], EvidenceTrust] = {}
    for s in symptoms:
        row = by_score.get(s.trust_score) if s.trust_score else None
        score = None if row is None else str(row["trust"])
        out[(s.sensor, score)] = EvidenceTrust(
            subject=s.sensor, trust_score=score, confidence=_confidence(row)
        )
    for subject in subjects:
        mine = [r for r in rows if r.get("subject") == subject and r.get("trust")]
        row = min(mine, key=lambda r: (_confidence(r), str(r["trust"])), default=None)
        score = None if row is None else str(row["trust"])
        out[(subject, score)] = EvidenceTrust(
            subject=subject, trust_score=score, confidence=_confidence(row)
        )
    return sorted(out.values(), key=lambda e: (e.subject, e.trust_score or ""))


def confidence_bound(evidence: Sequence[EvidenceTrust]) -> ConfidenceBound:
    """The lowest trust confidence among ``evidence``, and the evidence that set it.

    Ties go to the subject IRI first in order, so the same evidence always names the same
    subject. No evidence at all bounds the confidence to 0: an action that rests on nothing may
    not be taken alone.
    """
    if not evidence:
        return ConfidenceBound(value=0.0, subject=None, trust_score=None, evidence=[])
    low = min(evidence, key=lambda e: (e.confidence, e.subject, e.trust_score or ""))
    return ConfidenceBound(
        value=low.confidence,
        subject=low.subject,
        trust_score=low.trust_score,
        evidence=list(evidence),
    )


def bounded(confidence: float, bound: ConfidenceBound) -> float:
    """``confidence`` capped by the bound (never above it, never above itself; NaN: the bound)."""
    return confidence if confidence <= bound.value else bound.value


def bound_action(action: ProposedAction | None, bound: ConfidenceBound) -> ProposedAction | None:
    """The action with its confidence capped by the bound (whatever planner proposed it)."""
    if action is None or action.confidence <= bound.value:
        return action
    return action.model_copy(update={"confidence": bounded(action.confidence, bound)})
