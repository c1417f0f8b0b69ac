"""The guard on the real Neo4j: seed the SKAB testbed, read an action's context, assess it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rdflib import RDF, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import PROV

from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.graph_seed.seeding import load, with_ontology
from twinkg.kg.context import action_context
from twinkg.kg.mapping import rdf_to_records
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import InvalidInputError
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.vocab import QUANTITYKIND, TK
from twinkg.reasoner.safety import SafetyAssessment, Verdict, assess, safety_shapes
from twinkg.reasoner.validation import Violation

pytestmark = pytest.mark.neo4j

SKAB = Namespace(plant_namespace(Plant.SKAB_TESTBED.value))
BOOSTER = Namespace(plant_namespace("booster-station"))
SAFETY = Namespace(dict(safety_shapes().namespaces())["safety"])
NOW = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)


@pytest.fixture
def skab(empty_store: GraphStore) -> GraphStore:
    """The SKAB testbed with its ontology, as ``twinkg seed`` writes it."""
    load(empty_store, Plant.SKAB_TESTBED.value, with_ontology(plant_records(Plant.SKAB_TESTBED)))
    return empty_store


def _action(kind: str, target: URIRef, *, confidence: float = 0.9) -> tuple[Graph, BNode]:
    graph, action = Graph(), BNode()
    graph.add((action, RDF.type, TK.ProposedAction))
    graph.add((action, TK.actionKind, Literal(kind)))
    graph.add((action, TK.targets, target))
    graph.add((action, TK.proposedAt, Literal(NOW)))
    graph.add((action, TK.confidence, Literal(confidence)))
    return graph, action


def _flow_setpoint(to: float, *, confidence: float = 0.9) -> Graph:
    graph, action = _action("setpoint_change", SKAB.pump, confidence=confidence)
    graph.add((action, TK.setpointQuantityKind, QUANTITYKIND.VolumeFlowRate))
    graph.add((action, TK.currentSetpoint, Literal(100.0)))
    graph.add((action, TK.proposedSetpoint, Literal(to)))
    graph.add((action, TK.rampDuration, Literal(60.0)))
    return graph


def _guard(store: GraphStore, action: Graph, target: URIRef) -> SafetyAssessment:
    return assess(action, action_context(store, str(target)))


def _shapes(results: tuple[Violation, ...]) -> set[str]:
    return {r.source_shape for r in results}


def test_the_context_holds_the_asset_its_ancestors_envelopes_and_policies(
    skab: GraphStore,
) -> None:
    context = action_context(skab, str(SKAB.pump))

    subjects = set(context.subjects())
    assert {SKAB.pump, SKAB.loop, SKAB.lab, SKAB.site} <= subjects
    assert {SKAB["envelope-pump-flow"], SKAB["envelope-pump-pressure"]} <= subjects
    assert {SKAB["policy-trust"], SKAB["policy-approval-critical-stop"]} <= subjects
    # Not in the pump's context: other equipment, sensors, the tank's permit.
    assert SKAB.motor not in subjects
    assert SKAB["sensor-flow"] not in subjects
    assert SKAB["permit-tank-2020-01"] not in subjects
    # Asserted classes only; the shapes infer the rest with the ontology.
    assert set(context.objects(SKAB.pump, RDF.type)) == {TK.CentrifugalPump}
    assert (SKAB["envelope-pump-flow"], TK.maxValue, Literal(140.0)) in context
    assert (
        SKAB["envelope-pump-flow"],
        TK.forQuantityKind,
        QUANTITYKIND.VolumeFlowRate,
    ) in context
    assert (SKAB["policy-approval-critical-stop"], TK.requiredRole, TK.SupervisorRole) in context


def test_the_motor_context_holds_its_interlock(skab: GraphStore) -> None:
    context = action_context(skab, str(SKAB.motor))

    interlock = SKAB["interlock-motor-overtemperature"]
    assert (interlock, TK.trips, SKAB.motor) in context
    assert (interlock, RDF.type, TK.Interlock) in context


def test_an_unknown_asset_is_refused(skab: GraphStore) -> None:
    with pytest.raises(InvalidInputError, match="no asset"):
        action_context(skab, str(SKAB["pump-that-does-not-exist"]))
    with pytest.raises(InvalidInputError, match="no asset"):
        action_context(skab, str(SKAB["policy-trust"]))  # a node, but not an asset


def test_a_flow_setpoint_inside_the_envelope_at_a_slow_ramp_is_allowed(skab: GraphStore) -> None:
    assessment = _guard(skab, _flow_setpoint(120.0), SKAB.pump)

    assert assessment.verdict is Verdict.ALLOW, assessment.outcome.violations
    assert assessment.outcome.violations == ()


def test_the_same_setpoint_at_low_confidence_needs_approval(skab: GraphStore) -> None:
    assessment = _guard(skab, _flow_setpoint(120.0, confidence=0.5), SKAB.pump)

    assert assessment.verdict is Verdict.NEEDS_APPROVAL
    assert _shapes(assessment.approvals_needed) == {str(SAFETY.TrustThresholdShape)}
    assert assessment.blocking == ()


def test_a_flow_setpoint_of_200_is_blocked(skab: GraphStore) -> None:
    assessment = _guard(skab, _flow_setpoint(200.0), SKAB.pump)

    assert assessment.verdict is Verdict.BLOCK
    assert _shapes(assessment.blocking) == {str(SAFETY.EnvelopeRangeShape)}


def test_stopping_the_criticality_a_pump_needs_a_supervisor(skab: GraphStore) -> None:
    action, _ = _action("controlled_stop", SKAB.pump)

    assessment = _guard(skab, action, SKAB.pump)

    assert assessment.verdict is Verdict.NEEDS_APPROVAL
    assert _shapes(assessment.approvals_needed) == {str(SAFETY.CriticalityApprovalShape)}


def test_a_valid_supervisor_approval_allows_the_stop(skab: GraphStore) -> None:
    action, node = _action("controlled_stop", SKAB.pump)
    approval, person = BNode(), BNode()
    action.add((approval, RDF.type, TK.Approval))
    action.add((approval, TK.approves, node))
    action.add((approval, TK.outcome, Literal("approved")))
    action.add((approval, PROV.wasAssociatedWith, person))
    action.add((approval, TK.expiresAt, Literal(NOW + timedelta(minutes=30))))
    action.add((person, RDF.type, TK.Person))
    action.add((person, TK.hasRole, TK.SupervisorRole))

    assessment = _guard(skab, action, SKAB.pump)

    assert assessment.verdict is Verdict.ALLOW, assessment.outcome.violations


def test_an_interlock_demanded_stop_of_the_motor_is_allowed_and_recorded(
    skab: GraphStore,
) -> None:
    action, node = _action("controlled_stop", SKAB.motor)
    action.add((node, TK.demandedBy, SKAB["interlock-motor-overtemperature"]))

    assessment = _guard(skab, action, SKAB.motor)

    assert assessment.verdict is Verdict.ALLOW, assessment.outcome.violations
    assert _shapes(assessment.recorded) == {str(SAFETY.InterlockTripShape)}


def _permit(name: str, *, start: datetime, end: datetime) -> Graph:
    permit, iri = Graph(), SKAB[name]
    permit.add((iri, RDF.type, TK.LockoutTagoutPermit))
    permit.add((iri, TK.permitStatus, Literal("active")))
    permit.add((iri, TK.validFrom, Literal(start)))
    permit.add((iri, TK.validUntil, Literal(end)))
    permit.add((iri, TK.appliesTo, SKAB.pump))
    return permit


def test_an_active_lockout_permit_on_the_pump_blocks(skab: GraphStore) -> None:
    # A permit still marked active whose validity ended yesterday: the times read back from
    # Neo4j compare with the proposal time, so it is not in force.
    yesterday = _permit(
        "permit-pump-old", start=NOW - timedelta(days=1, hours=8), end=NOW - timedelta(days=1)
    )
    skab.write(rdf_to_records(yesterday))
    assert _guard(skab, _flow_setpoint(120.0), SKAB.pump).verdict is Verdict.ALLOW
    today = _permit("permit-pump-now", start=NOW - timedelta(hours=2), end=NOW + timedelta(hours=6))
    skab.write(rdf_to_records(today))

    assessment = _guard(skab, _flow_setpoint(120.0), SKAB.pump)

    assert assessment.verdict is Verdict.BLOCK
    assert _shapes(assessment.blocking) == {str(SAFETY.LockoutTagoutShape)}


def test_the_tanks_closed_permit_read_back_from_neo4j_does_not_block(skab: GraphStore) -> None:
    action, node = _action("work_order", SKAB.tank)
    action.set((node, TK.proposedAt, Literal(datetime(2020, 1, 20, 12, 0, tzinfo=UTC))))

    context = action_context(skab, str(SKAB.tank))
    assessment = assess(action, context)

    assert (SKAB["permit-tank-2020-01"], TK.permitStatus, Literal("closed")) in context
    # Times come back as export gives them: the seed's canonical literal, not Neo4j's ISO text.
    valid_from = context.value(SKAB["permit-tank-2020-01"], TK.validFrom)
    assert isinstance(valid_from, Literal)
    assert str(valid_from) == "2020-01-20T09:00:00+00:00"
    assert assessment.verdict is Verdict.ALLOW, assessment.outcome.violations


def test_stopping_a_duty_pump_whose_standby_is_stopped_is_blocked(
    empty_store: GraphStore,
) -> None:
    pair = Graph()
    for pump, role, status in (("p-101a", "duty", "running"), ("p-101b", "standby", "stopped")):
        pair.add((BOOSTER[pump], RDF.type, TK.CentrifugalPump))
        pair.add((BOOSTER[pump], TK.dutyRole, Literal(role)))
        pair.add((BOOSTER[pump], TK.operationalStatus, Literal(status)))
        pair.add((BOOSTER[pump], TK.criticality, Literal("B")))
    pair.add((BOOSTER["p-101b"], TK.standbyFor, BOOSTER["p-101a"]))
    empty_store.write(rdf_to_records(pair))
    stop_duty, _ = _action("controlled_stop", BOOSTER["p-101a"])
    switch_over, _ = _action("switch_to_standby", BOOSTER["p-101a"])

    context = action_context(empty_store, str(BOOSTER["p-101a"]))

    assert (BOOSTER["p-101b"], TK.operationalStatus, Literal("stopped")) in context
    blocked = assess(stop_duty, context)
    assert blocked.verdict is Verdict.BLOCK
    assert _shapes(blocked.blocking) == {str(SAFETY.DutyStandbyShape)}
    assert assess(switch_over, context).verdict is Verdict.ALLOW
