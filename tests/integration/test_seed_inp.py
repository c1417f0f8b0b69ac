"""EPANET networks seeded into the real Neo4j from wntr's own model (``twinkg seed --inp``).

The graph's counts equal wntr's model, parallel pumps become duty/standby pairs that meet the
asset contract, the binding names only variables the simulator has, sensors and envelopes state
the same units (tank levels in m, vibration in mm/s, pressures in kPa), a vibration rise on a
pump's velocity transmitter ranks its vibration mode first in the diagnosis, and a malformed
``.inp`` is refused with one line naming its line, the graph unchanged.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from neo4j import Driver
from rdflib import RDF, URIRef

from tests.conftest import REPO, Neo4jTarget, wipe
from twinkg.agents.diagnose import rank
from twinkg.agents.state import Symptom
from twinkg.graph_seed import plant_check, seeding
from twinkg.graph_seed.epanet import (
    LEVEL_TOLERANCE_M,
    RHO_G_KPA_PER_M,
    VELOCITY_MODES,
    VIBRATION_LIMIT_MM_S,
    epanet_plant,
    epanet_records,
)
from twinkg.kg import agent_queries
from twinkg.kg.mapping import rdf_to_records
from twinkg.kg.store import GraphStore
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.vocab import QUANTITYKIND, TK, UNIT, RelType
from twinkg.sim.water import LIBRARY_DIR, WaterNetworkSimulator, pump_stations, read_network

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import wntr  # type: ignore[import-untyped]

pytestmark = pytest.mark.neo4j
TWINKG = str(Path(sys.executable).parent / "twinkg")
DEGRADATION_OUTPUTS = ("vibration", "bearing_temperature")


def _twinkg(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TWINKG, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def _count(driver: Driver, label: str, ns: str) -> int:
    records, _, _ = driver.execute_query(
        f"MATCH (n:`{label}`) WHERE n.uri STARTS WITH $ns RETURN count(n) AS n", ns=ns
    )
    return int(records[0]["n"])


def _totals(driver: Driver) -> tuple[int, int]:
    records, _, _ = driver.execute_query(
        "CALL () { MATCH (n) RETURN count(n) AS n } "
        "CALL () { MATCH ()-[r]->() RETURN count(r) AS r } RETURN n, r"
    )
    return int(records[0]["n"]), int(records[0]["r"])


class Seeded:
    """The networks seeded through the library, each once per module (check, then load, as
    ``twinkg seed --inp`` does). Their namespaces are disjoint, so they share the database; a
    test that wipes it does so through :meth:`wipe`, and the next use seeds again."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.store = GraphStore(driver)
        self.done: set[str] = set()
        self.wipe()

    def wipe(self) -> None:
        """Empty the database; the networks are seeded again when next asked for."""
        wipe(self.driver)
        self.done.clear()

    def network(self, network: str) -> GraphStore:
        """The store with ``network`` seeded (the check must pass first)."""
        if network not in self.done:
            records = epanet_records(network)
            check = plant_check.check_plant(records, store=self.store)
            plant_check.require_conformance(network, check)
            seeding.load(self.store, network, seeding.with_ontology(records))
            self.done.add(network)
        return self.store


@pytest.fixture(scope="module")
def seeded(driver: Driver) -> Seeded:
    return Seeded(driver)


@pytest.mark.parametrize("network", ["Net1", "Net3"])
def test_counts_equal_wntrs_model(driver: Driver, seeded: Seeded, network: str) -> None:
    seeded.network(network)
    wn = wntr.network.WaterNetworkModel(str(LIBRARY_DIR / f"{network}.inp"))
    ns = plant_namespace(f"epanet-{network.lower()}")
    assert _count(driver, "CentrifugalPump", ns) == wn.num_pumps
    assert _count(driver, "Tank", ns) == wn.num_tanks
    assert _count(driver, "Reservoir", ns) == wn.num_reservoirs
    assert _count(driver, "Pipe", ns) == wn.num_pipes
    assert _count(driver, "Valve", ns) == wn.num_valves
    assert _count(driver, "PumpingStation", ns) == len(pump_stations(wn))
    # five sensors per pump, one per tank, one per demand zone, two plant-wide
    zones = _count(driver, "DemandZone", ns)
    assert zones >= 1
    assert _count(driver, "Sensor", ns) == 5 * wn.num_pumps + wn.num_tanks + zones + 2
    # every element carries its EPANET id
    records_, _, _ = driver.execute_query(
        "MATCH (p:CentrifugalPump) WHERE p.uri STARTS WITH $ns RETURN collect(p.externalId) AS ids",
        ns=ns,
    )
    assert sorted(records_[0]["ids"]) == sorted(wn.pump_name_list)


def test_the_binding_names_only_variables_the_simulator_has() -> None:
    graph, binding = epanet_plant("Net3")
    sim = WaterNetworkSimulator("Net3")
    names = {v.name for v in sim.info().variables}
    for sensor in binding.sensors:
        element_kind, _, quantity = sensor.output.rpartition(":")
        assert sensor.output in names or (
            element_kind.startswith("pump:") and quantity in DEGRADATION_OUTPUTS
        ), sensor.output
        assert str(graph.value(URIRef(sensor.sensor), TK.externalId)) == sensor.output
    for actuator in binding.actuators:
        for name in (actuator.run_input, actuator.setpoint_input):
            assert name is None or name in names, name
    external = [str(o) for o in graph.objects(None, TK.externalId)]
    sensors = {s.sensor for s in binding.sensors}
    sensor_ids = [str(graph.value(URIRef(s), TK.externalId)) for s in sensors]
    assert len(set(sensor_ids)) == len(sensor_ids)  # a sensor's column is unambiguous
    assert len(external) >= len(sensors) + read_network("Net3").num_pumps


def test_sensors_and_envelopes_state_one_unit_per_quantity() -> None:
    graph, binding = epanet_plant("Net3")
    wn = read_network("Net3")
    by_output = {s.output: s for s in binding.sensors}
    for t in wn.tank_name_list:
        level = by_output[f"tank:{t}:level"]  # EPANET's level in m, read as it is
        assert (level.quantity_kind, level.unit) == (str(QUANTITYKIND.Length), str(UNIT.M))
        assert (level.scale, level.offset) == (1.0, 0.0)
        tank = wn.get_node(t)
        envelope = graph.value(URIRef(level.equipment), TK.hasEnvelope)
        assert graph.value(envelope, TK.forQuantityKind) == QUANTITYKIND.Length
        assert graph.value(envelope, TK.hasUnit) == UNIT.M
        low, high = (float(str(graph.value(envelope, p))) for p in (TK.minValue, TK.maxValue))
        assert low == pytest.approx(tank.min_level - LEVEL_TOLERANCE_M)
        assert high == pytest.approx(tank.max_level + LEVEL_TOLERANCE_M)
    for p in wn.pump_name_list:
        vibration = by_output[f"pump:{p}:vibration"]  # the degradation model's mm/s RMS
        assert vibration.quantity_kind == str(QUANTITYKIND.Velocity)
        assert vibration.unit == str(UNIT["MilliM-PER-SEC"])
        assert (vibration.scale, vibration.offset) == (1.0, 0.0)
        head = by_output[f"pump:{p}:head"]
        assert (head.unit, head.scale) == (str(UNIT.KiloPA), RHO_G_KPA_PER_M)
    # every envelope states the unit of the sensors on its owner that measure its quantity kind
    checked = 0
    for envelope in graph.subjects(RDF.type, TK.OperatingEnvelope):
        owner, kind = graph.value(envelope, TK.appliesTo), graph.value(envelope, TK.forQuantityKind)
        units = {
            s.unit
            for s in binding.sensors
            if s.equipment == str(owner) and s.quantity_kind == str(kind)
        }
        assert units == {str(graph.value(envelope, TK.hasUnit))}, envelope
        checked += 1
    assert checked >= wn.num_tanks + 3 * wn.num_pumps
    vib = next(
        e for e in graph.subjects(RDF.type, TK.OperatingEnvelope) if str(e).endswith("vibration")
    )
    assert float(str(graph.value(vib, TK.maxValue))) == VIBRATION_LIMIT_MM_S


def test_a_vibration_rise_ranks_the_pumps_vibration_mode(driver: Driver, seeded: Seeded) -> None:
    store = seeded.network("Net1")
    ns = plant_namespace("epanet-net1")
    pump = ns + "pump-9"
    modes = store.read(agent_queries.ASSET_PROFILE, asset=pump)
    sensors = store.read(agent_queries.ASSET_SENSORS, asset=pump, as_of="2026-01-01T00:00:00Z")
    kinds = {row["sensor"]: row["quantity_kind"] for row in sensors}
    assert str(QUANTITYKIND.Velocity) in kinds.values()

    def moved(sensor: str, kind: str) -> Symptom:  # the vibration rises 10 σ, nothing else moves
        shift = 10.0 if kind == str(QUANTITYKIND.Velocity) else 0.0
        return Symptom(
            sensor=sensor,
            quantity_kind=kind,
            baseline_mean=1.0,
            baseline_std=0.1,
            mean=1.0 + shift * 0.1,
            shift=shift,
            spread=1.0,
            trust=1.0,
        )

    found = [moved(sensor, kind) for sensor, kind in kinds.items()]
    hypotheses = rank(modes, found, [], threshold=2.0)
    vibration, cavitation = (ns + f"failure-mode-{VELOCITY_MODES[m]}" for m in VELOCITY_MODES)
    assert hypotheses[0].mode == vibration and not hypotheses[0].tied_with
    assert hypotheses[0].explained == [str(QUANTITYKIND.Velocity)]
    assert hypotheses[0].score == pytest.approx(1.0)
    ranked = {h.mode: h for h in hypotheses}
    assert str(QUANTITYKIND.Velocity) in ranked[cavitation].explained
    assert ranked[cavitation].score < hypotheses[0].score  # flow and pressure did not move
    # the plant's modes are the ISO modes as seen in velocity: they carry their mitigations
    rows, _, _ = driver.execute_query(
        f"MATCH (m {{uri: $m}})-[:{RelType.MANIFESTS_AS}]->(iso) RETURN iso.uri AS iso, "
        "m.mitigatedBy AS mine, iso.mitigatedBy AS theirs",
        m=vibration,
    )
    assert rows[0]["iso"] == str(TK.Vibration)
    assert sorted(rows[0]["mine"]) == sorted(rows[0]["theirs"])


def _with_parallel_pump(tmp_path: Path) -> Path:
    """Net1 with a second pump in parallel with pump 9, closed and under no control."""
    lines = (LIBRARY_DIR / "Net1.inp").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:2] == ["9", "9"])
    lines.insert(at + 1, " 9B              \t9               \t10              \tHEAD 1\t;")
    status = next(i for i, line in enumerate(lines) if line.strip() == "[STATUS]")
    lines.insert(status + 2, " 9B              \tClosed")
    path = tmp_path / "twin-pumps.inp"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_parallel_pumps_become_a_duty_standby_pair(
    driver: Driver, seeded: Seeded, tmp_path: Path
) -> None:
    path = _with_parallel_pump(tmp_path)
    graph, binding = epanet_plant(path)
    duty, standby = (
        URIRef(plant_namespace("epanet-twin-pumps") + f"pump-{p}") for p in ("9", "9B")
    )
    assert str(graph.value(duty, TK.dutyRole)) == "duty"
    assert str(graph.value(standby, TK.dutyRole)) == "standby"
    assert graph.value(standby, TK.standbyFor) == duty
    assert graph.value(duty, TK.partOf) == graph.value(standby, TK.partOf)  # one station
    actuator = binding.actuator(str(standby))
    assert actuator is not None and actuator.standby_for == str(duty)
    # the standby starts held off, and starts when the loop sets its run input
    sim = WaterNetworkSimulator(path)
    sim.instantiate({"step_s": 3600.0}, 0)
    assert sim.get_outputs()["pump:9B:running"] == 0.0
    sim.set_inputs({"pump:9:status": 0.0, "pump:9B:status": 1.0})
    sim.do_step(0.0, 3600.0)
    out = sim.get_outputs()
    assert out["pump:9B:running"] == 1.0 and out["pump:9:running"] == 0.0
    # and the graph meets the contracts in the real store
    seeded.wipe()
    store = GraphStore(driver)
    records = rdf_to_records(graph)
    plant_check.require_conformance(str(path), plant_check.check_plant(records, store=store))
    seeding.load(store, str(path), seeding.with_ontology(records))
    assert _count(driver, "CentrifugalPump", plant_namespace("epanet-twin-pumps")) == 2


def test_cli_seeds_a_network_and_refuses_a_malformed_one(
    neo4j_target: Neo4jTarget, driver: Driver, seeded: Seeded, tmp_path: Path
) -> None:
    seeded.wipe()
    env = neo4j_target.env()
    done = _twinkg("seed", "--inp", "Net1", env=env)
    assert done.returncode == 0, done.stderr
    assert "seeded Net1" in done.stdout
    before = _totals(driver)
    lines = (LIBRARY_DIR / "Net1.inp").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["12"] and "13" in line)
    lines[at] = " 12 12 99 5280 10 100 0 Open ;"  # pipe 12 to an undefined node
    bad = tmp_path / "bad.inp"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    refused = _twinkg("seed", "--inp", str(bad), "--no-classify", env=env)
    assert refused.returncode != 0
    message = refused.stderr.strip()
    assert "\n" not in message, message
    assert f"{bad}:{at + 1}:" in message and "undefined node" in message
    assert "model_file_invalid" in message
    assert _totals(driver) == before
