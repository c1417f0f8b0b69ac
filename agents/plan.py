"""Plan: a case from the diagnosis and the graph's policies, handed to the planner.

The case (:class:`agents.planning.PlanningCase`) holds the asset's profile, findings, ranked
hypotheses and symptoms, its operating envelopes and duty/standby partners, the trust threshold,
a confidence (the data's mean trust times the top hypothesis' score) and an urgency. The run
context's planner (rules or a model, ``agents.planning``) proposes the action; an external
proposal is kept instead, its confidence capped by the data's trust.
"""

from __future__ import annotations

from typing import Any

from twinkg.agents.context import Gather, RunContext, gathered_rows
from twinkg.agents.monitor import urgency
from twinkg.agents.planning import Envelope, Partner, PlanningCase
from twinkg.agents.state import AgentState
from twinkg.kg import agent_queries as q


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
        confidence=round(data_trust * top, 6),
        urgency=max([urgency(f) for f in state.findings] + [top if state.hypotheses else 0.0]),
    )
    update = gather.update(state)
    if state.action is not None:  # an external proposal: the data's trust caps its claim
        action = state.action.model_copy(
            update={
                "confidence": round(min(state.action.confidence, data_trust), 6),
                "proposed_at": state.as_of,
            }
        )
        update.update(planner="external", action=action, candidates=[])
        return update
    result = ctx.planner.plan(case)
    update.update(
        planner=result.planner,
        candidates=result.candidates,
        action=result.action,
        model=result.model,
        prompt_version=result.prompt_version,
        transcript=result.transcript,
    )
    return update
