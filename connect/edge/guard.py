"""The edge's guard: a tripped rule's action judged by the bundle's safety shapes and policies.

The same judgement as the central guard (``agents.guard``), made with what the bundle holds:
the action (a ``tk:ProposedAction`` with confidence 1, a rule being deterministic) is validated
with its target's context from ``policies.ttl`` against the bundle's shapes
(``reasoner.safety.assess``). ``sh:Violation`` refuses; ``sh:Warning`` escalates (the edge
raises the alarm and a person decides centrally; it never waits for one); otherwise the action
is applied when a trust threshold grants autonomy there, and escalated when none does. An
alarm rule changes nothing and is not judged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from rdflib import RDF, XSD, Graph, Literal, URIRef

from twinkg.connect.edge.bundle import Contents
from twinkg.connect.edge.rules import RuleAction, Trip
from twinkg.ontology.vocab import TK
from twinkg.reasoner.safety import Verdict, assess


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the edge decided about a trip, why, and how long the guard took."""

    outcome: str  # applied | refused | escalated | alarm
    verdict: str  # allow | needs_approval | block | none (an alarm is not judged)
    reason: str
    conforms: bool
    messages: tuple[str, ...]
    guard_ms: float


def action_graph(trip: Trip, iri: str, at: datetime) -> Graph:
    """The tripped rule's action as RDF for the safety shapes."""
    g = Graph()
    a = URIRef(iri)
    g.add((a, RDF.type, TK.ProposedAction))
    g.add((a, TK.actionKind, Literal(trip.rule.action.value)))
    g.add((a, TK.targets, URIRef(trip.rule.target)))
    g.add((a, TK.proposedAt, Literal(at, datatype=XSD.dateTime)))
    g.add((a, TK.confidence, Literal(1.0, datatype=XSD.double)))
    if trip.rule.demanded_by:
        g.add((a, TK.demandedBy, URIRef(trip.rule.demanded_by)))
    return g


class LocalGuard:
    """Judges trips with one bundle's contents."""

    def __init__(self, contents: Contents) -> None:
        self.contents = contents

    def warm(self) -> None:
        """Judge each stop rule once, unrecorded, so the first real trip does not pay for
        parsing the shapes' SPARQL and loading the class hierarchy (about a second)."""
        for rule in self.contents.rules:
            if rule.action is not RuleAction.ALARM:
                self.judge(Trip(rule, ()), "urn:twinkg:edge:warm-up", datetime.now(UTC))

    def judge(self, trip: Trip, iri: str, at: datetime) -> Judgement:
        """The judgement on ``trip``'s action (named ``iri``) proposed at ``at``."""
        if trip.rule.action is RuleAction.ALARM:
            return Judgement("alarm", "none", "an alarm changes nothing", True, (), 0.0)
        started = time.perf_counter()
        assessment = assess(
            action_graph(trip, iri, at), self.contents.policies, shapes=self.contents.shapes
        )
        took = (time.perf_counter() - started) * 1000.0
        messages = tuple(
            v.message or ""
            for v in (*assessment.blocking, *assessment.approvals_needed, *assessment.recorded)
        )
        verdict, conforms = assessment.verdict.value, assessment.outcome.conforms
        if assessment.verdict is Verdict.BLOCK:
            reason = "; ".join(v.message or "" for v in assessment.blocking)
            return Judgement("refused", verdict, reason, conforms, messages, took)
        if assessment.verdict is Verdict.NEEDS_APPROVAL:
            reason = "; ".join(v.message or "" for v in assessment.approvals_needed)
            return Judgement("escalated", verdict, reason, conforms, messages, took)
        thresholds = [
            float(t.toPython())
            for p in self.contents.policies.subjects(RDF.type, TK.TrustThreshold)
            for t in self.contents.policies.objects(p, TK.threshold)
            if isinstance(t, Literal)
        ]
        if not thresholds:
            reason = "no trust threshold applies: a person decides"
            return Judgement("escalated", verdict, reason, conforms, messages, took)
        if not max(thresholds) <= 1.0:
            reason = f"the trust threshold {max(thresholds)} is above a rule's confidence 1.0"
            return Judgement("escalated", verdict, reason, conforms, messages, took)
        reason = f"rule {trip.rule.id}: allowed by the bundle's safety shapes"
        return Judgement("applied", verdict, reason, conforms, messages, took)
