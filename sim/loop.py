"""The closed loop: a simulated plant, a policy acting on it, and (for the twin's policies) the
twin in between.

Per communication step of the master: faults due now are injected, repair jobs move on, the
commanded inputs go to the simulators, the master steps. Every ``telemetry_s`` the sensor-fault
injector's outputs for every :class:`twinkg.sim.binding.SensorBinding` become telemetry points (the
JSON telemetry contract's fields; a dropout's NaN becomes no point), buffered. Every ``decide_s``
the policy looks: a baseline (``sim.policies``) reads the measured values and commands the plant
directly; the twin's policies ingest the buffer through the :class:`TwinPort` (the warm-up once,
with the detectors fitted on it), run the agents as of simulated time, and apply what the guard
allowed through the binding's actuators. While the plant is down the twin keeps ingesting but
decides nothing, except, after its own controlled stop, whether a restart is due (decision 0049).
Approval requests are answered by the scenario's
simulated approver at simulated time plus its delay. KPIs are measured, never assumed: an applied
action is checked again (:meth:`TwinPort.recheck` and the simulator's own input range) and counted
in ``unsafe_applied_actions`` if it breaks either.

A simulator that raises or hangs ends the run ``failed`` with the reason, the KPIs so far kept and
``partial=True``. Nothing in the loop reads the wall clock but to report ``wall_s``: the same
scenario and seed give the same KPIs and the same decisions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from twinkg.agents.state import Trigger
from twinkg.kg.sim_runs import SimRunStart
from twinkg.ontology.errors import ConfigError, SimulatorError, TwinKGError
from twinkg.ontology.vocab import ONTOLOGY_VERSION
from twinkg.sim.binding import Actuator, PlantBinding
from twinkg.sim.degradation import PumpDegradation
from twinkg.sim.kpi import (
    ActionApplied,
    ActionRefused,
    Decision,
    Failure,
    KpiAccumulator,
    KpiResult,
    MaintenanceDone,
    Trip,
)
from twinkg.sim.policies import (
    CONTROLLED_STOP,
    GATHER_DATA,
    RESTART,
    SETPOINT_CHANGE,
    SWITCH_TO_STANDBY,
    TWIN_POLICIES,
    WORK_ORDER,
    AssetState,
    Command,
    PlantView,
    Policy,
    baseline,
    check_policy,
)
from twinkg.sim.results import Progress, SimResult
from twinkg.sim.scenario import FaultEvent

if TYPE_CHECKING:
    from rdflib import Graph

    from twinkg.agents.planning import Planner
    from twinkg.agents.state import ProposedAction
    from twinkg.sim.lookahead import Outcome
    from twinkg.sim.master import CoSimulation

SIM_BASE = "https://w3id.org/twinkg/sim/"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
"""Simulated second 0 (every run starts at the same instant, so runs compare)."""


def run_prefix(run_id: str) -> str:
    """The IRI prefix of a run's own copy of the plant graph (and of the run itself)."""
    return f"{SIM_BASE}{run_id}/"


def sim_time(t: float) -> datetime:
    """The instant of simulated second ``t``."""
    return EPOCH + timedelta(seconds=t)


# ----------------------------------------------------------------------------- ports


@dataclass(frozen=True, slots=True)
class PortDecision:
    """One decision the agents recorded, as the loop needs it."""

    decision: str  # the decision IRI
    outcome: str  # "applied" | "refused" | "awaiting_approval" | "rejected"
    kind: str | None  # the action kind (None: the run proposed nothing)
    target: str | None
    at: str  # ISO time (simulated)
    proposed_setpoint: float | None = None
    quantity_kind: str | None = None
    reason: str = ""
    ramp_s: float | None = None


class RunRecorder(Protocol):
    """Records a run in the graph (implemented over ``kg.sim_runs``)."""

    def start_run(self, start: SimRunStart) -> None:
        """The run, its scenario and versions, status "running"."""
        ...

    def link_decisions(self, run: str, decisions: Sequence[str]) -> None:
        """Each decision ``prov:wasInformedBy`` the run."""
        ...

    def finish_run(
        self,
        run: str,
        status: str,
        reason: str | None,
        partial: bool,
        kpis: Mapping[str, tuple[float, str]],
    ) -> None:
        """The end status and the KPIs (name → (value, unit))."""
        ...


class TwinPort(Protocol):
    """The twin as the loop reaches it (implemented by ``api.sim_port.TwinSimPort``)."""

    def seed(self, run_id: str, graph: Graph) -> None:
        """Write the run's own copy of the plant graph."""
        ...

    def planner(self, policy: str) -> Planner:
        """The inner planner of a twin policy (``ConfigError`` when it is not configured)."""
        ...

    def ingest(
        self,
        points: Sequence[Mapping[str, Any]],
        *,
        received_at: datetime,
        fit_rows: int | None,
        source: str,
    ) -> int:
        """Ingest telemetry points as received at simulated ``received_at``; the alarms raised."""
        ...

    def decide(
        self,
        *,
        run_id: str,
        scope: str,
        as_of: datetime,
        planner: Planner,
        max_runs: int,
        trigger: Trigger = Trigger.FINDINGS,
    ) -> list[PortDecision]:
        """Run the agents on ``scope`` as of simulated ``as_of`` (looking for ``trigger``);
        every decision they recorded."""
        ...

    def answer(
        self, decision: str, *, approve: bool, at: datetime, comment: str
    ) -> list[PortDecision]:
        """Answer an approval request as the simulated approver at ``at``; the decisions the
        resumed run recorded."""
        ...

    def recheck(self, decision: PortDecision) -> int:
        """The safety shapes' violations of an applied action, judged again after it applied."""
        ...

    def run_feedback(self, running: Mapping[str, bool]) -> int:
        """The plant's run feedback (asset IRI → whether it runs) into the graph's operational
        statuses (``kg.run_feedback``); how many changed."""
        ...


# ----------------------------------------------------------------------------- plant and config


FaultHook = Callable[["CoSimulation", FaultEvent, bool], Mapping[str, Mapping[str, float]]]
"""What starting (True) or ending (False) a fault does: it may act on the master's components
(a degradation model's ``inject``) and returns the inputs (component → name → value) to send."""


@dataclass
class RunPlant:
    """A run's simulators and what the loop must know about them (built by ``api.sim_plants``)."""

    master: CoSimulation
    binding: PlantBinding
    simulator: str
    simulator_version: str
    plant: str = "plant"  # the plant component's name
    degradation: str | None = None  # the degradation component (pump ids in ``pumps``)
    sensors: str | None = None  # the sensor-fault injector (feedthrough)
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    graph: Graph | None = None  # the run's plant graph (twin policies)
    alarm_limits: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    initial_inputs: Mapping[str, float] = field(default_factory=dict)
    fault_hook: FaultHook | None = None
    timed_inputs: Callable[[float], Mapping[str, float]] | None = None  # demand patterns
    # the current values of inputs the loop may scale (setpoints), read after instantiate
    read_inputs: Callable[[CoSimulation], Mapping[str, float]] | None = None
    restart_input: str | None = None  # asked (1.0) after a trip: the plant's own restart
    stop_input: str | None = None  # the plant-wide run input (0: a controlled stop, planned)
    lookahead: bool = False  # whether the twin's planner may fork this plant to look ahead
    # whether ``plant:running`` = 0 means the process is shut down (a TEP trip or stop: its
    # alarms are the shutdown's consequences and the twin waits, ISA-18.2 state-based
    # suppression), or only that a running plant serves less than its service level (a water
    # network under its share of demand: the network still runs and the twin keeps deciding)
    shuts_down: bool = True


@dataclass(frozen=True, slots=True)
class LoopConfig:
    """The scenario's numbers the loop runs by (all times in simulated seconds)."""

    scenario: str
    scenario_version: str
    scenario_hash: str
    horizon_s: float
    step_s: float
    telemetry_s: float
    decide_s: float
    warmup_s: float
    lookahead_s: float = 2 * 3600.0  # how far the look-ahead planner simulates each candidate
    risk_horizon_s: float = 24 * 3600.0  # how far past it a repairable asset's hazard counts
    crews: int = 1
    repair_s: float = 8 * 3600.0
    cost_per_repair: float = 0.0
    cost_per_crew_hour: float = 0.0
    preventive_interval_s: float = 168 * 3600.0
    preventive_s: float = 2 * 3600.0  # a preventive job's crew time
    cost_per_preventive: float = 500.0
    approver: str = "approve"  # approve | reject | approve_after | absent
    approver_delay_s: float = 900.0
    approver_after_s: float | None = None  # approve_after: requests before this are rejected
    faults: tuple[FaultEvent, ...] = ()
    max_agent_runs: int = 3  # agent runs per decision point
    scenario_file: str = "<scenario>"  # where the scenario came from


APPROVER_COMMENT = "simulated approver of scenario {name}@{version} ({behaviour}); not a person"


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A decision as the loop saw it (run-relative: the run's IRI prefix cut off)."""

    decision: str
    kind: str | None
    target: str | None
    outcome: str
    at_s: float
    setpoint: float | None


@dataclass
class _Job:
    asset: str
    element: str
    kind: str
    queued_s: float
    start_s: float | None = None
    corrective: bool = False  # the asset had failed: unplanned
    preventive: bool = False  # a preventive job (shorter, its own cost)


class LoopState:
    """The mutable state of one run (commands, repairs, approvals, counts)."""

    def __init__(self, plant: RunPlant, config: LoopConfig) -> None:
        self.plant = plant
        self.config = config
        self.kpi = new_accumulator(plant, config)
        self.simulated_s = 0.0
        self.applied = 0
        self.commanded: dict[str, float] = dict(plant.initial_inputs)  # input → value
        self.jobs: list[_Job] = []
        self.failed: set[str] = set()  # assets whose degradation says failed
        # (due simulated s, decision IRI, asked at simulated s)
        self.pending: list[tuple[float, str, float]] = []
        self.decisions: list[DecisionRecord] = []
        self.records: list[str] = []
        self.owner = _input_owners(plant)
        self.ranges = _input_ranges(plant)
        self.plant_down = False
        self.sent: dict[str, float] = {}
        # setpoint ramps: input → (from, to, start simulated s, duration s)
        self.ramps: dict[str, tuple[float, float, float, float]] = {}

    # -- inputs ------------------------------------------------------------------------

    def send(self, inputs: Mapping[str, float], *, changed_only: bool = False) -> None:
        """Queue inputs for whichever component declares each (with ``changed_only``, those
        whose value differs from what was last sent, so a fault's input is not overwritten)."""
        by_component: dict[str, dict[str, float]] = {}
        for name, value in inputs.items():
            if changed_only and self.sent.get(name) == value:
                continue
            self.sent[name] = value
            component = self.owner.get(name)
            if component is None:
                continue  # an input no simulator of this plant has: nothing moves
            by_component.setdefault(component, {})[name] = value
        for component, values in by_component.items():
            self.plant.master.set_inputs(component, values)

    def ramp(self, t: float) -> None:
        """Move each ramping setpoint to where its ramp is at simulated second ``t``."""
        for name, (start, end, t0, duration) in list(self.ramps.items()):
            share = min(1.0, max(0.0, (t - t0) / duration))
            self.commanded[name] = start + (end - start) * share
            if share >= 1.0:
                del self.ramps[name]

    def effective_inputs(self) -> dict[str, float]:
        """The commanded inputs with repairs and failures forcing assets out."""
        out = dict(self.commanded)
        for actuator in self.plant.binding.actuators:
            if actuator.run_input is None:
                continue
            if actuator.asset in self.failed or self._in_repair(actuator.asset):
                out[actuator.run_input] = 0.0
        return out

    def downtime(self, running: bool) -> dict[str, str]:
        """The assets out of service now, "planned" or "unplanned" (``"plant"``: all of it)."""
        out: dict[str, str] = {}
        for a in self.plant.binding.actuators:
            job = next((j for j in self.jobs if j.asset == a.asset and j.start_s is not None), None)
            if a.asset in self.failed or (job is not None and job.corrective):
                out[a.asset] = "unplanned"
            elif job is not None:
                out[a.asset] = "planned"
            elif a.run_input and a.standby_for is None and self.commanded.get(a.run_input) == 0.0:
                out[a.asset] = "planned"  # stopped on purpose
        if not running:
            stopped = self.plant.stop_input is not None and (
                self.commanded.get(self.plant.stop_input) == 0.0
            )
            out["plant"] = "planned" if stopped else "unplanned"
        return out

    def stopped_on_purpose(self) -> bool:
        """Whether the plant-wide run input holds a controlled stop (not a trip)."""
        stop = self.plant.stop_input
        return stop is not None and self.commanded.get(stop) == 0.0

    def _in_repair(self, asset: str) -> bool:
        return any(j.asset == asset and j.start_s is not None for j in self.jobs)

    def asset_states(self) -> dict[str, AssetState]:
        """Each actuated asset's state for a baseline's view."""
        out = {}
        for a in self.plant.binding.actuators:
            run = self.commanded.get(a.run_input, 1.0) if a.run_input else 1.0
            out[a.asset] = AssetState(
                asset=a.asset,
                failed=a.asset in self.failed,
                in_repair=self._in_repair(a.asset),
                queued=any(j.asset == a.asset and j.start_s is None for j in self.jobs),
                commanded_run=run >= 0.5,
            )
        return out

    # -- actions -----------------------------------------------------------------------

    def apply(self, command: Command, t: float) -> bool:  # noqa: PLR0911, PLR0912 - one per kind
        """Move the simulator inputs the command's actuator names; False when nothing moved."""
        binding = self.plant.binding
        actuator = binding.actuator(command.asset)
        if actuator is None:
            return False
        if command.kind == CONTROLLED_STOP and actuator.run_input:
            self.commanded[actuator.run_input] = 0.0
            self._end_hand(actuator)  # a stop ends a hand start
            return True
        if command.kind == RESTART and actuator.run_input:
            if self.commanded.get(actuator.run_input, 1.0) < 0.5:
                self.commanded[actuator.run_input] = 1.0  # it starts once its hold-off passed
                return True
            if actuator.start_input and self.commanded.get(actuator.start_input, 0.0) < 0.5:
                # available but left to its own controls: started by hand, and kept running
                self.commanded[actuator.start_input] = 1.0
                return True
            return False  # it runs, or runs by hand already: nothing to start
        if command.kind == SWITCH_TO_STANDBY:
            partner = partner_of(binding, actuator)
            if partner is None or partner.run_input is None or actuator.run_input is None:
                return False
            self.commanded[partner.run_input] = 1.0
            self.commanded[actuator.run_input] = 0.0
            self._end_hand(actuator)
            return True
        if command.kind == SETPOINT_CHANGE and actuator.setpoint_input:
            value = command.value
            if value is None and command.factor is not None:
                current = self.commanded.get(actuator.setpoint_input)
                if current is None:
                    return False
                value = current * command.factor
            if value is None:
                return False
            name = actuator.setpoint_input
            start = self.commanded.get(name)
            if command.ramp_s > 0 and start is not None:
                self.ramps[name] = (float(start), float(value), t, command.ramp_s)
            else:
                self.ramps.pop(name, None)
                self.commanded[name] = float(value)
            return True
        if command.kind == WORK_ORDER and actuator.repairable is not None:
            if any(j.asset == actuator.asset for j in self.jobs):
                return False  # one job per asset at a time
            preventive = command.reason.startswith("preventive")
            self.jobs.append(
                _Job(actuator.asset, actuator.repairable, actuator.kind, t, preventive=preventive)
            )
            return True
        return False

    def run_feedback(self) -> dict[str, bool]:
        """Whether each asset with a run-feedback output runs now (decision 0054)."""
        merged = _merged(self.plant)
        return {
            a.asset: merged[a.running_output] >= 0.5
            for a in self.plant.binding.actuators
            if a.running_output is not None and a.running_output in merged
        }

    def _end_hand(self, actuator: Actuator) -> None:
        """Hand a hand-started asset back to its own controls (nothing moves otherwise)."""
        name = actuator.start_input
        if name is not None and self.commanded.get(name, 0.0) >= 0.5:
            self.commanded[name] = 0.0

    def carries(self, command: Command, quantity_kind: str | None) -> bool:
        """Whether the plant can carry ``command`` out as judged: a setpoint change only where
        the target's actuator takes a setpoint of the very quantity kind the guard judged."""
        if command.kind != SETPOINT_CHANGE:
            return True
        actuator = self.plant.binding.actuator(command.asset)
        return (
            actuator is not None
            and actuator.setpoint_input is not None
            and quantity_kind is not None
            and actuator.setpoint_quantity_kind == quantity_kind
        )

    def outside_range(self, command: Command) -> bool:
        """Whether an applied setpoint lies outside the simulator input's declared range."""
        if command.kind != SETPOINT_CHANGE or command.value is None:
            return False
        actuator = self.plant.binding.actuator(command.asset)
        if actuator is None or actuator.setpoint_input is None:
            return False
        lo, hi = self.ranges.get(actuator.setpoint_input, (None, None))
        return (lo is not None and command.value < lo) or (hi is not None and command.value > hi)

    # -- repairs -----------------------------------------------------------------------

    def corrective(self, t: float) -> None:
        """A failed asset gets a repair job (the plant's own corrective maintenance)."""
        for asset in sorted(self.failed):
            if not any(j.asset == asset for j in self.jobs):
                actuator = self.plant.binding.actuator(asset)
                if actuator is not None and actuator.repairable is not None:
                    self.jobs.append(
                        _Job(asset, actuator.repairable, actuator.kind, t, corrective=True)
                    )

    def advance_jobs(self, t: float) -> dict[str, float]:
        """Start queued jobs as crews free up; finish those done. The repair inputs to send."""
        repair: dict[str, float] = {}
        config = self.config
        for job in list(self.jobs):
            hours = (config.preventive_s if job.preventive else config.repair_s) / 3600.0
            if job.start_s is not None and t >= job.start_s + hours * 3600.0:
                self.jobs.remove(job)
                done = self.plant.binding.actuator(job.asset)
                if done is not None and done.run_input is not None:  # back in service
                    self.commanded[done.run_input] = 0.0 if done.standby_for else 1.0
                    self._end_hand(done)  # under its own controls again
                if job.kind == "Pipe":  # a leak or burst mended
                    self.commanded[f"pipe:{job.element}:leak_area"] = 0.0
                else:  # the degradation model restores the pump to new
                    repair[f"pump:{job.element}:repair"] = 1.0
                self.failed.discard(job.asset)
                fixed = config.cost_per_preventive if job.preventive else config.cost_per_repair
                cost = fixed + config.cost_per_crew_hour * hours
                self.kpi.record(
                    MaintenanceDone(t, job.element, hours, cost, planned=not job.corrective)
                )
        busy = sum(1 for j in self.jobs if j.start_s is not None)
        for job in self.jobs:
            if job.start_s is None and busy < config.crews:
                job.start_s = t
                busy += 1
        return repair


def _input_owners(plant: RunPlant) -> dict[str, str]:
    owners: dict[str, str] = {}
    for name, component in plant.master.components.items():
        if name == plant.sensors:
            continue
        for v in component.info().variables:
            if v.causality == "input":
                owners.setdefault(v.name, name)
    return owners


def _input_ranges(plant: RunPlant) -> dict[str, tuple[float | None, float | None]]:
    out: dict[str, tuple[float | None, float | None]] = {}
    for component in plant.master.components.values():
        for v in component.info().variables:
            if v.causality == "input":
                out.setdefault(v.name, (v.minimum, v.maximum))
    return out


def partner_of(binding: PlantBinding, actuator: Actuator) -> Actuator | None:
    """The duty/standby partner of ``actuator`` in ``binding``, if it has one."""
    for other in binding.actuators:
        if other.standby_for == actuator.asset:
            return other
    if actuator.standby_for:
        return binding.actuator(actuator.standby_for)
    return None


def _merged(plant: RunPlant) -> dict[str, float]:
    outputs = plant.master.outputs
    merged: dict[str, float] = {}
    for name in outputs:
        if name != plant.sensors:
            merged.update(outputs[name])
    return merged


def _measured(plant: RunPlant, merged: Mapping[str, float]) -> dict[str, float]:
    if plant.sensors is None or plant.sensors not in plant.master.outputs:
        return dict(merged)
    return {**merged, **plant.master.outputs[plant.sensors]}


def telemetry_points(
    binding: PlantBinding, measured: Mapping[str, float], t: float
) -> list[dict[str, Any]]:
    """The JSON telemetry points of every bound sensor at simulated second ``t`` (a NaN, a
    dropout, gives no point; a missing output neither)."""
    moment = sim_time(t).isoformat()
    points = []
    for s in binding.sensors:
        raw = measured.get(s.output)
        if raw is None or not math.isfinite(raw):
            continue
        points.append(
            {
                "sensor": s.sensor,
                "value": raw * s.scale + s.offset,
                "unit": s.unit,
                "time": moment,
                "quality": "good",
            }
        )
    return points


def _account(state: LoopState, merged: Mapping[str, float], t: float, dt: float) -> None:
    """One step's KPIs: a trip when the plant's own interlock took it down, then the step."""
    running = merged.get("plant:running", 1.0) >= 0.5
    if not running and not state.plant_down and "plant:shutdown_code" in merged:
        code = merged["plant:shutdown_code"]  # the plant's own interlock (a TEP shutdown)
        if not (state.plant.stop_input and state.commanded.get(state.plant.stop_input) == 0.0):
            state.kpi.record(Trip(t, f"{code:g}"))
    state.plant_down = not running
    state.simulated_s += dt
    state.kpi.step(t, dt, merged, state.downtime(running))


def new_accumulator(
    plant: RunPlant, config: LoopConfig, *, start_s: float | None = None
) -> KpiAccumulator:
    """The KPI accumulator of a run of ``plant`` (its window starts after the warm-up)."""
    kind = plant.binding.plant.split(":", 1)[0]
    capacity = {
        a.asset: 1.0
        for a in plant.binding.actuators
        if a.kind == "Pump" and a.repairable and a.standby_for is None
    }
    return KpiAccumulator(
        kind if kind in ("tep", "epanet", "fmu") else "fmu",  # type: ignore[arg-type]
        horizon_s=None if start_s is not None else config.horizon_s,
        start_s=config.warmup_s if start_s is None else start_s,
        capacity=capacity,
        envelopes=plant.alarm_limits,
        bin_s=max(3600.0, config.step_s),
    )


def _failures(state: LoopState, merged: Mapping[str, float], t: float) -> None:
    for a in state.plant.binding.actuators:
        if a.repairable is None or a.kind != "Pump" or a.asset in state.failed:
            continue
        if merged.get(f"pump:{a.repairable}:failed", 0.0) >= 0.5:
            state.failed.add(a.asset)
            state.kpi.record(Failure(t, a.repairable))


def _command(decision: PortDecision) -> Command | None:
    if decision.kind is None or decision.target is None:
        return None
    return Command(
        decision.kind,
        decision.target,
        value=decision.proposed_setpoint,
        ramp_s=decision.ramp_s or 0.0,
    )


class _TwinDriver:
    """The twin's side of a run: ingest at decision points, agents, approvals."""

    def __init__(self, state: LoopState, port: TwinPort, planner: Planner, run_id: str) -> None:
        self.state, self.port, self.planner, self.run_id = state, port, planner, run_id
        self.buffer: list[dict[str, Any]] = []
        self.rows = 0
        self.fitted = False
        self.prefix = run_prefix(run_id)

    def decide(self, t: float) -> None:
        config = self.state.config
        if not self.fitted:
            self.port.ingest(
                self.buffer, received_at=sim_time(t), fit_rows=self.rows or None, source="warm-up"
            )
            self.fitted = True
        elif self.buffer:
            self.port.ingest(self.buffer, received_at=sim_time(t), fit_rows=None, source="sim")
        self.buffer = []
        feedback = self.state.run_feedback()
        if feedback:
            self.port.run_feedback(feedback)
        trigger = Trigger.FINDINGS
        if self.state.plant_down and self.state.plant.shuts_down:
            # state-based suppression (ISA-18.2): while the plant is shut down its process
            # alarms are the shutdown's consequences, and no action reaches a stopped process;
            # the twin keeps ingesting and decides again once the plant runs. After a trip the
            # plant restarts itself; after the twin's own controlled stop the agents look for
            # nothing but whether its restart is due (decision 0049). A plant that is only
            # under its service level still runs: nothing is suppressed (decision 0054)
            if not self.state.stopped_on_purpose():
                return
            trigger = Trigger.RESTART_DUE
        scope = self.state.plant.binding.site
        found = self.port.decide(
            run_id=self.run_id,
            scope=scope,
            as_of=sim_time(t),
            planner=self.planner,
            max_runs=config.max_agent_runs,
            trigger=trigger,
        )
        self.handle(found, t)

    def handle(self, found: Sequence[PortDecision], t: float) -> None:
        state, config = self.state, self.state.config
        for d in found:
            state.records.append(d.decision)
            state.kpi.record(Decision(t))
            state.decisions.append(
                DecisionRecord(
                    d.decision.replace(self.run_id, "{run}"),
                    d.kind,
                    None if d.target is None else d.target.removeprefix(self.prefix),
                    d.outcome,
                    t,
                    d.proposed_setpoint,
                )
            )
            if d.outcome in ("refused", "rejected") and d.kind is not None:
                state.kpi.record(ActionRefused(t, d.kind, d.target or ""))
            elif d.outcome == "awaiting_approval" and config.approver != "absent":
                state.pending.append((t + config.approver_delay_s, d.decision, t))
            elif d.outcome == "applied":
                command = _command(d)
                if command is None:
                    continue
                if command.kind == GATHER_DATA:
                    continue  # nothing reaches the plant: nothing to re-judge
                if not state.carries(command, d.quantity_kind):
                    # the guard judged a setpoint of another quantity than the actuator takes
                    # (e.g. a flow in L/s for a pump's relative speed): the plant interface
                    # refuses it rather than writing a number of the wrong kind
                    state.kpi.record(ActionRefused(t, command.kind, command.asset))
                    continue
                state.apply(command, t)
                unsafe = self.port.recheck(d) > 0 or state.outside_range(command)
                state.kpi.record(ActionApplied(t, command.kind, command.asset, unsafe=unsafe))

    def answers(self, t: float) -> None:
        state, config = self.state, self.state.config
        due = sorted(p for p in state.pending if p[0] <= t)
        for item in due:
            state.pending.remove(item)
            comment = APPROVER_COMMENT.format(
                name=config.scenario, version=config.scenario_version, behaviour=config.approver
            )
            found = self.port.answer(
                item[1], approve=_approves(config, item[2]), at=sim_time(t), comment=comment
            )
            self.handle(found, t)


def _approves(config: LoopConfig, asked_s: float) -> bool:
    """The scenario's approver's answer to a request made at simulated second ``asked_s``."""
    if config.approver == "reject":
        return False
    if config.approver == "approve_after":
        return config.approver_after_s is None or asked_s >= config.approver_after_s
    return True


def _shapes_version() -> str:
    from twinkg.reasoner.safety import safety_shapes_version  # noqa: PLC0415 - loads the shapes

    return safety_shapes_version()


def _twinkg_version() -> str:
    try:
        return metadata.version("twinkg")
    except metadata.PackageNotFoundError:
        return "0+source"


def run_plant(  # noqa: PLR0912, PLR0915 - the loop is one sequence, read top to bottom
    plant: RunPlant,
    config: LoopConfig,
    *,
    policy: str,
    seed: int,
    port: TwinPort | None,
    recorder: RunRecorder | None,
    progress: Progress | None = None,
    run_id: str,
    lookahead_workers: int = 1,
) -> tuple[SimResult, tuple[DecisionRecord, ...]]:
    """Run ``plant`` under ``policy`` (see the module docstring); the result and the decisions.
    ``lookahead_workers``: processes that try the look-ahead's candidates at once."""
    clock = time.perf_counter()
    check_policy(policy)
    run_iri = f"{run_prefix(run_id)}run"
    state = LoopState(plant, config)
    twin: _TwinDriver | None = None
    base: Policy | None = None
    if policy in TWIN_POLICIES:
        if port is None:
            raise ConfigError(f"the {policy} policy needs the twin (a graph store)")
        inner = port.planner(policy)
        planner = _with_lookahead(inner, state, lookahead_workers)
        if plant.graph is None:
            raise ConfigError(f"the plant of {config.scenario} has no graph for the twin")
        port.seed(run_id, plant.graph)
        twin = _TwinDriver(state, port, planner, run_id)
    else:
        base = baseline(
            policy,
            binding=plant.binding,
            interval_s=config.preventive_interval_s,
            start_s=config.warmup_s,
        )
    if recorder is not None:
        recorder.start_run(
            SimRunStart(
                run=run_iri,
                scenario=config.scenario,
                scenario_version=config.scenario_version,
                scenario_hash=config.scenario_hash,
                scenario_file=config.scenario_file,
                policy=policy,
                seed=seed,
                simulator=plant.simulator,
                simulator_version=plant.simulator_version,
                twinkg_version=_twinkg_version(),
                ontology_version=ONTOLOGY_VERSION,
                shapes_version=_shapes_version(),
                horizon_s=config.horizon_s,
                step_s=config.step_s,
                started_at=datetime.now(UTC).isoformat(),
            )
        )
    status, reason = "completed", None
    steps = round(config.horizon_s / config.step_s)
    tel_every = max(1, round(config.telemetry_s / config.step_s))
    dec_every = max(1, round(config.decide_s / config.step_s))
    faults = list(config.faults)  # sorted by onset (sim.scenario.fault_schedule)
    ended: set[int] = set()
    started: set[int] = set()
    master = plant.master
    try:
        master.instantiate(plant.parameters, seed)
        state.owner = _input_owners(plant)  # a component may declare its variables only now
        state.ranges = _input_ranges(plant)
        if plant.read_inputs is not None:
            for name, value in plant.read_inputs(master).items():
                state.commanded.setdefault(name, value)
        for actuator in plant.binding.actuators:  # run inputs start as the plant's layout says
            if actuator.run_input is not None:
                default = 0.0 if actuator.standby_for else 1.0
                state.commanded.setdefault(actuator.run_input, default)
        state.send(state.effective_inputs())
        for k in range(steps):
            t = k * config.step_s
            for i, fault in enumerate(faults):
                if plant.fault_hook is None:
                    break
                if i not in started and fault.time_s <= t:
                    started.add(i)
                    _send_by_component(master, plant.fault_hook(master, fault, True))
                if i in started and i not in ended and fault.end_s is not None and fault.end_s <= t:
                    ended.add(i)
                    _send_by_component(master, plant.fault_hook(master, fault, False))
            repair = state.advance_jobs(t)
            state.ramp(t + config.step_s)
            inputs = state.effective_inputs()
            if plant.timed_inputs is not None:
                inputs.update(plant.timed_inputs(t))
            for name in list(repair):
                inputs[name] = 1.0
            state.send(inputs, changed_only=True)
            master.step()
            if repair:
                state.send(dict.fromkeys(repair, 0.0))
            t_end = (k + 1) * config.step_s
            merged = _merged(plant)
            _failures(state, merged, t)
            state.corrective(t_end)
            was_down = state.plant_down
            _account(state, merged, t, config.step_s)
            if state.plant_down and not was_down and plant.restart_input is not None:
                state.send({plant.restart_input: 1.0})  # the plant's own restart after a trip
            measured = _measured(plant, merged) if (twin or base) else merged
            if twin is not None and (k + 1) % tel_every == 0:
                twin.buffer.extend(telemetry_points(plant.binding, measured, t_end))
                if t_end <= config.warmup_s:
                    twin.rows += 1
            if t_end >= config.warmup_s and (k + 1) % dec_every == 0:
                if twin is not None:
                    twin.decide(t_end)
                elif base is not None:
                    view = PlantView(
                        t=t_end,
                        measured=measured,
                        binding=plant.binding,
                        assets=state.asset_states(),
                        alarm_limits=plant.alarm_limits,
                    )
                    for command in base.decide(view):
                        if state.apply(command, t_end):
                            state.kpi.record(ActionApplied(t_end, command.kind, command.asset))
            if twin is not None and state.pending:
                twin.answers(t_end)
            if progress is not None:
                progress((k + 1) / steps)
    except SimulatorError as exc:
        status, reason = "failed", str(exc)
    except TwinKGError as exc:  # the twin refused something the run needs: said, not hidden
        status, reason = "failed", f"{exc.code}: {exc}"
    finally:
        try:
            master.terminate()
        except SimulatorError as exc:
            if status == "completed":
                status, reason = "failed", str(exc)
    partial = status == "failed"
    kpis = state.kpi.result(partial=partial)
    if recorder is not None:
        if state.records:
            recorder.link_decisions(run_iri, list(state.records))
        recorder.finish_run(run_iri, status, reason, partial, kpi_values(kpis))
    result = SimResult(
        run=run_iri,
        scenario=config.scenario,
        scenario_version=config.scenario_version,
        scenario_hash=config.scenario_hash,
        policy=policy,
        seed=seed,
        status=status,
        reason=reason,
        partial=partial,
        kpis=kpis,
        decisions=tuple(state.records),
        simulator=plant.simulator,
        simulator_version=plant.simulator_version,
        simulated_s=state.simulated_s,
        wall_s=time.perf_counter() - clock,
    )
    return result, tuple(state.decisions)


def kpi_values(kpis: KpiResult) -> dict[str, tuple[float, str]]:
    """Every KPI as (value, unit), for the run record."""
    return {name: (value, kpis.units[name]) for name, value in kpis.values().items()}


def _send_by_component(master: CoSimulation, inputs: Mapping[str, Mapping[str, float]]) -> None:
    for component, values in inputs.items():
        if values:
            master.set_inputs(component, values)


def _with_lookahead(inner: Planner, state: LoopState, workers: int) -> Planner:
    if not state.plant.lookahead:
        return inner
    from twinkg.sim.lookahead import LookaheadPlanner  # noqa: PLC0415

    return LookaheadPlanner(inner, state, horizon_s=state.config.lookahead_s, workers=workers)


def try_on_fork(
    state: LoopState,
    action: ProposedAction,
    horizon_s: float,
    *,
    unmoved: Outcome | None = None,
    first: Sequence[ProposedAction] = (),
) -> Outcome:
    """Apply ``action`` to a fork of the run and simulate ``horizon_s`` ahead; what happened.

    ``first`` are actions the fork applies before ``action`` (what was already chosen at this
    instant and is taken as going ahead); ``unmoved`` is then doing nothing after them.

    The fork is the master's snapshot and a copy of the loop's own state (commands, jobs,
    failures, the KPI ledger); both are put back whatever happens. The future faults of the
    schedule are not known to the fork (the planner cannot know them). An action that moves
    nothing in the plant (a work order on equipment nothing repairs, say) gives ``unmoved``,
    doing nothing's outcome, when that is known: the same fork need not run twice.
    """
    from twinkg.sim.lookahead import Outcome  # noqa: PLC0415

    plant, config = state.plant, state.config
    master = plant.master
    snapshot = master.snapshot()
    saved = (
        dict(state.commanded),
        [
            _Job(j.asset, j.element, j.kind, j.queued_s, j.start_s, j.corrective, j.preventive)
            for j in state.jobs
        ],
        set(state.failed),
        dict(state.sent),
        state.plant_down,
        state.kpi,
        state.simulated_s,
        dict(state.ramps),
    )
    t0 = master.time
    state.kpi = new_accumulator(plant, config, start_s=t0)
    expected = 0.0
    wear = master.components.get(plant.degradation) if plant.degradation else None
    if isinstance(wear, PumpDegradation):
        wear.conceal_lives(True)  # the fork knows each pump's hazard, not when it will fail
    try:
        for before in first:
            state.apply(_command_of(before), master.time)
        if not state.apply(_command_of(action), master.time) and unmoved is not None:
            return unmoved
        dt = config.step_s
        for _ in range(max(1, round(horizon_s / dt))):
            t = master.time
            repair = state.advance_jobs(t)
            state.ramp(t + config.step_s)
            inputs = state.effective_inputs()
            if plant.timed_inputs is not None:
                inputs.update(plant.timed_inputs(t))
            inputs.update(dict.fromkeys(repair, 1.0))
            state.send(inputs, changed_only=True)
            master.step()
            if repair:
                state.send(dict.fromkeys(repair, 0.0))
            merged = _merged(plant)
            _failures(state, merged, t)
            state.corrective(master.time)
            _account(state, merged, t, dt)
            for a in plant.binding.actuators:
                if a.repairable is not None and a.asset not in state.failed:
                    running = merged.get(f"pump:{a.repairable}:running", 0.0) >= 0.5
                    hazard = merged.get(f"pump:{a.repairable}:hazard", 0.0)
                    expected += hazard * dt / 3600.0 if running else 0.0
        after = _failures_after(state, _merged(plant), config.risk_horizon_s)
        owed = _repair_owed(state, master.time)
        kpis = state.kpi.result(partial=True)
        energy = 0.0
        if math.isfinite(kpis.energy_per_unit):  # $/h (tep) or kWh/m3 (water): a tie-breaker
            energy = kpis.energy_per_unit * (master.time - t0) / 3600.0
        ordered = sum(1 for j in state.jobs if not j.corrective)  # committed, not yet done
        job_cost = config.cost_per_repair + config.cost_per_crew_hour * config.repair_s / 3600.0
        return Outcome(
            trips=kpis.trips,
            unplanned_h=kpis.unplanned_downtime_h,
            expected_failures=expected,
            failures_after=after,
            repair_owed_h=owed,
            throughput=kpis.throughput if math.isfinite(kpis.throughput) else 0.0,
            cost=kpis.maintenance_cost + ordered * job_cost + energy,
        )
    finally:
        if isinstance(wear, PumpDegradation):
            wear.conceal_lives(False)
        master.restore(snapshot)
        (
            state.commanded,
            state.jobs,
            state.failed,
            state.sent,
            state.plant_down,
            state.kpi,
            state.simulated_s,
            state.ramps,
        ) = saved


def _command_of(action: ProposedAction) -> Command:
    return Command(
        action.kind.value,
        action.target,
        value=action.proposed_setpoint,
        ramp_s=action.ramp_s or 0.0,
    )


def _repair_owed(state: LoopState, t: float) -> float:
    """The hours of corrective repair still owed at ``t``: a failed asset's job not yet done
    (what is left of it once started, all of it while queued). A failure near a fork's end
    costs its whole repair, not just the part the fork happened to see."""
    owed = 0.0
    for job in state.jobs:
        if not job.corrective:
            continue
        left = state.config.repair_s - (0.0 if job.start_s is None else t - job.start_s)
        owed += max(0.0, left) / 3600.0
    waiting = state.failed - {j.asset for j in state.jobs}
    return owed + len(waiting) * state.config.repair_s / 3600.0


def _failures_after(state: LoopState, merged: Mapping[str, float], risk_s: float) -> float:
    """The failures expected over ``risk_s`` past the fork's end (the look-ahead's terminal cost).

    Each repairable asset that has not failed and has no job ordered keeps the failure hazard it
    ends the fork with, for ``risk_s``, whether it runs or stands stopped: stopping a wearing pump
    defers its risk and does not remove it; only a repair does. The hazard only grows with wear,
    so the figure is a lower bound.
    """
    if risk_s <= 0:
        return 0.0
    ordered = {j.asset for j in state.jobs}
    total = 0.0
    for a in state.plant.binding.actuators:
        if a.repairable is None or a.asset in state.failed or a.asset in ordered:
            continue
        total += merged.get(f"pump:{a.repairable}:hazard", 0.0) * risk_s / 3600.0
    return total


def new_run_id(scenario: str, policy: str, seed: int) -> str:
    """A fresh run id (unique per call; the content of a run does not depend on it)."""
    import uuid  # noqa: PLC0415

    return f"{scenario}-{policy}-s{seed}-{uuid.uuid4().hex[:8]}"


__all__ = [
    "EPOCH",
    "SIM_BASE",
    "DecisionRecord",
    "FaultEvent",
    "FaultHook",
    "LoopConfig",
    "PortDecision",
    "RunPlant",
    "RunRecorder",
    "SimRunStart",
    "TwinPort",
    "kpi_values",
    "new_accumulator",
    "new_run_id",
    "run_plant",
    "run_prefix",
    "sim_time",
    "telemetry_points",
]
