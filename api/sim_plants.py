"""A run's simulators and plant binding, built from a scenario, and a scenario run end to end.

This is where a scenario meets the simulators (``sim``) and the plant graphs built from their
models (``graph_seed``): the application layer, so that ``sim`` never imports ``graph_seed``
(decision 0047). :func:`run_scenario` builds and runs one seed under one policy.

:func:`build` dispatches on the scenario's plant kind: ``tep`` (``sim.tep`` with the plant graph of
``graph_seed.tep``), ``epanet`` (``sim.water`` coupled to ``sim.degradation`` for its pumps, with
the graph of ``graph_seed.epanet``) or ``fmu`` (``sim.fmu``; no plant graph, so the baselines
only). Every plant gets the sensor-fault injector (``sim.sensor_faults``) as a feedthrough
component on the outputs its sensors read, with the scenario's sensor faults scheduled at
instantiation. The other faults are injected by the loop at their onsets through
:func:`fault_hook`. :func:`loop_config` turns the scenario's numbers into the loop's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinkg.ontology.errors import ScenarioError
from twinkg.sim.binding import PlantBinding
from twinkg.sim.loop import (
    FaultHook,
    LoopConfig,
    RunPlant,
    RunRecorder,
    TwinPort,
    new_run_id,
    run_plant,
    run_prefix,
)
from twinkg.sim.master import Connection, CoSimulation
from twinkg.sim.policies import TWIN_POLICIES, check_policy
from twinkg.sim.results import Progress, SimResult
from twinkg.sim.scenario import SENSOR_FAULTS, FaultEvent, Scenario, fault_schedule

if TYPE_CHECKING:
    from twinkg.api.sim_opcua import OpcUaPlantConfig

PLANT, DEGRADATION, SENSORS = "plant", "degradation", "sensors"
_DEGRADATION_OUTPUTS = frozenset(
    {
        "wear",
        "head_factor",
        "efficiency_factor",
        "vibration",
        "bearing_temperature",
        "seal_leak",
        "failed",
        "hazard",
    }
)
_PUMP_OUTPUT = re.compile(r"pump:(?P<id>.+):(?P<q>[a-z_]+)")
# Alarm limits the threshold-reactive baseline (and the excursion KPI) use.
VIBRATION_ALARM = 7.1  # mm/s RMS: ISO 10816-3 zone C/D boundary for a medium machine
BEARING_ALARM = 90.0  # °C
TEP_LIMITS: Mapping[str, tuple[float | None, float | None]] = {
    "xmeas:reactor_pressure": (None, 2900.0),  # kPa gauge; the interlock trips at 3000
    "xmeas:reactor_temperature": (None, 170.0),  # °C; the interlock trips at 175
}


def loop_config(scenario: Scenario, *, seed: int) -> LoopConfig:
    """The loop's numbers from ``scenario`` (times in simulated seconds), with the fault
    schedule drawn from ``seed``."""
    t, m, a = scenario.time, scenario.maintenance, scenario.approver
    return LoopConfig(
        scenario=scenario.name,
        scenario_version=scenario.version,
        scenario_hash=scenario.content_hash,
        horizon_s=t.horizon_s,
        step_s=t.step_s,
        telemetry_s=t.telemetry_s,
        decide_s=t.decide_s,
        warmup_s=t.warmup_s,
        lookahead_s=t.lookahead_h * 3600.0,
        risk_horizon_s=t.risk_horizon_h * 3600.0,
        crews=m.crews,
        repair_s=m.repair_h * 3600.0,
        cost_per_repair=m.cost_per_repair,
        cost_per_crew_hour=m.cost_per_crew_hour,
        preventive_interval_s=m.preventive_interval_h * 3600.0,
        preventive_s=m.preventive_h * 3600.0,
        cost_per_preventive=m.cost_per_preventive,
        approver=a.behaviour,
        approver_delay_s=a.delay_h * 3600.0,
        approver_after_s=None if a.after_h is None else a.after_h * 3600.0,
        faults=fault_schedule(scenario, seed),
        scenario_file=scenario.source,
    )


def build(scenario: Scenario, *, seed: int, base: str, twin: bool) -> RunPlant:
    """The run's simulators, coupled, and its plant binding; ``base`` is the IRI prefix of the
    run's own plant graph (built when ``twin``)."""
    kind = scenario.plant.kind
    schedule = fault_schedule(scenario, seed)
    if kind == "tep":
        return _tep(scenario, schedule, base)
    if kind == "epanet":
        return _epanet(scenario, schedule, base)
    if kind == "fmu":
        if twin:
            raise ScenarioError(
                f"{scenario.name}: an FMU plant has no plant graph; run it with a baseline policy"
            )
        return _fmu(scenario, schedule, base)
    raise ScenarioError(f"unknown plant kind {kind!r}")  # pragma: no cover - the schema says


def _sensor_faults(schedule: tuple[FaultEvent, ...]) -> list[dict[str, Any]]:
    return [
        {
            "kind": e.kind.removeprefix("sensor_"),
            "signal": e.target,
            "onset_s": e.time_s,
            "end_s": e.end_s,
            "magnitude": e.magnitude if e.kind in ("sensor_drift", "sensor_noise") else 0.0,
        }
        for e in schedule
        if e.kind in SENSOR_FAULTS
    ]


def _signals(binding: PlantBinding, schedule: tuple[FaultEvent, ...]) -> list[str]:
    names = [s.output for s in binding.sensors]
    names += [e.target for e in schedule if e.kind in SENSOR_FAULTS]
    return list(dict.fromkeys(names))


def _owner(output: str, pumps: frozenset[str]) -> str:
    match = _PUMP_OUTPUT.fullmatch(output)
    if match and match["id"] in pumps and match["q"] in _DEGRADATION_OUTPUTS:
        return DEGRADATION
    return PLANT


def fault_hook(scenario: Scenario) -> FaultHook:
    """What starting (``True``) or ending (``False``) a fault does to the run's components:
    pump faults go into the degradation model, pipe, station, valve and disturbance faults to
    the plant's inputs, sensor faults are already scheduled in the injector (nothing here)."""
    del scenario

    def hook(
        master: CoSimulation, event: FaultEvent, active: bool
    ) -> Mapping[str, Mapping[str, float]]:
        kind, target = event.kind, event.target
        if kind in ("pump_wear", "bearing_failure", "seal_leak"):
            if active and DEGRADATION in master.components:
                component: Any = master.components[DEGRADATION]
                component.inject(kind, target, event.magnitude)
            return {}
        if kind in ("pipe_leak", "pipe_burst"):
            return {PLANT: {f"pipe:{target}:leak_area": event.magnitude if active else 0.0}}
        if kind == "power_outage":
            return {PLANT: {f"station:{target}:power": 0.0 if active else 1.0}}
        if kind == "stuck_valve":
            return {PLANT: {f"valve:{target}:stuck": 1.0 if active else 0.0}}
        if kind == "disturbance":
            return {PLANT: {target: event.magnitude if active else 0.0}}
        return {}

    return hook


def _tep(scenario: Scenario, schedule: tuple[FaultEvent, ...], base: str) -> RunPlant:
    from twinkg.graph_seed.tep import tep_plant  # noqa: PLC0415 - loads rdflib graphs
    from twinkg.sim.sensor_faults import SensorFaults  # noqa: PLC0415
    from twinkg.sim.tep import TepSimulator  # noqa: PLC0415

    graph, binding = tep_plant(base)
    plant = TepSimulator()
    info = plant.info()
    signals = _signals(binding, schedule)
    wiring = [Connection(PLANT, s, SENSORS, s) for s in signals]
    master = CoSimulation(
        {PLANT: plant, SENSORS: SensorFaults()},
        wiring,
        dt=scenario.time.step_s,
        feedthrough=(SENSORS,),
    )

    def setpoints(master: CoSimulation) -> dict[str, float]:
        controller = getattr(master.components[PLANT], "setpoints", None)
        return {
            f"sp:{a.setpoint_input.removeprefix('sp:')}": float(
                getattr(controller, a.setpoint_input.removeprefix("sp:"))
            )
            for a in binding.actuators
            if a.setpoint_input and hasattr(controller, a.setpoint_input.removeprefix("sp:"))
        }

    parameters: dict[str, Mapping[str, Any]] = {
        PLANT: {"mode": scenario.plant.model, "production_multiplier": scenario.demand.multiplier},
        SENSORS: {"signals": signals, "faults": _sensor_faults(schedule)},
    }
    return RunPlant(
        master=master,
        binding=binding,
        simulator=info.name,
        simulator_version=info.version,
        sensors=SENSORS,
        parameters=parameters,
        graph=graph,
        alarm_limits=TEP_LIMITS,
        read_inputs=setpoints,
        fault_hook=fault_hook(scenario),
        restart_input="plant:restart",
        stop_input="plant:run",
        lookahead=True,
    )


def _epanet(scenario: Scenario, schedule: tuple[FaultEvent, ...], base: str) -> RunPlant:
    from twinkg.graph_seed.epanet import epanet_plant  # noqa: PLC0415
    from twinkg.sim.degradation import PumpDegradation  # noqa: PLC0415
    from twinkg.sim.sensor_faults import SensorFaults  # noqa: PLC0415
    from twinkg.sim.water import WaterNetworkSimulator  # noqa: PLC0415

    model: str | Path = scenario.model_file or scenario.plant.model
    graph, binding = epanet_plant(model, base)
    plant = WaterNetworkSimulator(model)
    info = plant.info()
    pumps = tuple(sorted(plant.wn.pump_name_list))
    pump_set = frozenset(pumps)
    wiring: list[Connection] = []
    for p in pumps:
        wiring += [
            Connection(PLANT, f"pump:{p}:running", DEGRADATION, f"pump:{p}:running"),
            Connection(PLANT, f"pump:{p}:flow", DEGRADATION, f"pump:{p}:flow"),
            Connection(DEGRADATION, f"pump:{p}:head_factor", PLANT, f"pump:{p}:head_factor"),
            Connection(
                DEGRADATION, f"pump:{p}:efficiency_factor", PLANT, f"pump:{p}:efficiency_factor"
            ),
        ]
    signals = _signals(binding, schedule)
    wiring += [Connection(_owner(s, pump_set), s, SENSORS, s) for s in signals]
    master = CoSimulation(
        {PLANT: plant, DEGRADATION: PumpDegradation(), SENSORS: SensorFaults()},
        wiring,
        dt=scenario.time.step_s,
        feedthrough=(SENSORS,),
    )
    parameters: dict[str, Mapping[str, Any]] = {
        PLANT: {
            "step_s": scenario.time.step_s,
            "horizon_s": scenario.time.horizon_s + 86400,
            "unbalanced": scenario.plant.unbalanced,
        },
        DEGRADATION: {"pumps": list(pumps)},
        SENSORS: {"signals": signals, "faults": _sensor_faults(schedule)},
    }
    limits: dict[str, tuple[float | None, float | None]] = {}
    for p in pumps:
        limits[f"pump:{p}:vibration"] = (None, VIBRATION_ALARM)
        limits[f"pump:{p}:bearing_temperature"] = (None, BEARING_ALARM)
    demand = scenario.demand
    return RunPlant(
        master=master,
        binding=binding,
        simulator=info.name,
        simulator_version=info.version,
        degradation=DEGRADATION,
        sensors=SENSORS,
        parameters=parameters,
        graph=graph,
        alarm_limits=limits,
        fault_hook=fault_hook(scenario),
        timed_inputs=lambda t: {"plant:demand_multiplier": demand.multiplier_at(t)},
        lookahead=True,
        shuts_down=False,  # "running" is serving 0.9 of demand: an under-served network runs
    )


def _fmu(scenario: Scenario, schedule: tuple[FaultEvent, ...], base: str) -> RunPlant:
    from twinkg.sim.fmu import FmuSimulator  # noqa: PLC0415
    from twinkg.sim.sensor_faults import SensorFaults  # noqa: PLC0415

    path = scenario.model_file or Path(scenario.plant.model)
    plant = FmuSimulator(path)
    info = plant.info()
    binding = PlantBinding(f"fmu:{info.name}", f"{base}site", (), ())
    signals = _signals(binding, schedule)
    components: dict[str, Any] = {PLANT: plant}
    wiring = [Connection(PLANT, s, SENSORS, s) for s in signals]
    if signals:
        components[SENSORS] = SensorFaults()
    master = CoSimulation(
        components,
        wiring,
        dt=scenario.time.step_s,
        feedthrough=(SENSORS,) if signals else (),
    )
    parameters: dict[str, Mapping[str, Any]] = {}
    if signals:
        parameters[SENSORS] = {"signals": signals, "faults": _sensor_faults(schedule)}
    return RunPlant(
        master=master,
        binding=binding,
        simulator=info.name,
        simulator_version=info.version,
        sensors=SENSORS if signals else None,
        parameters=parameters,
        fault_hook=fault_hook(scenario),
    )


def run_scenario(
    scenario: Scenario,
    *,
    policy: str,
    seed: int,
    port: TwinPort | None,
    recorder: RunRecorder | None,
    progress: Progress | None = None,
    run: str | None = None,
    lookahead_workers: int = 1,
    opcua: OpcUaPlantConfig | None = None,
) -> SimResult:
    """Run ``scenario`` (a ``sim.scenario.Scenario``) under ``policy`` with ``seed``.

    ``run`` is the run id (a fresh one when None); the run's IRI is
    ``https://w3id.org/twinkg/sim/<run id>/run``. The twin's policies need ``port``; a run is
    recorded when ``recorder`` is given. ``lookahead_workers`` processes try the look-ahead's
    candidates at once (decision 0053). With ``opcua`` the plant is served over OPC UA and the
    loop steps it as a client (decision 0061); its session cannot cross a fork, so the
    look-ahead then tries its candidates one after another.
    """
    check_policy(policy)
    run_id = run or new_run_id(scenario.name, policy, seed)
    plant = build(scenario, seed=seed, base=run_prefix(run_id), twin=policy in TWIN_POLICIES)
    config = loop_config(scenario, seed=seed)
    with ExitStack() as stack:
        if opcua is not None:
            from twinkg.api.sim_opcua import over_opcua  # noqa: PLC0415 - loads asyncua

            plant = stack.enter_context(over_opcua(plant, opcua))
            lookahead_workers = 1
        result, _ = run_plant(
            plant,
            config,
            policy=policy,
            seed=seed,
            port=port,
            recorder=recorder,
            progress=progress,
            run_id=run_id,
            lookahead_workers=lookahead_workers,
        )
    return result
