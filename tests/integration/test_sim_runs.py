"""Simulation runs recorded in the graph (kg.sim_runs, decision 0044) against the real Neo4j:
a run with its scenario, KPIs and the decisions it informed, read back, queried through the
SPARQL projection from a KPI to the run, the scenario's hash and the decisions, and the
lineage of such a decision still whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from neo4j import Driver

from tests.conftest import forget_decisions, seed_skab
from twinkg.agents.checkpoint import open_checkpointer
from twinkg.agents.runner import Agents
from twinkg.agents.state import ActionKind, ProposedAction
from twinkg.kg import chain_verify, sim_runs
from twinkg.kg.lineage import lineage
from twinkg.kg.projection import Projection
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import InvalidInputError, NotFoundError, StoreError
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


@pytest.fixture(scope="module")
def world(
    driver: Driver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GraphStore, list[str]]]:
    """The SKAB plant seeded and two real decisions of the agents (a refused setpoint change
    and a work order), made through the guard and recorded with their provenance."""
    store = seed_skab(driver)
    home: Path = tmp_path_factory.mktemp("sim-runs")
    log = TelemetryLog(home / "telemetry")
    decisions = []
    with open_checkpointer(str(home / "checkpoints.sqlite")) as saver:
        agents = Agents(store=store, log=log, checkpointer=saver)
        for kind, target, args in (
            (
                ActionKind.SETPOINT_CHANGE,
                PUMP,
                {"quantity_kind": FLOW, "current_setpoint": 80.0, "proposed_setpoint": 500.0},
            ),
            (ActionKind.WORK_ORDER, MOTOR, {}),
        ):
            action = ProposedAction(
                kind=kind,
                target=target,
                confidence=0.5,
                proposed_at=AS_OF.isoformat(),
                **args,  # type: ignore[arg-type]
            )
            result = agents.run(scope=target, as_of=AS_OF, action=action)
            decisions.append(result.steps[-1].decision)
    yield store, decisions
    forget_decisions(driver)


def test_a_run_is_recorded_read_back_and_finished_once(
    world: tuple[GraphStore, list[str]], driver: Driver
) -> None:
    store, decisions = world
    sim_runs.start_run(store, _start())
    running = sim_runs.get_run(store, RUN)
    assert running is not None
    assert running.summary.status == "running" and running.summary.seed == 3
    assert running.summary.scenario_hash == HASH and running.kpis == {}
    kpis = {
        "availability": (0.93, "1"),
        "unplanned_downtime_h": (1.5, "h"),
        "energy_per_unit": (float("nan"), "kW.h/m3"),
    }
    sim_runs.link_decisions(store, RUN, decisions)
    sim_runs.link_decisions(store, RUN, decisions)  # idempotent
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


def test_projection_leads_from_a_kpi_to_run_scenario_and_decisions(
    world: tuple[GraphStore, list[str]],
) -> None:
    store, decisions = world
    run = RUN.replace("test-run-1", "test-run-sparql")
    sim_runs.start_run(store, _start(run=run, seed=7, content_hash="cd" * 32))
    sim_runs.link_decisions(store, run, decisions[:1])
    sim_runs.finish_run(
        store,
        run,
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
    assert found == [
        {
            "run": run,
            "hash": "cd" * 32,
            "d": decisions[0],
            "status": "failed",
            "partial": "true",
            "value": "0.5E0",
        }
    ] or found == [
        {
            "run": run,
            "hash": "cd" * 32,
            "d": decisions[0],
            "status": "failed",
            "partial": "true",
            "value": "0.5",
        }
    ]


def test_the_lineage_of_a_decision_of_a_run_is_still_whole(
    world: tuple[GraphStore, list[str]],
) -> None:
    store, decisions = world
    sim_runs.start_run(store, _start())
    sim_runs.link_decisions(store, RUN, decisions)
    graph = lineage(store, decisions[0])
    outcome = check_prov(graph)
    assert outcome.conforms, [(str(v.focus_node), str(v.value)) for v in outcome.violations]
    prov = PREFIXES["prov"]
    assert any(
        str(p) == prov + "wasInformedBy" and str(o) == RUN
        for _, p, o in graph.triples((None, None, None))
    )


def test_bad_input_is_refused_and_writes_nothing(
    world: tuple[GraphStore, list[str]],
) -> None:
    store, _ = world
    missing = "https://w3id.org/twinkg/sim/no-such-run/run"
    with pytest.raises(NotFoundError):
        sim_runs.finish_run(store, missing, status="completed", reason=None, partial=False, kpis={})
    with pytest.raises(NotFoundError):
        sim_runs.link_decisions(store, missing, ["https://w3id.org/twinkg/decision/x/1"])
    with pytest.raises(InvalidInputError, match="content hash"):
        sim_runs.start_run(store, _start(run=missing, content_hash="not-a-hash"))
    assert sim_runs.get_run(store, missing) is None
    sim_runs.start_run(store, _start())
    with pytest.raises(InvalidInputError, match="completed"):
        sim_runs.finish_run(store, RUN, status="running", reason=None, partial=False, kpis={})
    with pytest.raises(StoreError):  # a decision that does not exist: nothing linked
        sim_runs.link_decisions(store, RUN, ["https://w3id.org/twinkg/decision/none/1"])


@pytest.mark.xfail(
    strict=True,
    reason="known defect (decision 0044): a decision's chain hash covers every relationship "
    "leaving it, so the prov:wasInformedBy edge link_decisions adds after the decision was "
    "recorded makes `twinkg verify` report it altered; the fix records the edge with the "
    "decision (agents' record step) so link_decisions finds it there and adds nothing",
)
def test_linking_a_run_keeps_the_decision_chain_verifiable(
    world: tuple[GraphStore, list[str]],
) -> None:
    store, decisions = world
    sim_runs.start_run(store, _start())
    sim_runs.link_decisions(store, RUN, decisions)
    assert chain_verify.verify(store).ok
