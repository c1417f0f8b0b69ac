"""Plan: a case from the diagnosis and the graph's policies, handed to the planner.

The case (:class:`agents.planning.PlanningCase`) holds the asset's profile, findings, ranked
hypotheses and symptoms, its operating envelopes and duty/standby partners, the trust threshold,
a confidence (the data's mean trust times the top hypothesis' score) and an urgency. The run
context's planner (rules or a model, ``agents.planning``) proposes the action; an external
proposal is kept instead, its confidence capped by the data's trust.

Every confidence is then capped by the trust bound (decision 0035): the lowest full trust
confidence (quality, freshness and anomaly) of the sensors and findings the top hypothesis rests
on, read from their ``tk:TrustScore`` nodes (``kg.evidence_trust``) and kept in the state for the
record. Low trust thus sends the action to a person through the guard's trust threshold.
"""

from __future__ import annotations

from typing import Any

from twinkg.agents.context import Gather, RunContext, gathered_rows
from twinkg.agents.monitor import urgency
from twinkg.agents.planning import (
    Envelope,
    Partner,
    PlanningCase,
    bound_action,
    bounded,
    confidence_bound,
    evidence_trust,
    rests_on,
)
from twinkg.agents.state import AgentState
from twinkg.kg import agent_queries as q
from twinkg.kg.evidence_trust import EVIDENCE_TRUST


def plan(state: AgentState, ctx: RunContext) -> dict[str, Any]:
    """Plan: a case from the diagnosis and the graph's policies, handed to the planner."""
    assert state.asset is not None
    gather = Gather(ctx, state)
    policies = gather.rows(q.POLICIES, asset=state.asset)[0]
    profile = gathered_rows(state, q.ASSET_PROFILE)
    head = profile[0] if profile else {}
    trust = [s.trust for s in state.symptoms]
    data_trust = sum(trust) / len(trust) if trust else 0.0
    top = state.hypotheses[0].score if state.hypotheses else 1.0
    used, subjects = rests_on(state.hypotheses, state.symptoms, state.findings)
    rows = gather.rows(
        EVIDENCE_TRUST,
        scores=sorted({s.trust_score for s in used if s.trust_score}),
        subjects=subjects,
        as_of=state.as_of,
    )
    bound = confidence_bound(evidence_trust(used, subjects, rows))
    case = PlanningCase(
        asset=state.asset,
        tag=head.get("tag"),
        criticality=head.get("criticality"),
        status=head.get("status"),
        as_of=state.as_of,
        findings=state.findings,
        hypotheses=state.hypotheses,
        symptoms=state.symptoms,
        mitigations={r["mode"]: list(r["mitigations"]) for r in profile if r.get("mode")},
        # rows recorded before the query skipped them hold {uri: null} for "none" (replays)
        envelopes=[Envelope.model_validate(e) for e in policies["envelopes"] if e.get("uri")],
        partners=[Partner.model_validate(p) for p in policies["partners"] if p.get("uri")],
        trust_threshold=policies["threshold"],
        confidence=bounded(round(data_trust * top, 6), bound),
        urgency=max([urgency(f) for f in state.findings] + [top if state.hypotheses else 0.0]),
    )
    update = gather.update(state)
    update.update(bound=bound)
    if state.action is not None:  # an external proposal: the data's trust caps its claim
        action = state.action.model_copy(
            update={
                # min of the claim, the rounded data trust and the bound: a replay, which
                # proposes the recorded confidence again, reaches the very same number
                "confidence": bounded(min(state.action.confidence, round(data_trust, 6)), bound),
                "proposed_at": state.as_of,
            }
        )
        update.update(planner="external", action=action, candidates=[])
        return update
    result = ctx.planner.plan(case)
    candidates = [
        c.model_copy(update={"action": bound_action(c.action, bound)}) for c in result.candidates
    ]
    update.update(
        planner=result.planner,
        candidates=candidates,
        action=bound_action(result.action, bound),
        model=result.model,
        prompt_version=result.prompt_version,
        transcript=result.transcript,
    )
    return update
