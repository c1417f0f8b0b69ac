"""A water network's plant graph, built from wntr's own model of an EPANET ``.inp`` file.

:func:`epanet_plant` maps the network into the ontology (never a hand-written table): a
``tk:Site`` for the network; ``tk:PumpingStation`` areas (pumps that share a suction or a
discharge node, :func:`twinkg.sim.water.pump_stations`); a ``tk:CentrifugalPump`` per pump with
its curve and design point, parallel pumps (same suction and discharge) as duty/standby pairs;
``tk:Tank`` and ``tk:Reservoir`` nodes; every pipe and valve; junctions grouped into
``tk:DemandZone`` areas by the demand pattern they follow; a ``tk:Sensor`` per measured quantity
with its QUDT unit; envelopes from the network's own limits; the plant's policies. It returns the
:class:`PlantBinding` the loop uses, built from the same element ids. Decision 0042 says why.

Units: sensors report in the units TwinKG's closed lists allow (decision 0039, sensor contract
2.1.0): flows in L/s; pump differential head and service pressure in kPa (ρg·head: a pressure
transmitter measures a pressure, and the ontology's leakage and cavitation signatures are written
on quantitykind:Pressure); tank level in m (quantitykind:Length, EPANET's own output); pump
vibration as the degradation model gives it, RMS velocity in mm/s (quantitykind:Velocity, ISO
10816). The ontology's vibration and cavitation signatures see vibration as acceleration, so the
plant states its own modes for them (:data:`VELOCITY_MODES`): each manifests as the ISO 14224 mode
and adds the velocity patterns, so a vibration rise on a pump's transmitter ranks them.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rdflib import RDFS, Graph, URIRef

from twinkg.graph_seed.plant_builder import Measure, PlantGraphBuilder, double
from twinkg.kg.mapping import rdf_to_records
from twinkg.kg.records import GraphRecords
from twinkg.ontology.catalog import ONTOLOGY_DIR, parse_turtle
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.units import allowed_units
from twinkg.ontology.vocab import QUANTITYKIND, TK, UNIT
from twinkg.sim.binding import Actuator, PlantBinding, SensorBinding
from twinkg.sim.water import (
    controlled_links,
    initially_open,
    parallel_pumps,
    pump_stations,
    read_network,
    resolve_inp,
)

RHO_G_KPA_PER_M = 9.80665  # kPa per metre of water head
SERVICE_PRESSURE_M = 14.0  # the simulator's default PDA required pressure (sim.water)
MAX_SERVICE_PRESSURE_M = 100.0
VIBRATION_LIMIT_MM_S = 4.5  # ISO 10816-3 zone B/C boundary (group 2 flexible, group 1 rigid)
BEARING_LIMIT_C = 90.0
SAMPLING_S = 900.0
LEVEL_TOLERANCE_M = 0.001  # the .inp's levels are written rounded; a tank at its floor is not out
PUMP_FAILURE_MODES = (
    TK.LowOutput,  # wear: flow and head fall
    TK.InternalLeakage,  # wear rings: recirculation
    TK.Vibration,  # wear, bearing damage
    TK.Overheating,  # bearing damage
    TK.ExternalLeakageProcessMedium,  # seal leak
    TK.Cavitation,  # run-out beyond the best-efficiency point
    TK.Breakdown,
)
VELOCITY_MODES = {  # the ISO 14224 modes whose ontology signature sees vibration as acceleration
    TK.Vibration: "vibration",
    TK.Cavitation: "cavitation",
}
VELOCITY_DIRECTIONS = ("rise", "oscillation")  # as the ontology's acceleration patterns

_QK = str(QUANTITYKIND._NS)
_UNIT = str(UNIT._NS)


@dataclass(frozen=True, slots=True)
class _SensorSpec:
    key: str  # which measure (flow, head, pressure, power, level, vibration, temperature)
    code: str  # the tag's instrument code (FT, PDT, …)
    element: str
    output: str  # the simulator output it reads
    label: str
    high: float  # physical range, in the output's unit
    low: float = 0.0


def _measure(options: Iterable[tuple[str, str, float]]) -> Measure:
    """The first (kind, unit, scale) the closed unit lists allow."""
    for kind, unit, scale in options:
        if URIRef(_UNIT + unit) in allowed_units(_QK + kind):
            return Measure(URIRef(_QK + kind), URIRef(_UNIT + unit), scale)
    raise LookupError(f"none of {options!r} is in TwinKG's closed unit lists")


def _measures() -> dict[str, Measure]:
    return {
        "flow": _measure([("VolumeFlowRate", "L-PER-SEC", 1000.0)]),
        "head": _measure([("Pressure", "KiloPA", RHO_G_KPA_PER_M)]),
        "pressure": _measure([("Pressure", "KiloPA", RHO_G_KPA_PER_M)]),
        "power": _measure([("Power", "KiloW", 1.0)]),
        "level": _measure([("Length", "M", 1.0)]),  # EPANET's tank level, m
        "vibration": _measure([("Velocity", "MilliM-PER-SEC", 1.0)]),  # RMS velocity, mm/s
        "temperature": _measure([("Temperature", "DEG_C", 1.0)]),
    }


@cache
def _iso_modes() -> Graph:
    """The ontology's failure-mode module (labels, codes, mitigations of the ISO 14224 modes)."""
    return parse_turtle([ONTOLOGY_DIR / "modules" / "events.ttl"])


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "-", text.upper()).strip("-") or "X"


class _Tags:
    """Plant tags that meet the asset contract (capitals, digits, '-'; ≤ 40) and are unique."""

    def __init__(self, prefix: str) -> None:
        self.prefix = _sanitize(prefix)[:12].strip("-")
        self.used: set[str] = set()

    def __call__(self, code: str, element: str) -> str:
        tag = f"{self.prefix}-{code}-{_sanitize(element)}"
        if len(tag) > 40 or tag in self.used:
            digest = hashlib.sha256(f"{code}/{element}".encode()).hexdigest()[:8].upper()
            tag = f"{self.prefix}-{code}-{_sanitize(element)[:12].strip('-')}-{digest}"
        self.used.add(tag)
        return tag


def _design_point(points: list[tuple[float, float]]) -> tuple[float, float]:
    if len(points) == 1:
        return points[0]
    nonzero = [p for p in points if p[0] > 0] or points
    return nonzero[(len(nonzero) - 1) // 2] if len(points) != 3 else points[1]


def plant_name(inp: str | Path) -> str:
    """The network's name: the library name, or the file's stem."""
    path = resolve_inp(inp)
    return path.stem


class _Builder(PlantGraphBuilder):
    """Collects the graph (``xsd:string`` text literals, as it always had), the sensor bindings
    and the actuators of one network."""

    def __init__(self, wn: Any, name: str, ns: str) -> None:
        super().__init__(ns, typed_text=True)
        self.wn, self.name, self.ns = wn, name, ns
        self.tags = _Tags(name)
        self.measures = _measures()
        self.sensors: list[SensorBinding] = []
        self.actuators: list[Actuator] = []
        self.zone_of: dict[str, URIRef] = {}
        self.modes: dict[URIRef, URIRef] = {}

    def iri(self, kind: str, element: str) -> URIRef:
        return URIRef(f"{self.ns}{kind}-{quote(element, safe='')}")

    def home(self, *nodes: str) -> URIRef:
        """The demand zone of the first of ``nodes`` that is a junction, else the site."""
        return next((self.zone_of[n] for n in nodes if n in self.zone_of), self.site)

    def element(
        self,
        kind: str,
        element: str,
        cls: URIRef,
        *,
        code: str,
        label: str,
        criticality: str,
        parent: URIRef,
    ) -> URIRef:
        """The asset of the network's ``element`` (a node, link or pattern id): IRI
        ``<ns><kind>-<element>``, tag from instrument ``code`` and the id, the id as its
        ``tk:externalId``."""
        node = self.iri(kind, element)
        tag = self.tags(code, element)
        self.add_asset(
            node,
            cls,
            label=label,
            tag=tag,
            criticality=criticality,
            parent=parent,
            external_id=element,
        )
        return node

    def envelope(self, owner: URIRef, key: str, *, low: float, high: float, label: str) -> None:
        """``owner``'s envelope of measure ``key``, ``low``..``high`` in the simulator's unit."""
        m = self.measures[key]
        env = URIRef(f"{owner}-envelope-{key}")
        self.add_envelope(env, owner, m, label=label, low=low * m.scale, high=high * m.scale)

    def sensor(self, equipment: URIRef, spec: _SensorSpec, parent: URIRef) -> None:
        m = self.measures[spec.key]
        suffix = spec.output.rsplit(":", 1)[-1].replace("_", "-")
        binding = self.add_sensor(
            URIRef(f"{equipment}-sensor-{suffix}"),
            equipment,
            m,
            output=spec.output,
            label=spec.label,
            tag=self.tags(spec.code, spec.element),
            parent=parent,
            low=spec.low * m.scale,
            high=spec.high * m.scale,
            sampling_s=SAMPLING_S,
        )
        self.sensors.append(binding)

    def mode(self, iso: URIRef) -> URIRef:
        """The failure mode the plant's pumps are susceptible to for ISO 14224 mode ``iso``: the
        ontology's own, or, for a mode in :data:`VELOCITY_MODES`, the plant's mode that manifests
        as it with symptom patterns on vibration velocity (rise, oscillation), the kind the pumps'
        transmitters measure, and the ISO mode's mitigations (the planner reads a mode's own)."""
        if iso not in VELOCITY_MODES:
            return iso
        if iso in self.modes:
            return self.modes[iso]
        ontology, key = _iso_modes(), VELOCITY_MODES[iso]
        node = URIRef(f"{self.ns}failure-mode-{key}")
        label = str(ontology.value(iso, RDFS.label) or key.capitalize())
        code = ontology.value(iso, TK.iso14224Code)
        self.add_failure_mode(
            node,
            label=f"{label}, seen in vibration velocity (ISO 10816)",
            comment=(
                f"ISO 14224 {code or key}, as this network's pumps show it: their vibration "
                "transmitters measure RMS velocity in mm/s, not acceleration."
            ),
            mitigations=sorted(str(a) for a in ontology.objects(iso, TK.mitigatedBy)),
            manifests_as=iso,
        )
        velocity = self.measures["vibration"].kind
        for direction in VELOCITY_DIRECTIONS:
            verb = "rises" if direction == "rise" else "more variable"
            self.add_symptom(
                node,
                URIRef(f"{self.ns}symptom-{key}-velocity-{direction}"),
                label=f"{key}: vibration velocity {verb}",
                kind=velocity,
                direction=direction,
            )
        self.modes[iso] = node
        return node

    # ---- the network's parts ----

    def add_site(self, source: str) -> None:
        wn, g = self.wn, self.g
        label = f"EPANET network {self.name}"
        self.add_asset(
            self.site,
            TK.Site,
            label=label,
            tag=self.tags.prefix,
            criticality="A",
            external_id=self.name,
        )
        title = " ".join(" ".join(wn.title).split()) if wn.title else ""
        comment = f"Read with wntr from {source}" + (f": {title}" if title else "")
        g.add((self.site, RDFS.comment, self.text(comment)))

    def add_zones(self) -> None:
        """Junctions grouped by the demand pattern they follow, one zone each, with a service
        pressure sensor at the zone's highest junction that has a demand."""
        wn = self.wn
        default = wn.options.hydraulic.pattern or "1"
        members: dict[str, list[str]] = {}
        for j in sorted(wn.junction_name_list):
            demands = wn.get_node(j).demand_timeseries_list
            pattern = next((d.pattern_name for d in demands if d.pattern_name), None)
            if pattern is None:
                pattern = default if default in wn.pattern_name_list else "none"
            members.setdefault(str(pattern), []).append(j)
        for pattern, junctions in sorted(members.items()):
            zone = self.element(
                "zone",
                pattern,
                TK.DemandZone,
                code="DZ",
                label=f"Demand zone (pattern {pattern}, {len(junctions)} junctions)",
                criticality="B",
                parent=self.site,
            )
            for j in junctions:
                self.zone_of[j] = zone
            with_demand = [
                j
                for j in junctions
                if any(d.base_value > 0 for d in wn.get_node(j).demand_timeseries_list)
            ] or junctions
            critical = max(with_demand, key=lambda j: (wn.get_node(j).elevation, j))
            spec = _SensorSpec(
                "pressure",
                "PT",
                critical,
                f"node:{critical}:pressure",
                f"Service pressure at junction {critical}",
                high=2 * MAX_SERVICE_PRESSURE_M,
                low=-MAX_SERVICE_PRESSURE_M,
            )
            self.sensor(zone, spec, zone)
            self.envelope(
                zone,
                "pressure",
                low=SERVICE_PRESSURE_M,
                high=MAX_SERVICE_PRESSURE_M,
                label=f"Service pressure of zone {pattern}",
            )

    def add_tanks_and_reservoirs(self) -> None:
        wn, g = self.wn, self.g
        for t in sorted(wn.tank_name_list):
            tank = wn.get_node(t)
            parent = self.home(t)
            node = self.element(
                "tank", t, TK.Tank, code="T", label=f"Tank {t}", criticality="B", parent=parent
            )
            g.add((node, TK.operationalStatus, self.text("running")))
            g.add((node, TK.elevation, double(tank.elevation)))
            g.add((node, TK.diameter, double(tank.diameter)))
            if tank.max_level > tank.min_level:
                self.envelope(
                    node,
                    "level",
                    low=tank.min_level - LEVEL_TOLERANCE_M,
                    high=tank.max_level + LEVEL_TOLERANCE_M,
                    label=f"Tank {t} level",
                )
            high = tank.max_level * 1.1 + 1.0
            spec = _SensorSpec("level", "LT", t, f"tank:{t}:level", f"Tank {t} level", high=high)
            self.sensor(node, spec, parent)
        for r in sorted(wn.reservoir_name_list):
            node = self.element(
                "reservoir",
                r,
                TK.Reservoir,
                code="R",
                label=f"Reservoir {r}",
                criticality="B",
                parent=self.site,
            )
            g.add((node, TK.elevation, double(wn.get_node(r).base_head)))

    def add_stations(self) -> None:
        wn = self.wn
        controlled = controlled_links(wn)
        standby_of: dict[str, str] = {}
        for group in parallel_pumps(wn):
            duty = [p for p in group if initially_open(wn, p) or p in controlled] or [group[0]]
            for p in group:
                if p not in duty:
                    standby_of[p] = duty[0]
        for s, pumps in pump_stations(wn).items():
            station = self.element(
                "station",
                s,
                TK.PumpingStation,
                code="PS",
                label=f"Pumping station {s} ({len(pumps)} pump{'s' if len(pumps) > 1 else ''})",
                criticality="A",
                parent=self.site,
            )
            for p in pumps:
                running = initially_open(wn, p) or p in controlled
                self.add_pump(p, station, running=running, standby_for=standby_of.get(p))

    def add_pump(self, p: str, station: URIRef, *, running: bool, standby_for: str | None) -> None:
        wn, g = self.wn, self.g
        pump = wn.get_link(p)
        node = self.element(
            "pump",
            p,
            TK.CentrifugalPump,
            code="P",
            label=f"Pump {p}",
            criticality="A",
            parent=station,
        )
        g.add((node, TK.dutyRole, self.text("standby" if standby_for else "duty")))
        status = "running" if running and not standby_for else "stopped"
        g.add((node, TK.operationalStatus, self.text(status)))
        if standby_for:
            g.add((node, TK.standbyFor, self.iri("pump", standby_for)))
        for mode in PUMP_FAILURE_MODES:
            g.add((node, TK.susceptibleTo, self.mode(mode)))
        max_flow, shutoff = self.add_curve(node, pump)
        for link_name in sorted(wn.get_links_for_node(pump.end_node_name)):
            link = wn.get_link(link_name)
            if link_name != p and link.start_node_name == pump.end_node_name:
                g.add((node, TK.feeds, self.iri(_link_kind(wn, link_name), link_name)))
        flow_high = max_flow if max_flow > 0 else 1.0
        head_high = shutoff * 1.5 if shutoff > 0 else 200.0
        specs = (
            _SensorSpec("flow", "FT", p, f"pump:{p}:flow", f"Pump {p} flow", high=2 * flow_high),
            _SensorSpec(
                "head",
                "PDT",
                p,
                f"pump:{p}:head",
                f"Pump {p} differential pressure",
                high=head_high,
                low=-head_high,
            ),
            _SensorSpec("power", "JT", p, f"pump:{p}:power", f"Pump {p} power", high=10_000.0),
            _SensorSpec(
                "vibration", "VT", p, f"pump:{p}:vibration", f"Pump {p} vibration", high=50.0
            ),
            _SensorSpec(
                "temperature",
                "TT",
                p,
                f"pump:{p}:bearing_temperature",
                f"Pump {p} bearing temperature",
                high=150.0,
                low=-20.0,
            ),
        )
        for spec in specs:
            self.sensor(node, spec, station)
        self.envelope(node, "flow", low=0.0, high=flow_high, label=f"Pump {p} flow")
        self.envelope(
            node, "vibration", low=0.0, high=VIBRATION_LIMIT_MM_S, label=f"Pump {p} vibration"
        )
        self.envelope(
            node,
            "temperature",
            low=0.0,
            high=BEARING_LIMIT_C,
            label=f"Pump {p} bearing temperature",
        )
        self.actuators.append(
            Actuator(
                asset=str(node),
                kind="Pump",
                element=p,
                run_input=f"pump:{p}:status",
                setpoint_input=f"pump:{p}:speed",
                setpoint_quantity_kind=str(QUANTITYKIND.Dimensionless),
                setpoint_unit=str(UNIT.UNITLESS),
                standby_for=str(self.iri("pump", standby_for)) if standby_for else None,
                repairable=p,
                start_input=f"pump:{p}:hand",
                running_output=f"pump:{p}:running",
            )
        )

    def add_curve(self, node: URIRef, pump: Any) -> tuple[float, float]:
        """The pump's curve and design point; returns (maximum flow m³/s, shutoff head m)."""
        g = self.g
        efficiency = float(self.wn.options.energy.global_efficiency or 75.0) / 100.0
        if pump.pump_type != "HEAD":  # a constant-power pump (EPANET POWER): no curve to state
            g.add((node, TK.ratedPower, double(float(pump.power) / 1000.0)))
            return 0.0, 0.0
        points = [(float(q), float(h)) for q, h in pump.get_pump_curve().points]
        with warnings.catch_warnings():  # scipy's curve fit warns on exact 3-point fits
            warnings.simplefilter("ignore")
            a, b, c = (float(x) for x in pump.get_head_curve_coefficients())
        q, h = _design_point(points)
        max_flow = (a / b) ** (1.0 / c) if b > 0 and c > 0 else max(x for x, _ in points)
        g.add((node, TK.pumpCurve, self.text(json.dumps([[x, y] for x, y in points]))))
        g.add((node, TK.ratedHead, double(h)))
        g.add((node, TK.shutoffHead, double(a)))
        if q > 0:
            g.add((node, TK.ratedFlow, double(q * 60000.0)))  # the asset contract's L/min
            g.add((node, TK.ratedPower, double(RHO_G_KPA_PER_M * q * h / efficiency)))  # kW
        return max_flow, a

    def add_links(self) -> None:
        wn, g = self.wn, self.g
        for name in sorted(wn.pipe_name_list):
            pipe = wn.get_link(name)
            parent = self.home(pipe.end_node_name, pipe.start_node_name)
            node = self.element(
                "pipe",
                name,
                TK.Pipe,
                code="L",
                label=f"Pipe {name}",
                criticality="C",
                parent=parent,
            )
            g.add((node, TK.length, double(pipe.length)))
            g.add((node, TK.diameter, double(pipe.diameter)))
            g.add((node, TK.roughness, double(pipe.roughness)))
            status = "running" if initially_open(wn, name) else "stopped"
            g.add((node, TK.operationalStatus, self.text(status)))
            g.add((node, TK.susceptibleTo, TK.ExternalLeakageProcessMedium))
            self.actuators.append(
                Actuator(str(node), "Pipe", name, run_input=f"pipe:{name}:status", repairable=name)
            )
        for v in sorted(wn.valve_name_list):
            valve = wn.get_link(v)
            parent = self.home(valve.end_node_name, valve.start_node_name)
            label = f"{valve.valve_type} valve {v}"
            node = self.element(
                "valve", v, TK.Valve, code="XV", label=label, criticality="B", parent=parent
            )
            g.add((node, TK.diameter, double(valve.diameter)))
            g.add((node, TK.operationalStatus, self.text("running")))
            kind, unit = _VALVE_SETPOINTS.get(str(valve.valve_type), (None, None))
            self.actuators.append(
                Actuator(
                    str(node),
                    "Valve",
                    v,
                    setpoint_input=f"valve:{v}:setting",
                    setpoint_quantity_kind=kind,
                    setpoint_unit=unit,
                )
            )

    def add_plant_sensors_and_policies(self) -> None:
        site = self.site
        served = _SensorSpec("flow", "FT", "SERVED", "plant:demand_served", "Demand served", 100.0)
        power = _SensorSpec("power", "JT", "TOTAL", "plant:power", "Pumping power", 100_000.0)
        self.sensor(site, served, site)
        self.sensor(site, power, site)
        self.add_policies(
            trust_comment=_TRUST_COMMENT,
            approval_label="Supervisor approval to stop or restart criticality-A pumps",
            supervisor_label="Shift supervisor (simulated: the scenario's approver)",
        )

    def binding(self) -> PlantBinding:
        return PlantBinding(
            plant=f"epanet:{self.name}",
            site=str(self.site),
            sensors=tuple(self.sensors),
            actuators=tuple(self.actuators),
            kpi_outputs={
                "throughput": "plant:demand_served",
                "demand_required": "plant:demand_required",
                "power": "plant:power",
                "running": "plant:running",
            },
        )


_TRUST_COMMENT = "Agents act without a human only when their confidence is at least 0.8."
_VALVE_SETPOINTS: dict[str, tuple[str | None, str | None]] = {
    "FCV": (str(QUANTITYKIND.VolumeFlowRate), _UNIT + "L-PER-SEC"),
    "TCV": (str(QUANTITYKIND.Dimensionless), str(UNIT.UNITLESS)),
}


def _link_kind(wn: Any, link: str) -> str:
    if link in wn.pump_name_list:
        return "pump"
    return "valve" if link in wn.valve_name_list else "pipe"


def epanet_plant(inp: str | Path, base: str | None = None) -> tuple[Graph, PlantBinding]:
    """The plant graph of network ``inp`` (a wntr library name or an ``.inp`` path) under IRI
    namespace ``base`` (default ``https://w3id.org/twinkg/plant/epanet-<name>/``), and its binding.

    Raises :class:`ModelFileError` (``FILE:LINE: reason``) for a malformed or unsupported file.
    """
    wn = read_network(inp)
    name = plant_name(inp)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "network"
    ns = base or plant_namespace(f"epanet-{slug}")
    if not ns.endswith(("/", "#")):
        ns += "/"
    builder = _Builder(wn, name, ns)
    builder.add_site(resolve_inp(inp).name)
    builder.add_zones()
    builder.add_tanks_and_reservoirs()
    builder.add_stations()
    builder.add_links()
    builder.add_plant_sensors_and_policies()
    return builder.g, builder.binding()


def epanet_records(inp: str | Path, base: str | None = None) -> GraphRecords:
    """The records :func:`epanet_plant` builds, ready for ``seeding.with_ontology``."""
    graph, _ = epanet_plant(inp, base)
    return rdf_to_records(graph)


__all__ = ["VELOCITY_MODES", "epanet_plant", "epanet_records", "plant_name"]
