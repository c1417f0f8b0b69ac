"""The Tennessee Eastman Process in the loop, through ``tep-studio`` (decision 0041).

:class:`TepSimulator` is one co-simulation slave: the modified TEP of Bathelt, Ricker & Jelali
(``tep_studio.TennesseeEastmanProcess``, its native kernel) closed by Ricker's decentralized
multiloop controller (``tep_studio.RickerMultiLoopController``), stepped internally at
tep-studio's control interval of 0.0005 h (1.8 s), so one ``do_step(t, dt)`` with ``dt`` a
multiple of 1.8 s runs many control intervals.

Outputs: ``xmeas:<name>`` for the 41 measurements (tep-studio's names and units),
``xmv:<name>`` for the 12 implemented manipulated variables (% open), ``plant:running`` (1/0),
``plant:throughput`` (product rate, the stripper underflow, m³/h), ``plant:cost_per_h``
(operating cost from the kernel's noise-free values, $/h), ``plant:shutdown_code`` (0 running;
1..8 the kernel's interlocks: 1 high reactor pressure, 2 high / 3 low reactor level, 4 high
reactor temperature, 5 high / 6 low separator level, 7 high / 8 low stripper level; -1 a
controlled stop) and ``plant:down_h`` (hours since the plant went down, 0 while running).

Inputs: ``sp:<name>`` for the controller setpoints (``tep_studio.list_setpoints``),
``idv:<n>`` for the 28 disturbances (0 off, 1 on; the kernel scales by the value),
``xmv:<name>:manual`` (NaN: the controller moves the valve; a number: held there, 0..100 %),
``plant:run`` (1 run; 0 a controlled stop; back to 1 asks for a restart) and ``plant:restart``
(a command: a value >= 0.5 asks for a restart, kept until carried out).

Shutdowns are the plant's own interlocks. After one the plant stays down, its measurements
frozen at their last values before the trip except flows and compressor work, which read 0, and
its valves at 0 %, until a restart is asked for and the restart time has passed since the trip
(``restart_h``, default 24 h; ``stop_restart_h`` after a controlled stop, default 8 h). A restart
starts the plant again from the mode's initial state with the current setpoints and
disturbances, its measurement noise seeded from the run's seed and the restart's number.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
from tep_studio import (
    TEP_SCHEMA,
    ControllerSetpoints,
    RickerMultiLoopController,
    TennesseeEastmanProcess,
    list_setpoints,
)
from tep_studio.simulation.modes import MODE_KEYS, mode_setpoints
from tep_studio.simulation.native import NativeSnapshot, ffi, lib

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.adapter import ModelInfo, Variable

CONTROL_INTERVAL_H = 0.0005
"""tep-studio's control interval (hours): the controller acts, the plant integrates, once per."""
CONTROL_INTERVAL_S = CONTROL_INTERVAL_H * 3600.0  # 1.8 s
DEFAULT_RESTART_H = 24.0
"""Hours a tripped plant stays down before it may be restarted (assumption, decision 0041)."""
DEFAULT_STOP_RESTART_H = 8.0
"""Hours after a controlled stop before the plant may be restarted (assumption, decision 0041)."""
CONTROLLED_STOP_CODE = -1.0

MEASUREMENTS: tuple[str, ...] = tuple(TEP_SCHEMA.names("measurements"))
MANIPULATED: tuple[str, ...] = tuple(TEP_SCHEMA.names("manipulated_variables"))
SETPOINTS: tuple[str, ...] = tuple(list_setpoints())
DISTURBANCES = len(TEP_SCHEMA.disturbances)
SHUTDOWN_MESSAGES: dict[int, str] = {
    1: "high reactor pressure",
    2: "high reactor liquid level",
    3: "low reactor liquid level",
    4: "high reactor temperature",
    5: "high separator liquid level",
    6: "low separator liquid level",
    7: "high stripper liquid level",
    8: "low stripper liquid level",
}
"""The kernel's interlocks by shutdown code (the messages the native kernel reports)."""

# Measurements that read 0 while the plant is down: the flows and the compressor's work.
_ZERO_WHEN_DOWN_UNITS = frozenset({"kscmh", "kg/h", "m3/h", "kW"})
_ZERO_WHEN_DOWN = np.array(
    [v.unit in _ZERO_WHEN_DOWN_UNITS for v in TEP_SCHEMA.measurements], dtype=bool
)
_PRODUCT = MEASUREMENTS.index("stripper_underflow")
_SETPOINT_UNITS = {
    "reactor_level": "%",
    "reactor_pressure": "kPa gauge",
    "reactor_temperature": "degC",
    "separator_level": "%",
    "stripper_level": "%",
    "pct_g": "mol %",
    "production_rate": "m3/h",
    "ya": "mol %",
    "yac": "mol %",
}
_PARAMETERS = frozenset({"mode", "model", "restart_h", "stop_restart_h", "production_multiplier"})
_SEED_BASE = 1431655765  # the original TEP's noise seed; a run's seed is added to it


def tep_version() -> str:
    """The installed tep-studio version."""
    return package_version("tep-studio")


def _noise_seed(seed: int, restarts: int) -> float:
    """The kernel's noise seed (a positive integer as a double; 0 would give no noise)."""
    value = (_SEED_BASE + int(seed) * 7919 + restarts * 104729) % 4294967291
    return float(value or 1)


# Parts of the controller that never change after construction (the schema, the loop registry,
# the frozen PI primitives, the index maps): a copy shares them and deep-copies the rest.
_CONTROLLER_CONSTANTS = ("schema", "registry", "_feed_pi", "_pi", "_ya", "_yac", "_mi", "_vi")


def _copy_controller(controller: RickerMultiLoopController) -> RickerMultiLoopController:
    """A copy of the controller's state that shares its constant parts (20x faster than a
    plain deep copy, which copies tep-studio's whole schema)."""
    memo: dict[int, Any] = {}
    for name in _CONTROLLER_CONSTANTS:
        part = getattr(controller, name)
        memo[id(part)] = part
    copied: RickerMultiLoopController = copy.deepcopy(controller, memo)
    return copied


@dataclass(frozen=True, slots=True)
class TepStep:
    """What one control interval of the kernel gave: what the loop reads of it."""

    measurements: np.ndarray  # the 41 published measurements after the interval
    implemented: np.ndarray  # the 12 manipulated variables as applied (clipped to 0..100 %)
    shutdown_code: float  # 0 running; 1..8 an interlock tripped during the interval
    cost_per_h: float  # operating cost from the kernel's noise-free values, $/h


class KernelStepper:
    """tep-studio's ``TennesseeEastmanProcess.advance`` for its default fixed-step RK4, without
    the bookkeeping the loop never reads (decision 0053).

    ``advance`` also takes a snapshot of the kernel's bytes before every interval (to restore it
    if the integration diverges), copies every output array, and builds the constraint margins,
    events and solver statistics. Here the same native calls run in the same order with the same
    arguments: set the inputs, integrate (the same RK4 expressions, so the same floating-point
    results), then read the outputs and the shutdown code. A divergent integration or a failed
    native call raises ``RuntimeError``, as ``advance`` does, and :meth:`TepSimulator.do_step`
    ends the run with it. ``tests/unit/test_tep_stepper.py`` pins the stepper against
    ``advance`` bit for bit.
    """

    def __init__(self, plant: TennesseeEastmanProcess) -> None:
        if plant.solver_method != "RK4":
            raise SimulatorError(f"tep: the stepper integrates RK4, not {plant.solver_method!r}")
        self._plant = plant
        self._buffers = tuple(
            np.zeros(n, dtype=np.float64)
            for n in (
                plant.kernel.ny,
                plant.kernel.nyadd,
                plant.kernel.nydist,
                plant.kernel.nymonitor,
                plant.kernel.nycomp,
            )
        )
        self._pointers = tuple(ffi.from_buffer("double[]", b) for b in self._buffers)

    def _derivatives(self, t: float, y: np.ndarray) -> np.ndarray:
        out = np.empty(self._plant.kernel.nx, dtype=np.float64)
        status = lib.tep_derivatives(
            self._plant.kernel._handle,  # the native handle the kernel owns
            t,
            ffi.from_buffer("double[]", np.ascontiguousarray(y, dtype=np.float64)),
            ffi.from_buffer("double[]", out),
        )
        if status != 0:
            raise RuntimeError(f"the kernel's derivative call failed with status {status}")
        return out

    def advance(self, action: np.ndarray, idv: np.ndarray, interval_h: float) -> TepStep:
        """One control interval of ``interval_h`` hours under ``action`` and disturbances
        ``idv``; the plant's state and time move on as ``advance`` moves them."""
        plant = self._plant
        kernel = plant.kernel
        handle = kernel._handle  # the native handle the kernel owns
        implemented = np.clip(np.asarray(action, dtype=np.float64), 0.0, 100.0)
        disturbances = np.ascontiguousarray(idv, dtype=np.float64)
        if implemented.shape != (kernel.nu,) or disturbances.shape != (kernel.nidv,):
            # the kernel reads exactly 12 and 28 doubles: anything else is refused, not read past
            raise ValueError(
                f"expected {kernel.nu} manipulated variables and {kernel.nidv} disturbances, "
                f"got shapes {implemented.shape} and {disturbances.shape}"
            )
        kernel.xmv, kernel.idv = implemented, disturbances
        lib.tep_set_inputs(
            handle,
            ffi.from_buffer("double[]", implemented),
            ffi.from_buffer("double[]", disturbances),
        )
        start = plant.time
        end = start + float(interval_h)
        n = max(1, round((end - start) / plant.fixed_step))
        h = (end - start) / n
        y, t = plant.state, start
        derivatives = self._derivatives
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(n):
                k1 = derivatives(t, y)
                k2 = derivatives(t + 0.5 * h, y + (0.5 * h) * k1)
                k3 = derivatives(t + 0.5 * h, y + (0.5 * h) * k2)
                k4 = derivatives(t + h, y + h * k3)
                y = y + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
                t += h
        y = np.ascontiguousarray(y, dtype=np.float64)
        if not np.isfinite(y).all():
            raise RuntimeError(f"the integration diverged (fixed step {plant.fixed_step} h)")
        plant.state, plant.time = y, end
        kernel.state, kernel.time = y.copy(), end
        status = lib.tep_outputs(handle, end, ffi.from_buffer("double[]", y), *self._pointers)
        if status != 0:
            raise RuntimeError(f"the kernel's output call failed with status {status}")
        measurements, monitors = self._buffers[0], self._buffers[3]
        return TepStep(
            measurements=measurements.copy(),
            implemented=implemented,
            shutdown_code=float(lib.tep_shutdown_code(handle)),
            cost_per_h=float(monitors[61]),
        )


@dataclass(frozen=True, slots=True)
class TepSnapshot:
    """The whole state of a :class:`TepSimulator`: the kernel's bytes, the controller, the
    inputs and the shutdown bookkeeping."""

    plant: NativeSnapshot
    controller: RickerMultiLoopController
    measurements: np.ndarray
    frozen: np.ndarray
    xmv: np.ndarray
    idv: np.ndarray
    manual: np.ndarray
    ticks: int
    running: bool
    shutdown_code: float
    down_since: int
    restart_armed: bool
    run_command: float
    restarts: int
    cost_per_h: float


class TepSimulator:
    """The TEP with Ricker's decentralized controller as one co-simulation slave."""

    def __init__(self) -> None:
        self._plant: TennesseeEastmanProcess | None = None
        self._stepper: KernelStepper | None = None
        self._controller: RickerMultiLoopController | None = None
        self._mode = "mode1"
        self._restart_h = DEFAULT_RESTART_H
        self._stop_restart_h = DEFAULT_STOP_RESTART_H
        self._seed = 0
        self._meas = np.zeros(len(MEASUREMENTS))
        self._frozen = np.zeros(len(MEASUREMENTS))
        self._xmv = np.zeros(len(MANIPULATED))
        self._idv = np.zeros(DISTURBANCES)
        self._manual = np.full(len(MANIPULATED), np.nan)
        self._ticks = 0
        self._running = False
        self._code = 0.0
        self._down_since = 0
        self._armed = False
        self._run_command = 1.0
        self._restarts = 0
        self._cost = 0.0

    # -- Simulator -------------------------------------------------------------------------
    def info(self) -> ModelInfo:
        """tep-studio's name and version, and every input and output with its unit."""
        variables: list[Variable] = []
        for v in TEP_SCHEMA.measurements:
            variables.append(Variable(f"xmeas:{v.name}", "output", v.unit, v.description))
        for v in TEP_SCHEMA.manipulated_variables:
            variables.append(
                Variable(f"xmv:{v.name}", "output", "%", v.description, v.lower, v.upper)
            )
        variables += [
            Variable("plant:running", "output", "1", "1 while the plant runs, 0 after a shutdown"),
            Variable("plant:throughput", "output", "m3/h", "product rate (stripper underflow)"),
            Variable("plant:cost_per_h", "output", "$/h", "operating cost (noise-free values)"),
            Variable("plant:shutdown_code", "output", "1", "0 running; 1..8 interlock; -1 stop"),
            Variable("plant:down_h", "output", "h", "hours since the plant went down"),
        ]
        for name in SETPOINTS:
            variables.append(
                Variable(f"sp:{name}", "input", _SETPOINT_UNITS.get(name), "controller setpoint")
            )
        for v in TEP_SCHEMA.disturbances:
            n = v.index + 1
            variables.append(Variable(f"idv:{n}", "input", "1", v.description, 0.0, None))
        for v in TEP_SCHEMA.manipulated_variables:
            variables.append(
                Variable(
                    f"xmv:{v.name}:manual",
                    "input",
                    "%",
                    f"manual position of {v.description} (NaN: the controller's)",
                    0.0,
                    100.0,
                )
            )
        variables += [
            Variable("plant:run", "input", "1", "1 run; 0 controlled stop; 1 again: restart"),
            Variable("plant:restart", "input", "1", ">= 0.5 asks for a restart"),
            Variable("mode", "parameter", None, "operating mode, mode1..mode6"),
            Variable("restart_h", "parameter", "h", "down time before a restart after a trip"),
            Variable("stop_restart_h", "parameter", "h", "down time after a controlled stop"),
            Variable("production_multiplier", "parameter", "1", "on the production setpoint"),
        ]
        return ModelInfo("tep-studio", tep_version(), tuple(variables))

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        """Start the plant in ``parameters["mode"]`` (or ``"model"``; default ``mode1``) at its
        initial state with the mode's setpoints, the production setpoint times
        ``production_multiplier``; ``restart_h`` and ``stop_restart_h`` set the down times."""
        unknown = sorted(set(parameters) - _PARAMETERS)
        if unknown:
            raise SimulatorError(
                f"tep: unknown parameter {unknown[0]!r}; known: {', '.join(sorted(_PARAMETERS))}"
            )
        mode = str(parameters.get("mode", parameters.get("model", "mode1")))
        if mode not in MODE_KEYS:
            raise SimulatorError(f"tep: unknown mode {mode!r}; known: {', '.join(MODE_KEYS)}")
        self._mode = mode
        self._restart_h = self._hours(parameters, "restart_h", DEFAULT_RESTART_H)
        self._stop_restart_h = self._hours(parameters, "stop_restart_h", DEFAULT_STOP_RESTART_H)
        multiplier = float(parameters.get("production_multiplier", 1.0))
        if not math.isfinite(multiplier) or multiplier <= 0.0:
            raise SimulatorError(f"tep: production_multiplier must be > 0, got {multiplier}")
        setpoints = mode_setpoints(mode)
        setpoints = dataclasses.replace(
            setpoints, production_rate=setpoints.production_rate * multiplier
        )
        self._plant = TennesseeEastmanProcess()
        self._stepper = KernelStepper(self._plant)
        self._controller = RickerMultiLoopController(setpoints=setpoints)
        self._seed = int(seed)
        self._idv = np.zeros(DISTURBANCES)
        self._manual = np.full(len(MANIPULATED), np.nan)
        self._ticks = 0
        self._restarts = 0
        self._run_command = 1.0
        self._start()

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        """Set setpoints, disturbances, manual valve positions and the run/restart commands;
        an unknown name or a non-finite value where one is needed raises ``SimulatorError``."""
        controller = self._require_controller()
        changes: dict[str, float] = {}
        for name, raw in inputs.items():
            value = float(raw)
            kind, _, element = name.partition(":")
            if kind == "sp" and element in SETPOINTS:
                self._finite(name, value)
                changes[element] = value
            elif kind == "idv" and element.isdigit() and 1 <= int(element) <= DISTURBANCES:
                self._finite(name, value)
                self._idv[int(element) - 1] = value
            elif kind == "xmv" and element.endswith(":manual"):
                mv = element.removesuffix(":manual")
                if mv not in MANIPULATED:
                    raise SimulatorError(f"tep: unknown input {name!r}")
                self._manual[MANIPULATED.index(mv)] = value
            elif name == "plant:run":
                self._finite(name, value)
                self._command_run(value)
            elif name == "plant:restart":
                self._finite(name, value)
                if value >= 0.5 and not self._running:
                    self._armed = True
            else:
                raise SimulatorError(f"tep: unknown input {name!r}")
        if changes:
            current = controller.setpoints
            assert current is not None  # set at instantiate
            controller.setpoints = dataclasses.replace(current, **changes)

    def do_step(self, t: float, dt: float) -> None:
        """Advance from ``t`` to ``t + dt`` simulated seconds, ``dt`` a multiple of 1.8 s."""
        plant = self._require_plant()
        controller = self._require_controller()
        stepper = self._require_stepper()
        now = self._ticks * CONTROL_INTERVAL_S
        if abs(t - now) > 1e-6 * max(1.0, abs(now)):
            raise SimulatorError(f"tep: do_step at t={t} s, but the plant is at {now} s")
        n = round(dt / CONTROL_INTERVAL_S)
        if n < 1 or abs(n * CONTROL_INTERVAL_S - dt) > 1e-6 * max(1.0, dt):
            raise SimulatorError(
                f"tep: step {dt} s is not a positive multiple of the control interval "
                f"{CONTROL_INTERVAL_S} s"
            )
        manual = ~np.isnan(self._manual)
        any_manual = bool(manual.any())
        for _ in range(n):
            self._ticks += 1
            if not self._running:
                self._maybe_restart()
                continue
            action, _ = controller.compute_action(self._meas, time=plant.time)
            if any_manual:
                action = np.where(manual, self._manual, action)
            try:
                result = stepper.advance(action, self._idv, CONTROL_INTERVAL_H)
            except (RuntimeError, ValueError, FloatingPointError) as exc:
                raise SimulatorError(f"tep: the kernel failed at {now + dt} s: {exc}") from exc
            if result.shutdown_code != 0.0:
                self._go_down(result.shutdown_code)
                continue
            self._meas = result.measurements
            self._xmv = result.implemented
            self._cost = result.cost_per_h

    def get_outputs(self) -> dict[str, float]:
        """Every output at the current time (see the module's docstring)."""
        self._require_plant()
        meas = self._meas if self._running else self._frozen
        out = {f"xmeas:{name}": float(v) for name, v in zip(MEASUREMENTS, meas, strict=True)}
        xmv = self._xmv if self._running else np.zeros(len(MANIPULATED))
        out.update({f"xmv:{name}": float(v) for name, v in zip(MANIPULATED, xmv, strict=True)})
        down_h = 0.0 if self._running else (self._ticks - self._down_since) * CONTROL_INTERVAL_H
        out["plant:running"] = 1.0 if self._running else 0.0
        out["plant:throughput"] = float(self._meas[_PRODUCT]) if self._running else 0.0
        out["plant:cost_per_h"] = self._cost if self._running else 0.0
        out["plant:shutdown_code"] = self._code
        out["plant:down_h"] = down_h
        return out

    def terminate(self) -> None:
        """Release the kernel (idempotent)."""
        if self._plant is not None:
            self._plant.kernel.close()
        self._plant = None
        self._stepper = None
        self._controller = None

    # -- Forkable --------------------------------------------------------------------------
    def snapshot(self) -> TepSnapshot:
        """A copy of the whole state: the kernel's bytes (noise generator included) and a deep
        copy of the controller, so a restored copy has the same future."""
        plant = self._require_plant()
        return TepSnapshot(
            plant=plant.snapshot(),
            controller=_copy_controller(self._require_controller()),
            measurements=self._meas.copy(),
            frozen=self._frozen.copy(),
            xmv=self._xmv.copy(),
            idv=self._idv.copy(),
            manual=self._manual.copy(),
            ticks=self._ticks,
            running=self._running,
            shutdown_code=self._code,
            down_since=self._down_since,
            restart_armed=self._armed,
            run_command=self._run_command,
            restarts=self._restarts,
            cost_per_h=self._cost,
        )

    def restore(self, snapshot: object) -> None:
        """Return to the state :meth:`snapshot` gave (the snapshot stays reusable)."""
        if not isinstance(snapshot, TepSnapshot):
            raise SimulatorError(f"tep: cannot restore from {type(snapshot).__name__}")
        plant = self._require_plant()
        plant.restore(snapshot.plant)
        self._controller = _copy_controller(snapshot.controller)
        self._meas = snapshot.measurements.copy()
        self._frozen = snapshot.frozen.copy()
        self._xmv = snapshot.xmv.copy()
        self._idv = snapshot.idv.copy()
        self._manual = snapshot.manual.copy()
        self._ticks = snapshot.ticks
        self._running = snapshot.running
        self._code = snapshot.shutdown_code
        self._down_since = snapshot.down_since
        self._armed = snapshot.restart_armed
        self._run_command = snapshot.run_command
        self._restarts = snapshot.restarts
        self._cost = snapshot.cost_per_h

    # -- helpers ---------------------------------------------------------------------------
    @property
    def setpoints(self) -> ControllerSetpoints:
        """The controller's current setpoints."""
        setpoints = self._require_controller().setpoints
        assert setpoints is not None
        return setpoints

    @property
    def time_s(self) -> float:
        """Simulated seconds since :meth:`instantiate`."""
        return self._ticks * CONTROL_INTERVAL_S

    def _start(self) -> None:
        plant = self._require_plant()
        controller = self._require_controller()
        meas, info = plant.reset(
            mode=self._mode, seed=_noise_seed(self._seed, self._restarts), disturbances=self._idv
        )
        controller.reset(meas, time=plant.time)
        self._meas = meas
        self._frozen = meas.copy()
        self._xmv = plant.state[38:50].copy()
        self._cost = float(info["objective_terms"]["operating_cost_internal_per_hour"])
        self._running = True
        self._code = 0.0
        self._armed = False

    def _go_down(self, code: float) -> None:
        # The tripping step's measurements are the kernel's post-trip garbage: freeze the last
        # good ones.
        self._frozen = np.where(_ZERO_WHEN_DOWN, 0.0, self._meas)
        self._running = False
        self._code = code
        self._down_since = self._ticks
        self._armed = False

    def _command_run(self, value: float) -> None:
        run = value >= 0.5
        if not run and self._running:
            self._go_down(CONTROLLED_STOP_CODE)
        elif run and self._run_command < 0.5 and not self._running:
            self._armed = True
        self._run_command = 1.0 if run else 0.0

    def _maybe_restart(self) -> None:
        if not self._armed or self._run_command < 0.5:
            return
        wait_h = self._stop_restart_h if self._code == CONTROLLED_STOP_CODE else self._restart_h
        if (self._ticks - self._down_since) * CONTROL_INTERVAL_H + 1e-9 < wait_h:
            return
        self._restarts += 1
        self._start()

    def _require_plant(self) -> TennesseeEastmanProcess:
        if self._plant is None:
            raise SimulatorError("tep: not instantiated (or terminated)")
        return self._plant

    def _require_stepper(self) -> KernelStepper:
        if self._stepper is None:
            raise SimulatorError("tep: not instantiated (or terminated)")
        return self._stepper

    def _require_controller(self) -> RickerMultiLoopController:
        if self._controller is None:
            raise SimulatorError("tep: not instantiated (or terminated)")
        return self._controller

    @staticmethod
    def _finite(name: str, value: float) -> None:
        if not math.isfinite(value):
            raise SimulatorError(f"tep: input {name!r} must be a finite number, got {value}")

    @staticmethod
    def _hours(parameters: Mapping[str, Any], key: str, default: float) -> float:
        value = float(parameters.get(key, default))
        if not math.isfinite(value) or value < 0.0:
            raise SimulatorError(f"tep: {key} must be a number of hours >= 0, got {value}")
        return value
