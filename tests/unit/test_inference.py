"""OWL inference with HermiT: the defined classes of the ontology, classified from facts."""

from __future__ import annotations

from collections.abc import Mapping

import owlready2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import OWL, RDF, XSD

from twinkg.graph_seed.generator import generate
from twinkg.graph_seed.registry import PLANTS_DIR
from twinkg.kg.mapping import records_to_rdf
from twinkg.ontology.catalog import load_ontology, parse_turtle
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.vocab import TK, PropKey, RelType
from twinkg.reasoner.inference import (
    ReasonerError,
    classify,
    closure,
    defined_classes,
    interchangeable,
    reasoning_terms,
)

SKAB = plant_namespace("skab-testbed")
PUMP, MOTOR = URIRef(SKAB + "pump"), URIRef(SKAB + "motor")


@pytest.fixture(scope="module")
def ontology() -> Graph:
    return load_ontology()


@pytest.fixture(scope="module")
def skab() -> Graph:
    return parse_turtle([PLANTS_DIR / "skab-testbed.ttl"])


def _with_alarm(facts: Graph, *, severity: str, status: str, name: str = "alarm-1") -> Graph:
    alarm = URIRef(SKAB + name)
    out = Graph()
    out += facts
    out.add((alarm, RDF.type, TK.Alarm))
    out.add((alarm, TK.severity, Literal(severity)))
    out.add((alarm, TK.status, Literal(status)))
    out.add((alarm, TK.concerns, MOTOR))
    return out


def _classes(inferred: Mapping[str, frozenset[str]], iri: URIRef) -> frozenset[str]:
    return inferred.get(str(iri), frozenset())


def test_the_defined_classes_are_read_from_the_ontology(ontology: Graph) -> None:
    assert {
        str(TK.AtRiskAsset),
        str(TK.SinglePointOfFailure),
        str(TK.UnavailableEquipment),
        str(TK.CriticalOpenAlarm),
    } <= defined_classes(ontology)
    assert str(TK.Pump) not in defined_classes(ontology)


def test_reasoning_terms_are_what_the_definitions_look_at(ontology: Graph) -> None:
    terms = reasoning_terms(ontology)
    assert {PropKey.SEVERITY, PropKey.STATUS, PropKey.OPERATIONAL_STATUS} <= terms.keys
    assert {RelType.CONCERNS, RelType.STANDBY_FOR} <= terms.rel_types  # inverses of the used ones
    assert PropKey.RATED_FLOW not in terms.keys


def test_the_skab_pump_without_standby_is_a_single_point_of_failure(
    ontology: Graph, skab: Graph
) -> None:
    outcome = classify(ontology, skab)
    assert outcome.consistent and outcome.explanation is None
    assert _classes(outcome.inferred, PUMP) == {str(TK.SinglePointOfFailure)}
    assert str(MOTOR) not in outcome.inferred  # no alarm: not at risk
    assert outcome.seconds > 0


def test_closure_counts_the_known_standbys(ontology: Graph, skab: Graph) -> None:
    axioms = closure(ontology, skab)
    restrictions = {
        axioms.value(r, OWL.onProperty): axioms.value(r, OWL.maxCardinality)
        for r in axioms.objects(PUMP, RDF.type)
    }
    # the SKAB pump has no standby and is nobody's standby: both directions closed at 0
    zero = Literal(0, datatype=XSD.nonNegativeInteger)
    assert restrictions == {TK.hasStandby: zero, TK.standbyFor: zero}
    assert not list(axioms.objects(MOTOR, RDF.type))  # a motor is not in either's domain


def _duty_pair() -> tuple[Graph, URIRef, URIRef]:
    facts = records_to_rdf(generate(assets=40, seed=0))
    standby, duty = next(iter(sorted(facts.subject_objects(TK.standbyFor))))
    assert isinstance(standby, URIRef) and isinstance(duty, URIRef)
    return facts, duty, standby


def _set_status(facts: Graph, asset: URIRef, status: str) -> Graph:
    out = Graph()
    out += facts
    out.set((asset, TK.operationalStatus, Literal(status)))
    return out


def test_a_duty_pump_is_a_single_point_of_failure_while_its_standby_is_unavailable(
    ontology: Graph,
) -> None:
    facts, duty, standby = _duty_pair()
    assert _classes(classify(ontology, facts).inferred, duty) == frozenset()  # standby stopped

    down = classify(ontology, _set_status(facts, standby, "unavailable"))
    assert str(TK.SinglePointOfFailure) in _classes(down.inferred, duty)
    assert str(TK.UnavailableEquipment) in _classes(down.inferred, standby)

    running = classify(ontology, _set_status(facts, standby, "running"))
    assert str(TK.SinglePointOfFailure) not in _classes(running.inferred, duty)
    assert str(TK.UnavailableEquipment) not in _classes(running.inferred, standby)


def test_a_standby_pump_is_never_a_single_point_of_failure(ontology: Graph) -> None:
    facts, _, standby = _duty_pair()  # the standby has no standby of its own
    assert str(TK.SinglePointOfFailure) not in _classes(classify(ontology, facts).inferred, standby)


def test_an_open_critical_alarm_puts_its_asset_at_risk(ontology: Graph, skab: Graph) -> None:
    outcome = classify(ontology, _with_alarm(skab, severity="critical", status="open"))
    assert _classes(outcome.inferred, MOTOR) == {str(TK.AtRiskAsset)}
    assert _classes(outcome.inferred, URIRef(SKAB + "alarm-1")) == {str(TK.CriticalOpenAlarm)}
    assert str(TK.AtRiskAsset) not in _classes(outcome.inferred, PUMP)


@pytest.mark.parametrize(("severity", "status"), [("critical", "closed"), ("high", "open")])
def test_a_closed_or_less_severe_alarm_does_not(
    ontology: Graph, skab: Graph, severity: str, status: str
) -> None:
    outcome = classify(ontology, _with_alarm(skab, severity=severity, status=status))
    assert outcome.consistent
    assert str(MOTOR) not in outcome.inferred
    assert str(URIRef(SKAB + "alarm-1")) not in outcome.inferred


def test_asserted_classes_are_not_reported_as_inferred(ontology: Graph, skab: Graph) -> None:
    facts = Graph()
    facts += skab
    facts.add((PUMP, RDF.type, TK.SinglePointOfFailure))
    outcome = classify(ontology, facts)
    assert outcome.consistent
    assert str(PUMP) not in outcome.inferred


def test_calls_do_not_share_state(ontology: Graph, skab: Graph) -> None:
    """A fresh world per call: an alarm seen in one call is unknown to the next."""
    first = classify(ontology, _with_alarm(skab, severity="critical", status="open"))
    second = classify(ontology, skab)
    assert str(TK.AtRiskAsset) in _classes(first.inferred, MOTOR)
    assert str(MOTOR) not in second.inferred


def test_two_values_of_a_functional_property_are_reported_inconsistent(
    ontology: Graph, skab: Graph
) -> None:
    facts = _with_alarm(skab, severity="critical", status="open")
    facts.add((URIRef(SKAB + "alarm-1"), TK.severity, Literal("low")))
    outcome = classify(ontology, facts)
    assert not outcome.consistent
    assert outcome.inferred == {}
    assert outcome.explanation is not None
    assert "HermiT" in outcome.explanation
    assert str(TK.severity) in outcome.explanation


def test_facts_against_a_disjointness_axiom_are_reported_inconsistent(
    ontology: Graph, skab: Graph
) -> None:
    """The ontology declares no disjoint classes today, so the test adds one."""
    strict = Graph()
    strict += ontology
    strict.add((TK.Sensor, OWL.disjointWith, TK.Equipment))
    facts = Graph()
    facts += skab
    facts.add((MOTOR, RDF.type, TK.Sensor))
    assert classify(ontology, facts).consistent  # fine without the axiom
    outcome = classify(strict, facts)
    assert not outcome.consistent
    assert outcome.inferred == {}
    assert outcome.explanation


def test_only_defined_twinkg_classes_are_reported(ontology: Graph) -> None:
    outcome = classify(ontology, records_to_rdf(generate(assets=40, seed=0)))
    reported = {c for classes in outcome.inferred.values() for c in classes}
    assert reported
    assert reported <= defined_classes(ontology)


def test_missing_java_is_one_clear_error(
    ontology: Graph, skab: Graph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(owlready2, "JAVA_EXE", "no-such-java-twinkg")
    with pytest.raises(ReasonerError, match="needs Java") as info:
        classify(ontology, skab)
    assert "\n" not in str(info.value)
    assert info.value.code == "reasoner_failed"


# ---- interchangeable individuals go to HermiT once (decision 0064) ----

_TYPES = [TK.Pump, TK.Motor, TK.Equipment, TK.Asset, TK.Alarm, TK.Anomaly, TK.WindowAggregate]
_VALUES = {
    TK.severity: ["critical", "high"],
    TK.status: ["open", "closed"],
    TK.operationalStatus: ["unavailable", "running"],
}
_LINKS = [TK.hasStandby, TK.standbyFor, TK.concerns, TK.hasEvent]


@st.composite
def _facts(draw: st.DrawFn) -> Graph:
    """Hostile facts: crowds of bare individuals sharing their types (the window aggregates'
    case), some of them the target of a link; individuals with several values of a property,
    links to themselves, and two values of a functional one."""
    facts = Graph()
    ns = "https://w3id.org/twinkg/test/i/"
    bare = [URIRef(f"{ns}bare-{k}") for k in range(draw(st.integers(0, 25)))]
    for node in bare:  # only types, unless a rich one links to it
        for t in draw(st.sets(st.sampled_from(_TYPES), min_size=1, max_size=2)):
            facts.add((node, RDF.type, t))
    rich = [URIRef(f"{ns}rich-{k}") for k in range(draw(st.integers(1, 6)))]
    for node in rich:
        for t in draw(st.sets(st.sampled_from(_TYPES), min_size=1, max_size=2)):
            facts.add((node, RDF.type, t))
        for prop, values in _VALUES.items():
            for value in draw(st.sets(st.sampled_from(values), max_size=2)):
                facts.add((node, prop, Literal(value)))
        for link in draw(st.sets(st.sampled_from(_LINKS), max_size=2)):
            facts.add((node, link, draw(st.sampled_from(rich + bare))))
    return facts


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts=_facts())
def test_collapsing_interchangeable_individuals_changes_no_answer(
    ontology: Graph, facts: Graph
) -> None:
    """Differential: the same consistency and the same inferred classes for every individual
    with the interchangeable ones reasoned about once as without."""
    fast = classify(ontology, facts)
    reference = classify(ontology, facts, collapse=False)
    assert fast.consistent == reference.consistent
    assert fast.inferred == reference.inferred


def test_stored_window_aggregates_are_reasoned_about_once(ontology: Graph, skab: Graph) -> None:
    """Five hundred bare aggregates and three bare pumps, one of them the plant pump's standby:
    two groups (the standby is not bare: a link points at it); the two other pumps are single
    points of failure, the plant's pump no longer is, and the standby is not."""
    facts = Graph()
    facts += skab
    aggregates = [URIRef(SKAB + f"aggregate-{k:03}") for k in range(500)]
    pumps = [URIRef(SKAB + "bare-pump-1"), URIRef(SKAB + "bare-pump-2")]
    standby = URIRef(SKAB + "bare-pump-0")
    for node in aggregates:
        facts.add((node, RDF.type, TK.WindowAggregate))
    for node in [standby, *pumps]:
        facts.add((node, RDF.type, TK.Pump))
    facts.add((PUMP, TK.hasStandby, standby))
    groups = interchangeable(ontology, facts)
    assert sorted(len(rest) + 1 for rest in groups.values()) == [2, 500]
    grouped = {*groups, *(n for rest in groups.values() for n in rest)}
    assert standby not in grouped and PUMP not in grouped
    outcome = classify(ontology, facts)
    assert outcome.inferred == classify(ontology, facts, collapse=False).inferred
    for pump in pumps:
        assert _classes(outcome.inferred, pump) == {str(TK.SinglePointOfFailure)}
    for pump in (PUMP, standby):
        assert str(TK.SinglePointOfFailure) not in _classes(outcome.inferred, pump)
    assert not any(str(a) in outcome.inferred for a in aggregates)
