"""Closed unit lists: the QUDT import, the sensor contract and every writer of sensors agree."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import RDF, RDFS, XSD

from twinkg.graph_seed.generator import generate
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg.mapping import records_to_rdf
from twinkg.ontology.catalog import load_ontology
from twinkg.ontology.namespaces import PREFIXES, plant_namespace
from twinkg.ontology.units import allowed_units, closed_unit_lists, curie, import_units
from twinkg.ontology.vocab import QUANTITYKIND, TK, UNIT
from twinkg.reasoner.validation import validate
from twinkg.shapes import registry

KINDS = tuple(closed_unit_lists())
UNITS = import_units()
OUTSIDE = URIRef(PREFIXES["unit"] + "FURLONG-PER-FORTNIGHT")  # a unit outside TwinKG's set
EX = Namespace(plant_namespace("unit-test"))
QUDT = Namespace(PREFIXES["qudt"])


@pytest.fixture(scope="module")
def ontology() -> Graph:
    return load_ontology()


@pytest.fixture(scope="module")
def range_axioms(ontology: Graph) -> Graph:
    """The ontology's axioms about tk:hasUnit and tk:hasQuantityKind: the ranges that made any
    IRI a qudt:Unit under RDFS inference (the whole ontology is slow to infer over per example)."""
    axioms = Graph()
    for prop in (TK.hasUnit, TK.hasQuantityKind):
        axioms += ontology.triples((prop, None, None))
    assert (TK.hasUnit, RDFS.range, QUDT.Unit) in axioms
    return axioms


def test_every_kind_lists_units_and_each_unit_is_in_one_list() -> None:
    assert len(KINDS) >= 10 and all(closed_unit_lists()[k] for k in KINDS)
    listed = [u for units in closed_unit_lists().values() for u in units]
    assert sorted(listed) == sorted(UNITS)  # every unit of the import in exactly one list


def test_the_common_units_are_in_their_lists() -> None:
    assert {UNIT.BAR, UNIT.PA, UNIT.KiloPA, UNIT.MegaPA, UNIT.PSI} <= set(
        allowed_units(QUANTITYKIND.Pressure)
    )
    assert {UNIT.DEG_C, UNIT.K, UNIT.DEG_F} <= set(allowed_units(QUANTITYKIND.Temperature))
    assert {UNIT["L-PER-MIN"], UNIT["M3-PER-HR"]} <= set(allowed_units(QUANTITYKIND.VolumeFlowRate))
    assert allowed_units(QUANTITYKIND.Pressure) == tuple(
        sorted(allowed_units(str(QUANTITYKIND.Pressure)))
    )
    assert allowed_units(OUTSIDE) == ()


@pytest.mark.parametrize("plant", ["skab", "generated"])
def test_every_sensor_the_project_writes_uses_a_unit_of_its_kind(plant: str) -> None:
    records = (
        plant_records(Plant.SKAB_TESTBED) if plant == "skab" else generate(assets=2000, seed=3)
    )
    graph = records_to_rdf(records)
    sensors = set(graph.subjects(RDF.type, TK.Sensor))
    assert sensors
    for sensor in sensors:
        kind, unit = graph.value(sensor, TK.hasQuantityKind), graph.value(sensor, TK.hasUnit)
        assert unit in allowed_units(str(kind)), (sensor, kind, unit)


def _sensor(kind: URIRef, unit: URIRef) -> Graph:
    graph = Graph()
    sensor, pump = EX["pt-1"], EX["p-1"]
    graph.add((pump, RDF.type, TK.Asset))  # typed as sh:class wants it, without subclassing
    graph.add((pump, TK.tag, Literal("P-1")))
    graph.add((pump, TK.criticality, Literal("B")))
    graph.add((sensor, RDF.type, TK.Sensor))
    graph.add((sensor, TK.tag, Literal("PT-1")))
    graph.add((sensor, TK.criticality, Literal("C")))
    graph.add((sensor, TK.hasQuantityKind, kind))
    graph.add((sensor, TK.hasUnit, unit))
    graph.add((sensor, TK.physicalMin, Literal(0.0, datatype=XSD.double)))
    graph.add((sensor, TK.physicalMax, Literal(10.0, datatype=XSD.double)))
    graph.add((sensor, TK.samplingPeriod, Literal(1.0, datatype=XSD.double)))
    graph.add((sensor, TK.monitors, pump))
    return graph


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(kind=st.sampled_from(KINDS), unit=st.sampled_from((*UNITS, OUTSIDE)))
def test_a_sensor_is_accepted_iff_its_unit_is_in_its_kinds_list(
    kind: URIRef, unit: URIRef, range_axioms: Graph
) -> None:
    # RDFS inference on, as the seed runs it: tk:hasUnit's range makes any IRI a qudt:Unit, so
    # the check must not rest on it.
    shapes = registry.contract("sensor").graph
    outcome = validate(_sensor(kind, unit), shapes, ontology=range_axioms)
    allowed = allowed_units(kind)
    assert outcome.conforms == (unit in allowed)
    if unit not in allowed:
        [violation] = outcome.violations
        assert (violation.focus_node, violation.path, violation.value) == (
            str(EX["pt-1"]),
            str(TK.hasUnit),
            str(unit),
        )
        expected = ", ".join(curie(u) for u in allowed)
        assert violation.message == (
            f"The unit {curie(unit)} is not a unit of {curie(kind)} (allowed: {expected})."
        )


def test_the_whole_ontology_does_not_make_an_outside_unit_pass(ontology: Graph) -> None:
    kind = QUANTITYKIND.Pressure
    shapes = registry.contract("sensor").graph
    refused = validate(_sensor(kind, OUTSIDE), shapes, ontology=ontology)
    assert [v.value for v in refused.violations] == [str(OUTSIDE)]


def test_a_kind_outside_the_set_is_refused(range_axioms: Graph) -> None:
    kind = URIRef(PREFIXES["quantitykind"] + "Luminance")
    outcome = validate(
        _sensor(kind, UNIT.BAR), registry.contract("sensor").graph, ontology=range_axioms
    )
    assert {(v.path, v.component.rsplit("#", 1)[-1]) for v in outcome.violations} == {
        (str(TK.hasQuantityKind), "InConstraintComponent"),
        (str(TK.hasUnit), "SPARQLConstraintComponent"),
    }
    assert any("allowed: none" in v.message for v in outcome.violations)


@pytest.mark.parametrize(
    ("accuracy", "conforms"),
    [
        ((Literal(1.5, datatype=XSD.double),), True),
        ((Literal(0.0, datatype=XSD.double),), True),
        ((Literal(-0.5, datatype=XSD.double),), False),  # an error is never negative
        ((Literal("1.5"),), False),  # a string, not a double
        ((Literal(1.5, datatype=XSD.double), Literal(2.0, datatype=XSD.double)), False),
    ],
)
def test_a_stated_accuracy_is_one_double_of_at_least_zero(
    accuracy: tuple[Literal, ...], conforms: bool, range_axioms: Graph
) -> None:
    graph = _sensor(QUANTITYKIND.Temperature, UNIT.DEG_C)
    for value in accuracy:
        graph.add((EX["pt-1"], TK.accuracy, value))
    outcome = validate(graph, registry.contract("sensor").graph, ontology=range_axioms)
    assert outcome.conforms == conforms
    if not conforms:
        assert {v.path for v in outcome.violations} == {str(TK.accuracy)}
