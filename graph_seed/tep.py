"""The Tennessee Eastman plant graph, built from tep-studio's own schema (decision 0041).

:func:`tep_plant` returns the plant as RDF and the :class:`~twinkg.sim.binding.PlantBinding` that
ties it to :class:`twinkg.sim.tep.TepSimulator`. Every sensor, valve and stream comes from
``tep_studio.TEP_SCHEMA`` (the 41 measurements, the 12 manipulated variables, the streams of its
concentration monitors); what the schema does not hold is written here once, as process facts of
Downs & Vogel (1993): which unit a stream or a valve connects, the analysers' sampling periods,
the operating limits and shutdown limits, and which disturbance shows as which failure.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

import numpy as np
from rdflib import RDF, RDFS, Graph, Namespace, URIRef
from tep_studio import TEP_SCHEMA, TennesseeEastmanProcess
from tep_studio.simulation.modes import mode_setpoints

from twinkg.graph_seed.plant_builder import Measure, PlantGraphBuilder, double
from twinkg.ontology.namespaces import PREFIXES
from twinkg.ontology.vocab import TK
from twinkg.sim.binding import Actuator, PlantBinding, SensorBinding
from twinkg.sim.tep import DEFAULT_STOP_RESTART_H, SHUTDOWN_MESSAGES

DEFAULT_BASE = "https://w3id.org/twinkg/plant/tep/"
UNIT = Namespace(PREFIXES["unit"])
QK = Namespace(PREFIXES["quantitykind"])


UNITS: dict[str, Measure] = {
    # Standard volume (0 °C, 1 atm) read as volume: thousand standard m³/h → m³/h.
    "kscmh": Measure(QK.VolumeFlowRate, UNIT["M3-PER-HR"], 1000.0),
    "kg/h": Measure(QK.MassFlowRate, UNIT["KiloGM-PER-HR"]),
    "kPa gauge": Measure(QK.Pressure, UNIT.KiloPA),
    "%": Measure(QK.Dimensionless, UNIT.PERCENT),
    "degC": Measure(QK.Temperature, UNIT.DEG_C),
    "m3/h": Measure(QK.VolumeFlowRate, UNIT["M3-PER-HR"]),
    "kW": Measure(QK.Power, UNIT.KiloW),
    "mol %": Measure(QK.Dimensionless, UNIT.PERCENT),
}
"""tep-studio's measurement units (``TEP_SCHEMA.measurements[*].unit``) in QUDT, with the
factor from tep-studio's value to the graph's."""

# ---- process facts (Downs & Vogel 1993) -------------------------------------------------

# Equipment: key → (class, tag suffix, label, criticality).
EQUIPMENT: dict[str, tuple[URIRef, str, str, str]] = {
    "reactor": (TK.Reactor, "R-1", "Reactor", "A"),
    "condenser": (TK.Condenser, "E-1", "Reactor effluent condenser", "B"),
    "separator": (TK.Separator, "V-1", "Vapour-liquid separator", "A"),
    "compressor": (TK.Compressor, "K-1", "Recycle compressor", "A"),
    "stripper": (TK.Stripper, "C-1", "Product stripper", "A"),
    "agitator": (TK.Motor, "M-1", "Reactor agitator drive", "B"),
}
# Where each stream (tep-studio's "stream N") goes: the equipment or stream it feeds.
STREAM_FEEDS: dict[int, str] = {
    1: "valve:a_feed_valve",
    2: "valve:d_feed_valve",
    3: "valve:e_feed_valve",
    4: "valve:ac_feed_valve",
    5: "stream:6",
    6: "reactor",
    7: "condenser",
    8: "compressor",
    9: "valve:purge_valve",
    10: "valve:separator_underflow_valve",
    11: "valve:stripper_underflow_valve",
}
# Where each manipulated variable acts: the equipment or stream it feeds (the agitator drives).
MV_FEEDS: dict[str, str] = {
    "d_feed_valve": "stream:6",
    "e_feed_valve": "stream:6",
    "a_feed_valve": "stream:6",
    "ac_feed_valve": "stripper",
    "compressor_recycle_valve": "stream:8",
    "purge_valve": "",  # to flare
    "separator_underflow_valve": "stripper",
    "stripper_underflow_valve": "",  # product to storage
    "stripper_steam_valve": "stripper",
    "reactor_cooling_water_valve": "reactor",
    "separator_cooling_water_valve": "condenser",
    "reactor_agitator_speed": "reactor",
}
# The simulator's id of equipment whose key is not it: valves and the agitator are MVs.
EXTERNAL_IDS = {
    "agitator": "xmv:reactor_agitator_speed",
    **{f"valve:{name}": f"xmv:{name}" for name in MV_FEEDS if "valve" in name},
}
AREAS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "feeds": ("FD", "Feed area", ("stream:1", "stream:2", "stream:3", "stream:4")),
    "reaction": (
        "RX",
        "Reaction area",
        ("reactor", "condenser", "agitator", "stream:6", "stream:7"),
    ),
    "separation": (
        "SP",
        "Separation and recycle area",
        ("separator", "compressor", "stream:8", "stream:9", "stream:10"),
    ),
    "stripping": ("ST", "Stripping and product area", ("stripper", "stream:5", "stream:11")),
}
# Measurements without "(stream N)" in their description that are a stream's flow.
FLOW_STREAM = {"separator_underflow": 10}
# Analyser sampling periods (s): reactor feed and purge 0.1 h, product 0.25 h; the rest 3 min.
ANALYSER_PERIOD = {6: 360.0, 9: 360.0, 11: 900.0}
CONTINUOUS_PERIOD = 180.0


@dataclass(frozen=True, slots=True)
class Envelope:
    """A normal operating band of Downs & Vogel, Table 5 (or, where marked, this project's)."""

    key: str
    equipment: str
    unit: str  # tep-studio unit string
    low: float
    high: float
    label: str
    rate_per_s: float | None = None


def _envelopes() -> tuple[Envelope, ...]:
    base = mode_setpoints("mode1")
    production = base.production_rate
    return (
        Envelope("reactor-pressure", "reactor", "kPa gauge", 2400.0, 2895.0, "Reactor pressure"),
        Envelope("reactor-level", "reactor", "%", 50.0, 100.0, "Reactor level"),
        Envelope("reactor-temperature", "reactor", "degC", 100.0, 150.0, "Reactor temperature"),
        Envelope("separator-level", "separator", "%", 30.0, 100.0, "Separator level"),
        Envelope("stripper-level", "stripper", "%", 30.0, 100.0, "Stripper base level"),
        # Production: 70 % turndown to the max-production modes' +10 % (assumption, 0041);
        # rate: the controller's own production ramp limit (0.3 x base per day).
        Envelope(
            "production-rate",
            "stripper",
            "m3/h",
            round(0.7 * production, 3),
            round(1.1 * production, 3),
            "Production rate (stripper underflow)",
            rate_per_s=0.3 * production / 24.0 / 3600.0,
        ),
    )


# Interlocks: the kernel's shutdown codes with Downs & Vogel's shutdown limits.
INTERLOCK_LIMITS: dict[int, str] = {
    1: "reactor pressure above 3000 kPa gauge",
    2: "reactor liquid above 24.0 m³ (level about 114 %)",
    3: "reactor liquid below 2.0 m³ (level about -2 %)",
    4: "reactor temperature above 175 °C",
    5: "separator liquid above 12.0 m³ (level about 137 %)",
    6: "separator liquid below 1.0 m³ (level about 2 %)",
    7: "stripper liquid above 8.0 m³ (level about 132 %)",
    8: "stripper liquid below 1.0 m³ (level about -27 %)",
}


@dataclass(frozen=True, slots=True)
class Disturbance:
    """A TEP disturbance (IDV) mapped to the failure mode it shows and where."""

    idv: int
    label: str
    equipment: tuple[str, ...]  # equipment or stream keys susceptible to it
    symptoms: tuple[tuple[URIRef, str], ...]  # (quantity kind, direction)
    mitigations: tuple[str, ...]
    iso_mode: URIRef | None = None  # the ISO 14224 failure mode it manifests as


_FLOW, _TEMP, _PRESS, _POWER, _MASS = (
    QK.VolumeFlowRate,
    QK.Temperature,
    QK.Pressure,
    QK.Power,
    QK.MassFlowRate,
)
# Symptoms as measured with tep-studio 0.2.0 and Ricker's controller (decision 0041): the last
# hour of 4 h with the disturbance against the same seed without it. Flows under ratio control
# hide a feed's trouble in its valve, so a feed's symptom is often downstream. tk:manifestsAs
# names an ISO 14224 mode only where that mode's own symptoms (which the diagnosis adds to the
# signature) are among the measured ones.
DISTURBANCES: tuple[Disturbance, ...] = (
    Disturbance(
        6,
        "A feed loss",
        ("stream:1", "stripper", "separator", "compressor"),
        ((_FLOW, "fall"), (_TEMP, "fall"), (_POWER, "fall")),
        ("controlled_stop", "setpoint_change"),
        TK.LowOutput,
    ),
    Disturbance(
        1,
        "A/C feed ratio step (stream 4)",
        ("stream:1", "stream:4", "stripper", "separator"),
        ((_FLOW, "rise"), (_TEMP, "fall")),
        ("setpoint_change",),
        TK.ParameterDeviation,
    ),
    Disturbance(
        2,
        "B composition step in the A+C feed (stream 4)",
        ("stream:4", "stream:9", "compressor"),
        ((_FLOW, "rise"), (_POWER, "fall")),
        ("setpoint_change",),
        TK.ParameterDeviation,
    ),
    Disturbance(
        8,
        "Random A/B/C composition of the A+C feed (stream 4)",
        ("stream:4", "stream:1", "stream:9"),
        ((_FLOW, "oscillation"),),
        ("setpoint_change",),
        None,  # ISO "erratic output" would add flow and pressure hunting it does not show
    ),
    Disturbance(
        10,
        "Random C feed temperature",
        ("stream:4", "stripper", "valve:stripper_steam_valve"),
        ((_TEMP, "oscillation"), (_MASS, "oscillation")),
        ("work_order",),
        None,  # ISO "erratic output" would add flow and pressure hunting it does not show
    ),
    Disturbance(
        11,
        "Random reactor cooling water inlet temperature",
        ("reactor",),
        ((_TEMP, "oscillation"), (_PRESS, "oscillation")),
        ("work_order",),
        None,  # ISO "erratic output" would add flow and pressure hunting it does not show
    ),
    Disturbance(
        12,
        "Random condenser cooling water inlet temperature",
        ("condenser", "separator"),
        ((_TEMP, "oscillation"), (_PRESS, "oscillation")),
        ("work_order",),
        None,  # ISO "erratic output" would add flow and pressure hunting it does not show
    ),
    Disturbance(
        13,
        "Reaction kinetics drift",
        ("reactor", "stream:9"),
        ((_PRESS, "oscillation"), (_FLOW, "oscillation")),
        ("setpoint_change", "controlled_stop"),
        TK.ParameterDeviation,
    ),
    Disturbance(
        14,
        "Reactor cooling water valve sticking",
        ("valve:reactor_cooling_water_valve", "reactor"),
        ((_TEMP, "oscillation"),),
        ("work_order",),
        None,  # ISO "erratic output" would add flow and pressure hunting it does not show
    ),
    Disturbance(
        16,
        "Stripper heat transfer deviation",
        ("stripper", "valve:stripper_steam_valve"),
        ((_TEMP, "oscillation"), (_MASS, "oscillation")),
        ("work_order",),
        TK.ParameterDeviation,
    ),
    Disturbance(
        17,
        "Reactor heat transfer deviation (cooling fouling)",
        ("valve:reactor_cooling_water_valve", "reactor"),
        ((_TEMP, "fall"), (_TEMP, "oscillation"), (_PRESS, "oscillation")),
        ("work_order", "setpoint_change"),
        TK.ParameterDeviation,
    ),
    Disturbance(
        18,
        "Condenser heat transfer deviation (fouling)",
        ("condenser", "separator"),
        ((_TEMP, "fall"), (_TEMP, "oscillation"), (_PRESS, "oscillation")),
        ("work_order",),
        TK.ParameterDeviation,
    ),
    Disturbance(
        24,
        "D feed pressure/flow variation",
        ("stream:2", "reactor"),
        ((_MASS, "oscillation"), (_PRESS, "oscillation")),
        ("work_order",),
        None,  # ISO "erratic output" would add flow and pressure hunting it does not show
    ),
    Disturbance(
        25,
        "E feed pressure/flow variation",
        ("stream:3", "stripper"),
        ((_MASS, "oscillation"), (_TEMP, "oscillation")),
        ("work_order",),
        None,  # ISO "erratic output" would add flow and pressure hunting it does not show
    ),
    Disturbance(
        27,
        "Reactor cooling water supply pressure/flow variation",
        ("reactor", "valve:reactor_cooling_water_valve"),
        ((_TEMP, "oscillation"),),
        ("work_order",),
        None,  # ISO "erratic output" would add flow and pressure hunting it does not show
    ),
)
"""The failure modes of the TEP graph: each a disturbance of tep-studio (``idv:<n>``)."""

# ---- building -----------------------------------------------------------------------------


def _tag_prefix(base: str) -> str:
    """``TEP`` for the default base; ``TEP-<hash>`` for another, so copies' tags never clash."""
    if base == DEFAULT_BASE:
        return "TEP"
    return "TEP-" + hashlib.sha256(base.encode()).hexdigest()[:8].upper()


@cache
def _nominal() -> tuple[float, ...]:
    """The 41 measurements of mode 1's initial state, noise-free (physical ranges scale them)."""
    measurements, _ = TennesseeEastmanProcess().reset(mode="mode1")
    return tuple(float(v) for v in np.asarray(measurements))


def _streams() -> dict[int, str]:
    """Stream number → description, from tep-studio's concentration-monitor sections."""
    streams: dict[int, str] = {}
    for variable in TEP_SCHEMA.concentration_monitors:
        if variable.stream is None:
            continue
        n = int(variable.stream.split()[-1])
        text = variable.description.removeprefix(f"Concentration of {variable.component} in ")
        streams.setdefault(n, text)
    return streams


def _stream_of(name: str, description: str, stream: str | None) -> int | None:
    if stream is not None:
        return int(stream.split()[-1])
    if name in FLOW_STREAM:
        return FLOW_STREAM[name]
    match = re.search(r"\(stream (\d+)\)", description)
    return int(match.group(1)) if match else None


def _monitored(name: str, stream: int | None) -> str:
    """The equipment or stream key a measurement monitors."""
    if stream is not None:
        return f"stream:{stream}"
    if "cooling_water" in name:
        unit = name.split("_", 1)[0]
        return "valve:reactor_cooling_water_valve" if unit == "reactor" else "condenser"
    if name == "stripper_steam_flow":
        return "valve:stripper_steam_valve"
    prefix = name.split("_", 1)[0]
    if prefix not in EQUIPMENT:
        raise ValueError(f"tep-studio measurement {name!r}: no equipment to monitor")
    return prefix


def _range(unit: str, nominal: float, mapping: Measure) -> tuple[float, float]:
    """A sensor's physical range in the graph's unit (see decision 0041)."""
    if unit in {"%"}:
        return -30.0, 140.0  # levels: the shutdown limits lie outside 0..100 %
    if unit == "mol %":
        return 0.0, 100.0
    if unit == "degC":
        return 0.0, 200.0
    if unit == "kPa gauge":
        return 0.0, 3500.0
    high = max(1.0, 3.0 * abs(nominal)) * mapping.scale
    high = float(f"{high:.3g}")
    return -0.05 * high, high  # flows and power: transmitter noise reads slightly below 0


_VALVE_AREAS = {
    "d_feed_valve": "feeds",
    "e_feed_valve": "feeds",
    "a_feed_valve": "feeds",
    "ac_feed_valve": "feeds",
    "compressor_recycle_valve": "separation",
    "purge_valve": "separation",
    "separator_underflow_valve": "separation",
    "stripper_underflow_valve": "stripping",
    "stripper_steam_valve": "stripping",
    "reactor_cooling_water_valve": "reaction",
    "separator_cooling_water_valve": "reaction",
}
_UNIT_FEEDS = (
    ("reactor", "stream:7"),
    ("condenser", "separator"),
    ("separator", "stream:8"),
    ("separator", "stream:9"),
    ("separator", "stream:10"),
    ("compressor", "stream:6"),
    ("stripper", "stream:5"),
    ("stripper", "stream:11"),
)


class _Builder(PlantGraphBuilder):
    """Writes one copy of the plant under a base IRI (plain text literals, as it always had)."""

    def __init__(self, base: str) -> None:
        super().__init__(base, typed_text=False)
        self.ns = Namespace(base)
        self.prefix = _tag_prefix(base)
        for name, namespace in (("tk", str(TK)), ("unit", str(UNIT)), ("quantitykind", str(QK))):
            self.g.bind(name, namespace)
        self.g.bind("tep", base)
        self.nodes: dict[str, URIRef] = {}

    def tag(self, suffix: str) -> str:
        """The tag ``suffix`` under this copy's tag prefix."""
        return f"{self.prefix}-{suffix}"

    def equipment(
        self, key: str, node: URIRef, area: URIRef, spec: tuple[URIRef, str, str, str]
    ) -> None:
        """``spec``: class, tag, label, criticality."""
        cls, suffix, label, crit = spec
        self.nodes[key] = node
        self.add_asset(
            node,
            cls,
            label=label,
            tag=self.tag(suffix),
            criticality=crit,
            parent=area,
            external_id=EXTERNAL_IDS.get(key, key),
        )
        self.add(node, TK.operationalStatus, self.text("running"))

    def structure(self) -> None:
        ns = self.ns
        self.add_asset(
            self.site,
            TK.Site,
            label="Tennessee Eastman plant",
            tag=self.tag("SITE"),
            criticality="A",
            external_id="plant",
        )
        self.add(self.site, RDFS.comment, self.text("The modified TEP (Bathelt, Ricker & Jelali)."))
        area_of: dict[str, URIRef] = {}
        for key, (suffix, label, members) in AREAS.items():
            area = ns[f"area-{key}"]
            tag = self.tag(suffix)
            self.add_asset(area, TK.Area, label=label, tag=tag, criticality="A", parent=self.site)
            area_of.update(dict.fromkeys(members, area))
        for key, (cls, tag, label, crit) in EQUIPMENT.items():
            self.equipment(key, ns[key], area_of[key], (cls, tag, label, crit))
        # the plant starts again no sooner than this after a controlled stop (the simulator's
        # own restart permissive); the agents may propose the restart once it passed (0049)
        self.add(self.nodes["reactor"], TK.restartHoldOff, double(DEFAULT_STOP_RESTART_H * 3600.0))
        for n, description in sorted(_streams().items()):
            crit = "B" if n in {6, 7, 8} else "C"
            key = f"stream:{n}"
            spec = (TK.Pipe, f"L-{n}", description, crit)
            self.equipment(key, ns[f"stream-{n}"], area_of[key], spec)
        for mv in TEP_SCHEMA.manipulated_variables:
            if mv.name not in MV_FEEDS:
                raise ValueError(f"tep-studio manipulated variable {mv.name!r} is not placed")
            if mv.name == "reactor_agitator_speed":
                continue  # the agitator drive (EQUIPMENT), not a valve
            key = f"valve:{mv.name}"
            label = mv.description.removeprefix("Valve position ").capitalize()
            area = ns[f"area-{_VALVE_AREAS[mv.name]}"]
            node = ns[f"valve-{mv.name.replace('_', '-')}"]
            self.equipment(key, node, area, (TK.Valve, f"XV-{mv.index + 1}", label, "B"))
        feeds = [(f"stream:{n}", target) for n, target in STREAM_FEEDS.items()]
        feeds += [(f"valve:{name}", t) for name, t in MV_FEEDS.items() if t and "valve" in name]
        for source, target in [*feeds, *_UNIT_FEEDS]:
            self.add(self.nodes[source], TK.feeds, self.nodes[target])

    def sensors(self) -> tuple[SensorBinding, ...]:
        bindings: list[SensorBinding] = []
        for variable, value in zip(TEP_SCHEMA.measurements, _nominal(), strict=True):
            mapping = UNITS[variable.unit]
            stream = _stream_of(variable.name, variable.description, variable.stream)
            monitored = self.nodes[_monitored(variable.name, stream)]
            node = self.ns[f"sensor-{variable.name.replace('_', '-')}"]
            output = f"xmeas:{variable.name}"
            low, high = _range(variable.unit, value, mapping)
            period = CONTINUOUS_PERIOD
            if variable.physical_type == "composition" and stream is not None:
                period = ANALYSER_PERIOD[stream]
            binding = self.add_sensor(
                node,
                monitored,
                mapping,
                output=output,
                label=variable.description,
                tag=self.tag(f"XMEAS-{variable.index + 1}"),
                parent=monitored,
                low=low,
                high=high,
                sampling_s=period,
            )
            comment = f"tep-studio measurement {variable.name}, in {variable.unit}."
            self.add(node, RDFS.comment, self.text(comment))
            bindings.append(binding)
        return tuple(bindings)

    def envelopes(self) -> None:
        for envelope in _envelopes():
            mapping = UNITS[envelope.unit]
            rate = envelope.rate_per_s
            self.add_envelope(
                self.ns[f"envelope-{envelope.key}"],
                self.nodes[envelope.equipment],
                mapping,
                label=f"{envelope.label} envelope",
                low=envelope.low * mapping.scale,
                high=envelope.high * mapping.scale,
                max_rate=None if rate is None else rate * mapping.scale,
            )

    def interlocks(self) -> None:
        """One per shutdown limit of the kernel; each trips the whole plant."""
        for code, message in SHUTDOWN_MESSAGES.items():
            node = self.ns[f"interlock-{code}"]
            self.add(node, RDF.type, TK.Interlock)
            self.add(node, RDFS.label, self.text(f"Shutdown on {message}"))
            self.add(node, TK.tripCondition, self.text(INTERLOCK_LIMITS[code]))
            self.add(node, TK.externalId, self.text(f"shutdown:{code}"))
            for key in ("reactor", "compressor", "stripper"):
                self.add(node, TK.trips, self.nodes[key])
            self.add(node, TK.appliesTo, self.site)

    def failure_modes(self) -> None:
        for d in DISTURBANCES:
            node = self.ns[f"failure-mode-idv{d.idv}"]
            self.add_failure_mode(
                node,
                label=f"{d.label} (IDV {d.idv})",
                comment=TEP_SCHEMA.disturbances[d.idv - 1].description,
                mitigations=d.mitigations,
                manifests_as=d.iso_mode,
                external_id=f"idv:{d.idv}",
            )
            for kind, direction in d.symptoms:
                local = str(kind).rsplit("/", 1)[-1].lower()
                self.add_symptom(
                    node,
                    self.ns[f"symptom-idv{d.idv}-{local}-{direction}"],
                    label=f"{d.label}: {_words(kind)} {_verb(direction)}",
                    kind=kind,
                    direction=direction,
                )
            for key in d.equipment:
                self.add(self.nodes[key], TK.susceptibleTo, node)

    def policies(self) -> None:
        self.add_policies(
            trust_comment="Agents act alone only at confidence >= 0.8.",
            approval_label="Shift supervisor approves stopping and restarting A units",
            supervisor_label="Simulated shift supervisor",
            supervisor_comment="Answers as the scenario's approver says.",
        )
        operator = self.ns["person-operator"]
        self.add(operator, RDF.type, TK.Person)
        self.add(operator, RDFS.label, self.text("Simulated panel operator"))
        self.add(operator, TK.hasRole, TK.OperatorRole)

    def binding(self, sensors: tuple[SensorBinding, ...]) -> PlantBinding:
        pressure, production = UNITS["kPa gauge"], UNITS["m3/h"]
        return PlantBinding(
            plant="tep",
            site=str(self.site),
            sensors=sensors,
            actuators=(
                Actuator(
                    asset=str(self.nodes["reactor"]),
                    kind="Reactor",
                    element="reactor",
                    run_input="plant:run",
                    setpoint_input="sp:reactor_pressure",
                    setpoint_quantity_kind=str(pressure.kind),
                    setpoint_unit=str(pressure.unit),
                ),
                Actuator(
                    asset=str(self.nodes["stripper"]),
                    kind="Stripper",
                    element="stripper",
                    setpoint_input="sp:production_rate",
                    setpoint_quantity_kind=str(production.kind),
                    setpoint_unit=str(production.unit),
                ),
            ),
            kpi_outputs={
                "throughput": "plant:throughput",
                "energy_per_unit": "plant:cost_per_h",
                "availability": "plant:running",
            },
        )


def tep_plant(base: str = DEFAULT_BASE) -> tuple[Graph, PlantBinding]:
    """The TEP plant graph under ``base`` and its binding to :class:`~twinkg.sim.tep.TepSimulator`.

    Structure (site, four areas, reactor, condenser, separator, compressor, stripper, agitator,
    the eleven streams as pipes, a valve per manipulated variable), a sensor per measurement with
    its QUDT unit, operating envelopes, an interlock per shutdown limit, failure modes for the
    disturbances, policies and people. Tags carry a prefix derived from ``base`` so that several
    copies can live in one store.
    """
    builder = _Builder(base)
    builder.structure()
    sensors = builder.sensors()
    builder.envelopes()
    builder.interlocks()
    builder.failure_modes()
    builder.policies()
    return builder.g, builder.binding(sensors)


def _words(kind: URIRef) -> str:
    name = str(kind).rsplit("/", 1)[-1]
    return re.sub(r"(?<!^)([A-Z])", r" \1", name).lower()


def _verb(direction: str) -> str:
    return {
        "rise": "rises",
        "fall": "falls",
        "oscillation": "becomes more variable",
        "any": "changes",
    }[direction]
