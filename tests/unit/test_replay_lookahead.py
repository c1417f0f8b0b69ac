"""Replaying a look-ahead plan from its record (decision 0055): the recorded candidates,
transcript and action stand in for the forks; a record whose action is not its best-rated
candidate is replayed with that candidate (so the replay differs); a plan without a look-ahead,
or whose look-ahead was skipped, is not replayed this way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from rdflib import RDF, Graph, Literal, URIRef

from twinkg.agents.replay import _recorded_lookahead
from twinkg.agents.state import ActionKind, Candidate, ProposedAction
from twinkg.ontology.vocab import TK

D = URIRef("https://w3id.org/twinkg/decision/run-1/1")
PUMP10, PUMP335 = "https://example.org/p/pump-10", "https://example.org/p/pump-335"
AT = "2026-01-07T22:00:00+00:00"


def _proposal(kind: ActionKind, target: str, setpoint: float | None = None) -> ProposedAction:
    return ProposedAction(
        kind=kind, target=target, confidence=0.0, proposed_at=AT, proposed_setpoint=setpoint
    )


def _record(chosen: ProposedAction, transcript: Sequence[object]) -> Graph:
    g = Graph()
    start = _proposal(ActionKind.RESTART, PUMP10)
    raise_ = _proposal(ActionKind.SETPOINT_CHANGE, PUMP335, 1.1)
    candidates = [
        Candidate(action=start, utility=-10.0, risk_reduction=1.0, throughput=1.0),
        Candidate(action=raise_, utility=-2000.0, risk_reduction=0.0, throughput=0.9),
    ]
    g.add((D, TK.candidates, Literal(json.dumps([c.model_dump(mode="json") for c in candidates]))))
    g.add((URIRef(f"{D}/transcript"), RDF.type, TK.ModelTranscript))
    g.add((URIRef(f"{D}/transcript"), TK.transcript, Literal(json.dumps(transcript))))
    action = URIRef(f"{D}/action")
    g.add((action, RDF.type, TK.ProposedAction))
    g.add((action, TK.actionKind, Literal(chosen.kind.value)))
    g.add((action, TK.targets, URIRef(chosen.target)))
    g.add((action, TK.confidence, Literal(0.0)))
    g.add((action, TK.proposedAt, Literal(datetime(2026, 1, 7, 22, tzinfo=UTC))))
    g.add((action, TK.rationale, Literal("start it by hand: short supply [look-ahead 2 h: …]")))
    if chosen.proposed_setpoint is not None:
        g.add((action, TK.proposedSetpoint, Literal(chosen.proposed_setpoint)))
    return g


LOOKAHEAD = [{"lookahead": {"candidates": [{"kind": "restart", "target": PUMP10}], "chosen": 1}}]


def test_a_recorded_look_ahead_plan_is_replayed_as_recorded() -> None:
    planner = _recorded_lookahead(
        "rules", _record(_proposal(ActionKind.RESTART, PUMP10), LOOKAHEAD), D
    )
    assert planner is not None and planner.kind == "rules"
    plan = planner.plan(None)  # type: ignore[arg-type]
    assert plan.action is not None
    assert (plan.action.kind, plan.action.target) == (ActionKind.RESTART, PUMP10)
    assert plan.action.rationale.startswith("start it by hand")  # the recorded action itself
    assert [c.action.target for c in plan.candidates] == [PUMP10, PUMP335]
    assert plan.transcript == LOOKAHEAD


def test_an_action_that_is_not_the_best_candidate_replays_as_the_best() -> None:
    tampered = _record(_proposal(ActionKind.SETPOINT_CHANGE, PUMP335, 1.1), LOOKAHEAD)
    planner = _recorded_lookahead("rules", tampered, D)
    assert planner is not None
    plan = planner.plan(None)  # type: ignore[arg-type]
    assert plan.action is not None
    assert (plan.action.kind, plan.action.target) == (ActionKind.RESTART, PUMP10)


def test_without_a_look_ahead_the_planner_itself_replays() -> None:
    chosen = _proposal(ActionKind.RESTART, PUMP10)
    assert _recorded_lookahead("rules", _record(chosen, []), D) is None
    skipped = [{"lookahead": {"skipped": "the plant cannot fork"}}]
    assert _recorded_lookahead("rules", _record(chosen, skipped), D) is None
    assert _recorded_lookahead("rules", Graph(), D) is None
