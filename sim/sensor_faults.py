"""Sensor faults between the plant and the twin: drift, stuck value, dropout and noise.

:class:`SensorFaults` is a :class:`twinkg.sim.adapter.Simulator` whose every input ``X`` (a plant
output, e.g. ``tank:1:level``) comes back as the output ``X``: the value the sensor reports. A
value no fault touches passes unchanged, bit for bit. The faults are data
(:class:`SensorFault`, from ``instantiate``'s ``faults`` or :meth:`SensorFaults.schedule`), each
active on ``onset_s <= t < end_s`` where ``t`` is the time of the output (the end of the step):

- ``drift``: ``value + magnitude * (t - onset_s) / 3600`` (``magnitude`` in the signal's unit
  per hour);
- ``stuck``: the value the sensor read at the first step of the fault, held;
- ``dropout``: NaN (the master accepts NaN from the signals that have a dropout fault);
- ``noise``: ``value + N(0, magnitude²)``, drawn from the fault's own stream of the seed.

Several faults on one signal apply in the order they were scheduled. Couple it to the plant as a
*feedthrough* component of :class:`twinkg.sim.master.CoSimulation`, so the reading is of the same
step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.adapter import ModelInfo, Variable

VERSION = "1.0.0"
SENSOR_FAULT_KINDS = ("drift", "stuck", "dropout", "noise")


@dataclass(frozen=True, slots=True)
class SensorFault:
    """One fault on one signal, active on ``[onset_s, end_s)`` (``end_s`` None: to the end)."""

    kind: str
    signal: str
    onset_s: float
    end_s: float | None = None
    magnitude: float = 0.0

    def active(self, t: float) -> bool:
        """Whether the fault acts on the output at simulated second ``t``."""
        return self.onset_s <= t and (self.end_s is None or t < self.end_s)


@dataclass(frozen=True, slots=True)
class SensorFaultsSnapshot:
    """A copy of a :class:`SensorFaults`' state."""

    time: float
    inputs: Mapping[str, float]
    outputs: Mapping[str, float]
    faults: tuple[SensorFault, ...]
    held: Mapping[int, float]
    rng_states: tuple[dict[str, Any], ...]


class SensorFaults:
    """Pass-through of named signals with scheduled faults (a co-simulation component; Forkable).

    ``instantiate`` parameters: ``signals`` (the names passed through), ``units`` (optional
    mapping name → unit, for :meth:`info`), ``faults`` (optional list of :class:`SensorFault` or
    mappings with its fields).
    """

    def __init__(self) -> None:
        self._signals: tuple[str, ...] = ()
        self._units: dict[str, str] = {}
        self._seed = 0
        self._time = 0.0
        self._inputs: dict[str, float] = {}
        self._outputs: dict[str, float] = {}
        self._faults: list[SensorFault] = []
        self._rngs: list[np.random.Generator] = []
        self._held: dict[int, float] = {}  # fault index → the stuck value
        self._instantiated = False

    # ------------------------------------------------------------------ Simulator

    def info(self) -> ModelInfo:
        """Each signal as an input and as an output of the same name."""
        variables = [
            Variable(name, causality, self._units.get(name), "measured value")
            for name in self._signals
            for causality in ("input", "output")
        ]
        return ModelInfo("twinkg-sensor-faults", VERSION, tuple(variables))

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        """Set up the signals and the scheduled faults; every value starts at NaN until set."""
        unknown = set(parameters) - {"signals", "units", "faults"}
        if unknown:
            raise SimulatorError(f"unknown sensor-fault parameters: {', '.join(sorted(unknown))}")
        signals = tuple(str(s) for s in parameters.get("signals", ()))
        if len(set(signals)) != len(signals):
            raise SimulatorError("a signal is listed twice")
        self._signals = signals
        self._units = {str(k): str(v) for k, v in dict(parameters.get("units", {})).items()}
        self._seed = seed
        self._time = 0.0
        self._inputs = dict.fromkeys(signals, math.nan)
        self._outputs = dict(self._inputs)
        self._faults, self._rngs, self._held = [], [], {}
        self._instantiated = True
        for fault in parameters.get("faults", ()):
            self.schedule(fault if isinstance(fault, SensorFault) else SensorFault(**dict(fault)))

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        """The plant's values of the signals; an unknown name raises SimulatorError."""
        for name, value in inputs.items():
            if name not in self._inputs:
                raise SimulatorError(f"sensor faults has no signal {name!r}")
            self._inputs[name] = value

    def do_step(self, t: float, dt: float) -> None:
        """The readings at ``t + dt``: the inputs, faulted where a fault is active."""
        now = t + dt
        self._time = now
        out = dict(self._inputs)
        for index, fault in enumerate(self._faults):
            if not fault.active(now):
                self._held.pop(index, None)
                continue
            value = out[fault.signal]
            if fault.kind == "drift":
                value = value + fault.magnitude * (now - fault.onset_s) / 3600.0
            elif fault.kind == "stuck":
                value = self._held.setdefault(index, value)
            elif fault.kind == "dropout":
                value = math.nan
            else:
                value = value + fault.magnitude * float(self._rngs[index].standard_normal())
            out[fault.signal] = value
        self._outputs = out

    def get_outputs(self) -> dict[str, float]:
        """Every signal's reading now."""
        return dict(self._outputs)

    def terminate(self) -> None:
        """Nothing to release (idempotent)."""

    def nullable_outputs(self) -> frozenset[str]:
        """The signals a dropout makes NaN (the master accepts NaN only from these)."""
        return frozenset(f.signal for f in self._faults if f.kind == "dropout")

    # ------------------------------------------------------------------ faults

    def schedule(self, fault: SensorFault) -> None:
        """Add a fault; its noise stream is the seed's stream number ``len(faults)``."""
        if not self._instantiated:
            raise SimulatorError("sensor faults is not instantiated")
        if fault.kind not in SENSOR_FAULT_KINDS:
            raise SimulatorError(
                f"unknown sensor fault {fault.kind!r} (known: {', '.join(SENSOR_FAULT_KINDS)})"
            )
        if fault.signal not in self._inputs:
            raise SimulatorError(f"sensor fault on unknown signal {fault.signal!r}")
        numbers = [fault.onset_s, fault.magnitude] + ([] if fault.end_s is None else [fault.end_s])
        if not all(math.isfinite(x) for x in numbers):
            raise SimulatorError(f"sensor fault {fault}: times and magnitude must be finite")
        if fault.end_s is not None and fault.end_s <= fault.onset_s:
            raise SimulatorError(f"sensor fault {fault}: it ends before it starts")
        sequence = np.random.SeedSequence(self._seed, spawn_key=(len(self._faults),))
        self._faults.append(fault)
        self._rngs.append(np.random.default_rng(sequence))

    @property
    def faults(self) -> tuple[SensorFault, ...]:
        """The scheduled faults, in order."""
        return tuple(self._faults)

    # ------------------------------------------------------------------ Forkable

    def snapshot(self) -> SensorFaultsSnapshot:
        """A copy of the readings, the faults, the held values and the noise streams."""
        return SensorFaultsSnapshot(
            self._time,
            dict(self._inputs),
            dict(self._outputs),
            tuple(self._faults),
            dict(self._held),
            tuple(dict(rng.bit_generator.state) for rng in self._rngs),
        )

    def restore(self, snapshot: object) -> None:
        """Return to a state :meth:`snapshot` gave."""
        if not isinstance(snapshot, SensorFaultsSnapshot) or set(snapshot.inputs) != set(
            self._inputs
        ):
            raise SimulatorError("not a snapshot of this sensor-fault model")
        self._time = snapshot.time
        self._inputs = dict(snapshot.inputs)
        self._outputs = dict(snapshot.outputs)
        self._faults = list(snapshot.faults)
        self._held = dict(snapshot.held)
        self._rngs = []
        for index, state in enumerate(snapshot.rng_states):
            rng = np.random.default_rng(np.random.SeedSequence(self._seed, spawn_key=(index,)))
            rng.bit_generator.state = dict(state)
            self._rngs.append(rng)
