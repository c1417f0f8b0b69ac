"""The asset, sensor and event contracts, and the registry that publishes them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import rdflib.namespace
from rdflib import SH, BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import RDF, RDFS
from rdflib.term import Node

from twinkg.graph_seed.generator import generate
from twinkg.graph_seed.registry import PLANTS_DIR
from twinkg.kg.mapping import records_to_rdf
from twinkg.ontology.catalog import load_ontology, parse_turtle
from twinkg.ontology.errors import (
    ContractIncompatibleError,
    InvalidInputError,
    ShapesError,
    UnknownContractError,
)
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.vocab import TK
from twinkg.reasoner.validation import Violation, check_shapes, validate
from twinkg.shapes import registry
from twinkg.shapes.registry import ContractRef, ContractRegistry, Version

SKAB = Namespace(plant_namespace("skab-testbed"))
# (XSD itself stays out of the module namespace: pytest probes its globals and XSD warns)
DATE_TIME, DECIMAL = rdflib.namespace.XSD.dateTime, rdflib.namespace.XSD.decimal
OURS = registry.INGEST_CONTRACTS
OUR_FILES = sorted(p for name in OURS for p in (registry.CONTRACTS_DIR / name).glob("*.ttl"))


@pytest.fixture(scope="module")
def ontology() -> Graph:
    return load_ontology()


@pytest.fixture(scope="module")
def shapes() -> Graph:
    return registry.ingest_shapes()


def skab() -> Graph:
    return parse_turtle([PLANTS_DIR / "skab-testbed.ttl"])


def _found(outcome_violations: tuple[Violation, ...]) -> set[tuple[str, str | None, str]]:
    return {(v.focus_node, v.path, v.component) for v in outcome_violations}


# ---- The contract files ----


@pytest.mark.parametrize("path", OUR_FILES, ids=lambda p: f"{p.parent.name}@{p.stem}")
def test_contract_file_passes_meta_shacl_with_named_shapes_and_sentences(path: Path) -> None:
    graph = parse_turtle([path])
    check_shapes(graph)
    property_shapes = set(graph.objects(None, SH.property))
    assert property_shapes, path
    assert not [s for s in property_shapes if isinstance(s, BNode)], "name every property shape"
    messages = [str(m) for m in graph.objects(None, SH.message)]
    assert len(messages) >= len(property_shapes)
    for message in messages:
        assert re.fullmatch(r"[A-Z].{15,}[.]", message), f"not a sentence: {message!r}"


def test_ingest_contracts_are_published() -> None:
    assert set(OURS) <= set(registry.names())
    assert registry.versions("sensor")[:2] == (Version(1, 0, 0), Version(1, 1, 0))


# ---- The seed plants conform ----


def test_skab_testbed_conforms(ontology: Graph, shapes: Graph) -> None:
    outcome = validate(skab(), shapes, ontology=ontology)
    assert outcome.violations == ()
    assert outcome.conforms


def test_generated_plant_conforms(ontology: Graph, shapes: Graph) -> None:
    plant = records_to_rdf(generate(assets=300, seed=0))
    outcome = validate(plant, shapes, ontology=ontology)
    assert outcome.violations == ()
    assert outcome.conforms


def _events() -> Graph:
    """An alarm, a failure, an anomaly and a work order on the SKAB pump, all valid."""
    g = Graph()
    when = Literal("2020-03-09T10:14:33+00:00", datatype=DATE_TIME)
    later = Literal("2020-03-09T10:20:00+00:00", datatype=DATE_TIME)
    for name, cls in (
        ("alarm", TK.Alarm),
        ("failure", TK.Failure),
        ("anomaly", TK.Anomaly),
        ("order", TK.MaintenanceWorkOrder),
    ):
        g.add((SKAB[name], RDF.type, cls))
        g.add((SKAB[name], TK.concerns, SKAB.pump))
        g.add((SKAB[name], TK.occurredAt, when))
    g.add((SKAB.alarm, TK.endedAt, later))
    for name in ("alarm", "failure"):
        g.add((SKAB[name], TK.severity, Literal("high")))
    for name in ("alarm", "order"):
        g.add((SKAB[name], TK.status, Literal("open")))
    g.add((SKAB.failure, TK.failureMode, TK.Cavitation))
    g.add((SKAB.anomaly, TK.anomalyScore, Literal(0.93)))
    g.add((SKAB.anomaly, TK.failureMode, TK.Vibration))
    return g


def test_valid_events_conform(ontology: Graph, shapes: Graph) -> None:
    outcome = validate(skab() + _events(), shapes, ontology=ontology)
    assert outcome.violations == ()


# ---- Broken data gives the expected focus node, path and constraint ----

SENSOR = SKAB["sensor-current"]


Edit = tuple[str, URIRef, URIRef, Node | None]


def _with(*edits: Edit) -> Graph:
    """SKAB plus valid events, edited: ("set", s, p, o or None), ("add", …), ("del", s, p, None)."""
    graph = skab() + _events()
    for op, s, p, o in edits:
        if op in ("set", "del"):
            graph.remove((s, p, None))
        if op in ("set", "add") and o is not None:
            graph.add((s, p, o))
    return graph


BROKEN: dict[str, tuple[tuple[Edit, ...], tuple[Node, URIRef | None, URIRef]]] = {
    "sensor monitors two assets": (
        (("add", SENSOR, TK.monitors, SKAB.pump),),
        (SENSOR, TK.monitors, SH.MaxCountConstraintComponent),
    ),
    "criticality Z": (
        (("set", SKAB.pump, TK.criticality, Literal("Z")),),
        (SKAB.pump, TK.criticality, SH.InConstraintComponent),
    ),
    "alarm without a time": (
        (
            ("set", SKAB.alarm, TK.occurredAt, None),
            ("del", SKAB.alarm, TK.endedAt, None),
        ),
        (SKAB.alarm, TK.occurredAt, SH.MinCountConstraintComponent),
    ),
    "time without a time zone": (
        (
            (
                "set",
                SKAB.order,
                TK.occurredAt,
                Literal("2020-03-09T10:14:33", datatype=DATE_TIME),
            ),
        ),
        (SKAB.order, TK.occurredAt, SH.PatternConstraintComponent),
    ),
    "ended before it started": (
        (
            (
                "set",
                SKAB.alarm,
                TK.endedAt,
                Literal("2020-03-09T09:00:00+00:00", datatype=DATE_TIME),
            ),
        ),
        (SKAB.alarm, TK.occurredAt, SH.LessThanOrEqualsConstraintComponent),
    ),
    "alarm without severity": (
        (("del", SKAB.alarm, TK.severity, None),),
        (SKAB.alarm, TK.severity, SH.MinCountConstraintComponent),
    ),
    "unknown severity": (
        (("set", SKAB.failure, TK.severity, Literal("catastrophic")),),
        (SKAB.failure, TK.severity, SH.InConstraintComponent),
    ),
    "anomaly score above 1": (
        (("set", SKAB.anomaly, TK.anomalyScore, Literal(1.5)),),
        (SKAB.anomaly, TK.anomalyScore, SH.MaxInclusiveConstraintComponent),
    ),
    "failure without failure mode": (
        (("del", SKAB.failure, TK.failureMode, None),),
        (SKAB.failure, TK.failureMode, SH.MinCountConstraintComponent),
    ),
    "unknown failure mode": (
        (("set", SKAB.failure, TK.failureMode, SKAB["no-such-mode"]),),
        (SKAB["no-such-mode"], RDFS.label, SH.MinCountConstraintComponent),
    ),
    "physical min not below max": (
        (("set", SENSOR, TK.physicalMin, Literal(10.0)),),
        (SENSOR, TK.physicalMin, SH.LessThanConstraintComponent),
    ),
    "sampling period zero": (
        (("set", SENSOR, TK.samplingPeriod, Literal(0.0)),),
        (SENSOR, TK.samplingPeriod, SH.MinExclusiveConstraintComponent),
    ),
    "sensor without unit": (
        (("set", SENSOR, TK.hasUnit, None),),
        (SENSOR, TK.hasUnit, SH.MinCountConstraintComponent),
    ),
    "tag not a plant tag": (
        (("set", SKAB.motor, TK.tag, Literal("motor one")),),
        (SKAB.motor, TK.tag, SH.PatternConstraintComponent),
    ),
    "rated power not positive": (
        (("set", SKAB.motor, TK.ratedPower, Literal(-0.75)),),
        (SKAB.motor, TK.ratedPower, SH.MinExclusiveConstraintComponent),
    ),
    "rated power not a double": (
        (("set", SKAB.motor, TK.ratedPower, Literal("0.75", datatype=DECIMAL)),),
        (SKAB.motor, TK.ratedPower, SH.DatatypeConstraintComponent),
    ),
    "two parents": (
        (("add", SKAB.tank, TK.partOf, SKAB.lab),),
        (SKAB.tank, TK.partOf, SH.MaxCountConstraintComponent),
    ),
    "envelope min above max": (
        (("set", SKAB["envelope-pump-flow"], TK.minValue, Literal(200.0)),),
        (SKAB["envelope-pump-flow"], TK.minValue, SH.LessThanConstraintComponent),
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_data_is_reported(case: str, ontology: Graph, shapes: Graph) -> None:
    edits, (focus, path, component) = BROKEN[case]
    outcome = validate(_with(*edits), shapes, ontology=ontology)
    expected = (str(focus), None if path is None else str(path), str(component))
    assert not outcome.conforms
    assert _found(outcome.violations) == {expected}
    assert all(v.message.endswith(".") for v in outcome.violations)


def test_duplicate_tag_is_reported_on_the_tag(ontology: Graph, shapes: Graph) -> None:
    data = _with(("set", SKAB.tank, TK.tag, Literal("P-1")))
    outcome = validate(data, shapes, ontology=ontology)
    [violation] = outcome.violations
    assert violation.focus_node == "P-1"
    assert violation.component == str(SH.MaxCountConstraintComponent)
    assert "tag" in violation.message


def test_hierarchy_cycle_is_reported_once(ontology: Graph, shapes: Graph) -> None:
    data = _with(("add", SKAB.site, TK.partOf, SKAB.pump))
    outcome = validate(data, shapes, ontology=ontology)
    cyclic = {v.value for v in outcome.violations}
    assert {str(SKAB.site), str(SKAB.loop), str(SKAB.pump)} <= cyclic
    assert {v.component for v in outcome.violations} == {str(SH.SPARQLConstraintComponent)}
    assert all("part of itself" in v.message for v in outcome.violations)


def test_standby_pump_must_name_its_duty_pump(ontology: Graph, shapes: Graph) -> None:
    data = _with(("set", SKAB.pump, TK.dutyRole, Literal("standby")))
    outcome = validate(data, shapes, ontology=ontology)
    [violation] = outcome.violations
    assert violation.value == str(SKAB.pump)
    assert violation.component == str(SH.SPARQLConstraintComponent)


def test_dangling_monitored_asset_fails_the_asset_contract(ontology: Graph, shapes: Graph) -> None:
    # tk:monitors ranges over tk:Asset: an unknown IRI becomes an asset lacking tag and criticality
    data = _with(("set", SENSOR, TK.monitors, SKAB["no-such-asset"]))
    outcome = validate(data, shapes, ontology=ontology)
    assert {(v.focus_node, v.path) for v in outcome.violations} == {
        (str(SKAB["no-such-asset"]), str(TK.tag)),
        (str(SKAB["no-such-asset"]), str(TK.criticality)),
    }


# ---- Versions and references ----


def test_version_parse_order_and_text() -> None:
    assert Version.parse("1.10.0") > Version.parse("1.9.3") > Version.parse("0.9.9")
    assert str(Version.parse(" 2.0.1 ")) == "2.0.1"
    for bad in ("1.0", "1.0.0-rc1", "01.0.0", "v1.0.0", ""):
        with pytest.raises(InvalidInputError):
            Version.parse(bad)


def test_contract_refs() -> None:
    assert ContractRef.parse("telemetry@1.0.0") == ContractRef("telemetry", Version(1, 0, 0))
    assert ContractRef.parse("telemetry") == ContractRef("telemetry", None)
    assert str(ContractRef.parse("sensor@1.1.0")) == "sensor@1.1.0"
    for bad in ("telemetry@", "@1.0.0", "Tele metry", "telemetry@1.0"):
        with pytest.raises(InvalidInputError):
            ContractRef.parse(bad)


# ---- The shipped registry ----


def test_contract_is_cached_and_the_latest_is_current() -> None:
    current = registry.contract("sensor")
    assert current.version == Version(2, 1, 0)
    assert current.path.name == "2.1.0.ttl"
    assert registry.contract("sensor", "2.1.0") is current
    assert registry.contract("sensor", Version(1, 0, 0)).version == Version(1, 0, 0)


def test_unknown_contract_and_version_name_the_known_ones() -> None:
    with pytest.raises(UnknownContractError, match=r"known contracts: .*asset.*event.*sensor"):
        registry.contract("pressure")
    with pytest.raises(UnknownContractError, match=r"published versions: 1\.0\.0, 1\.1\.0"):
        registry.contract("sensor", "3.0.0")


def test_accept_an_older_compatible_version() -> None:
    assert registry.accept("sensor@2.0.0") is registry.contract("sensor")
    assert registry.accept(ContractRef("sensor")) is registry.contract("sensor")
    assert registry.accept("event@2.0.0") is registry.contract("event")


def test_event_2_refuses_data_declared_against_event_1() -> None:
    # 2.0.0 gives each kind of event its own status vocabulary (decision 0038): breaking.
    with pytest.raises(ContractIncompatibleError, match="major versions differ"):
        registry.accept("event@1.0.0")


def test_accept_refuses_an_unpublished_version() -> None:
    with pytest.raises(UnknownContractError, match="not a published version"):
        registry.accept("sensor@1.2.0")
    with pytest.raises(UnknownContractError):
        registry.accept("pressure@1.0.0")


def test_ingest_shapes_is_the_union_of_asset_sensor_and_event() -> None:
    union = registry.ingest_shapes()
    expected = Graph()
    for name in OURS:
        expected += registry.contract(name).graph
    assert len(union) == len(expected)
    assert set(union.subjects(RDF.type, SH.NodeShape)) == set(
        expected.subjects(RDF.type, SH.NodeShape)
    )
    union.remove((None, None, None))  # a new graph each time: the cached contracts are untouched
    assert len(registry.ingest_shapes()) == len(expected)


# ---- A registry over a folder of our own ----


def _publish(root: Path, name: str, version: str, text: str) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / f"{version}.ttl").write_text(text)


def _sensor(version: str, *, source: str = "1.1.0") -> str:
    text = (registry.CONTRACTS_DIR / "sensor" / f"{source}.ttl").read_text()
    return text.replace(f'"{source}"', f'"{version}"').replace(f"/{source}>", f"/{version}>")


def test_sensor_2_refuses_data_declared_against_sensor_1() -> None:
    # 2.0.0 closes the unit and quantity-kind lists (decision 0039): breaking.
    with pytest.raises(ContractIncompatibleError, match="major versions differ"):
        registry.accept("sensor@1.1.0")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A folder holding the 1.x sensor contracts (the registry's rules, without 2.0.0)."""
    (tmp_path / "sensor").mkdir()
    for path in (registry.CONTRACTS_DIR / "sensor").glob("1.*.ttl"):
        shutil.copy(path, tmp_path / "sensor" / path.name)
    return tmp_path


def test_registry_over_another_folder(root: Path) -> None:
    reg = ContractRegistry(root)
    assert reg.names() == ("sensor",)
    assert reg.accept("sensor@1.0.0").version == Version(1, 1, 0)
    assert ContractRegistry(root / "empty").names() == ()


def test_a_breaking_minor_release_is_not_accepted(root: Path) -> None:
    narrowed = _sensor("1.2.0").replace("sh:minExclusive 0 ;", "sh:minExclusive 0.5 ;", 1)
    _publish(root, "sensor", "1.2.0", narrowed)
    reg = ContractRegistry(root)
    with pytest.raises(ContractIncompatibleError, match="breaking change"):
        reg.accept("sensor@1.1.0")
    assert reg.accept("sensor@1.2.0").version == Version(1, 2, 0)


def test_a_new_major_version_refuses_data_of_the_old_one(root: Path) -> None:
    _publish(root, "sensor", "2.0.0", _sensor("2.0.0"))
    reg = ContractRegistry(root)
    with pytest.raises(ContractIncompatibleError, match="major versions differ"):
        reg.accept("sensor@1.1.0")
    assert reg.accept("sensor").version == Version(2, 0, 0)


def test_declared_version_must_match_the_file_name(root: Path) -> None:
    _publish(root, "sensor", "1.1.1", _sensor("1.1.0"))
    with pytest.raises(ShapesError, match=r"1\.1\.1"):
        ContractRegistry(root).contract("sensor", "1.1.1")


def test_contract_name_must_match_the_folder(root: Path) -> None:
    _publish(root, "probe", "1.0.0", _sensor("1.0.0"))
    with pytest.raises(ShapesError, match="not named 'probe'"):
        ContractRegistry(root).contract("probe")


def test_a_file_not_named_by_a_version_is_refused(root: Path) -> None:
    _publish(root, "sensor", "draft", _sensor("1.2.0"))
    with pytest.raises(ShapesError, match=r"major\.minor\.patch"):
        ContractRegistry(root).versions("sensor")


def test_a_contract_failing_meta_shacl_is_refused(root: Path) -> None:
    broken = _sensor("1.2.0").replace("sh:maxCount 1 ;", 'sh:maxCount "one" ;', 1)
    _publish(root, "sensor", "1.2.0", broken)
    with pytest.raises(ShapesError, match="meta-SHACL"):
        ContractRegistry(root).contract("sensor")
