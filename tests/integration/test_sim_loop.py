"""The closed loop with the twin on a real Neo4j: the TEP in the loop, the agents deciding as of
simulated time, the scenario's approver, the guard refusing an unsafe actuation inside the loop,
and two runs giving the same KPIs and decisions.

Each run seeds its own copy of the plant under its own run prefix, so the runs of this module
share one database, wiped once: the look-ahead run the first test inspects is the first of the
two runs the determinism test compares (one expensive run fewer)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from neo4j import Driver

from tests.conftest import forget_decisions, wipe
from twinkg.agents.checkpoint import open_checkpointer
from twinkg.agents.planning import Plan, PlanningCase
from twinkg.agents.state import ActionKind, ProposedAction
from twinkg.api.settings import Settings, telemetry_dir
from twinkg.api.sim_plants import build, loop_config
from twinkg.api.sim_port import GraphRunRecorder, TwinSimPort
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.sim.loop import DecisionRecord, run_plant, run_prefix
from twinkg.sim.results import SimResult
from twinkg.sim.scenario import Scenario, parse_scenario

pytestmark = pytest.mark.neo4j

SCENARIO = """
schema = "twinkg-scenario/1"
name = "tep-loop-test"
version = "1.0.0"
[plant]
kind = "tep"
model = "mode1"
[time]
horizon_h = {horizon}
step_s = 36.0
telemetry_s = 72.0
decide_s = 900.0
warmup_h = 2.0
[[fault]]
kind = "disturbance"
target = "idv:6"
at_h = 2.25
magnitude = 1.0
[approver]
behaviour = "approve"
delay_h = 0.25
[run]
seeds = [1]
"""
PRODUCTION = "sp:production_rate"
FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"


def scenario(horizon: float = 3.0) -> Scenario:
    return parse_scenario(SCENARIO.format(horizon=horizon), "<test>")


@dataclass
class World:
    store: GraphStore
    home: Path
    driver: Driver


Run = tuple[SimResult, tuple[DecisionRecord, ...], list[float]]


@pytest.fixture(scope="module")
def world(driver: Driver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One database for the module's runs (each under its own run prefix)."""
    wipe(driver)
    yield World(GraphStore(driver), tmp_path_factory.mktemp("sim-loop"), driver)
    forget_decisions(driver)


@pytest.fixture(scope="module")
def lookahead_run(world: World) -> Run:
    """The twin's run with look-ahead, as the scenario gives it (read-only for the tests)."""
    return twin_run(world, "loop-det-1")


class ScriptedPlanner:
    """A scripted planner: the same setpoint change of the production rate on every case."""

    kind = "rules"

    def __init__(self, target: str, value: float, confidence: float = 0.99) -> None:
        self.target, self.value, self.confidence = target, value, confidence

    def plan(self, case: PlanningCase) -> Plan:
        action = ProposedAction(
            kind=ActionKind.SETPOINT_CHANGE,
            target=self.target,
            confidence=self.confidence,
            proposed_at=case.as_of,
            quantity_kind=FLOW,
            current_setpoint=22.89,
            proposed_setpoint=self.value,
            ramp_s=30_000.0,  # within the envelope's rate of change (0.3 x base per day)
            rationale="scripted",
        )
        return Plan(planner=self.kind, candidates=[], action=action)


def stripper(run_id: str) -> str:
    plant = build(scenario(), seed=1, base=run_prefix(run_id), twin=True)
    return next(a.asset for a in plant.binding.actuators if a.setpoint_input == PRODUCTION)


def twin_run(
    world: World, run_id: str, *, planner: Any = None, lookahead: bool = True, horizon: float = 3.0
) -> Run:
    """A twin run; the production-rate setpoints the TEP was given, in order."""
    sc = scenario(horizon)
    settings = Settings(home=world.home / run_id)
    plant = build(sc, seed=1, base=run_prefix(run_id), twin=True)
    plant.lookahead = lookahead
    tep: Any = plant.master.components["plant"]
    given: list[float] = []
    set_inputs = tep.set_inputs

    def spy(inputs: dict[str, float]) -> None:
        if PRODUCTION in inputs:
            given.append(inputs[PRODUCTION])
        set_inputs(inputs)

    tep.set_inputs = spy
    with open_checkpointer(str(world.home / f"{run_id}.sqlite")) as saver:
        port = TwinSimPort(world.store, TelemetryLog(telemetry_dir(settings)), saver, settings)
        if planner is not None:
            port.planner = lambda policy: planner  # type: ignore[method-assign]
        result, decisions = run_plant(
            plant,
            replace(loop_config(sc, seed=1), lookahead_s=1800.0),
            policy="twinkg",
            seed=1,
            port=port,
            recorder=GraphRunRecorder(world.store),
            run_id=run_id,
        )
    return result, decisions, given


def rows(world: World, query: str, **params: Any) -> list[dict[str, Any]]:
    with world.driver.session() as session:
        return [dict(r) for r in session.run(query, params)]


def test_the_agents_decide_in_the_loop_and_their_decisions_are_informed_by_the_run(
    world: World, lookahead_run: Run
) -> None:
    result, decisions, _ = lookahead_run
    assert result.status == "completed", result.reason
    assert decisions, "the A-feed loss gave the agents nothing to decide"
    assert result.decisions
    linked = rows(
        world,
        "MATCH (d)-[:PROV_WAS_INFORMED_BY]->(r {uri: $run}) RETURN d.uri AS d",
        run=result.run,
    )
    assert {r["d"] for r in linked} == set(result.decisions)
    status = rows(world, "MATCH (r {uri: $run}) RETURN r.runStatus AS s", run=result.run)
    assert status and status[0]["s"] == "completed"
    # every decision is stamped with simulated time (2026-01-01), not the wall clock
    assert all(d.at_s <= 3 * 3600 for d in decisions)
    stamps = rows(
        world,
        "MATCH (d)-[:PROV_WAS_INFORMED_BY]->(r {uri: $run}) "
        "RETURN toString(d.prov_startedAtTime) AS t",
        run=result.run,
    )
    assert all(str(s["t"]).startswith("2026-01-01") for s in stamps)
    kpis = result.kpis
    assert kpis is not None and kpis.unsafe_applied_actions == 0
    assert kpis.decisions == len(decisions)


def test_the_guard_refuses_an_unsafe_actuation_inside_the_loop(world: World) -> None:
    run_id = "loop-unsafe"
    planner = ScriptedPlanner(stripper(run_id), 60.0)  # the envelope ends at 1.1 x 22.9 m3/h
    result, decisions, given = twin_run(world, run_id, planner=planner, lookahead=False)
    assert result.status == "completed", result.reason
    refused = [d for d in decisions if d.outcome == "refused"]
    assert refused, [d.outcome for d in decisions]
    assert result.kpis is not None
    assert result.kpis.refused_actions == len(refused) >= 1
    assert result.kpis.unsafe_applied_actions == 0
    assert not [d for d in decisions if d.outcome == "applied" and d.setpoint == 60.0]
    assert given and not any(v > 30.0 for v in given)  # the simulator never saw it


def test_an_allowed_setpoint_change_reaches_the_simulator(world: World) -> None:
    run_id = "loop-safe"
    # 5 % less, inside the envelope, at a confidence below the plant's trust threshold (0.8)
    planner = ScriptedPlanner(stripper(run_id), 21.75, confidence=0.5)
    result, decisions, given = twin_run(world, run_id, planner=planner, lookahead=False)
    # so it waited for a person: the scenario's simulated approver answered, and said so
    asked = [d for d in decisions if d.outcome == "awaiting_approval"]
    assert asked, [d.outcome for d in decisions]
    comments = rows(  # this run's approvals (the module's other runs share the database)
        world,
        "MATCH (:SimulationRun {uri: $run})<-[:PROV_WAS_INFORMED_BY]-(d)"
        "-[:PROV_WAS_INFORMED_BY]->(a:Approval) "
        "WHERE a.rdfs_comment STARTS WITH 'simulated approver of scenario' "
        "RETURN a.rdfs_comment AS c",
        run=result.run,
    )
    assert comments and "tep-loop-test@1.0.0" in comments[0]["c"]
    answered = {d.decision.rsplit("/", 1)[0] for d in decisions if d.decision.endswith("/2")}
    assert answered, "the simulated approver answered nothing"
    applied = [d for d in decisions if d.outcome == "applied"]
    assert applied and all(d.setpoint == 21.75 for d in applied), decisions
    assert result.kpis is not None and result.kpis.unsafe_applied_actions == 0
    # from the first applied decision on, the setpoint ramps down towards 21.75, never past it
    assert given[-1] < given[0] and min(given) >= 21.75
    assert given == sorted(given, reverse=True)


def test_two_runs_give_the_same_kpis_and_decisions(world: World, lookahead_run: Run) -> None:
    first, d1, _ = lookahead_run
    second, d2, _ = twin_run(world, "loop-det-2")
    assert first.kpis is not None and second.kpis is not None
    assert first.kpis.values() == second.kpis.values()
    assert d1 == d2
