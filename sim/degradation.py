"""Pump degradation: wear, vibration, bearing temperature, seal leaks and a failure hazard.

:class:`PumpDegradation` is a :class:`twinkg.sim.adapter.Simulator` for a set of pumps, coupled to
a plant model by the master: it reads each pump's ``pump:<id>:running`` and ``pump:<id>:flow``
(m³/s) and ``pump:<id>:repair`` (1 = restored to new this step), and offers ``pump:<id>:wear``
(0 new .. 1 worn out), ``head_factor`` and ``efficiency_factor`` (0..1, for the plant model),
``vibration`` (mm/s RMS), ``bearing_temperature`` (°C), ``seal_leak`` (m³/h), ``failed`` (1 from
failure until repair) and ``hazard`` (1/h).

The model, per pump, with ``dt`` in hours:

- **Wear** grows only while the pump runs, at ``wear_rate_per_h`` times ``1 + 2 * off²`` where
  ``off`` is the relative distance of the flow from the best-efficiency flow (``bep_flow``; no
  term without one), times 3 beyond 1.2 × BEP (run-out: cavitation), plus the injected extra
  rate of ``pump_wear`` and half the bearing damage's growth rate. It is capped at 1.
- ``head_factor = 1 - 0.3 wear``; ``efficiency_factor = 1 - 0.4 wear - 0.1 bearing``.
- **Vibration** (running only) is ``nominal (1 + 3 wear²) + 8 bearing`` mm/s plus Gaussian noise
  (2 % of nominal); the **bearing temperature** relaxes (time constant 1 h) towards
  ``nominal + 15 wear + 40 bearing`` °C while running and towards ambient when stopped, plus noise.
- **Hazard** ``h = h0 * exp(k * max(wear, bearing))`` (1/h). A pump fails when the hazard it has
  accumulated while running exceeds a threshold drawn ``~ Exp(1)`` (from a stream of its own) at
  start and after every repair; that is the same failure law as a Bernoulli draw per step, and
  it gives every policy of a comparison the same "toughness" for a seed (common random numbers).
  It fails for certain when its wear or bearing damage reaches 1. ``failed`` latches; a failed
  pump should be stopped by the loop.

Faults are injected as data with :meth:`PumpDegradation.inject`:

- ``pump_wear``: an accelerated wear mechanism (erosion, abrasion): extra wear of
  ``magnitude * 0.01`` per running hour (the nominal rate of a wear fault; 1.0: worn out in
  100 running hours, 3.0: three times faster);
- ``bearing_failure``: the bearing is damaged by ``magnitude`` (0..1; 1 = failed at once); a
  damaged bearing deteriorates while the pump runs (the damage grows 1 % per running hour,
  relative), raising vibration, temperature and hazard in proportion;
- ``seal_leak``: the seal leaks ``magnitude`` m³/h.

A repair restores the pump to new and clears its faults. All random draws come from per-pump
streams spawned from the seed, a fixed number per step, so the same seed gives the same run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from twinkg.ontology.errors import SimulatorError
from twinkg.sim.adapter import ModelInfo, Variable

VERSION = "1.0.0"
FAULT_KINDS = ("pump_wear", "bearing_failure", "seal_leak")
PUMP_WEAR_PER_MAGNITUDE = 0.01  # extra wear per running hour for magnitude 1
BEARING_GROWTH_PER_H = 0.01  # relative growth of bearing damage per running hour
TEMPERATURE_TAU_H = 1.0

_OUTPUTS: tuple[tuple[str, str | None, str, float | None, float | None], ...] = (
    ("wear", "1", "wear, 0 new .. 1 worn out", 0.0, 1.0),
    ("head_factor", "1", "fraction of the new pump's head", 0.0, 1.0),
    ("efficiency_factor", "1", "fraction of the new pump's efficiency", 0.0, 1.0),
    ("vibration", "mm/s", "vibration velocity, RMS", 0.0, None),
    ("bearing_temperature", "Cel", "bearing temperature", None, None),
    ("seal_leak", "m3/h", "seal leak rate", 0.0, None),
    ("failed", "1", "1 once failed, until repaired", 0.0, 1.0),
    ("hazard", "1/h", "failure hazard rate", 0.0, None),
)
_INPUTS: tuple[tuple[str, str | None, str], ...] = (
    ("running", "1", "1 while the pump runs"),
    ("flow", "m3/s", "pump flow"),
    ("repair", "1", "1 = restored to new this step"),
)


@dataclass(frozen=True, slots=True)
class PumpParameters:
    """One pump's degradation parameters (from ``instantiate``'s ``pumps`` entry)."""

    wear_rate_per_h: float = 1e-4
    bep_flow: float | None = None  # m³/s
    nominal_vibration: float = 2.0  # mm/s
    nominal_bearing_temperature: float = 50.0  # °C
    initial_wear: float = 0.0


@dataclass(slots=True)
class _State:
    """Everything that changes, one array entry per pump (copied whole by ``snapshot``)."""

    wear: np.ndarray
    bearing: np.ndarray
    temperature: np.ndarray
    vibration: np.ndarray
    seal_leak: np.ndarray
    failed: np.ndarray
    cumulative_hazard: np.ndarray
    threshold: np.ndarray
    extra_wear: np.ndarray  # injected pump_wear rate, 1/h
    running: np.ndarray
    flow: np.ndarray
    repair: np.ndarray
    rng_states: tuple[dict[str, Any], ...]

    def copy(self) -> _State:
        arrays = {
            name: getattr(self, name).copy() for name in self.__slots__ if name != "rng_states"
        }
        return _State(**arrays, rng_states=tuple(dict(s) for s in self.rng_states))


@dataclass(frozen=True, slots=True)
class DegradationSnapshot:
    """A copy of a :class:`PumpDegradation`'s state."""

    state: _State


class PumpDegradation:
    """The degradation of a set of pumps (a co-simulation component; Forkable).

    ``instantiate`` parameters: ``pumps`` (a list of pump ids, or a mapping id → the fields of
    :class:`PumpParameters`), and optionally ``hazard_base_per_h`` (h0, default 1e-5),
    ``hazard_growth`` (k, default 8.0), ``ambient_temperature`` (°C, default 25.0),
    ``noise`` (relative standard deviation of the vibration noise, default 0.02).
    """

    def __init__(self) -> None:
        self._ids: tuple[str, ...] = ()
        self._params: tuple[PumpParameters, ...] = ()
        self._index: dict[str, tuple[int, str]] = {}
        self._state: _State | None = None
        self._rngs: list[np.random.Generator] = []
        self._lives: list[np.random.Generator] = []
        self._h0 = 1e-5
        self._k = 8.0
        self._ambient = 25.0
        self._noise = 0.02
        self._concealed = False  # see conceal_lives

    # ------------------------------------------------------------------ Simulator

    def info(self) -> ModelInfo:
        """Name, version and one set of variables per pump (empty before ``instantiate``)."""
        variables: list[Variable] = []
        for pump in self._ids:
            for quantity, unit, description in _INPUTS:
                variables.append(Variable(f"pump:{pump}:{quantity}", "input", unit, description))
            for quantity, unit, description, low, high in _OUTPUTS:
                variables.append(
                    Variable(f"pump:{pump}:{quantity}", "output", unit, description, low, high)
                )
        return ModelInfo("twinkg-pump-degradation", VERSION, tuple(variables))

    def instantiate(self, parameters: Mapping[str, Any], seed: int) -> None:
        """Set up the pumps named in ``parameters["pumps"]``, all new (or at ``initial_wear``)."""
        pumps = parameters.get("pumps", ())
        try:
            if isinstance(pumps, Mapping):
                ids = tuple(str(p) for p in pumps)
                params = tuple(PumpParameters(**dict(pumps[p])) for p in pumps)
            else:
                ids = tuple(str(p) for p in pumps)
                params = tuple(PumpParameters() for _ in ids)
            self._h0 = float(parameters.get("hazard_base_per_h", 1e-5))
            self._k = float(parameters.get("hazard_growth", 8.0))
            self._ambient = float(parameters.get("ambient_temperature", 25.0))
            self._noise = float(parameters.get("noise", 0.02))
        except (TypeError, ValueError) as exc:
            raise SimulatorError(f"degradation parameters: {exc}") from exc
        unknown = set(parameters) - {
            "pumps",
            "hazard_base_per_h",
            "hazard_growth",
            "ambient_temperature",
            "noise",
        }
        if unknown:
            raise SimulatorError(f"unknown degradation parameters: {', '.join(sorted(unknown))}")
        if len(set(ids)) != len(ids):
            raise SimulatorError("a pump id is listed twice")
        for pump, p in zip(ids, params, strict=True):
            if not 0.0 <= p.initial_wear <= 1.0 or p.wear_rate_per_h < 0:
                raise SimulatorError(f"pump {pump}: initial_wear in [0, 1], wear_rate_per_h >= 0")
        self._ids, self._params = ids, params
        self._index = {}
        for i, pump in enumerate(ids):
            for quantity, _, _ in _INPUTS:
                self._index[f"pump:{pump}:{quantity}"] = (i, quantity)
        n = len(ids)
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2 * n)]
        self._rngs = streams[:n]  # noise, a fixed number of draws per step
        self._lives = streams[n:]  # failure thresholds, one draw per life of the pump
        zeros = np.zeros(n)
        self._state = _State(
            wear=np.array([p.initial_wear for p in params], dtype=float),
            bearing=zeros.copy(),
            temperature=np.full(n, self._ambient),
            vibration=zeros.copy(),
            seal_leak=zeros.copy(),
            failed=zeros.copy(),
            cumulative_hazard=zeros.copy(),
            threshold=np.array([rng.exponential() for rng in self._lives]),
            extra_wear=zeros.copy(),
            running=zeros.copy(),
            flow=zeros.copy(),
            repair=zeros.copy(),
            rng_states=(),
        )

    def set_inputs(self, inputs: Mapping[str, float]) -> None:
        """Set ``pump:<id>:running|flow|repair``; an unknown name raises SimulatorError."""
        state = self._live()
        for name, value in inputs.items():
            where = self._index.get(name)
            if where is None:
                raise SimulatorError(f"pump degradation has no input {name!r}")
            i, quantity = where
            getattr(state, quantity)[i] = float(value)

    def do_step(self, t: float, dt: float) -> None:
        """Advance every pump from ``t`` to ``t + dt`` seconds."""
        s = self._live()
        hours = dt / 3600.0
        for i, p in enumerate(self._params):
            rng = self._rngs[i]
            # a fixed number of draws per pump and step, whatever happens (common random numbers)
            noise_v, noise_t = rng.normal(size=2)
            if s.repair[i] > 0.5:
                self._restore_new(s, i)
            running = s.running[i] > 0.5 and s.failed[i] < 0.5
            if running:
                rate = p.wear_rate_per_h
                if p.bep_flow:
                    q = abs(float(s.flow[i]))
                    off = (q - p.bep_flow) / p.bep_flow
                    rate *= 1.0 + 2.0 * off * off
                    if q > 1.2 * p.bep_flow:
                        rate *= 3.0
                growth = BEARING_GROWTH_PER_H * s.bearing[i]
                rate += s.extra_wear[i] + 0.5 * growth
                s.wear[i] = min(1.0, s.wear[i] + rate * hours)
                s.bearing[i] = min(1.0, s.bearing[i] * math.exp(BEARING_GROWTH_PER_H * hours))
                s.cumulative_hazard[i] += self._hazard(s, i) * hours
                if (
                    (s.cumulative_hazard[i] >= s.threshold[i] and not self._concealed)
                    or s.wear[i] >= 1.0
                    or s.bearing[i] >= 1.0
                ):
                    s.failed[i] = 1.0
            running = s.running[i] > 0.5 and s.failed[i] < 0.5
            target = (
                p.nominal_bearing_temperature + 15.0 * s.wear[i] + 40.0 * s.bearing[i]
                if running
                else self._ambient
            )
            relax = 1.0 - math.exp(-hours / TEMPERATURE_TAU_H)
            s.temperature[i] += (target - s.temperature[i]) * relax + 0.3 * noise_t * math.sqrt(
                relax
            )
            if running:
                vibration = p.nominal_vibration * (1.0 + 3.0 * s.wear[i] ** 2) + 8.0 * s.bearing[i]
                vibration += self._noise * p.nominal_vibration * noise_v
                s.vibration[i] = max(0.0, vibration)
            else:
                s.vibration[i] = 0.0
            s.repair[i] = 0.0

    def get_outputs(self) -> dict[str, float]:
        """Every pump's condition now."""
        s = self._live()
        out: dict[str, float] = {}
        for i, pump in enumerate(self._ids):
            prefix = f"pump:{pump}:"
            out[prefix + "wear"] = float(s.wear[i])
            out[prefix + "head_factor"] = _unit(1.0 - 0.3 * s.wear[i])
            out[prefix + "efficiency_factor"] = _unit(1.0 - 0.4 * s.wear[i] - 0.1 * s.bearing[i])
            out[prefix + "vibration"] = float(s.vibration[i])
            out[prefix + "bearing_temperature"] = float(s.temperature[i])
            out[prefix + "seal_leak"] = float(s.seal_leak[i])
            out[prefix + "failed"] = float(s.failed[i])
            out[prefix + "hazard"] = self._hazard(s, i)
        return out

    def terminate(self) -> None:
        """Nothing to release (idempotent)."""

    # ------------------------------------------------------------------ faults

    def inject(self, kind: str, element: str, magnitude: float) -> None:
        """Start a fault on pump ``element`` now (see the module docstring for the magnitudes)."""
        s = self._live()
        if kind not in FAULT_KINDS:
            raise SimulatorError(f"unknown pump fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
        if element not in self._ids:
            raise SimulatorError(f"no pump {element!r} in the degradation model")
        if not (math.isfinite(magnitude) and magnitude >= 0):
            raise SimulatorError(f"fault magnitude must be a finite number >= 0, got {magnitude}")
        i = self._ids.index(element)
        if kind == "pump_wear":
            s.extra_wear[i] += magnitude * PUMP_WEAR_PER_MAGNITUDE
        elif kind == "bearing_failure":
            s.bearing[i] = min(1.0, s.bearing[i] + magnitude)
            if s.bearing[i] >= 1.0:
                s.failed[i] = 1.0
        else:
            s.seal_leak[i] += magnitude

    @property
    def pumps(self) -> tuple[str, ...]:
        """The pump ids, in order."""
        return self._ids

    # ------------------------------------------------------------------ Forkable

    def conceal_lives(self, concealed: bool) -> None:
        """While ``concealed``, a pump fails only when worn out (wear or bearing damage at 1),
        never at its drawn random life: a look-ahead fork (``sim.loop.try_on_fork``) must not
        know when each pump will fail, only its hazard, as a real twin would."""
        self._concealed = concealed

    def snapshot(self) -> DegradationSnapshot:
        """A copy of every pump's state and random stream."""
        s = self._live()
        frozen = s.copy()
        frozen.rng_states = tuple(dict(g.bit_generator.state) for g in self._rngs + self._lives)
        return DegradationSnapshot(frozen)

    def restore(self, snapshot: object) -> None:
        """Return to a state :meth:`snapshot` gave."""
        if not isinstance(snapshot, DegradationSnapshot) or len(snapshot.state.wear) != len(
            self._ids
        ):
            raise SimulatorError("not a snapshot of this pump degradation model")
        state = snapshot.state.copy()
        for rng, rng_state in zip(self._rngs + self._lives, state.rng_states, strict=True):
            rng.bit_generator.state = dict(rng_state)
        self._state = replace(state, rng_states=())

    # ------------------------------------------------------------------ internals

    def _live(self) -> _State:
        if self._state is None:
            raise SimulatorError("pump degradation is not instantiated")
        return self._state

    def _hazard(self, s: _State, i: int) -> float:
        return self._h0 * math.exp(self._k * max(float(s.wear[i]), float(s.bearing[i])))

    def _restore_new(self, s: _State, i: int) -> None:
        s.wear[i] = 0.0
        s.bearing[i] = 0.0
        s.seal_leak[i] = 0.0
        s.failed[i] = 0.0
        s.cumulative_hazard[i] = 0.0
        s.extra_wear[i] = 0.0
        s.threshold[i] = self._lives[i].exponential()


def _unit(x: float) -> float:
    return float(min(1.0, max(0.0, x)))
