"""The maintenance and operating policies a scenario is run under, compared on the same seeds.

Five policies (:data:`POLICIES`): ``run-to-failure`` (the plant's own controls only; a failed
asset is repaired when it fails), ``preventive`` (a work order per repairable asset every
``preventive_interval_h``, staggered across the assets, crews permitting), ``reactive`` (when a
measured value crosses its alarm limit: stop the asset and repair it, or, where nothing can be
repaired, cut the setpoint that drives it), ``twinkg`` (the agents with the rule planner and the
look-ahead) and ``twinkg-llm`` (the configured LLM planner with the look-ahead).

The baselines act on the simulator's inputs directly (they are what the twin is compared with):
a baseline is a :class:`Policy` that reads a :class:`PlantView` at each decision point and
returns :class:`Command` values, which the loop applies through the plant binding's actuators
exactly as it applies the agents' allowed actions. Baselines are deterministic and need no graph.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from twinkg.ontology.errors import InvalidInputError
from twinkg.sim.binding import PlantBinding

POLICIES = ("run-to-failure", "preventive", "reactive", "twinkg", "twinkg-llm")
"""Every policy name, in the order results are reported."""

TWIN_POLICIES = frozenset({"twinkg", "twinkg-llm"})
"""The policies that go through the twin (and so need a graph)."""

CONTROLLED_STOP = "controlled_stop"
SWITCH_TO_STANDBY = "switch_to_standby"
SETPOINT_CHANGE = "setpoint_change"
WORK_ORDER = "work_order"
RESTART = "restart"
GATHER_DATA = "gather_data"


@dataclass(frozen=True, slots=True)
class Command:
    """An action on a graph asset, in the agents' vocabulary (``agents.state.ActionKind``).

    ``value`` is a setpoint change's new value in the actuator's unit; ``factor`` instead scales
    the current setpoint (a baseline that cuts a rate by a share); ``ramp_s`` is how long the
    setpoint takes to get there, linearly (0: at once).
    """

    kind: str
    asset: str
    value: float | None = None
    factor: float | None = None
    reason: str = ""
    ramp_s: float = 0.0


@dataclass(frozen=True, slots=True)
class AssetState:
    """What the loop knows of one actuated asset at a decision point."""

    asset: str
    failed: bool
    in_repair: bool
    queued: bool
    commanded_run: bool


@dataclass(frozen=True, slots=True)
class PlantView:
    """The plant as a baseline sees it at one decision point (simulated second ``t``)."""

    t: float
    measured: Mapping[str, float]  # the sensor-fault injector's outputs (what instruments say)
    binding: PlantBinding
    assets: Mapping[str, AssetState]
    alarm_limits: Mapping[str, tuple[float | None, float | None]]  # measured output → (lo, hi)


class Policy(Protocol):
    """A baseline: commands from what it sees."""

    name: str

    def decide(self, view: PlantView) -> list[Command]:
        """The commands to apply now (in order)."""
        ...


class RunToFailure:
    """The plant's own controls only: nothing is commanded (failures are repaired by the loop)."""

    name = "run-to-failure"

    def decide(self, view: PlantView) -> list[Command]:
        """Nothing."""
        del view
        return []


@dataclass
class Preventive:
    """A work order for every repairable asset each ``interval_s``, staggered evenly."""

    interval_s: float
    start_s: float
    assets: tuple[str, ...]
    name: str = "preventive"
    _done: dict[str, int] = field(default_factory=dict)

    def decide(self, view: PlantView) -> list[Command]:
        """Work orders for the assets whose next period has started."""
        out: list[Command] = []
        n = len(self.assets)
        for i, asset in enumerate(self.assets):
            offset = self.start_s + self.interval_s * (i + 0.5) / n
            if view.t < offset:
                continue
            period = int((view.t - offset) // self.interval_s) + 1
            state = view.assets.get(asset)
            busy = state is not None and (state.in_repair or state.queued)
            if period > self._done.get(asset, 0) and not busy:
                self._done[asset] = period
                out.append(Command(WORK_ORDER, asset, reason=f"preventive period {period}"))
        return out


@dataclass
class Reactive:
    """Threshold-reactive: a measured value past its alarm limit stops and repairs its asset;
    where the asset cannot be repaired, the first setpoint actuator is cut by ``cut``."""

    start_s: float
    cut: float = 0.10
    name: str = "reactive"
    _latched: set[str] = field(default_factory=set)

    def decide(self, view: PlantView) -> list[Command]:
        """Stop-and-repair (or setpoint cut) for each asset with a newly crossed limit."""
        if view.t < self.start_s:
            return []
        out: list[Command] = []
        crossed: dict[str, str] = {}
        for sensor in view.binding.sensors:
            limits = view.alarm_limits.get(sensor.output)
            value = view.measured.get(sensor.output)
            if limits is None or value is None or not math.isfinite(value):
                continue
            lo, hi = limits
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                crossed.setdefault(sensor.equipment, f"{sensor.output} = {value:.4g}")
        for equipment in sorted(crossed):
            if equipment in self._latched:
                continue
            actuator = view.binding.actuator(equipment)
            state = view.assets.get(equipment)
            if actuator is not None and actuator.repairable is not None:
                if state is not None and (state.in_repair or state.queued or state.failed):
                    continue
                self._latched.add(equipment)
                why = f"alarm: {crossed[equipment]}"
                if actuator.run_input is not None:
                    out.append(Command(CONTROLLED_STOP, equipment, reason=why))
                out.append(Command(WORK_ORDER, equipment, reason=why))
                continue
            knob = next((a for a in view.binding.actuators if a.setpoint_input), None)
            if knob is not None:
                self._latched.add(equipment)
                out.append(
                    Command(
                        SETPOINT_CHANGE,
                        knob.asset,
                        factor=1.0 - self.cut,
                        reason=f"alarm: {crossed[equipment]}",
                    )
                )
        # an asset back inside its limits may alarm again
        self._latched &= set(crossed) | {
            a for a, s in view.assets.items() if s.in_repair or s.queued
        }
        return out


def baseline(
    name: str,
    *,
    binding: PlantBinding,
    interval_s: float,
    start_s: float,
) -> Policy:
    """The baseline policy ``name`` for a plant (``InvalidInputError`` for a twin policy or an
    unknown name)."""
    if name == "run-to-failure":
        return RunToFailure()
    if name == "preventive":
        repairable = tuple(
            sorted(a.asset for a in binding.actuators if a.repairable and a.kind == "Pump")
        )
        return Preventive(interval_s=interval_s, start_s=start_s, assets=repairable)
    if name == "reactive":
        return Reactive(start_s=start_s)
    if name in TWIN_POLICIES:
        raise InvalidInputError(f"{name} is a twin policy, not a baseline")
    raise InvalidInputError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})")


def check_policy(name: str) -> str:
    """``name`` when it is a known policy, else :class:`InvalidInputError` listing them."""
    if name not in POLICIES:
        raise InvalidInputError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})")
    return name
