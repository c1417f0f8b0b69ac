"""A water network short of supply, with the twin on a real Neo4j (decision 0054): Net3's main
from the River station bursts at 22 h while the Lake station's pump 10 is idle by its timer
controls. The twin keeps deciding through the shortfall, the graph holds pump 10 as stopped (its
run feedback), the look-ahead starts it by hand, the guard sends the start of a criticality-A
pump to the simulated supervisor, and once approved the simulator runs pump 10 whatever its
controls say. The decision verifies in the chain and replays to the same verdict."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from neo4j import Driver

from tests.conftest import forget_decisions, wipe
from twinkg.agents.checkpoint import open_checkpointer
from twinkg.agents.replay import replay
from twinkg.api.settings import Settings, telemetry_dir
from twinkg.api.sim_plants import build, loop_config
from twinkg.api.sim_port import GraphRunRecorder, TwinSimPort
from twinkg.kg import chain_verify
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.sim.loop import DecisionRecord, run_plant, run_prefix, sim_time
from twinkg.sim.results import SimResult
from twinkg.sim.scenario import parse_scenario

pytestmark = pytest.mark.neo4j

SCENARIO = """
schema = "twinkg-scenario/1"
name = "net3-supply-test"
version = "1.0.0"
[plant]
kind = "epanet"
model = "Net3"
[time]
horizon_h = 25.0
step_s = 900.0
telemetry_s = 900.0
decide_s = 3600.0
warmup_h = 20.0
[[fault]]
kind = "pipe_burst"
target = "329"
at_h = 22.0
magnitude = 0.2
[approver]
behaviour = "approve"
delay_h = 0.25
[run]
seeds = [1]
"""
RUN_ID = "supply-1"


@dataclass
class Outcome:
    store: GraphStore
    log: TelemetryLog
    result: SimResult
    decisions: tuple[DecisionRecord, ...]
    flow10: str  # pump 10's flow sensor
    pump10: str
    driver: Driver


@pytest.fixture(scope="module")
def outcome(driver: Driver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    wipe(driver)
    home: Path = tmp_path_factory.mktemp("sim-supply")
    sc = parse_scenario(SCENARIO, "<test>")
    settings = Settings(home=home)
    plant = build(sc, seed=1, base=run_prefix(RUN_ID), twin=True)
    pump10 = next(a.asset for a in plant.binding.actuators if a.element == "10")
    flow10 = next(b.sensor for b in plant.binding.sensors if b.output == "pump:10:flow")
    store = GraphStore(driver)
    log = TelemetryLog(telemetry_dir(settings))
    with open_checkpointer(str(home / "checkpoints.sqlite")) as saver:
        port = TwinSimPort(store, log, saver, settings)
        result, decisions = run_plant(
            plant,
            loop_config(sc, seed=1),
            policy="twinkg",
            seed=1,
            port=port,
            recorder=GraphRunRecorder(store),
            run_id=RUN_ID,
        )
        yield Outcome(store, log, result, decisions, flow10, pump10, driver)
    forget_decisions(driver)


def test_the_twin_starts_the_idle_pump_by_hand_once_approved(outcome: Outcome) -> None:
    result = outcome.result
    assert result.status == "completed", result.reason
    kpis = result.kpis
    assert kpis is not None and kpis.unplanned_downtime_h > 0  # the burst did cut service
    assert kpis.unsafe_applied_actions == 0
    restarts = [d for d in outcome.decisions if d.kind == "restart"]
    assert restarts, [(d.kind, d.target, d.outcome, d.at_s) for d in outcome.decisions]
    assert {d.target for d in restarts} == {outcome.pump10.removeprefix(run_prefix(RUN_ID))}
    asked = [d for d in restarts if d.outcome == "awaiting_approval"]
    assert len(asked) == 1  # asked for once, not once per short zone
    assert any(d.outcome == "applied" for d in restarts)  # the approval resumed and applied it
    # what the plant measured: pump 10 idle by its timer from 15 h, running from the approval
    # on (its timer would open it only at 25 h)
    flows = outcome.log.window(sensors=[outcome.flow10]).to_pylist()
    by_s = {(row["time"] - sim_time(0.0)).total_seconds(): row["value"] for row in flows}
    approved = min(d.at_s for d in restarts if d.outcome == "applied")
    assert asked[0].at_s < approved < 25 * 3600.0
    before = [v for t, v in by_s.items() if 16 * 3600.0 <= t <= asked[0].at_s]
    after = [v for t, v in by_s.items() if approved < t <= 24.75 * 3600.0]
    assert before and all(v == 0.0 for v in before)
    assert after and all(v > 0.0 for v in after)
    # the graph: the start's effect and the feedback both say it runs
    with outcome.driver.session() as session:
        status = session.run(
            "MATCH (a:Resource {uri: $uri}) RETURN a.operationalStatus AS s", uri=outcome.pump10
        ).single()
    assert status is not None and status["s"] == "running"


def test_the_start_verifies_and_replays(outcome: Outcome) -> None:
    report = chain_verify.verify(outcome.store)
    assert report.ok, report
    applied = [d for d in outcome.decisions if d.kind == "restart" and d.outcome == "applied"]
    decision = applied[0].decision.replace("{run}", RUN_ID)
    replayed = replay(outcome.store, outcome.log, decision)
    assert replayed.same, replayed.differences
