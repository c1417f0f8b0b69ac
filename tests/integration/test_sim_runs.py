"""Simulation runs recorded in the graph (kg.sim_runs, decision 0044) against the real Neo4j:
a run with its scenario, KPIs and the decisions made in it, read back, queried through the
SPARQL projection from a KPI to the run, the scenario's hash and the decisions; the decisions'
hash chain still verifies, their lineage shows the run and their replay reproduces them; a
decision recorded outside the run is refused, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from neo4j import Driver

from tests.conftest import forget_decisions, seed_skab
from twinkg.agents.checkpoint import open_checkpointer
from twinkg.agents.replay import replay
from twinkg.agents.runner import Agents
from twinkg.agents.state import ActionKind, ProposedAction
from twinkg.kg import chain_verify, sim_runs
from twinkg.kg.lineage import lineage
from twinkg.kg.projection import Projection
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import InvalidInputError, NotFoundError
from twinkg.ontology.namespaces import PREFIXES
from twinkg.ontology.vocab import ONTOLOGY_VERSION, TK
from twinkg.reasoner.prov_check import check_prov

pytestmark = pytest.mark.neo4j

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
PUMP, MOTOR = PLANT + "pump", PLANT + "motor"
FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"
AS_OF = datetime(2020, 2, 8, 19, 6, 30, tzinfo=UTC)
HASH = "ab" * 32
RUN = "https://w3id.org/twinkg/sim/test-run-1/run"
SPARQL_RUN = "https://w3id.org/twinkg/sim/test-run-sparql/run"
PREFIX = f"PREFIX tk: <{TK}> PREFIX prov: <{PREFIXES['prov']}> "


def _start(run: str = RUN, seed: int = 3, content_hash: str = HASH) -> sim_runs.SimRunStart:
    return sim_runs.SimRunStart(
        run=run,
        scenario="net1-short",
        scenario_version="1.0.0",
        scenario_hash=content_hash,
        scenario_file="scenarios/net1-short.toml",
        seed=seed,
        policy="twinkg",
        simulator="wntr",
        simulator_version="1.5.0",
        twinkg_version="0.9.0",
        ontology_version=ONTOLOGY_VERSION,
        shapes_version="1.2.0",
        horizon_s=21600.0,
        step_s=900.0,
        started_at="2026-12-05T04:00:00+00:00",
    )


@dataclass(frozen=True)
class World:
    """The seeded store, the telemetry log, and real decisions of the agents: two made in
    ``RUN``, one in ``SPARQL_RUN``, and one made outside any simulation run."""

    store: GraphStore
    log: TelemetryLog
    in_run: list[str]
    in_sparql_run: str
    outside: str


@pytest.fixture(scope="module")
def world(driver: Driver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The SKAB plant seeded, the two runs started, and the agents' decisions (refused setpoint
    changes and work orders) made through the guard and recorded with their provenance; those
    made in a run with ``informed_by`` the run, so their own records say so."""
    store = seed_skab(driver)
    sim_runs.start_run(store, _start())
    sim_runs.start_run(store, _start(run=SPARQL_RUN, seed=7, content_hash="cd" * 32))
    home: Path = tmp_path_factory.mktemp("sim-runs")
    log = TelemetryLog(home / "telemetry")
    setpoint: tuple[ActionKind, str, dict[str, Any]] = (
        ActionKind.SETPOINT_CHANGE,
        PUMP,
        {"quantity_kind": FLOW, "current_setpoint": 80.0, "proposed_setpoint": 500.0},
    )
    work_order: tuple[ActionKind, str, dict[str, Any]] = (ActionKind.WORK_ORDER, MOTOR, {})
    decisions = []
    with open_checkpointer(str(home / "checkpoints.sqlite")) as saver:
        agents = Agents(store=store, log=log, checkpointer=saver)
        for (kind, target, args), run in (
            (setpoint, RUN),
            (work_order, RUN),
            (work_order, SPARQL_RUN),
            (setpoint, None),
        ):
            action = ProposedAction(
                kind=kind,
                target=target,
                confidence=0.5,
                proposed_at=AS_OF.isoformat(),
                **args,
            )
            result = agents.run(scope=target, as_of=AS_OF, action=action, informed_by=run)
            decisions.append(result.steps[-1].decision)
    yield World(store, log, decisions[:2], decisions[2], decisions[3])
    forget_decisions(driver)


def _relationships(driver: Driver) -> int:
    rows, _, _ = driver.execute_query("MATCH ()-[r]->() RETURN count(r) AS n")
    return int(rows[0]["n"])


def test_a_run_is_recorded_read_back_and_finished_once(world: World, driver: Driver) -> None:
    store, decisions = world.store, world.in_run
    sim_runs.start_run(store, _start())  # again: idempotent
    running = sim_runs.get_run(store, RUN)
    assert running is not None
    assert running.summary.status == "running" and running.summary.seed == 3
    assert running.summary.scenario_hash == HASH and running.kpis == {}
    # the decisions made in the run are its own from the start, before any check
    assert running.decisions == tuple(sorted(decisions))
    kpis = {
        "availability": (0.93, "1"),
        "unplanned_downtime_h": (1.5, "h"),
        "energy_per_unit": (float("nan"), "kW.h/m3"),
    }
    before = _relationships(driver)
    assert sim_runs.link_decisions(store, RUN, [*decisions, decisions[0]]) == tuple(decisions)
    assert _relationships(driver) == before  # a check: nothing is written
    for _ in range(2):  # finishing twice does not duplicate a KPI
        sim_runs.finish_run(store, RUN, status="completed", reason=None, partial=False, kpis=kpis)
    record = sim_runs.get_run(store, RUN)
    assert record is not None
    assert record.summary.status == "completed" and record.summary.partial is False
    assert record.kpis == {"availability": (0.93, "1"), "unplanned_downtime_h": (1.5, "h")}
    assert record.decisions == tuple(sorted(decisions))
    assert record.ontology_version == ONTOLOGY_VERSION and record.simulator == "wntr"
    assert record.scenario_file == "scenarios/net1-short.toml"
    counts, _, _ = driver.execute_query(
        "MATCH (k:KPIResult)-[o:KPI_OF]->(r:SimulationRun:prov_Activity {uri: $run}) "
        "OPTIONAL MATCH (d:Decision)-[i:PROV_WAS_INFORMED_BY]->(r) "
        "RETURN count(DISTINCT k) AS kpis, count(DISTINCT o) AS links, "
        "count(DISTINCT i) AS informed",
        run=RUN,
    )
    assert counts[0].data() == {"kpis": 2, "links": 2, "informed": 2}
    # a second run of the same scenario content shares the scenario node
    other = RUN.replace("test-run-1", "test-run-2")
    sim_runs.start_run(store, _start(run=other, seed=4))
    scen, _, _ = driver.execute_query(
        "MATCH (r:SimulationRun)-[:SCENARIO]->(s:Scenario:prov_Entity) WHERE r.uri IN $runs "
        "RETURN count(DISTINCT s) AS n",
        runs=[RUN, other],
    )
    assert scen[0]["n"] == 1
    listed = [r.run for r in sim_runs.list_runs(store, limit=10)]
    assert RUN in listed and other in listed


def test_projection_leads_from_a_kpi_to_run_scenario_and_decisions(world: World) -> None:
    store, decision = world.store, world.in_sparql_run
    assert sim_runs.link_decisions(store, SPARQL_RUN, [decision]) == (decision,)
    sim_runs.finish_run(
        store,
        SPARQL_RUN,
        status="failed",
        reason="simulator hung",
        partial=True,
        kpis={"availability": (0.5, "1")},
    )
    projection = Projection(store)
    try:
        projection.rebuild()
        projection.catch_up()
        query = (
            PREFIX + "SELECT ?run ?hash ?d ?status ?partial ?value WHERE { "
            "?kpi tk:kpiName 'availability' ; tk:kpiValue ?value ; tk:kpiOf ?run ; "
            "prov:wasGeneratedBy ?run . ?run a tk:SimulationRun ; tk:runStatus ?status ; "
            "tk:partial ?partial ; tk:simulationSeed 7 ; tk:scenario ?s . "
            "?s a tk:Scenario ; tk:contentHash ?hash . ?d prov:wasInformedBy ?run }"
        )
        rows = json.loads(projection.query(query, row_cap=100).body)["results"]["bindings"]
    finally:
        projection.close()
    found = [{k: v["value"] for k, v in row.items()} for row in rows]
    expected = {
        "run": SPARQL_RUN,
        "hash": "cd" * 32,
        "d": decision,
        "status": "failed",
        "partial": "true",
    }
    assert len(found) == 1, found
    assert {k: v for k, v in found[0].items() if k != "value"} == expected
    assert float(found[0]["value"]) == 0.5


def test_the_decisions_of_a_run_verify_show_the_run_and_replay(world: World) -> None:
    """The fix of decision 0044's defect: the link is in each decision's own record, so the
    hash chain still verifies, the lineage shows the run, and a replay reproduces it."""
    store = world.store
    sim_runs.link_decisions(store, RUN, world.in_run)
    sim_runs.link_decisions(store, SPARQL_RUN, [world.in_sparql_run])
    report = chain_verify.verify(store)
    assert report.ok, report
    prov = PREFIXES["prov"]
    for decision in world.in_run:
        graph = lineage(store, decision)
        outcome = check_prov(graph)
        assert outcome.conforms, [(str(v.focus_node), str(v.value)) for v in outcome.violations]
        informed = {
            str(o)
            for s, p, o in graph.triples((None, None, None))
            if str(s) == decision and str(p) == prov + "wasInformedBy"
        }
        assert informed == {RUN}
        replayed = replay(store, world.log, decision)
        assert replayed.same, replayed.differences
    outside = lineage(store, world.outside)
    assert not any(
        str(p) == prov + "wasInformedBy" and str(s) == world.outside
        for s, p, _ in outside.triples((None, None, None))
    )


def test_a_decision_recorded_outside_the_run_is_refused_and_nothing_written(
    world: World, driver: Driver
) -> None:
    store = world.store
    before = _relationships(driver)
    for stranger in (world.outside, world.in_sparql_run):  # no run; another run
        with pytest.raises(InvalidInputError, match="not recorded in simulation run") as raised:
            sim_runs.link_decisions(store, RUN, [*world.in_run, stranger])
        assert not isinstance(raised.value, NotFoundError)
        assert stranger in str(raised.value) and "hash chain" in str(raised.value)
    assert _relationships(driver) == before
    record = sim_runs.get_run(store, RUN)
    assert record is not None and record.decisions == tuple(sorted(world.in_run))
    assert chain_verify.verify(store).ok


def test_bad_input_is_refused_and_writes_nothing(world: World, driver: Driver) -> None:
    store = world.store
    missing = "https://w3id.org/twinkg/sim/no-such-run/run"
    before = _relationships(driver)
    with pytest.raises(NotFoundError):
        sim_runs.finish_run(store, missing, status="completed", reason=None, partial=False, kpis={})
    with pytest.raises(NotFoundError, match="simulation run"):
        sim_runs.link_decisions(store, missing, world.in_run)
    with pytest.raises(InvalidInputError, match="content hash"):
        sim_runs.start_run(store, _start(run=missing, content_hash="not-a-hash"))
    assert sim_runs.get_run(store, missing) is None
    with pytest.raises(InvalidInputError, match="completed"):
        sim_runs.finish_run(store, RUN, status="running", reason=None, partial=False, kpis={})
    with pytest.raises(NotFoundError, match="no decision"):  # a decision that does not exist
        sim_runs.link_decisions(store, RUN, ["https://w3id.org/twinkg/decision/none/1"])
    assert sim_runs.link_decisions(store, RUN, []) == ()
    assert _relationships(driver) == before
