"""Key performance indicators of a simulation run, and their summary across seeds (decision 0043).

The loop feeds a :class:`KpiAccumulator` once per communication step with the step's outputs and
the assets out of service, and records discrete events (failures, trips, maintenance jobs,
actions, decisions). :meth:`KpiAccumulator.result` gives a frozen :class:`KpiResult`.

**Window.** KPIs cover the evaluation window [``start_s``, ``horizon_s``): the loop passes the end
of the warm-up as ``start_s`` (the warm-up is fault-free and the same under every policy). A step
that straddles ``start_s`` counts for its part inside. Each step's ``outputs`` are taken as
constant over [t, t + dt) (a rectangle rule). If the last step fed ends before ``horizon_s``
and the run is not ``partial``, the last step's state is held to the horizon (a tripped TEP plant
stays down and produces nothing; the loop may stop stepping once it has tripped); a ``partial``
result (a failed run) covers only the time observed.

**Definitions** (time in hours, h; "down" per IEC 60050-192: not in a state to perform as
required):

- plant-level down fraction of a step, d = d_u + d_p ∈ [0, 1]: the whole plant is down (d = 1)
  while ``plant:running`` is 0 or ``downtime`` holds the key ``"plant"``; that downtime is
  unplanned (a trip, a failure) unless ``downtime["plant"] == "planned"`` (a stop someone chose).
  Otherwise d is the share of the plant's capacity out of service: Σ capacity of the listed
  assets (``capacity`` given at construction: the duty pumps' rated flow for a water network;
  an asset not in ``capacity``, e.g. a standby pump or a pipe, does not lower it) over Σ
  capacity, split into unplanned and planned by each asset's class, capped at 1.
- ``unplanned_downtime_h`` = Σ d_u·dt, planned downtime = Σ d_p·dt (in the result as
  ``planned_downtime_h``).
- ``availability`` = uptime / (uptime + downtime) = 1 − Σ (d_u + d_p)·dt / Σ dt: operational
  availability (planned stops count as downtime; ISO 14224 §C.2, IEC 60050-192-08-01 as a time
  ratio).
- ``trips``: the number of :class:`Trip` events (the loop records one when the plant's own
  interlock shuts it down; nothing is inferred from outputs).
- ``throughput``: TEP and FMU: the time-weighted mean of ``plant:throughput`` (m³/h, 0 while
  tripped); water: served volume / required volume = Σ ``plant:demand_served``·dt /
  Σ ``plant:demand_required``·dt (a fraction; 1 when nothing was required, NaN when the
  plant has no such outputs).
- ``energy_per_unit``: water: Σ ``plant:power``·dt (kWh) / served volume (m³) → kWh/m³ (NaN
  when nothing was served); TEP and FMU: the time-weighted mean of ``plant:cost_per_h`` ($/h).
- ``maintenance_actions``, ``maintenance_cost``: the count and summed ``cost`` of
  :class:`MaintenanceDone` jobs (planned and unplanned).
- ``envelope_excursion_h``: hours during which at least one enveloped output was outside its
  envelope (the union over outputs, not the sum): from the outputs against ``envelopes`` given at
  construction (a NaN value is not an excursion: it is unknown), together with recorded
  :class:`EnvelopeExcursion` intervals. Per output in ``excursion_h_by_output``.
- ``refused_actions``: :class:`ActionRefused` events; ``unsafe_applied_actions``:
  :class:`ActionApplied` events with ``unsafe`` true (must be 0); ``decisions``:
  :class:`Decision` events.

Events before ``start_s`` are ignored. Outputs a plant does not have (``plant:cost_per_h`` of an
FMU) give NaN for the KPIs built on them.

:func:`summarize` gives, per KPI, the mean across seeds and the two-sided 95 % confidence
interval of the mean, mean ± t(0.975, n−1)·s/√n with Student's t quantile from
``scipy.stats.t`` and s the sample standard deviation; with one seed the interval is the value
itself (no spread can be estimated). NaN values are left out; an all-NaN KPI summarizes to NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from twinkg.ontology.errors import InvalidInputError

__all__ = [
    "KPI_NAMES",
    "KPI_UNITS",
    "ActionApplied",
    "ActionRefused",
    "Decision",
    "EnvelopeExcursion",
    "Failure",
    "KpiAccumulator",
    "KpiEvent",
    "KpiResult",
    "KpiTimeline",
    "MaintenanceDone",
    "Trip",
    "summarize",
]

PlantKind = Literal["tep", "epanet", "fmu"]

KPI_NAMES: tuple[str, ...] = (
    "availability",
    "unplanned_downtime_h",
    "trips",
    "throughput",
    "energy_per_unit",
    "maintenance_actions",
    "maintenance_cost",
    "envelope_excursion_h",
    "refused_actions",
    "unsafe_applied_actions",
    "decisions",
)

_COMMON_UNITS: Mapping[str, str] = {
    "availability": "1",
    "unplanned_downtime_h": "h",
    "trips": "1",
    "maintenance_actions": "1",
    "maintenance_cost": "USD",
    "envelope_excursion_h": "h",
    "refused_actions": "1",
    "unsafe_applied_actions": "1",
    "decisions": "1",
}
# Units per plant kind (UCUM-like): the two KPIs whose meaning depends on the plant.
KPI_UNITS: Mapping[str, Mapping[str, str]] = {
    "epanet": {**_COMMON_UNITS, "throughput": "1", "energy_per_unit": "kW.h/m3"},
    "tep": {**_COMMON_UNITS, "throughput": "m3/h", "energy_per_unit": "USD/h"},
    "fmu": {**_COMMON_UNITS, "throughput": "m3/h", "energy_per_unit": "USD/h"},
}


# --------------------------------------------------------------------------------------------
# Events (t in simulated seconds)


@dataclass(frozen=True, slots=True)
class Failure:
    """An asset failed (its downtime is reported through ``step``'s ``downtime``)."""

    t: float
    element: str


@dataclass(frozen=True, slots=True)
class Trip:
    """The plant's own interlock shut it down, with its shutdown code."""

    t: float
    code: str


@dataclass(frozen=True, slots=True)
class MaintenanceDone:
    """A maintenance job finished: crew hours, its cost, planned (preventive) or a repair."""

    t: float
    element: str
    hours: float
    cost: float
    planned: bool


@dataclass(frozen=True, slots=True)
class ActionApplied:
    """An action reached the simulator; ``unsafe`` when it broke a safety shape."""

    t: float
    kind: str
    target: str
    unsafe: bool = False


@dataclass(frozen=True, slots=True)
class ActionRefused:
    """The guard (or the approver) refused an action."""

    t: float
    kind: str
    target: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy made a decision."""

    t: float


@dataclass(frozen=True, slots=True)
class EnvelopeExcursion:
    """An output was outside its envelope during [t, t + dt)."""

    t: float
    dt: float
    sensor: str


KpiEvent = (
    Failure | Trip | MaintenanceDone | ActionApplied | ActionRefused | Decision | EnvelopeExcursion
)


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class KpiTimeline:
    """KPIs over time, one entry per bin of ``bin_s`` seconds from the window's start: ``t_h`` is
    the bin's end (hours since t = 0); ``availability`` and ``unplanned_downtime_h`` are
    cumulative up to it; ``throughput`` and ``energy_per_unit`` are the bin's own values."""

    bin_s: float
    t_h: tuple[float, ...]
    availability: tuple[float, ...]
    unplanned_downtime_h: tuple[float, ...]
    throughput: tuple[float, ...]
    energy_per_unit: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class KpiResult:
    """A run's KPIs (the names of :data:`KPI_NAMES`), their units, breakdowns and timeline."""

    availability: float
    unplanned_downtime_h: float
    trips: int
    throughput: float
    energy_per_unit: float
    maintenance_actions: int
    maintenance_cost: float
    envelope_excursion_h: float
    refused_actions: int
    unsafe_applied_actions: int
    decisions: int
    units: Mapping[str, str]
    timeline: KpiTimeline
    planned_downtime_h: float = 0.0
    observed_h: float = 0.0
    failures: int = 0
    applied_actions: int = 0
    partial: bool = False
    asset_downtime_h: Mapping[str, float] = field(default_factory=dict)
    excursion_h_by_output: Mapping[str, float] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        """The KPIs by name, as floats, in :data:`KPI_NAMES` order."""
        return {name: float(getattr(self, name)) for name in KPI_NAMES}


# --------------------------------------------------------------------------------------------
# The accumulator


@dataclass(slots=True)
class _Bin:
    observed_s: float = 0.0
    down_u_s: float = 0.0
    down_p_s: float = 0.0
    rate_s: float = 0.0  # ∫ plant:throughput dt (TEP: m³/h·s)
    rate_seen_s: float = 0.0
    cost_s: float = 0.0  # ∫ plant:cost_per_h dt
    cost_seen_s: float = 0.0
    served_m3: float = 0.0
    required_m3: float = 0.0
    required_seen_s: float = 0.0
    energy_kwh: float = 0.0

    def add(self, other: _Bin) -> None:
        for name in _Bin.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class _StepState:
    down_u: float
    down_p: float
    throughput: float
    cost_per_h: float
    served: float
    required: float
    power: float


class KpiAccumulator:
    """Accumulates a run's KPIs step by step (definitions: the module docstring).

    ``plant_kind`` picks the throughput and energy definitions; ``horizon_s`` the end of the
    window (None: the last step fed); ``start_s`` its start (the warm-up's end); ``capacity`` the
    assets whose outage lowers plant availability, with their weights; ``envelopes`` the outputs
    checked against (min, max) each step (None: unbounded on that side); ``bin_s`` the timeline's
    resolution.
    """

    def __init__(
        self,
        plant_kind: PlantKind,
        *,
        horizon_s: float | None = None,
        start_s: float = 0.0,
        capacity: Mapping[str, float] | None = None,
        envelopes: Mapping[str, tuple[float | None, float | None]] | None = None,
        bin_s: float = 3600.0,
    ) -> None:
        if plant_kind not in KPI_UNITS:
            raise InvalidInputError(f"unknown plant kind {plant_kind!r}")
        if bin_s <= 0 or start_s < 0 or (horizon_s is not None and horizon_s <= start_s):
            raise InvalidInputError("need bin_s > 0 and 0 <= start_s < horizon_s")
        if capacity and any(not math.isfinite(c) or c < 0 for c in capacity.values()):
            raise InvalidInputError("capacities must be finite and >= 0")
        self._kind: PlantKind = plant_kind
        self._horizon = horizon_s
        self._start = start_s
        self._capacity = dict(capacity or {})
        self._total_capacity = sum(self._capacity.values())
        self._envelopes = {
            name: (-math.inf if lo is None else lo, math.inf if hi is None else hi)
            for name, (lo, hi) in (envelopes or {}).items()
        }
        self._bin_s = bin_s
        self._bins: dict[int, _Bin] = {}
        self._end = start_s  # the end of the last step fed (inside the window)
        self._last: _StepState | None = None
        self._asset_down: dict[str, float] = {}
        self._excursions: dict[str, list[tuple[float, float]]] = {}
        self._trips = 0
        self._failures = 0
        self._maintenance = 0
        self._maintenance_cost = 0.0
        self._applied = 0
        self._unsafe = 0
        self._refused = 0
        self._decisions = 0

    # -- feeding --------------------------------------------------------------------------

    def step(
        self,
        t_s: float,
        dt_s: float,
        outputs: Mapping[str, float],
        downtime: Mapping[str, str],
    ) -> None:
        """Account the step [t_s, t_s + dt_s): ``outputs`` hold over it; ``downtime`` maps the
        assets out of service (``"plant"`` for the whole plant) to ``"unplanned"``/``"planned"``."""
        if dt_s <= 0 or not math.isfinite(t_s) or not math.isfinite(dt_s):
            raise InvalidInputError(f"a step needs finite t and dt > 0, not ({t_s}, {dt_s})")
        for element, cls in downtime.items():
            if cls not in {"unplanned", "planned"}:
                raise InvalidInputError(f"downtime of {element!r} is {cls!r}, not (un)planned")
        lo = max(t_s, self._start)
        hi = t_s + dt_s if self._horizon is None else min(t_s + dt_s, self._horizon)
        if hi <= lo:
            return
        state = self._state(outputs, downtime)
        self._account(self._bins, lo, hi, state)
        for element in downtime.keys() - {"plant"}:
            self._asset_down[element] = self._asset_down.get(element, 0.0) + (hi - lo)
        for name, (low, high) in self._envelopes.items():
            value = outputs.get(name)
            if value is not None and not math.isnan(value) and not low <= value <= high:
                self._excursions.setdefault(name, []).append((lo, hi))
        self._last = state
        self._end = max(self._end, hi)

    def record(self, event: KpiEvent) -> None:
        """Record one event; events before the window's start are ignored."""
        if event.t < self._start:
            return
        match event:
            case Failure():
                self._failures += 1
            case Trip():
                self._trips += 1
            case MaintenanceDone(cost=cost):
                self._maintenance += 1
                self._maintenance_cost += cost
            case ActionApplied(unsafe=unsafe):
                self._applied += 1
                self._unsafe += int(unsafe)
            case ActionRefused():
                self._refused += 1
            case Decision():
                self._decisions += 1
            case EnvelopeExcursion(t=t, dt=dt, sensor=sensor):
                end = t + dt if self._horizon is None else min(t + dt, self._horizon)
                if end > t:
                    self._excursions.setdefault(sensor, []).append((t, end))

    # -- internals ------------------------------------------------------------------------

    def _state(self, outputs: Mapping[str, float], downtime: Mapping[str, str]) -> _StepState:
        running = outputs.get("plant:running", 1.0)
        if "plant" in downtime or running == 0.0:
            planned = downtime.get("plant") == "planned"
            down_u, down_p = (0.0, 1.0) if planned else (1.0, 0.0)
        elif self._total_capacity > 0:
            down_u = sum(
                self._capacity.get(e, 0.0) for e, c in downtime.items() if c == "unplanned"
            )
            down_p = sum(self._capacity.get(e, 0.0) for e, c in downtime.items() if c == "planned")
            down_u = min(1.0, down_u / self._total_capacity)
            down_p = min(1.0 - down_u, down_p / self._total_capacity)
        else:
            down_u = down_p = 0.0
        return _StepState(
            down_u=down_u,
            down_p=down_p,
            throughput=outputs.get("plant:throughput", math.nan),
            cost_per_h=outputs.get("plant:cost_per_h", math.nan),
            served=outputs.get("plant:demand_served", math.nan),
            required=outputs.get("plant:demand_required", math.nan),
            power=outputs.get("plant:power", math.nan),
        )

    def _account(self, bins: dict[int, _Bin], lo: float, hi: float, state: _StepState) -> None:
        """Add the interval [lo, hi) with ``state`` to the ``bins`` it overlaps."""
        first = int((lo - self._start) // self._bin_s)
        last = math.ceil((hi - self._start) / self._bin_s) - 1
        for index in range(first, max(first, last) + 1):
            b_lo = max(lo, self._start + index * self._bin_s)
            b_hi = min(hi, self._start + (index + 1) * self._bin_s)
            if b_hi <= b_lo:
                continue
            bins.setdefault(index, _Bin()).add(_contribution(state, b_hi - b_lo))

    # -- result ---------------------------------------------------------------------------

    def result(self, *, partial: bool = False) -> KpiResult:
        """The KPIs so far. Unless ``partial``, the last state is held up to ``horizon_s``."""
        bins = {index: _copy(b) for index, b in self._bins.items()}
        end = self._end
        horizon = self._horizon
        if not partial and self._last is not None and horizon is not None and horizon > end:
            self._account(bins, end, horizon, self._last)
            end = horizon
        total = _Bin()
        for b in bins.values():
            total.add(b)
        units = KPI_UNITS[self._kind]
        observed_h = total.observed_s / 3600.0
        excursion_h = _union_s(
            [iv for ivs in self._excursions.values() for iv in ivs], self._start, end
        )
        return KpiResult(
            availability=_availability(total),
            unplanned_downtime_h=total.down_u_s / 3600.0,
            trips=self._trips,
            throughput=self._throughput(total),
            energy_per_unit=self._energy(total),
            maintenance_actions=self._maintenance,
            maintenance_cost=self._maintenance_cost,
            envelope_excursion_h=excursion_h / 3600.0,
            refused_actions=self._refused,
            unsafe_applied_actions=self._unsafe,
            decisions=self._decisions,
            units=dict(units),
            timeline=self._timeline(bins, end),
            planned_downtime_h=total.down_p_s / 3600.0,
            observed_h=observed_h,
            failures=self._failures,
            applied_actions=self._applied,
            partial=partial,
            asset_downtime_h={k: v / 3600.0 for k, v in sorted(self._asset_down.items())},
            excursion_h_by_output={
                name: _union_s(ivs, self._start, end) / 3600.0
                for name, ivs in sorted(self._excursions.items())
            },
        )

    def _throughput(self, b: _Bin) -> float:
        if self._kind == "epanet":
            if b.required_m3 <= 0:
                return 1.0 if b.required_seen_s > 0 else math.nan
            return b.served_m3 / b.required_m3
        return b.rate_s / b.rate_seen_s if b.rate_seen_s > 0 else math.nan

    def _energy(self, b: _Bin) -> float:
        if self._kind == "epanet":
            return b.energy_kwh / b.served_m3 if b.served_m3 > 0 else math.nan
        return b.cost_s / b.cost_seen_s if b.cost_seen_s > 0 else math.nan

    def _timeline(self, bins: Mapping[int, _Bin], end: float) -> KpiTimeline:
        t_h: list[float] = []
        availability: list[float] = []
        downtime: list[float] = []
        throughput: list[float] = []
        energy: list[float] = []
        running = _Bin()
        for index in sorted(bins):
            b = bins[index]
            running.add(b)
            t_h.append(min(self._start + (index + 1) * self._bin_s, end) / 3600.0)
            availability.append(_availability(running))
            downtime.append(running.down_u_s / 3600.0)
            throughput.append(self._throughput(b))
            energy.append(self._energy(b))
        return KpiTimeline(
            bin_s=self._bin_s,
            t_h=tuple(t_h),
            availability=tuple(availability),
            unplanned_downtime_h=tuple(downtime),
            throughput=tuple(throughput),
            energy_per_unit=tuple(energy),
        )


def _contribution(state: _StepState, seconds: float) -> _Bin:
    b = _Bin(
        observed_s=seconds,
        down_u_s=state.down_u * seconds,
        down_p_s=state.down_p * seconds,
    )
    if not math.isnan(state.throughput):
        b.rate_s = state.throughput * seconds
        b.rate_seen_s = seconds
    if not math.isnan(state.cost_per_h):
        b.cost_s = state.cost_per_h * seconds
        b.cost_seen_s = seconds
    if not math.isnan(state.served):
        b.served_m3 = state.served * seconds
    if not math.isnan(state.required):
        b.required_m3 = state.required * seconds
        b.required_seen_s = seconds
    if not math.isnan(state.power):
        b.energy_kwh = state.power * seconds / 3600.0
    return b


def _copy(b: _Bin) -> _Bin:
    out = _Bin()
    out.add(b)
    return out


def _availability(b: _Bin) -> float:
    if b.observed_s <= 0:
        return math.nan
    return 1.0 - (b.down_u_s + b.down_p_s) / b.observed_s


def _union_s(intervals: Sequence[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of ``intervals`` clipped to [lo, hi)."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo))
    total = 0.0
    current: tuple[float, float] | None = None
    for a, b in clipped:
        if current is None or a > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = (a, b)
        else:
            current = (current[0], max(current[1], b))
    if current is not None:
        total += current[1] - current[0]
    return total


# --------------------------------------------------------------------------------------------
# Across seeds


def summarize(results: Sequence[KpiResult]) -> dict[str, tuple[float, float, float]]:
    """Per KPI: (mean, low, high), the 95 % confidence interval of the mean across seeds
    (Student's t, n − 1 degrees of freedom; n = 1 gives the value three times; NaNs left out)."""
    if not results:
        raise InvalidInputError("nothing to summarize: no results")
    from scipy.stats import t as student_t  # type: ignore[import-untyped]  # noqa: PLC0415

    summary: dict[str, tuple[float, float, float]] = {}
    for name in KPI_NAMES:
        values = [v for r in results if not math.isnan(v := float(getattr(r, name)))]
        n = len(values)
        if n == 0:
            summary[name] = (math.nan, math.nan, math.nan)
            continue
        mean = math.fsum(values) / n
        if n == 1:
            summary[name] = (mean, mean, mean)
            continue
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        summary[name] = (mean, mean - half, mean + half)
    return summary
