"""The closed loop on toy simulators (no Neo4j): baselines, the actuator mapping, the twin's port
contract with a scripted port, determinism, and a simulator that raises or hangs."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rdflib import Graph

from twinkg.agents.planning import Plan, PlanningCase, RulePlanner
from twinkg.agents.state import ActionKind, Finding, Hypothesis, ProposedAction, Trigger
from twinkg.kg.sim_runs import SimRunStart
from twinkg.ontology.errors import ConfigError, InvalidInputError
from twinkg.sim.adapter import ModelInfo, Variable
from twinkg.sim.binding import Actuator, PlantBinding, SensorBinding
from twinkg.sim.lookahead import LookaheadPlanner, Outcome
from twinkg.sim.loop import (
    LoopConfig,
    LoopState,
    PortDecision,
    RunPlant,
    run_plant,
    sim_time,
    telemetry_points,
    try_on_fork,
)
from twinkg.sim.master import Connection, CoSimulation
from twinkg.sim.policies import Command
from twinkg.sim.scenario import FaultEvent

SITE = "https://example.org/toy/site"
P1, P2, TANK = (f"https://example.org/toy/{n}" for n in ("p1", "p2", "tank"))
UNIT = "http://qudt.org/vocab/unit/M"


class ToyPlant:
    """Two pumps fill a tank that a demand drains; ``plant:demand_served`` is what it gives."""

    def __init__(self, *, raise_at: float | None = None, hang_at: float | None = None) -> None:
        self.raise_at, self.hang_at = raise_at, hang_at
        self.inputs = {"pump:1:status": 1.0, "pump:2:status": 0.0, "plant:flow_sp": 0.02}
        self.inputs.update({"pump:1:head_factor": 1.0, "pump:2:head_factor": 1.0})
        self.level = 2.0

    def info(self) -> ModelInfo:
        names = ("pump:1:status", "pump:2:status", "pump:1:head_factor", "pump:2:head_factor")
        variables = [Variable(n, "input") for n in names]
        variables.append(Variable("plant:flow_sp", "input", "m3/s", minimum=0.0, maximum=0.05))
        outs = (
            "tank:t:level",
            "pump:1:flow",
            "pump:2:flow",
            "plant:demand_required",
            "pump:1:running",
            "pump:2:running",
        )
        variables += [Variable(n, "output") for n in (*outs, "plant:demand_served", "plant:power")]
        return ModelInfo("toy-plant", "1.0", tuple(variables))

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        del parameters, seed

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        self.inputs.update(inputs)

    def _flow(self, i: int) -> float:
        on = self.inputs[f"pump:{i}:status"] >= 0.5
        return self.inputs["plant:flow_sp"] * self.inputs[f"pump:{i}:head_factor"] if on else 0.0

    def do_step(self, t: float, dt: float) -> None:
        if self.raise_at is not None and t >= self.raise_at:
            raise RuntimeError("toy solver diverged")
        if self.hang_at is not None and t >= self.hang_at:
            time.sleep(5)
        inflow = self._flow(1) + self._flow(2)
        self.level = max(0.0, min(5.0, self.level + (inflow - 0.015) * dt / 100.0))

    def get_outputs(self) -> dict[str, float]:
        served = 0.015 if self.level > 0 else 0.0
        return {
            "tank:t:level": self.level,
            "pump:1:flow": self._flow(1),
            "pump:2:flow": self._flow(2),
            "plant:demand_required": 0.015,
            "plant:demand_served": served,
            "plant:power": 10.0 * (self._flow(1) + self._flow(2)) / 0.02,
            "pump:1:running": float(self.inputs["pump:1:status"] >= 0.5),
            "pump:2:running": float(self.inputs["pump:2:status"] >= 0.5),
        }

    def terminate(self) -> None:
        pass

    def snapshot(self) -> object:
        return (dict(self.inputs), self.level)

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, tuple)
        inputs, level = copy.deepcopy(snapshot)
        self.inputs, self.level = dict(inputs), float(level)


class ToyWear:
    """Pump 1 wears while it runs and fails at wear 1; ``repair`` restores it."""

    def __init__(self, rate_per_h: float, *, hazard: bool = False) -> None:
        self.rate = rate_per_h
        self.hazard = hazard  # whether it states a failure hazard (1/h) that grows with wear
        self.wear = {"1": 0.0, "2": 0.0}
        self.running = {"1": 1.0, "2": 0.0}
        self.repair = {"1": 0.0, "2": 0.0}

    def info(self) -> ModelInfo:
        v = []
        for p in ("1", "2"):
            v += [Variable(f"pump:{p}:{q}", "input") for q in ("running", "repair")]
            v += [Variable(f"pump:{p}:{q}", "output") for q in ("wear", "failed", "head_factor")]
            v.append(Variable(f"pump:{p}:vibration", "output", "mm/s"))
            if self.hazard:
                v.append(Variable(f"pump:{p}:hazard", "output", "1/h"))
        return ModelInfo("toy-wear", "1.0", tuple(v))

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        del parameters, seed

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        for name, value in inputs.items():
            _, p, q = name.split(":")
            getattr(self, q)[p] = value

    def do_step(self, t: float, dt: float) -> None:
        del t
        for p in self.wear:
            if self.repair[p] >= 0.5:
                self.wear[p] = 0.0
            elif self.running[p] >= 0.5 and p == "1":
                self.wear[p] = min(1.0, self.wear[p] + self.rate * dt / 3600.0)

    def get_outputs(self) -> dict[str, float]:
        out = {}
        for p, w in self.wear.items():
            out[f"pump:{p}:wear"] = w
            out[f"pump:{p}:failed"] = 1.0 if w >= 1.0 else 0.0
            out[f"pump:{p}:head_factor"] = 1.0 - 0.3 * w
            out[f"pump:{p}:vibration"] = 2.0 + 8.0 * w
            if self.hazard:
                out[f"pump:{p}:hazard"] = 0.001 * math.exp(6.0 * w)
        return out

    def terminate(self) -> None:
        pass

    def snapshot(self) -> object:
        return copy.deepcopy((self.wear, self.running, self.repair))

    def restore(self, snapshot: object) -> None:
        self.wear, self.running, self.repair = copy.deepcopy(snapshot)  # type: ignore[misc]


FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"


def binding() -> PlantBinding:
    flow = FLOW
    sensors = (
        SensorBinding(f"{TANK}/level", "tank:t:level", UNIT, "qk:Length", TANK),
        SensorBinding(f"{P1}/vib", "pump:1:vibration", "u:MM-PER-SEC", "qk:Velocity", P1),
        SensorBinding(f"{P1}/flow", "pump:1:flow", "u:M3-PER-SEC", flow, P1),
    )
    actuators = (
        Actuator(
            P1,
            "Pump",
            "1",
            run_input="pump:1:status",
            repairable="1",
            setpoint_input="plant:flow_sp",
            setpoint_quantity_kind=flow,
        ),
        Actuator(P2, "Pump", "2", run_input="pump:2:status", repairable="2", standby_for=P1),
    )
    return PlantBinding("epanet:toy", SITE, sensors, actuators)


def toy_plant(
    *,
    rate: float = 0.05,
    plant: ToyPlant | None = None,
    timeout: float | None = None,
    hazard: bool = False,
) -> RunPlant:
    wiring = [
        Connection("wear", f"pump:{p}:head_factor", "plant", f"pump:{p}:head_factor")
        for p in ("1", "2")
    ] + [Connection("plant", f"pump:{p}:running", "wear", f"pump:{p}:running") for p in "12"]
    master = CoSimulation(
        {"plant": plant or ToyPlant(), "wear": ToyWear(rate, hazard=hazard)},
        wiring,
        dt=900.0,
        step_timeout_s=timeout,
    )
    return RunPlant(
        master=master,
        binding=binding(),
        simulator="toy-plant",
        simulator_version="1.0",
        degradation="wear",
        alarm_limits={"pump:1:vibration": (None, 7.0)},
        initial_inputs={"pump:1:status": 1.0, "pump:2:status": 0.0, "plant:flow_sp": 0.02},
    )


def config(**kw: Any) -> LoopConfig:
    base: dict[str, Any] = {
        "scenario": "toy",
        "scenario_version": "1.0.0",
        "scenario_hash": "abc",
        "horizon_s": 40 * 3600.0,
        "step_s": 900.0,
        "telemetry_s": 900.0,
        "decide_s": 3600.0,
        "warmup_s": 4 * 3600.0,
        "crews": 1,
        "repair_s": 4 * 3600.0,
        "cost_per_repair": 1000.0,
        "cost_per_crew_hour": 50.0,
        "preventive_interval_s": 10 * 3600.0,
    }
    base.update(kw)
    return LoopConfig(**base)


class MemoryRecorder:
    def __init__(self) -> None:
        self.started: list[SimRunStart] = []
        self.linked: list[str] = []
        self.finished: list[tuple[str, str | None, bool, dict[str, tuple[float, str]]]] = []

    def start_run(self, start: SimRunStart) -> None:
        self.started.append(start)

    def link_decisions(self, run: str, decisions: Sequence[str]) -> None:
        self.linked.extend(decisions)

    def finish_run(
        self,
        run: str,
        status: str,
        reason: str | None,
        partial: bool,
        kpis: Mapping[str, tuple[float, str]],
    ) -> None:
        self.finished.append((status, reason, partial, dict(kpis)))


def run(
    policy: str,
    *,
    plant: RunPlant | None = None,
    cfg: LoopConfig | None = None,
    port: Any = None,
    recorder: Any = None,
) -> tuple[Any, Any, Any]:
    rec = recorder or MemoryRecorder()
    result, decisions = run_plant(
        plant or toy_plant(),
        cfg or config(),
        policy=policy,
        seed=7,
        port=port,
        recorder=rec,
        run_id="toy-run",
    )
    return result, decisions, rec.finished[-1][3]


def test_run_to_failure_fails_then_repairs_correctively() -> None:
    result, _, kpis = run("run-to-failure")
    assert result.status == "completed" and not result.partial
    # wear 0.05/h → pump 1 fails after 20 h; repaired in 4 h by the plant's own response
    assert kpis["unplanned_downtime_h"][0] == pytest.approx(4.0, abs=0.5)
    assert kpis["maintenance_actions"][0] == 1
    assert kpis["maintenance_cost"][0] == pytest.approx(1000.0 + 50.0 * 4)


def test_preventive_repairs_before_failure() -> None:
    result, _, kpis = run("preventive")
    assert result.status == "completed"
    assert kpis["unplanned_downtime_h"][0] == 0.0
    assert kpis["maintenance_actions"][0] >= 3  # two pumps, every 10 h, staggered


def test_reactive_stops_and_repairs_on_the_alarm() -> None:
    plant = toy_plant()
    _, _, kpis = run("reactive", plant=plant)
    inputs = plant.master.components["plant"].inputs  # type: ignore[attr-defined]
    assert inputs["pump:1:status"] == 1.0  # back in service after the repair
    # vibration crosses 7 mm/s at wear 0.625 (12.5 h): stop and repair before failure
    assert kpis["unplanned_downtime_h"][0] == 0.0
    assert kpis["maintenance_actions"][0] >= 1


def test_the_same_seed_gives_the_same_kpis() -> None:
    assert run("reactive")[2] == run("reactive")[2]


def test_a_raising_simulator_fails_the_run_with_partial_kpis() -> None:
    recorder = MemoryRecorder()
    result, _, kpis = run(
        "run-to-failure", plant=toy_plant(plant=ToyPlant(raise_at=10 * 3600.0)), recorder=recorder
    )
    assert result.status == "failed" and result.partial
    assert result.reason is not None and "toy solver diverged" in result.reason
    assert result.simulated_s == pytest.approx(10 * 3600.0)
    assert recorder.finished[-1][:3] == ("failed", result.reason, True)
    assert kpis["availability"][0] == pytest.approx(1.0)


def test_a_hanging_simulator_fails_the_run() -> None:
    plant = toy_plant(plant=ToyPlant(hang_at=2 * 3600.0), timeout=0.5)
    result, _, _ = run("run-to-failure", plant=plant)
    assert result.status == "failed" and result.partial
    assert result.reason is not None and "did not return" in result.reason


def test_telemetry_points_follow_the_contract_and_drop_nan() -> None:
    points = telemetry_points(binding(), {"tank:t:level": 2.5, "pump:1:vibration": math.nan}, 60.0)
    assert points == [
        {
            "sensor": f"{TANK}/level",
            "value": 2.5,
            "unit": UNIT,
            "time": "2026-01-01T00:01:00+00:00",
            "quality": "good",
        }
    ]


def test_twin_policy_without_a_port_is_refused() -> None:
    with pytest.raises(ConfigError):
        run("twinkg")
    with pytest.raises(InvalidInputError):
        run("best-guess")


class ScriptedPort:
    """A twin port that answers with scripted decisions (the loop's side of the contract)."""

    def __init__(self, script: list[PortDecision], on_answer: list[PortDecision]) -> None:
        self.script, self.on_answer = script, on_answer
        self.ingested: list[tuple[int, int | None, datetime]] = []
        self.answers: list[tuple[str, bool, datetime, str]] = []
        self.seeded: list[str] = []
        self.feedback: list[dict[str, bool]] = []

    def seed(self, run_id: str, graph: Any) -> None:
        self.seeded.append(run_id)

    def planner(self, policy: str) -> Any:
        return object()

    def ingest(
        self,
        points: Sequence[Mapping[str, Any]],
        *,
        received_at: datetime,
        fit_rows: int | None,
        source: str,
    ) -> int:
        self.ingested.append((len(points), fit_rows, received_at))
        return 0

    def decide(
        self,
        *,
        run_id: str,
        scope: str,
        as_of: datetime,
        planner: Any,
        max_runs: int,
        trigger: Trigger = Trigger.FINDINGS,
    ) -> list[PortDecision]:
        assert scope == SITE
        due = [d for d in self.script if d.at == as_of.isoformat()]
        return due

    def answer(
        self, decision: str, *, approve: bool, at: datetime, comment: str
    ) -> list[PortDecision]:
        self.answers.append((decision, approve, at, comment))
        return list(self.on_answer)

    def run_feedback(self, running: Mapping[str, bool]) -> int:
        self.feedback.append(dict(running))
        return len(running)

    def recheck(self, decision: PortDecision) -> int:
        return 0


def test_a_twin_policy_needs_the_plant_graph() -> None:
    port = ScriptedPort([], [])
    with pytest.raises(ConfigError, match="no graph"):
        run("twinkg", plant=toy_plant(rate=0.0), port=port)
    assert port.seeded == []


def test_twin_loop_with_a_scripted_port() -> None:
    at = sim_time(6 * 3600.0).isoformat()
    script = [
        PortDecision(
            "d/1", "applied", "setpoint_change", P1, at, proposed_setpoint=0.03, quantity_kind=FLOW
        ),
        PortDecision("d/2", "refused", "setpoint_change", P1, at, proposed_setpoint=9.0),
        PortDecision("d/3", "awaiting_approval", "switch_to_standby", P1, at),
    ]
    later = sim_time(6.25 * 3600.0).isoformat()
    port = ScriptedPort(script, [PortDecision("d/4", "applied", "switch_to_standby", P1, later)])
    plant = toy_plant(rate=0.0)
    plant.graph = Graph()
    cfg = config(horizon_s=8 * 3600.0, approver="approve", approver_delay_s=900.0)
    result, decisions, kpis = run("twinkg", plant=plant, cfg=cfg, port=port)
    assert result.status == "completed"
    # the warm-up ingested once with the detectors fitted on its 16 rows, then hourly
    assert port.ingested[0][1] == 16 and port.ingested[0][2] == sim_time(4 * 3600.0)
    assert all(fit is None for _, fit, _ in port.ingested[1:])
    assert kpis["refused_actions"][0] == 1 and kpis["unsafe_applied_actions"][0] == 0
    assert kpis["decisions"][0] == 4
    (decision, approve, when, comment) = port.answers[0]
    assert decision == "d/3" and approve and when == sim_time(6.25 * 3600.0)
    assert "simulated approver of scenario toy@1.0.0" in comment
    # the applied setpoint and the approved switch reached the simulator
    inputs = plant.master.components["plant"].inputs  # type: ignore[attr-defined]
    assert inputs["plant:flow_sp"] == 0.03
    assert inputs["pump:1:status"] == 0.0 and inputs["pump:2:status"] == 1.0
    assert [d.outcome for d in decisions] == ["applied", "refused", "awaiting_approval", "applied"]


def test_an_applied_setpoint_outside_the_input_range_counts_as_unsafe() -> None:
    at = sim_time(5 * 3600.0).isoformat()
    port = ScriptedPort(
        [
            PortDecision(
                "d/1",
                "applied",
                "setpoint_change",
                P1,
                at,
                proposed_setpoint=0.5,
                quantity_kind=FLOW,
            )
        ],
        [],
    )
    plant = toy_plant(rate=0.0)
    plant.graph = Graph()
    _, _, kpis = run("twinkg", plant=plant, cfg=config(horizon_s=6 * 3600.0), port=port)
    assert kpis["unsafe_applied_actions"][0] == 1


def test_a_setpoint_of_another_quantity_than_the_actuator_takes_never_reaches_the_plant() -> None:
    at = sim_time(5 * 3600.0).isoformat()
    speed = "http://qudt.org/vocab/quantitykind/Dimensionless"
    port = ScriptedPort(
        [
            PortDecision(
                "d/1",
                "applied",
                "setpoint_change",
                P1,
                at,
                proposed_setpoint=0.02,
                quantity_kind=speed,
            )
        ],
        [],
    )
    plant = toy_plant(rate=0.0)
    plant.graph = Graph()
    before = dict(plant.master.components["plant"].inputs)  # type: ignore[attr-defined]
    _, _, kpis = run("twinkg", plant=plant, cfg=config(horizon_s=6 * 3600.0), port=port)
    inputs = plant.master.components["plant"].inputs  # type: ignore[attr-defined]
    assert inputs.get("plant:flow_sp") == before.get("plant:flow_sp")
    assert kpis["refused_actions"][0] == 1 and kpis["unsafe_applied_actions"][0] == 0


def test_actuator_mapping_of_a_stop_and_a_work_order() -> None:
    state = LoopState(toy_plant(), config())
    assert state.apply(Command("controlled_stop", P1), 0.0)
    assert state.commanded["pump:1:status"] == 0.0
    assert state.apply(Command("work_order", P2), 0.0)
    assert not state.apply(Command("work_order", P2), 0.0)  # one job per asset
    assert not state.apply(Command("gather_data", P1), 0.0)
    state.advance_jobs(0.0)
    assert state.effective_inputs()["pump:2:status"] == 0.0  # out of service while repaired
    repair = state.advance_jobs(4 * 3600.0)
    assert repair == {"pump:2:repair": 1.0}


def test_faults_reach_the_simulators() -> None:
    plant = toy_plant(rate=0.0)

    def hook(master: Any, fault: FaultEvent, active: bool) -> dict[str, dict[str, float]]:
        return {"plant": {"plant:flow_sp": 0.0 if active else 0.02}}

    plant.fault_hook = hook
    cfg = config(
        horizon_s=12 * 3600.0,
        faults=(FaultEvent(2 * 3600.0, "power_outage", "s", 1.0, 10 * 3600.0),),
    )
    _, _, kpis = run("run-to-failure", plant=plant, cfg=cfg)
    assert kpis["throughput"][0] < 1.0  # the tank ran dry while the pumps gave nothing


def wear_case(asset: str, as_of: str = "2026-01-01T00:00:00+00:00") -> PlanningCase:
    """A case on ``asset``, running, whose one hypothesis is a toy wear mode."""
    return PlanningCase(
        asset=asset,
        status="running",
        as_of=as_of,
        findings=[],
        hypotheses=[
            Hypothesis(
                mode="https://example.org/toy/Wear", code=None, score=0.9, explained=[], rank=1
            )
        ],
        symptoms=[],
        confidence=0.9,
        urgency=0.8,
    )


class PlanningPort(ScriptedPort):
    """A port whose 'agents' hand one case on pump 1 to the loop's planner and apply its choice."""

    def __init__(self, at_s: float) -> None:
        super().__init__([], [])
        self.at_s = at_s
        self.plans: list[Any] = []

    def planner(self, policy: str) -> Any:
        return RulePlanner()

    def decide(
        self,
        *,
        run_id: str,
        scope: str,
        as_of: datetime,
        planner: Any,
        max_runs: int,
        trigger: Trigger = Trigger.FINDINGS,
    ) -> list[PortDecision]:
        if as_of != sim_time(self.at_s):
            return []
        plan = planner.plan(wear_case(P1, as_of.isoformat()))
        self.plans.append(plan)
        action = plan.action
        return [
            PortDecision(
                f"d/{len(self.plans)}",
                "applied",
                action.kind.value,
                action.target,
                as_of.isoformat(),
                proposed_setpoint=action.proposed_setpoint,
            )
        ]


def lookahead_run() -> tuple[Any, Any, Any, PlanningPort]:
    port = PlanningPort(at_s=18 * 3600.0)
    plant = toy_plant(rate=0.05)
    plant.graph, plant.lookahead = Graph(), True
    result, decisions, kpis = run(
        "twinkg", plant=plant, cfg=config(horizon_s=26 * 3600.0, lookahead_s=4 * 3600.0), port=port
    )
    return result, decisions, kpis, port


def test_the_lookahead_forks_the_plant_and_avoids_the_failure() -> None:
    result, decisions, kpis, port = lookahead_run()
    assert result.status == "completed"
    plan = port.plans[0]
    record = plan.transcript[-1]["lookahead"]
    kinds = [c["kind"] for c in record["candidates"]]
    assert {"gather_data", "switch_to_standby", "work_order", "controlled_stop"} <= set(kinds)
    nothing = next(c for c in record["candidates"] if c["kind"] == "gather_data")
    assert nothing["predicted"]["unplanned_h"] > 0  # pump 1 fails at 20 h if nobody acts
    chosen = record["candidates"][0]
    assert chosen["predicted"]["unplanned_h"] == 0 and chosen["kind"] == plan.action.kind.value
    assert plan.action.kind.value in ("switch_to_standby", "work_order", "controlled_stop")
    # the fork was put back: the real run went on from 18 h with the chosen action only
    assert kpis["unplanned_downtime_h"][0] == 0.0
    assert [d.kind for d in decisions] == [plan.action.kind.value]


def test_the_lookahead_is_deterministic() -> None:
    first, second = lookahead_run(), lookahead_run()
    assert first[3].plans[0].transcript == second[3].plans[0].transcript
    assert first[2] == second[2] and first[1] == second[1]


def test_a_setpoint_change_ramps_linearly_over_its_ramp() -> None:
    state = LoopState(toy_plant(), config())
    assert state.apply(Command("setpoint_change", P1, value=0.03, ramp_s=3600.0), 0.0)
    assert state.commanded["plant:flow_sp"] == 0.02  # nothing moves at once
    state.ramp(1800.0)
    assert state.commanded["plant:flow_sp"] == pytest.approx(0.025)
    state.ramp(7200.0)
    assert state.commanded["plant:flow_sp"] == 0.03 and not state.ramps


@pytest.mark.parametrize(
    ("behaviour", "after_h", "answers"),
    [("reject", None, [False, False]), ("approve_after", 5.5, [False, True]), ("absent", None, [])],
)
def test_the_scenario_approver_behaviours(
    behaviour: str, after_h: float | None, answers: list[bool]
) -> None:
    script = [
        PortDecision(
            "d/1", "awaiting_approval", "controlled_stop", P1, sim_time(5 * 3600).isoformat()
        ),
        PortDecision(
            "d/2", "awaiting_approval", "controlled_stop", P1, sim_time(6 * 3600).isoformat()
        ),
    ]
    port = ScriptedPort(script, [])
    plant = toy_plant(rate=0.0)
    plant.graph = Graph()
    cfg = config(
        horizon_s=8 * 3600.0,
        approver=behaviour,
        approver_delay_s=1800.0,
        approver_after_s=None if after_h is None else after_h * 3600.0,
    )
    run("twinkg", plant=plant, cfg=cfg, port=port)
    assert [a[1] for a in port.answers] == answers
    assert [a[2] for a in port.answers] == [sim_time(5.5 * 3600), sim_time(6.5 * 3600)][
        : len(answers)
    ]


def test_a_repaired_pump_runs_again_without_commanded_inputs() -> None:
    plant = toy_plant()
    plant.initial_inputs = {}  # nothing commanded: the pump must still come back after repair
    _, _, kpis = run("run-to-failure", plant=plant)
    assert kpis["unplanned_downtime_h"][0] == pytest.approx(4.0, abs=0.5)
    inputs = plant.master.components["plant"].inputs  # type: ignore[attr-defined]
    assert inputs["pump:1:status"] == 1.0 and inputs["pump:2:status"] == 0.0


class ShutdownPlant(ToyPlant):
    """The toy plant, shut down (``plant:running`` 0) from 5 h to 7 h."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0

    def do_step(self, t: float, dt: float) -> None:
        super().do_step(t, dt)
        self.t = t + dt

    def get_outputs(self) -> dict[str, float]:
        down = 5 * 3600.0 < self.t <= 7 * 3600.0
        return {**super().get_outputs(), "plant:running": 0.0 if down else 1.0}


class CountingPort(ScriptedPort):
    def __init__(self) -> None:
        super().__init__([], [])
        self.asked: list[datetime] = []

    def decide(
        self,
        *,
        run_id: str,
        scope: str,
        as_of: datetime,
        planner: Any,
        max_runs: int,
        trigger: Trigger = Trigger.FINDINGS,
    ) -> list[PortDecision]:
        self.asked.append(as_of)
        return []


def test_the_twin_keeps_ingesting_but_does_not_decide_while_the_plant_is_down() -> None:
    port = CountingPort()
    plant = toy_plant(rate=0.0, plant=ShutdownPlant())
    plant.graph = Graph()
    result, _, _ = run("twinkg", plant=plant, cfg=config(horizon_s=9 * 3600.0), port=port)
    assert result.status == "completed"
    hours = [(t - sim_time(0.0)).total_seconds() / 3600 for t in port.asked]
    assert hours == [4.0, 5.0, 8.0, 9.0]  # 6 h and 7 h: the plant was down
    ingested = [(t - sim_time(0.0)).total_seconds() / 3600 for _, _, t in port.ingested]
    assert ingested == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # its data still reached the twin


def test_a_candidate_that_moves_nothing_shares_doing_nothings_fork() -> None:
    state = LoopState(toy_plant(rate=0.0), config())
    state.plant.master.instantiate({}, 1)
    nothing = Outcome(trips=0, unplanned_h=0.0, expected_failures=0.0, throughput=1.0, cost=0.0)
    stray = ProposedAction(
        kind=ActionKind.WORK_ORDER,
        target="https://example.org/toy/no-such-asset",
        confidence=0.5,
        proposed_at="2026-01-01T00:00:00+00:00",
    )
    assert try_on_fork(state, stray, 3600.0, unmoved=nothing) is nothing
    switch = ProposedAction(
        kind=ActionKind.SWITCH_TO_STANDBY,
        target=P1,
        confidence=0.5,
        proposed_at="2026-01-01T00:00:00+00:00",
    )
    moved = try_on_fork(state, switch, 3600.0, unmoved=nothing)
    assert moved is not nothing and state.plant.master.time == 0.0  # simulated, then put back


def _proposal(kind: ActionKind, **kw: Any) -> ProposedAction:
    return ProposedAction(
        kind=kind, target=P1, confidence=0.5, proposed_at="2026-01-01T00:00:00+00:00", **kw
    )


def _forked(risk_h: float, kind: ActionKind) -> Outcome:
    state = LoopState(toy_plant(rate=0.05, hazard=True), config(risk_horizon_s=risk_h * 3600.0))
    state.plant.master.instantiate({}, 1)
    state.plant.master.step()
    return try_on_fork(state, _proposal(kind), 3600.0)


def test_the_lookahead_counts_a_wearing_pumps_risk_past_its_fork() -> None:
    """The terminal cost: past the fork, pump 1 keeps the hazard it ends with for the risk
    horizon, running or stopped; only a repair ordered removes it; 0 h counts nothing."""
    nothing, half = _forked(24.0, ActionKind.GATHER_DATA), _forked(12.0, ActionKind.GATHER_DATA)
    # each pump's hazard at the fork's end (0.001/h unworn, growing with wear) held for 24 h:
    # pump 2 stands by unworn, pump 1 has worn
    unworn = 0.001 * 24
    assert 2 * unworn < nothing.failures_after < unworn + 0.001 * math.exp(6.0) * 24
    assert nothing.failures_after == pytest.approx(2 * half.failures_after)
    stop = _forked(24.0, ActionKind.CONTROLLED_STOP)
    assert stop.failures_after > 2 * unworn  # a stop defers the risk, it does not remove it
    assert stop.expected_failures < nothing.expected_failures  # (inside the fork it idles)
    # a repair ordered on pump 1 leaves only the standby's
    assert _forked(24.0, ActionKind.WORK_ORDER).failures_after == pytest.approx(unworn)
    assert _forked(0.0, ActionKind.GATHER_DATA).failures_after == 0.0
    repair_h = 4.0
    down = nothing.unplanned_h + (nothing.expected_failures + nothing.failures_after) * repair_h
    assert nothing.score(repair_h, nothing.throughput) == pytest.approx(
        -(1e3 * down + 1e-3 * nothing.cost)
    )


def test_the_lookahead_does_not_try_what_the_plant_cannot_carry() -> None:
    """A flow setpoint for a pump whose actuator takes a relative speed is not forked: it is
    listed as not carried, and the proposal is another candidate."""

    plant = toy_plant(rate=0.05, hazard=True)
    speed = "http://qudt.org/vocab/quantitykind/Dimensionless"
    one, two = plant.binding.actuators
    # the same pump, its actuator taking a relative speed instead of a flow
    plant.binding = replace(
        plant.binding, actuators=(replace(one, setpoint_quantity_kind=speed), two)
    )
    assert one.setpoint_quantity_kind == FLOW
    state = LoopState(plant, config())
    plant.master.instantiate({}, 1)
    state.commanded.update(plant.initial_inputs)
    flow = _proposal(
        ActionKind.SETPOINT_CHANGE,
        quantity_kind=FLOW,
        current_setpoint=20.0,
        proposed_setpoint=18.0,
        ramp_s=60.0,
    )

    class Inner:
        kind = "rules"

        def plan(self, case: PlanningCase) -> Plan:
            return Plan(planner="rules", candidates=[], action=flow)

    case = PlanningCase(
        asset=P1,
        status="running",
        as_of="2026-01-01T00:00:00+00:00",
        findings=[],
        hypotheses=[],
        symptoms=[],
        confidence=0.9,
        urgency=0.8,
    )
    plan = LookaheadPlanner(Inner(), state, horizon_s=3600.0).plan(case)
    record = plan.transcript[-1]["lookahead"]
    assert record["not_carried"] == [
        {"kind": "setpoint_change", "target": P1, "quantity_kind": FLOW}
    ]
    tried = {(c["kind"], c["proposed_setpoint"]) for c in record["candidates"]}
    assert ("setpoint_change", 18.0) not in tried
    assert ("setpoint_change", round(0.02 * 0.9, 6)) in tried  # its own kind: a cut of the speed
    assert plan.action is not None and plan.action.quantity_kind != FLOW


def test_a_repair_among_the_candidates_forks_every_candidate_as_long_as_the_repair() -> None:
    """With a work order that repairs something, every candidate is forked for the repair's
    duration (what the repair itself costs shows); with none, for the look-ahead horizon."""
    from twinkg.sim.lookahead import LookaheadPlanner  # noqa: PLC0415

    plant = toy_plant(rate=0.05, hazard=True)
    state = LoopState(plant, config(repair_s=3 * 3600.0))
    plant.master.instantiate({}, 1)
    state.commanded.update(plant.initial_inputs)

    planner = LookaheadPlanner(RulePlanner(), state, horizon_s=3600.0)
    pump = planner.plan(wear_case(P1)).transcript[-1]["lookahead"]
    assert "work_order" in {c["kind"] for c in pump["candidates"]}
    assert pump["horizon_s"] == 3 * 3600.0
    tank = planner.plan(wear_case(TANK)).transcript[-1]["lookahead"]  # nothing there repairs it
    assert tank["horizon_s"] == 3600.0
    assert plant.master.time == 0.0


def test_a_failure_inside_the_fork_costs_its_whole_repair() -> None:
    """Pump 1 wears out 2 h into a 3-hour fork: the fork sees about an hour of its 4-hour
    repair, and the rest is owed; a fork that ends before the failure owes nothing."""
    state = LoopState(toy_plant(rate=0.5), config(repair_s=4 * 3600.0))
    state.plant.master.instantiate({}, 1)
    state.commanded.update(state.plant.initial_inputs)
    long = try_on_fork(state, _proposal(ActionKind.GATHER_DATA), 3 * 3600.0)
    assert 2.5 <= long.repair_owed_h <= 3.25  # 4 h less the 0.75-1.5 h already done
    assert long.down_h(4.0) >= long.unplanned_h + long.repair_owed_h
    short = try_on_fork(state, _proposal(ActionKind.GATHER_DATA), 3600.0)
    assert short.repair_owed_h == 0.0
    assert state.failed == set() and state.jobs == []  # the fork was put back


def _restart_case(status: str) -> PlanningCase:
    """A restart-due case on pump 1: one of the agents' stops took it down, hold-off passed."""
    due = Finding(uri="https://example.org/toy/stop/effect", kind="restart_due", asset=P1)
    return PlanningCase(
        asset=P1,
        status=status,
        as_of="2026-01-01T00:00:00+00:00",
        findings=[due],
        hypotheses=[],
        symptoms=[],
        confidence=0.9,
        urgency=0.3,
    )


def test_the_rule_planner_restarts_what_a_stop_took_down_and_nothing_else() -> None:
    plan = RulePlanner().plan(_restart_case("stopped"))
    assert plan.action is not None and plan.action.kind is ActionKind.RESTART
    assert [c.action.kind for c in plan.candidates] == [ActionKind.RESTART, ActionKind.GATHER_DATA]
    # a restart case whose asset is not stopped (someone started it): keep watching, no restart
    running = RulePlanner().plan(_restart_case("running"))
    assert running.action is not None and running.action.kind is ActionKind.GATHER_DATA
    assert [c.action.kind for c in running.candidates] == [ActionKind.GATHER_DATA]
    # an ordinary case never offers a restart
    ordinary = RulePlanner().plan(wear_case(P1))
    assert ActionKind.RESTART not in {c.action.kind for c in ordinary.candidates}


def test_a_restart_moves_only_a_stopped_run_input() -> None:
    state = LoopState(toy_plant(rate=0.0), config())
    assert not state.apply(Command("restart", P1), 0.0)  # it runs: nothing to start
    assert state.apply(Command("controlled_stop", P1), 0.0)
    assert state.commanded["pump:1:status"] == 0.0
    assert state.apply(Command("restart", P1), 900.0)
    assert state.commanded["pump:1:status"] == 1.0
    assert not state.apply(Command("restart", TANK), 900.0)  # no actuator: nothing moves


def test_the_lookahead_restarts_a_stopped_plant_when_keeping_it_stopped_serves_nothing() -> None:
    """Doing nothing serves nothing (tank empty, its pump stopped): the loss is counted against
    the best candidate, so the restart wins instead of tying with keeping it stopped."""
    toy = ToyPlant()
    toy.level = 0.0
    state = LoopState(toy_plant(rate=0.0, plant=toy), config())
    state.plant.master.instantiate({}, 1)
    assert state.apply(Command("controlled_stop", P1), 0.0)
    state.send(state.effective_inputs())
    plan = LookaheadPlanner(RulePlanner(), state).plan(_restart_case("stopped"))
    assert plan.action is not None and plan.action.kind is ActionKind.RESTART
    [record] = [t["lookahead"] for t in plan.transcript if "lookahead" in t]
    kinds = [c["kind"] for c in record["candidates"]]
    assert sorted(kinds) == ["gather_data", "restart"]  # no cut, stop or repair of a stopped pump
    by_kind = {c["kind"]: c["predicted"]["throughput"] for c in record["candidates"]}
    assert by_kind["gather_data"] == 0.0 < by_kind["restart"]
    assert [c.throughput for c in plan.candidates] == [1.0, 0.0]


UNIT = "https://example.org/toy/unit"  # the whole toy plant as one asset with a run input


class StoppablePlant(ToyPlant):
    """The toy plant with a plant-wide run input (``plant:run``) and ``plant:running``."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs["plant:run"] = 1.0

    def info(self) -> ModelInfo:
        base = super().info()
        extra = (Variable("plant:run", "input"), Variable("plant:running", "output"))
        return ModelInfo(base.name, base.version, (*base.variables, *extra))

    def get_outputs(self) -> dict[str, float]:
        running = self.inputs["plant:run"] >= 0.5
        out = super().get_outputs()
        out["plant:running"] = float(running)
        if not running:
            out["plant:demand_served"] = 0.0
        return out


class TriggerPort(ScriptedPort):
    """Stops the unit at 5 h on findings; restarts it when asked for due restarts from 8 h."""

    def __init__(self) -> None:
        super().__init__([], [])
        self.asked: list[tuple[float, Trigger]] = []

    def decide(
        self,
        *,
        run_id: str,
        scope: str,
        as_of: datetime,
        planner: Any,
        max_runs: int,
        trigger: Trigger = Trigger.FINDINGS,
    ) -> list[PortDecision]:
        hours = (as_of - sim_time(0.0)).total_seconds() / 3600
        self.asked.append((hours, trigger))
        at = as_of.isoformat()
        if trigger is Trigger.FINDINGS and hours == 5.0:
            return [PortDecision("d/stop", "applied", "controlled_stop", UNIT, at)]
        if trigger is Trigger.RESTART_DUE and hours >= 8.0:
            return [PortDecision(f"d/restart/{hours:g}", "applied", "restart", UNIT, at)]
        return []


def test_after_its_own_stop_the_twin_asks_only_whether_a_restart_is_due() -> None:
    plant = toy_plant(rate=0.0, plant=StoppablePlant())
    unit = Actuator(UNIT, "Plant", "unit", run_input="plant:run")
    plant.binding = replace(plant.binding, actuators=(*plant.binding.actuators, unit))
    plant.stop_input = "plant:run"
    plant.graph = Graph()
    port = TriggerPort()
    result, decisions, kpis = run(
        "twinkg", plant=plant, cfg=config(horizon_s=11 * 3600.0), port=port
    )
    assert result.status == "completed"
    # up: findings; down after the twin's stop: only due restarts; up again: findings
    assert port.asked == [
        (4.0, Trigger.FINDINGS),
        (5.0, Trigger.FINDINGS),
        (6.0, Trigger.RESTART_DUE),
        (7.0, Trigger.RESTART_DUE),
        (8.0, Trigger.RESTART_DUE),
        (9.0, Trigger.FINDINGS),
        (10.0, Trigger.FINDINGS),
        (11.0, Trigger.FINDINGS),
    ]
    assert [d.kind for d in decisions] == ["controlled_stop", "restart"]
    inputs = plant.master.components["plant"].inputs  # type: ignore[attr-defined]
    assert inputs["plant:run"] == 1.0
    assert kpis["trips"][0] == 0 and kpis["unplanned_downtime_h"][0] == 0.0
    assert kpis["unsafe_applied_actions"][0] == 0
    # down from the step after 5 h until the restart at 8 h: 3 of the 7 measured hours
    assert kpis["availability"][0] == pytest.approx(4 / 7)


class ShortfallPlant(ToyPlant):
    """The toy plant serving under its service level (``plant:running`` 0) from 5 h to 8 h by
    itself, as a water network does when a leak takes its pressure: nobody stopped it."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0.0

    def info(self) -> ModelInfo:
        base = super().info()
        return ModelInfo(
            base.name, base.version, (*base.variables, Variable("plant:running", "output"))
        )

    def do_step(self, t: float, dt: float) -> None:
        super().do_step(t, dt)
        self.t = t + dt

    def get_outputs(self) -> dict[str, float]:
        out = super().get_outputs()
        short = 5 * 3600.0 < self.t <= 8 * 3600.0
        out["plant:running"] = 0.0 if short else 1.0
        if short:
            out["plant:demand_served"] = 0.5 * out["plant:demand_required"]
        return out

    def snapshot(self) -> object:
        return (super().snapshot(), self.t)

    def restore(self, snapshot: object) -> None:
        assert isinstance(snapshot, tuple)
        super().restore(snapshot[0])
        self.t = float(snapshot[1])


@pytest.mark.parametrize("shuts_down", [True, False])
def test_a_plant_under_its_service_level_is_not_shut_down(shuts_down: bool) -> None:
    """A shutdown suppresses the twin's process alarms (ISA-18.2); a plant that only serves
    under its service level still runs, so the twin keeps deciding through it (decision 0054)."""
    plant = toy_plant(rate=0.0, plant=ShortfallPlant())
    plant.shuts_down = shuts_down
    plant.graph = Graph()
    port = TriggerPort()
    result, _, kpis = run("twinkg", plant=plant, cfg=config(horizon_s=10 * 3600.0), port=port)
    assert result.status == "completed"
    assert kpis["unplanned_downtime_h"][0] == pytest.approx(3.0)  # 5-8 h, nobody's stop
    asked = [hours for hours, trigger in port.asked if trigger is Trigger.FINDINGS]
    assert all(trigger is Trigger.FINDINGS for _, trigger in port.asked)
    if shuts_down:  # a trip's consequences: nothing to decide until it runs again
        assert asked == [4.0, 5.0, 9.0, 10.0]
    else:  # the under-served hours are decided on like any other
        assert asked == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]


def test_water_networks_are_not_shut_down_by_a_shortfall() -> None:
    """The seeded water networks' ``plant:running`` is the service level; the TEP's is a
    shutdown."""
    from twinkg.api.sim_plants import build  # noqa: PLC0415
    from twinkg.sim.scenario import load_scenario  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2] / "scenarios"
    net1 = build(load_scenario(root / "net1-pump-wear.toml"), seed=1, base="urn:t/", twin=True)
    tep = build(load_scenario(root / "tep-a-feed-loss.toml"), seed=1, base="urn:t/", twin=True)
    assert not net1.shuts_down
    assert tep.shuts_down


def test_a_restart_of_an_available_idle_pump_starts_it_by_hand() -> None:
    """A pump available but left idle by its own controls is started by hand; a stop, a switch
    or the end of a repair hands it back to them (decision 0054)."""
    plant = toy_plant(rate=0.0)
    p1 = replace(plant.binding.actuators[0], start_input="pump:1:hand")
    plant.binding = replace(plant.binding, actuators=(p1, *plant.binding.actuators[1:]))
    state = LoopState(plant, config())
    assert state.apply(Command("restart", P1), 0.0)
    assert state.commanded["pump:1:hand"] == 1.0 and state.commanded["pump:1:status"] == 1.0
    assert not state.apply(Command("restart", P1), 900.0)  # in hand already: nothing to start
    assert state.apply(Command("controlled_stop", P1), 1800.0)
    assert state.commanded["pump:1:hand"] == 0.0 and state.commanded["pump:1:status"] == 0.0
    assert state.apply(Command("restart", P1), 2700.0)  # stopped: its run input, not hand
    assert state.commanded["pump:1:status"] == 1.0 and state.commanded["pump:1:hand"] == 0.0
    assert state.apply(Command("restart", P1), 3600.0)
    assert state.apply(Command("work_order", P1), 3600.0)
    state.advance_jobs(3600.0)  # the crew starts
    assert state.commanded["pump:1:hand"] == 1.0
    state.advance_jobs(3600.0 + state.config.repair_s)  # done: back under its own controls
    assert state.commanded["pump:1:hand"] == 0.0 and state.commanded["pump:1:status"] == 1.0
    assert state.apply(Command("restart", P1), 40000.0)
    assert state.apply(Command("switch_to_standby", P1), 40000.0)
    assert state.commanded["pump:1:hand"] == 0.0


def _loop_state(scenario_file: str, run: str, steps: int) -> tuple[LoopState, Any]:
    """A shipped scenario's run state (seed 1) after ``steps`` steps with nothing done, and its
    plant."""
    from twinkg.api.sim_plants import build, loop_config  # noqa: PLC0415
    from twinkg.sim.loop import _input_owners, _input_ranges, run_prefix  # noqa: PLC0415
    from twinkg.sim.scenario import load_scenario  # noqa: PLC0415

    scenario = load_scenario(Path(__file__).parents[2] / "scenarios" / scenario_file)
    plant = build(scenario, seed=1, base=run_prefix(run), twin=True)
    state = LoopState(plant, loop_config(scenario, seed=1))
    plant.master.instantiate(plant.parameters, 1)
    state.owner, state.ranges = _input_owners(plant), _input_ranges(plant)
    for actuator in plant.binding.actuators:
        if actuator.run_input is not None:
            state.commanded.setdefault(actuator.run_input, 0.0 if actuator.standby_for else 1.0)
    state.send(state.effective_inputs())
    for _ in range(steps):
        plant.master.step()
    return state, plant


def _net3_at(hours: int) -> tuple[LoopState, Any]:
    """Net3's run state after ``hours`` simulated hours with nothing done, and its plant."""
    return _loop_state("net3-station-faults.toml", "supply", hours * 4)  # 15-minute steps


def _zone_case(plant: Any, pressure: float, before: float = 300.0) -> PlanningCase:
    """A findings case on a demand zone whose service pressure reads ``pressure`` (kPa), after
    ``before`` in the baseline window, against a 137 kPa floor."""
    from twinkg.agents.planning import Envelope  # noqa: PLC0415
    from twinkg.agents.state import Symptom  # noqa: PLC0415

    sensor = next(s for s in plant.binding.sensors if s.output.endswith(":pressure"))
    return PlanningCase(
        asset=sensor.equipment,
        as_of="2026-01-01T22:00:00+00:00",
        findings=[Finding(uri=sensor.sensor + "/alarm", kind="alarm", asset=sensor.equipment)],
        hypotheses=[],
        symptoms=[
            Symptom(
                sensor=sensor.sensor,
                quantity_kind=sensor.quantity_kind,
                baseline_mean=before,
                baseline_std=5.0,
                mean=pressure,
                shift=(pressure - before) / 5.0,
                spread=1.0,
                trust=1.0,
            )
        ],
        envelopes=[
            Envelope(
                uri=sensor.equipment + "/envelope",
                quantity_kind=sensor.quantity_kind,
                minimum=137.0,
                maximum=1000.0,
            )
        ],
        confidence=0.0,
        urgency=0.5,
    )


def test_where_service_falls_short_the_lookahead_tries_more_supply() -> None:
    """Net3 at 22 h: pump 10 is idle by its schedule, pump 335 runs. A zone under its pressure
    floor gets a hand start of pump 10 and pump 335 a tenth faster among the candidates, each
    forked; a zone above it, or under it all along (how that network runs), gets neither; a pump
    under repair is not started (decision 0054)."""
    state, plant = _net3_at(22)
    out = plant.master.outputs["plant"]
    assert out["pump:10:running"] == 0.0 and out["pump:335:running"] == 1.0
    pumps = {a.element: a.asset for a in plant.binding.actuators if a.kind == "Pump"}
    planner = LookaheadPlanner(RulePlanner(), state, horizon_s=3600.0)

    def tried(pressure: float, before: float = 300.0) -> list[dict[str, Any]]:
        plan = planner.plan(_zone_case(plant, pressure, before))
        [record] = [t["lookahead"] for t in plan.transcript if "lookahead" in t]
        return [c for c in record["candidates"] if c["target"] in pumps.values()]

    short = {(c["kind"], c["target"], c["proposed_setpoint"]) for c in tried(50.0)}
    assert ("restart", pumps["10"], None) in short
    assert ("setpoint_change", pumps["335"], 1.1) in short
    assert not any(k == "restart" and t == pumps["335"] for k, t, _ in short)  # it runs
    assert not any(v is not None and v > 1.0 for k, t, v in short if t == pumps["10"])
    for pressure, before in ((300.0, 300.0), (50.0, 60.0)):  # above the floor; under it all along
        assert {c["kind"] for c in tried(pressure, before)} <= {"setpoint_change"}  # the cuts
        assert all(c["proposed_setpoint"] < 1.0 for c in tried(pressure, before))
    assert state.apply(Command("work_order", pumps["10"]), 22 * 3600.0)
    assert not any(c["kind"] == "restart" for c in tried(50.0))
    plant.master.terminate()


def test_the_supply_chosen_for_one_case_goes_ahead_in_the_next_case_s_forks() -> None:
    """Net3 at 23 h, pipe 329 burst since 22 h: service is short. The first zone case starts
    pump 10 by hand (the fork without it loses hours); the next case at the same instant takes
    that start as going ahead, in every fork, and does not ask for it again; at the next
    instant nothing is in flight (decision 0054)."""
    state, plant = _net3_at(22)
    state.commanded["pipe:329:leak_area"] = 0.2
    state.send(state.effective_inputs())
    for _ in range(4):  # an hour
        plant.master.step()
    out = plant.master.outputs["plant"]
    assert out["plant:demand_served"] < 0.9 * out["plant:demand_required"]
    pump10 = next(a.asset for a in plant.binding.actuators if a.element == "10")
    planner = LookaheadPlanner(RulePlanner(), state, horizon_s=7200.0)

    def plan() -> tuple[Any, dict[str, Any]]:
        p = planner.plan(_zone_case(plant, 50.0))
        [record] = [t["lookahead"] for t in p.transcript if "lookahead" in t]
        return p.action, record

    first, record = plan()
    assert first is not None and (first.kind, first.target) == (ActionKind.RESTART, pump10)
    lost = {c["kind"]: c["predicted"]["unplanned_h"] for c in record["candidates"]}
    assert lost["restart"] == 0.0 < lost["gather_data"]
    assert record["in_flight"] == []
    second, record = plan()
    assert second is not None and second.kind is ActionKind.GATHER_DATA
    assert record["in_flight"] == [{"kind": "restart", "target": pump10, "proposed_setpoint": None}]
    assert not any(c["kind"] == "restart" for c in record["candidates"])  # not asked twice
    lost = {c["kind"]: c["predicted"]["unplanned_h"] for c in record["candidates"]}
    assert lost["gather_data"] == 0.0  # its fork started pump 10 first
    plant.master.step()  # the next instant: nothing in flight
    third, record = plan()
    assert record["in_flight"] == []
    assert third is not None and third.kind is ActionKind.RESTART
    plant.master.terminate()


# -- the look-ahead's forks in several processes (decision 0053) -------------------------------


def _planned(workers: int, *, timeout: float | None = None) -> tuple[dict[str, Any], LoopState]:
    """The look-ahead's plan for a wear case on pump 1, its candidates tried by ``workers``."""
    state = LoopState(toy_plant(rate=0.05, hazard=True, timeout=timeout), config())
    state.plant.master.instantiate({}, 1)
    state.commanded.update(state.plant.initial_inputs)
    state.plant.master.step()
    plan = LookaheadPlanner(RulePlanner(), state, horizon_s=3 * 3600.0, workers=workers)
    return plan.plan(wear_case(P1)).model_dump(), state


def _where_forks_ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    """Have every fork append its process id and kind to a file; the file's path."""
    import os  # noqa: PLC0415

    from twinkg.sim import loop  # noqa: PLC0415

    ledger = tmp_path / "forks"
    real = loop.try_on_fork

    def recorded(state: LoopState, action: ProposedAction, horizon_s: float, **kw: Any) -> Any:
        with ledger.open("a") as f:
            f.write(f"{os.getpid()} {action.kind.value}\n")
        return real(state, action, horizon_s, **kw)

    monkeypatch.setattr(loop, "try_on_fork", recorded)
    return ledger


def test_forked_workers_give_the_plan_one_process_gives(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The same candidates, outcomes, utilities, choice and transcript whether the forks ran
    here one after another or in two or three processes; the state is put back either way."""
    import os  # noqa: PLC0415

    ledger = _where_forks_ran(monkeypatch, tmp_path)
    alone, state = _planned(1)
    serial = ledger.read_text().split("\n")[:-1]
    assert {line.split()[0] for line in serial} == {str(os.getpid())}
    assert len(serial) >= 4  # enough forks to share out
    for workers in (2, 3):
        ledger.unlink()
        shared, after = _planned(workers, timeout=30.0)  # a master with its worker thread
        assert shared == alone
        lines = ledger.read_text().split("\n")[:-1]
        assert len({line.split()[0] for line in lines}) == workers  # each process did its part
        assert sorted(line.split()[1] for line in lines) == sorted(
            line.split()[1] for line in serial
        )  # every fork ran once, none twice
        assert after.plant.master.time == state.plant.master.time == 900.0
        assert after.commanded == state.commanded and after.jobs == state.jobs == []


def test_a_fork_that_fails_in_a_worker_is_reported_as_one_process_reports_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forks fail in both processes: the plan notes the first failing candidate's error, as
    trying them one after another does, and proposes the inner planner's action."""
    from twinkg.ontology.errors import SimulatorError  # noqa: PLC0415
    from twinkg.sim import loop  # noqa: PLC0415

    real = loop.try_on_fork

    def failing(state: LoopState, action: ProposedAction, horizon_s: float, **kw: Any) -> Any:
        if action.kind in {ActionKind.SETPOINT_CHANGE, ActionKind.WORK_ORDER}:
            raise SimulatorError(f"toy: {action.kind.value} {action.proposed_setpoint} failed")
        return real(state, action, horizon_s, **kw)

    monkeypatch.setattr(loop, "try_on_fork", failing)
    alone, _ = _planned(1)
    [note] = [t["lookahead"] for t in alone["transcript"] if "lookahead" in t]
    assert note["skipped"].startswith("toy: ")
    for workers in (2, 3, 4):
        assert _planned(workers)[0] == alone


def test_a_worker_that_dies_ends_the_look_ahead_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker process that exits without answering: the look-ahead is skipped, said so with
    its exit code, and the run goes on with the inner planner's action."""
    import os  # noqa: PLC0415

    from twinkg.sim import loop  # noqa: PLC0415

    parent, real = os.getpid(), loop.try_on_fork

    def dying(state: LoopState, action: ProposedAction, horizon_s: float, **kw: Any) -> Any:
        if os.getpid() != parent:
            os._exit(3)
        return real(state, action, horizon_s, **kw)

    monkeypatch.setattr(loop, "try_on_fork", dying)
    plan, state = _planned(2)
    [note] = [t["lookahead"] for t in plan["transcript"] if "lookahead" in t]
    assert note == {"skipped": "a look-ahead worker ended (exit code 3) before it answered"}
    assert plan["action"] is not None
    assert state.plant.master.time == 900.0


def test_the_look_ahead_needs_a_worker() -> None:
    state = LoopState(toy_plant(), config())
    with pytest.raises(ConfigError, match="at least one worker, got 0"):
        LookaheadPlanner(RulePlanner(), state, workers=0)


def test_forked_workers_on_a_water_network_leave_the_run_s_files_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """EPANET forks replay the run in a fresh working directory. A worker removes the ones it
    made and never the run's own, and the plan is the one a single process makes."""
    import tempfile  # noqa: PLC0415

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def planned(workers: int) -> tuple[dict[str, Any], dict[str, list[str]]]:
        state, plant = _loop_state("net1-pump-wear.toml", "workers", 4)
        pump = next(a.asset for a in plant.binding.actuators if a.repairable is not None)
        planner = LookaheadPlanner(RulePlanner(), state, horizon_s=3600.0, workers=workers)
        plan = planner.plan(wear_case(pump)).model_dump()
        left = {p.name: sorted(f.name for f in p.iterdir()) for p in tmp_path.iterdir()}
        plant.master.terminate()
        return plan, left

    alone, before = planned(1)
    [(name, files)] = before.items()  # the run's own working directory, whole
    assert name.startswith("twinkg-water-") and files == ["network.inp", "run.rpt"]
    assert not list(tmp_path.iterdir())  # and it went with the run
    shared, during = planned(2)
    assert shared["action"] == alone["action"]
    assert shared["candidates"] == alone["candidates"]
    # the run's directory, whole, and none of the worker's
    assert list(during.values()) == [["network.inp", "run.rpt"]]
    assert not list(tmp_path.iterdir())


def test_a_working_directory_goes_only_in_the_process_that_made_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A forked child that shuts its copy of a simulator down leaves its parent's directory;
    the directories it makes itself go, as the parent's go in the parent."""
    import os  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from twinkg.sim.adapter import working_dir  # noqa: PLC0415

    class Owner:
        pass

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    owner = Owner()
    path, remove = working_dir(owner, "twinkg-parent-")
    pid = os.fork()
    if pid == 0:  # the child: 0 if it kept the parent's and removed its own
        code = 1
        try:
            remove()
            mine = Owner()
            own, remove_own = working_dir(mine, "twinkg-child-")
            remove_own()
            code = 0 if Path(path).is_dir() and not Path(own).exists() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert Path(path).is_dir()
    remove()
    assert not Path(path).exists()
    assert not list(tmp_path.iterdir())


class _UnreadableError(Exception):
    """An exception that pickles but does not unpickle (its constructor needs two arguments)."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def test_a_worker_answer_that_cannot_be_read_ends_the_look_ahead_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os  # noqa: PLC0415

    from twinkg.sim import loop  # noqa: PLC0415

    parent, real = os.getpid(), loop.try_on_fork

    def odd(state: LoopState, action: ProposedAction, horizon_s: float, **kw: Any) -> Any:
        if os.getpid() != parent:
            raise _UnreadableError("toy", "a bug in a fork")
        return real(state, action, horizon_s, **kw)

    monkeypatch.setattr(loop, "try_on_fork", odd)
    plan, _ = _planned(2)
    [note] = [t["lookahead"] for t in plan["transcript"] if "lookahead" in t]
    assert note["skipped"].startswith("a look-ahead worker's answer could not be read: ")
