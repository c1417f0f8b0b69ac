"""The TEP plant graph (graph_seed/tep.py): built from tep-studio's schema, checked by the
contracts, seeded for real with `twinkg seed --plant tep`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from neo4j import Driver
from rdflib import RDF, Graph, URIRef
from rdflib.term import Node
from tep_studio import list_manipulated_variables, list_measurements

from tests.conftest import REPO, Neo4jTarget
from twinkg.graph_seed import plant_check, seeding
from twinkg.graph_seed.registry import Plant, parse_plant, plant_records
from twinkg.graph_seed.tep import DEFAULT_BASE, DISTURBANCES, tep_plant
from twinkg.kg.mapping import rdf_to_records
from twinkg.kg.store import GraphStore
from twinkg.ontology.units import is_allowed
from twinkg.ontology.vocab import TK
from twinkg.sim.tep import TepSimulator

TWINKG = str(Path(sys.executable).parent / "twinkg")
EQUIPMENT = (TK.Reactor, TK.Condenser, TK.Separator, TK.Stripper, TK.Compressor)


def _one(graph: Graph, subject: Node, predicate: URIRef) -> str:
    values = list(graph.objects(subject, predicate))
    assert len(values) == 1, (subject, predicate, values)
    return str(values[0])


def test_every_measurement_is_a_sensor_with_a_unit_its_kind_allows() -> None:
    graph, _ = tep_plant()
    sensors = set(graph.subjects(RDF.type, TK.Sensor))
    assert len(sensors) == len(list_measurements()) == 41
    ids = {_one(graph, s, TK.externalId) for s in sensors}
    assert ids == {f"xmeas:{name}" for name, _, _ in list_measurements()}
    for sensor in sensors:
        kind, unit = _one(graph, sensor, TK.hasQuantityKind), _one(graph, sensor, TK.hasUnit)
        assert is_allowed(kind, unit), (sensor, kind, unit)
        assert float(_one(graph, sensor, TK.physicalMin)) < float(
            _one(graph, sensor, TK.physicalMax)
        )
        assert float(_one(graph, sensor, TK.samplingPeriod)) in {180.0, 360.0, 900.0}
    for cls in EQUIPMENT:
        (node,) = graph.subjects(RDF.type, cls)
        _one(graph, node, TK.externalId)
    valves = {_one(graph, v, TK.externalId) for v in graph.subjects(RDF.type, TK.Valve)}
    names = {f"xmv:{name}" for name, _, _ in list_manipulated_variables()}
    assert valves == names - {"xmv:reactor_agitator_speed"}
    assert len(set(graph.subjects(RDF.type, TK.Interlock))) == 8


def test_the_binding_reads_the_simulators_outputs_and_moves_its_inputs() -> None:
    graph, binding = tep_plant()
    sim = TepSimulator()
    sim.instantiate({}, seed=0)
    outputs = sim.get_outputs()
    inputs = {v.name for v in sim.info().variables if v.causality == "input"}
    assert binding.plant == "tep"
    assert (URIRef(binding.site), RDF.type, TK.Site) in graph
    for sensor in binding.sensors:
        assert sensor.output in outputs
        assert _one(graph, URIRef(sensor.sensor), TK.externalId) == sensor.output
        assert _one(graph, URIRef(sensor.sensor), TK.monitors) == sensor.equipment
        physical_max = float(_one(graph, URIRef(sensor.sensor), TK.physicalMax))
        assert outputs[sensor.output] * sensor.scale + sensor.offset <= physical_max
    for actuator in binding.actuators:
        assert actuator.setpoint_input in inputs
        envelopes = set(graph.objects(URIRef(actuator.asset), TK.hasEnvelope))
        kinds = {_one(graph, e, TK.forQuantityKind) for e in envelopes}
        assert actuator.setpoint_quantity_kind in kinds
    (reactor_node,) = graph.subjects(RDF.type, TK.Reactor)
    reactor = binding.actuator(str(reactor_node))
    assert reactor is not None and reactor.run_input == "plant:run"
    assert reactor.run_input in inputs
    assert binding.actuator(binding.site) is None
    assert set(binding.kpi_outputs.values()) <= set(outputs)
    modes = {_one(graph, m, TK.externalId) for m in graph.subjects(RDF.type, TK.FailureMode)}
    assert modes == {f"idv:{d.idv}" for d in DISTURBANCES}
    assert modes <= inputs


def test_two_bases_give_disjoint_copies() -> None:
    a, _ = tep_plant()
    b, binding = tep_plant("https://example.org/run/7/")
    assert binding.site.startswith("https://example.org/run/7/")
    tags_a = {str(t) for t in a.objects(None, TK.tag)}
    tags_b = {str(t) for t in b.objects(None, TK.tag)}
    assert len(tags_a) == len(tags_b) and not tags_a & tags_b
    assert not set(a.subjects()) & set(b.subjects())


@pytest.mark.neo4j
def test_the_plant_passes_the_check_seed_applies(empty_store: GraphStore) -> None:
    check = plant_check.check_plant(plant_records(parse_plant("tep")), store=empty_store)
    assert check.conforms, (check.blocking[:3], check.dangling[:3])
    seeding.load(empty_store, "tep", seeding.with_ontology(plant_records(Plant.TEP)))
    second, _ = tep_plant("https://example.org/run/7/")
    check = plant_check.check_plant(rdf_to_records(second), store=empty_store)
    assert check.conforms, (check.blocking[:3], check.dangling[:3])


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWINKG, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def _count(driver: Driver, label: str) -> int:
    records, _, _ = driver.execute_query(
        f"MATCH (n:{label}) WHERE n.uri STARTS WITH $base RETURN count(n) AS n", base=DEFAULT_BASE
    )
    return int(records[0]["n"])


def _totals(driver: Driver) -> tuple[int, int]:
    records, _, _ = driver.execute_query(
        "CALL () { MATCH (n) RETURN count(n) AS n } "
        "CALL () { MATCH ()-[r]->() RETURN count(r) AS r } RETURN n, r"
    )
    return int(records[0]["n"]), int(records[0]["r"])


@pytest.mark.neo4j
def test_seed_plant_tep_twice_is_idempotent(
    neo4j_target: Neo4jTarget, driver: Driver, empty_store: GraphStore
) -> None:
    first = _run("seed", "--plant", "tep", env=neo4j_target.env())  # as a user runs it
    assert first.returncode == 0, first.stderr
    assert "seeded tep" in first.stdout
    assert "classification skipped" not in first.stderr
    assert _count(driver, "Sensor") == 41
    for label in ("Reactor", "Condenser", "Separator", "Stripper", "Compressor", "Interlock"):
        assert _count(driver, label) >= 1, label
    records, _, _ = driver.execute_query(
        "MATCH (s:Sensor)-[:MONITORS]->(e:Asset) WHERE s.uri STARTS WITH $base "
        "RETURN count(DISTINCT s) AS n",
        base=DEFAULT_BASE,
    )
    assert records[0]["n"] == 41
    before = _totals(driver)
    again = _run("seed", "--plant", "tep", "--no-classify", env=neo4j_target.env())
    assert again.returncode == 0, again.stderr
    assert _totals(driver) == before
