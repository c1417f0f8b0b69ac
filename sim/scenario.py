"""Scenarios: versioned, content-hashed TOML files checked against one schema (decision 0043).

A scenario (``scenarios/*.toml``) says which plant runs, for how long, with which step, demand,
faults, maintenance resources, approver and seeds. :func:`load_scenario` parses and validates it
into a frozen :class:`Scenario`; every problem raises :class:`ScenarioError` naming the line:

- a TOML syntax error: ``FILE:LINE:COL: <tomllib's reason>``;
- schema errors: ``FILE:LINE: <path>: <reason>``, one line per error, ordered by line. Every
  error the field checks find is reported at once; the rules across fields (multiples of the
  step, warm-up before the horizon, faults that fit the plant, duplicates, element ids that exist
  in the network) are checked once the fields themselves are valid, and are all reported too.
  ``<path>`` is dotted, arrays of tables indexed from 0: ``fault[2].at_h`` is the ``at_h`` key of
  the third ``[[fault]]``.

**How lines are found.** A small locator reads the TOML text line by line: table headers
``[x]`` and ``[x.y]``, array-of-tables headers ``[[fault]]`` (counted by index) and ``key =``
lines (bare, quoted or dotted keys) outside multi-line strings, arrays and inline tables. An
error's location is looked up from its full path down to its shortest prefix, so a missing key
points at its table's header, an item of a multi-line array or a key of an inline table points
at the line of the key that holds it, and a missing top-level key points at line 1. Limits: a
table written only through dotted keys (``plant.kind = …`` at the top) is found per key, not per
table; a key repeated in a way TOML allows (``a.b`` and ``[a]``) reports the first line.

**Hashes.** :attr:`Scenario.content_hash` is the SHA-256 of the canonical form: the validated
model dumped as JSON with sorted keys and defaults filled in. Whitespace, comments, key order,
``1`` vs ``1.0`` and writing out a default do not change it; any change of a value does.
:attr:`Scenario.raw_hash` is the SHA-256 of the file's bytes (what was read, exactly).

**Fault kinds and what ``magnitude`` means** (``target`` is the simulator's own element id):

- ``pump_wear`` (epanet; target a pump id): the pump starts wearing at onset; ``magnitude`` > 0
  multiplies the degradation model's nominal wear rate (1 = nominal, 3 = three times faster).
  Persists until the pump is repaired (no ``duration_h``).
- ``bearing_failure`` (epanet; pump id): the bearing is damaged at onset; ``magnitude`` in
  (0, 1] is the damage: vibration, bearing temperature and the failure hazard rise in
  proportion, 1 = the pump fails at onset. Until repaired.
- ``seal_leak`` (epanet; pump id): the mechanical seal leaks ``magnitude`` m³/h (> 0) from
  onset. Until repaired.
- ``pipe_leak`` (epanet; pipe id): a leak of ``magnitude`` m² orifice area (> 0) opens at
  onset (the simulator's ``pipe:<id>:leak_area``). Until repaired.
- ``pipe_burst`` (epanet; pipe id): as ``pipe_leak`` with a large area, ``magnitude`` m²; the
  pipe must be isolated to be repaired. Until repaired.
- ``power_outage`` (epanet; a pumping station id: by TwinKG's convention the id of the node the
  station's pumps draw from, e.g. ``Lake`` in Net3): every pump of the station loses power
  (``station:<id>:power`` = 0) for ``duration_h`` (required). ``magnitude`` unused (1).
- ``stuck_valve`` (epanet; valve id): the valve keeps its setting at onset and ignores changes
  (``valve:<id>:stuck`` = 1) for ``duration_h``, or until repaired when absent.
  ``magnitude`` unused (1).
- ``sensor_drift`` (any plant; target an output variable, e.g. ``tank:1:level`` or
  ``xmeas:reactor_pressure``): the measured value drifts by ``magnitude`` (non-zero, the
  variable's unit per hour, signed) from onset, for ``duration_h`` or until the horizon.
- ``sensor_stuck``: the measured value freezes at its value at onset. ``magnitude`` unused (1).
- ``sensor_dropout``: the measured value is missing (NaN). ``magnitude`` unused (1).
- ``sensor_noise``: Gaussian noise of standard deviation ``magnitude`` (> 0, the variable's
  unit) is added.
- ``disturbance`` (tep only; target ``idv:<n>``, n = 1..28): the TEP disturbance IDV(n) is on
  from onset with ``magnitude`` in (0, 1] (1 = the standard disturbance), for ``duration_h`` or
  until the horizon.

Onsets are ``at_h`` (hours from the start; after the warm-up, before the horizon) or
``rate_per_h`` (a Poisson process over [warm-up, horizon) drawn from the run's seed:
:func:`fault_schedule`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from twinkg.ontology.errors import ScenarioError

__all__ = [
    "FAULT_KINDS",
    "SCHEMA",
    "ApproverSpec",
    "DemandSpec",
    "FaultEvent",
    "FaultSpec",
    "MaintenanceSpec",
    "PlantSpec",
    "RunSpec",
    "Scenario",
    "TimeSpec",
    "epanet_library",
    "fault_schedule",
    "load_scenario",
    "parse_scenario",
]

SCHEMA = "twinkg-scenario/1"

FaultKind = Literal[
    "pump_wear",
    "bearing_failure",
    "seal_leak",
    "pipe_leak",
    "pipe_burst",
    "power_outage",
    "stuck_valve",
    "sensor_drift",
    "sensor_stuck",
    "sensor_dropout",
    "sensor_noise",
    "disturbance",
]
FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]

PUMP_FAULTS = frozenset({"pump_wear", "bearing_failure", "seal_leak"})
PIPE_FAULTS = frozenset({"pipe_leak", "pipe_burst"})
SENSOR_FAULTS = frozenset({"sensor_drift", "sensor_stuck", "sensor_dropout", "sensor_noise"})
# Faults an asset carries until it is repaired: a duration would contradict that.
PERSISTENT_FAULTS = PUMP_FAULTS | PIPE_FAULTS
# Faults whose magnitude is not used: it must stay 1.
UNIT_MAGNITUDE = frozenset({"power_outage", "stuck_valve", "sensor_stuck", "sensor_dropout"})
FAULTS_BY_PLANT: Mapping[str, frozenset[str]] = {
    "epanet": frozenset(FAULT_KINDS) - {"disturbance"},
    "tep": SENSOR_FAULTS | {"disturbance"},
    "fmu": SENSOR_FAULTS,
}
# Quantities a water sensor fault may target, per element kind (the simulators' outputs).
WATER_QUANTITIES: Mapping[str, frozenset[str]] = {
    "pump": frozenset(
        {"flow", "head", "power", "running", "vibration", "bearing_temperature", "seal_leak"}
    ),
    "tank": frozenset({"level"}),
    "node": frozenset({"pressure"}),
    "pipe": frozenset({"flow"}),
    "plant": frozenset({"demand_required", "demand_served", "power"}),
}

_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
_EPS = 1e-9

# TOML is typed: a string is never read as a number (strict), an integer is a float.
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
Text = Annotated[str, Field(strict=True)]
Loc = tuple[str | int, ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, allow_inf_nan=False)


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    if not math.isfinite(ratio):
        return False
    return abs(ratio - round(ratio)) <= _EPS * max(1.0, abs(ratio))


class PlantSpec(_Frozen):
    """Which plant runs: ``tep`` (tep-studio, ``model = "mode1"``), ``epanet`` (a wntr library
    network name or an ``.inp`` path relative to the scenario file) or ``fmu`` (an ``.fmu``
    path)."""

    kind: Literal["tep", "epanet", "fmu"]
    model: Text = Field(min_length=1)
    # epanet: what EPANET does when a hydraulic solution does not converge ("file": the
    # network's own UNBALANCED option; "stop": halt, failing the run; "continue": go on)
    unbalanced: Literal["file", "stop", "continue"] = "file"

    @model_validator(mode="after")
    def _model_fits_kind(self) -> Self:
        if self.kind == "tep" and self.model != "mode1":
            raise ValueError(f"tep runs operating mode 'mode1' only, not {self.model!r}")
        if self.kind != "epanet" and self.unbalanced != "file":
            raise ValueError(f"unbalanced applies to epanet networks only, not to {self.kind}")
        return self


class TimeSpec(_Frozen):
    """The horizon, the fixed communication step, telemetry and decision periods, the warm-up."""

    horizon_h: Positive
    step_s: Positive
    telemetry_s: Positive
    decide_s: Positive
    warmup_h: NonNegative = 0.0
    lookahead_h: Positive = 2.0  # how far the look-ahead planner simulates each candidate
    # how far past the look-ahead a wearing asset's failure hazard is counted (its terminal cost)
    risk_horizon_h: NonNegative = 24.0

    @field_validator("telemetry_s", "decide_s")
    @classmethod
    def _multiple_of_step(cls, value: float, info: ValidationInfo) -> float:
        step = info.data.get("step_s")
        if step is not None and not _is_multiple(value, step):
            raise ValueError(f"must be a multiple of step_s ({step:g} s)")
        return value

    @field_validator("warmup_h")
    @classmethod
    def _warmup_before_horizon(cls, value: float, info: ValidationInfo) -> float:
        horizon = info.data.get("horizon_h")
        if horizon is not None and value >= horizon:
            raise ValueError(f"must be less than horizon_h ({horizon:g} h)")
        return value

    @model_validator(mode="after")
    def _horizon_in_steps(self) -> Self:
        if not _is_multiple(self.horizon_h * 3600.0, self.step_s):
            raise ValueError(f"horizon_h ({self.horizon_h:g} h) is not a whole number of steps")
        if self.lookahead_h * 3600.0 < self.step_s:
            raise ValueError(f"lookahead_h ({self.lookahead_h:g} h) is shorter than one step")
        return self

    @property
    def horizon_s(self) -> float:
        """The horizon in simulated seconds."""
        return self.horizon_h * 3600.0

    @property
    def warmup_s(self) -> float:
        """The warm-up in simulated seconds."""
        return self.warmup_h * 3600.0

    @property
    def steps(self) -> int:
        """How many communication steps the horizon holds."""
        return round(self.horizon_s / self.step_s)


class DemandSpec(_Frozen):
    """Demand (epanet: multiplier on the network's demands) or production rate (tep: multiplier on
    the production-rate setpoint): ``multiplier`` times, when given, a repeating ``pattern`` of
    factors, each held ``pattern_step_h`` hours."""

    multiplier: Positive = 1.0
    pattern: tuple[Positive, ...] = ()
    pattern_step_h: Positive = 1.0

    def multiplier_at(self, t_s: float) -> float:
        """The demand multiplier at simulated second ``t_s``."""
        if not self.pattern:
            return self.multiplier
        index = int(t_s // (self.pattern_step_h * 3600.0)) % len(self.pattern)
        return self.multiplier * self.pattern[index]


class FaultSpec(_Frozen):
    """One fault: its kind, the element it hits, its onset (``at_h`` or ``rate_per_h``), its
    magnitude (meaning per kind: the module docstring) and an optional duration."""

    kind: FaultKind
    target: Text = Field(min_length=1)
    at_h: NonNegative | None = None
    rate_per_h: Positive | None = Field(default=None, validate_default=True)
    magnitude: float = Field(default=1.0, allow_inf_nan=False, strict=True)
    duration_h: Positive | None = None

    @field_validator("rate_per_h")
    @classmethod
    def _one_onset(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "kind" not in info.data or "target" not in info.data:
            return value  # the fault is broken already; say that first
        has_at = info.data.get("at_h") is not None
        if value is not None and has_at:
            raise ValueError("give either at_h or rate_per_h, not both")
        if value is None and not has_at and "at_h" in info.data:
            raise ValueError("give at_h (an onset) or rate_per_h (random onsets)")
        return value

    @field_validator("magnitude")
    @classmethod
    def _magnitude_fits_kind(cls, value: float, info: ValidationInfo) -> float:
        kind = info.data.get("kind")
        if kind is None:
            return value
        if kind in UNIT_MAGNITUDE and value != 1.0:
            raise ValueError(f"{kind} has no magnitude (leave it at 1)")
        if kind in {"bearing_failure", "disturbance"} and not 0.0 < value <= 1.0:
            raise ValueError(f"{kind} magnitude must be in (0, 1]")
        if kind == "sensor_drift" and value == 0.0:
            raise ValueError("sensor_drift magnitude (a rate, unit per hour) must not be 0")
        if kind not in UNIT_MAGNITUDE | {"sensor_drift"} and value <= 0.0:
            raise ValueError(f"{kind} magnitude must be > 0")
        return value

    @field_validator("duration_h")
    @classmethod
    def _duration_fits_kind(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("kind")
        if value is not None and kind in PERSISTENT_FAULTS:
            raise ValueError(f"{kind} lasts until repaired: no duration_h")
        return value

    @model_validator(mode="after")
    def _outage_has_duration(self) -> Self:
        if self.kind == "power_outage" and self.duration_h is None:
            raise ValueError("power_outage needs duration_h")
        return self


class MaintenanceSpec(_Frozen):
    """Maintenance resources: crews, repair and preventive jobs' hours and costs, the period."""

    crews: int = Field(default=1, ge=0, le=1000, strict=True)
    repair_h: Positive = 8.0
    cost_per_repair: NonNegative = 4000.0
    cost_per_crew_hour: NonNegative = 90.0
    preventive_interval_h: Positive = 168.0
    preventive_h: Positive = 2.0
    cost_per_preventive: NonNegative = 500.0

    def cost(self, hours: float, *, planned: bool) -> float:
        """The cost of one job of ``hours`` crew hours: the fixed part (a repair's parts or a
        preventive job's) plus the crew's hours."""
        fixed = self.cost_per_preventive if planned else self.cost_per_repair
        return fixed + hours * self.cost_per_crew_hour


class ApproverSpec(_Frozen):
    """The simulated supervisor who answers approval requests inside a run.

    ``approve``: yes, ``delay_h`` after the request; ``reject``: no, after ``delay_h``;
    ``approve_after``: no to requests made before simulated hour ``after_h`` (e.g. nobody on
    shift yet), yes from then on, each answer after ``delay_h``; ``absent``: never answers (the
    request stays pending)."""

    behaviour: Literal["approve", "reject", "approve_after", "absent"] = "approve"
    delay_h: NonNegative = 0.25
    after_h: NonNegative | None = Field(default=None, validate_default=True)

    @field_validator("after_h")
    @classmethod
    def _after_only_for_approve_after(cls, value: float | None, info: ValidationInfo) -> Any:
        behaviour = info.data.get("behaviour")
        if behaviour == "approve_after" and value is None:
            raise ValueError("approve_after needs after_h")
        if behaviour not in {None, "approve_after"} and value is not None:
            raise ValueError(f"after_h applies to approve_after only, not {behaviour}")
        return value


class RunSpec(_Frozen):
    """The seeds every policy runs with (positive, unique)."""

    seeds: tuple[Annotated[int, Field(gt=0, lt=2**63, strict=True)], ...] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        dupes = sorted({seed for seed in value if value.count(seed) > 1})
        if dupes:
            raise ValueError(f"seeds must be unique: {', '.join(map(str, dupes))} repeated")
        return value


class Scenario(_Frozen):
    """A validated scenario. ``faults`` is the file's ``[[fault]]`` array."""

    schema_: Literal["twinkg-scenario/1"] = Field(alias="schema")
    name: Text
    version: Text
    description: Text = ""
    plant: PlantSpec
    time: TimeSpec
    demand: DemandSpec = DemandSpec()
    faults: tuple[FaultSpec, ...] = Field(default=(), alias="fault")
    maintenance: MaintenanceSpec = MaintenanceSpec()
    approver: ApproverSpec = ApproverSpec()
    run: RunSpec

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False
    )

    _source: str = PrivateAttr(default="<scenario>")
    _raw_hash: str = PrivateAttr(default="")
    _model_file: Path | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be lowercase letters, digits and single hyphens ([a-z0-9-])")
        return value

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.fullmatch(value):
            raise ValueError("must be a semantic version (MAJOR.MINOR.PATCH)")
        return value

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, dict) and info.context.get("defer_cross_checks"):
            return self  # parse_scenario runs them itself, with lines
        problems = _cross_problems(self, base=None)
        if problems:
            loc, message = problems[0]
            raise ValueError(f"{_dotted(loc)}: {message}")
        return self

    @property
    def source(self) -> str:
        """Where the scenario came from (a path, or the ``source`` given to parse it)."""
        return self._source

    @property
    def raw_hash(self) -> str:
        """SHA-256 (hex) of the file's bytes as read; empty for a scenario built in Python."""
        return self._raw_hash

    @property
    def model_file(self) -> Path | None:
        """The resolved model file (an ``.inp`` or ``.fmu``); None for tep."""
        return self._model_file

    def canonical(self) -> str:
        """The canonical form: the validated model as JSON, keys sorted, no whitespace."""
        return json.dumps(
            self.model_dump(mode="json", by_alias=True),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @property
    def content_hash(self) -> str:
        """SHA-256 (hex) of :meth:`canonical`: stable under formatting, changed by any value."""
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One concrete fault onset: when (simulated s), what, where, how strong, until when."""

    time_s: float
    kind: str
    target: str
    magnitude: float
    end_s: float | None


def fault_schedule(scenario: Scenario, seed: int) -> tuple[FaultEvent, ...]:
    """Expand the scenario's faults into concrete onsets over the horizon, sorted by time.

    ``at_h`` faults give one event. ``rate_per_h`` faults give the onsets of a Poisson process
    over [warm-up, horizon): exponential gaps drawn from ``numpy.random.default_rng`` seeded with
    ``SeedSequence(seed, spawn_key=(i,))`` where ``i`` is the fault's index, so each fault has its
    own stream and adding a fault never moves another's onsets. ``end_s`` is onset + duration
    (not clipped to the horizon), or None. Ties sort by the fault's order in the file.
    """
    horizon = scenario.time.horizon_s
    start = scenario.time.warmup_s
    events: list[tuple[float, int, FaultEvent]] = []
    for index, fault in enumerate(scenario.faults):
        duration = None if fault.duration_h is None else fault.duration_h * 3600.0
        onsets: list[float]
        if fault.at_h is not None:
            onsets = [fault.at_h * 3600.0]
        else:
            assert fault.rate_per_h is not None
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
            mean_gap_s = 3600.0 / fault.rate_per_h
            onsets = []
            t = start + float(rng.exponential(mean_gap_s))
            while t < horizon:
                onsets.append(t)
                t += float(rng.exponential(mean_gap_s))
        for onset in onsets:
            end = None if duration is None else onset + duration
            events.append(
                (onset, index, FaultEvent(onset, fault.kind, fault.target, fault.magnitude, end))
            )
    events.sort(key=lambda item: (item[0], item[1]))
    return tuple(event for _, _, event in events)


# ---------------------------------------------------------------------------------------------
# Loading, locating errors


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; ``ScenarioError`` names the file and line."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{file}:{line}: not UTF-8 text") from exc
    return _parse(text, str(file), base=file.resolve().parent, raw=data)


def parse_scenario(text: str, source: str) -> Scenario:
    """Validate scenario text; ``source`` names it in errors (relative model paths resolve
    against ``source``'s folder when it is a path, else the working directory)."""
    base = Path(source).resolve().parent
    return _parse(text, source, base=base, raw=text.encode("utf-8"))


def _parse(text: str, source: str, *, base: Path, raw: bytes) -> Scenario:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(_toml_error(source, str(exc))) from exc
    lines = _locate(text)
    try:
        scenario = Scenario.model_validate(document, context={"defer_cross_checks": True})
    except ValidationError as exc:
        errors = [
            (_line_of(lines, tuple(err["loc"])), tuple(err["loc"]), _reason(err))
            for err in exc.errors(include_url=False)
        ]
        raise ScenarioError(_report(source, errors)) from None
    problems = _cross_problems(scenario, base=base)
    if problems:
        errors = [(_line_of(lines, loc), loc, message) for loc, message in problems]
        raise ScenarioError(_report(source, errors))
    scenario._source = source
    scenario._raw_hash = hashlib.sha256(raw).hexdigest()
    scenario._model_file = _model_file(scenario.plant, base)
    return scenario


def _toml_error(source: str, message: str) -> str:
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        reason = message[: match.start()]
        return f"{source}:{match.group(1)}:{match.group(2)}: {reason}"
    match = re.search(r"\s*\(at end of document\)$", message)
    if match:
        return f"{source}: {message[: match.start()]} (at end of document)"
    return f"{source}: {message}"


def _reason(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _report(source: str, errors: Sequence[tuple[int, Loc, str]]) -> str:
    ordered = sorted(errors, key=lambda e: (e[0], _dotted(e[1])))
    unique = dict.fromkeys(f"{source}:{line}: {_dotted(loc)}: {msg}" for line, loc, msg in ordered)
    return "\n".join(unique)


def _line_of(lines: Mapping[Loc, int], loc: Loc) -> int:
    # pydantic names a literal's or union's branch after the field; keep the data path only.
    path = tuple(
        part for part in loc if isinstance(part, int) or not part.startswith(("literal[",))
    )
    for size in range(len(path), 0, -1):
        line = lines.get(path[:size])
        if line is not None:
            return line
    return 1


_KEY_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY = re.compile(rf"\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_HEADER = re.compile(rf"\s*(\[\[?)\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*\]\]?")


def _key_parts(key: str) -> list[str]:
    return [
        part.strip()[1:-1] if part.strip()[:1] in {'"', "'"} else part.strip()
        for part in re.findall(_KEY_PART, key)
    ]


def _locate(text: str) -> dict[Loc, int]:
    """Map each table, array-of-tables item and key of the TOML text to its (1-based) line."""
    lines: dict[Loc, int] = {}
    counts: dict[tuple[str, ...], int] = {}
    table: Loc = ()
    depth = 0  # open [ or { of a value that spans lines
    in_string: str | None = None  # the open multi-line string's delimiter
    for number, full_line in enumerate(text.splitlines(), start=1):
        line = full_line
        if depth == 0 and in_string is None:
            header = _HEADER.match(line)
            key = None if header else _KEY.match(line)
            if header:
                parts = _key_parts(header.group(2))
                if header.group(1) == "[[":
                    index = counts.get(tuple(parts), 0)
                    counts[tuple(parts)] = index + 1
                    table = (*parts, index)
                else:
                    table = tuple(parts)
                lines.setdefault(table, number)
                continue
            if key:
                path = table
                for part in _key_parts(key.group(1)):
                    path = (*path, part)
                    lines.setdefault(path, number)
                line = line[key.end() :]
        depth, in_string = _scan(line, depth, in_string)
    return lines


def _scan(line: str, depth: int, in_string: str | None) -> tuple[int, str | None]:
    """Track brackets outside strings and comments across one line of a value."""
    i = 0
    while i < len(line):
        if in_string is not None:
            if in_string == '"""' and line[i] == "\\":
                i += 2
                continue
            if line.startswith(in_string, i):
                in_string = None
                i += 3
                continue
            i += 1
            continue
        ch = line[i]
        if ch == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            in_string = line[i : i + 3]
            i += 3
            continue
        if ch in "\"'":
            end = i + 1
            while end < len(line) and line[end] != ch:
                end += 2 if ch == '"' and line[end] == "\\" else 1
            i = end + 1
            continue
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return depth, in_string


# ---------------------------------------------------------------------------------------------
# Rules across fields, and element ids


def _cross_problems(scenario: Scenario, base: Path | None) -> list[tuple[Loc, str]]:
    """Every cross-field problem as (path, reason); element ids only when ``base`` is given."""
    problems: list[tuple[Loc, str]] = []
    kind = scenario.plant.kind
    time = scenario.time
    model_file: Path | None = None
    if base is not None:
        try:
            model_file = _model_file(scenario.plant, base)
        except ValueError as exc:
            problems.append((("plant", "model"), str(exc)))
    elements = _elements(scenario.plant, model_file) if base is not None else None
    seen: dict[tuple[Any, ...], int] = {}
    for index, fault in enumerate(scenario.faults):
        loc: Loc = ("fault", index)
        if fault.kind not in FAULTS_BY_PLANT[kind]:
            allowed = ", ".join(sorted(FAULTS_BY_PLANT[kind]))
            problems.append(
                ((*loc, "kind"), f"{fault.kind} is not a fault of a {kind} plant ({allowed})")
            )
            continue
        if fault.at_h is not None:
            if fault.at_h < time.warmup_h:
                problems.append(
                    ((*loc, "at_h"), f"falls in the fault-free warm-up ({time.warmup_h:g} h)")
                )
            elif fault.at_h >= time.horizon_h:
                problems.append(((*loc, "at_h"), f"is not before horizon_h ({time.horizon_h:g} h)"))
        identity = (fault.kind, fault.target, fault.at_h, fault.rate_per_h)
        if identity in seen:
            problems.append((loc, f"duplicates fault[{seen[identity]}]"))
        else:
            seen[identity] = index
        if elements is not None:
            reason = _target_problem(kind, fault, elements)
            if reason:
                problems.append(((*loc, "target"), reason))
    return problems


@dataclass(frozen=True, slots=True)
class _Elements:
    pumps: frozenset[str] = frozenset()
    pipes: frozenset[str] = frozenset()
    valves: frozenset[str] = frozenset()
    nodes: frozenset[str] = frozenset()
    tanks: frozenset[str] = frozenset()
    stations: frozenset[str] = frozenset()
    measurements: frozenset[str] = frozenset()
    checked: bool = True


def _target_problem(kind: str, fault: FaultSpec, el: _Elements) -> str | None:
    if not el.checked or kind == "fmu":
        return None
    if kind == "tep":
        return _tep_target_problem(fault, el)
    if fault.kind in SENSOR_FAULTS:
        return _water_sensor_problem(fault.target, el)
    if fault.kind == "power_outage":
        if fault.target in el.stations:
            return None
        names = ", ".join(sorted(el.stations)[:8])
        return f"{fault.target!r} is not a pumping station (the node its pumps draw from: {names})"
    element_kind, ids = (
        ("pump", el.pumps)
        if fault.kind in PUMP_FAULTS
        else ("pipe", el.pipes)
        if fault.kind in PIPE_FAULTS
        else ("valve", el.valves)
    )
    return (
        None if fault.target in ids else f"{fault.target!r} is not a {element_kind} of the network"
    )


def _tep_target_problem(fault: FaultSpec, el: _Elements) -> str | None:
    target = fault.target
    if fault.kind == "disturbance":
        match = re.fullmatch(r"idv:([0-9]+)", target)
        if not match or not 1 <= int(match.group(1)) <= 28:
            return f"{target!r} is not a TEP disturbance (idv:1 … idv:28)"
        return None
    name = target.removeprefix("xmeas:")
    if not target.startswith("xmeas:") or name not in el.measurements:
        return f"{target!r} is not a TEP measurement (xmeas:<name>)"
    return None


def _water_sensor_problem(target: str, el: _Elements) -> str | None:
    parts = target.split(":")
    if parts[0] == "plant" and len(parts) == 2 and parts[1] in WATER_QUANTITIES["plant"]:
        return None
    if len(parts) != 3 or parts[0] not in WATER_QUANTITIES or parts[0] == "plant":
        return f"{target!r} is not a measured variable (<pump|tank|node|pipe>:<id>:<quantity>)"
    element_kind, element, quantity = parts
    ids = {"pump": el.pumps, "tank": el.tanks, "node": el.nodes, "pipe": el.pipes}[element_kind]
    if element not in ids:
        return f"{element!r} is not a {element_kind} of the network"
    if quantity not in WATER_QUANTITIES[element_kind]:
        allowed = ", ".join(sorted(WATER_QUANTITIES[element_kind]))
        return f"a {element_kind} has no measured {quantity!r} ({allowed})"
    return None


@cache
def epanet_library() -> Mapping[str, Path]:
    """The networks wntr ships (name → ``.inp``), found without importing wntr."""
    spec = importlib.util.find_spec("wntr")
    if spec is None or not spec.submodule_search_locations:
        return {}
    folder = Path(next(iter(spec.submodule_search_locations))) / "library" / "networks"
    return {inp.stem: inp for inp in sorted(folder.glob("*.inp"))}


def _model_file(plant: PlantSpec, base: Path) -> Path | None:
    if plant.kind == "tep":
        return None
    if plant.kind == "epanet" and plant.model in epanet_library():
        return epanet_library()[plant.model]
    suffix = ".inp" if plant.kind == "epanet" else ".fmu"
    path = Path(plant.model)
    if path.suffix.lower() != suffix:
        known = ", ".join(epanet_library()) if plant.kind == "epanet" else ""
        hint = f"a wntr library network ({known}) or " if known else ""
        raise ValueError(f"{plant.model!r} is neither {hint}a {suffix} file")
    resolved = path if path.is_absolute() else base / path
    if not resolved.is_file():
        raise ValueError(f"{plant.model!r}: no such file ({resolved})")
    return resolved


def _elements(plant: PlantSpec, model_file: Path | None) -> _Elements:
    if plant.kind == "tep":
        return _Elements(measurements=_tep_measurements())
    if plant.kind == "epanet" and model_file is not None:
        return _inp_elements(model_file)
    return _Elements(checked=False)


@cache
def _tep_measurements() -> frozenset[str]:
    from tep_studio import (  # noqa: PLC0415 - heavy, tep only
        list_measurements,
    )

    return frozenset(str(row[0]) for row in list_measurements())


def _inp_sections(path: Path) -> Iterator[tuple[str, list[str]]]:
    section = ""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for raw in handle:
            line = raw.split(";", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                section = line.strip("[]").strip().upper()
                continue
            yield section, line.split()


@cache
def _inp_elements(path: Path) -> _Elements:
    """Element ids of an EPANET ``.inp`` file, read from its sections (no hydraulics)."""
    ids: dict[str, set[str]] = {}
    pumps: dict[str, tuple[str, str]] = {}
    for section, fields in _inp_sections(path):
        ids.setdefault(section, set()).add(fields[0])
        if section == "PUMPS" and len(fields) > 2:
            pumps[fields[0]] = (fields[1], fields[2])
    nodes = ids.get("JUNCTIONS", set()) | ids.get("RESERVOIRS", set()) | ids.get("TANKS", set())
    return _Elements(
        pumps=frozenset(ids.get("PUMPS", set())),
        pipes=frozenset(ids.get("PIPES", set())),
        valves=frozenset(ids.get("VALVES", set())),
        nodes=frozenset(nodes),
        tanks=frozenset(ids.get("TANKS", set())),
        stations=frozenset(_station_ids(pumps)),
    )


def _station_ids(pumps: Mapping[str, tuple[str, str]]) -> set[str]:
    """Station ids as ``twinkg.sim.water.pump_stations`` names them: pumps sharing a suction or
    a discharge node (transitively) form one station, named by its lowest suction node id."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for name in sorted(pumps):
        start, end = pumps[name]
        a, b = find(f"s:{start}"), find(f"d:{end}")
        parent[a] = b
        parent[find(f"p:{name}")] = find(b)
    groups: dict[str, list[str]] = {}
    for name in sorted(pumps):
        groups.setdefault(find(f"p:{name}"), []).append(pumps[name][0])
    return {min(suctions) for suctions in groups.values()}
