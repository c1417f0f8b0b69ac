"""A water network's plant graph, built from wntr's own model of an EPANET ``.inp`` file.

:func:`epanet_plant` maps the network into the ontology (never a hand-written table): a
``tk:Site`` for the network; ``tk:PumpingStation`` areas (pumps that share a suction or a
discharge node, :func:`twinkg.sim.water.pump_stations`); a ``tk:CentrifugalPump`` per pump with
its curve and design point, parallel pumps (same suction and discharge) as duty/standby pairs;
``tk:Tank`` and ``tk:Reservoir`` nodes; every pipe and valve; junctions grouped into
``tk:DemandZone`` areas by the demand pattern they follow; a ``tk:Sensor`` per measured quantity
with its QUDT unit; envelopes from the network's own limits; the plant's policies. It returns the
:class:`PlantBinding` the loop uses, built from the same element ids. Decision 0042 says why.

Units: sensors report in the units TwinKG's closed lists allow (decision 0039): flows in L/s,
pump differential head and service pressure in kPa (ρg·head), tank level in m when the ontology
lists a length kind, otherwise as the hydrostatic pressure at the tank floor in kPa; vibration in
mm/s when a velocity kind is listed, otherwise as the acceleration of the running-speed component
in m/s² (a = 2πf·v at 1480 rev/min).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from rdflib import RDF, RDFS, XSD, Graph, Literal, URIRef

from twinkg.kg.mapping import rdf_to_records
from twinkg.kg.records import GraphRecords
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.units import allowed_units
from twinkg.ontology.vocab import QUANTITYKIND, TK, UNIT
from twinkg.sim.binding import Actuator, PlantBinding, SensorBinding
from twinkg.sim.water import (
    LIBRARY_DIR,
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
PUMP_SPEED_RPM = 1480.0  # assumed 4-pole motor: EPANET states no speed
VIBRATION_LIMIT_MM_S = 7.1  # ISO 10816-3 zone C/D boundary (group 2, rigid mounting)
BEARING_LIMIT_C = 90.0
SAMPLING_S = 900.0
PUMP_FAILURE_MODES = (
    TK.LowOutput,  # wear: flow and head fall
    TK.InternalLeakage,  # wear rings: recirculation
    TK.Vibration,  # wear, bearing damage
    TK.Overheating,  # bearing damage
    TK.ExternalLeakageProcessMedium,  # seal leak
    TK.Cavitation,  # run-out beyond the best-efficiency point
    TK.Breakdown,
)

_QK = str(QUANTITYKIND._NS)
_UNIT = str(UNIT._NS)


@dataclass(frozen=True, slots=True)
class _Measure:
    kind: URIRef
    unit: URIRef
    scale: float  # sensor value = simulator output × scale


def _measure(options: Iterable[tuple[str, str, float]]) -> _Measure:
    """The first (kind, unit, scale) the closed unit lists allow."""
    for kind, unit, scale in options:
        if URIRef(_UNIT + unit) in allowed_units(_QK + kind):
            return _Measure(URIRef(_QK + kind), URIRef(_UNIT + unit), scale)
    raise LookupError(f"none of {options!r} is in TwinKG's closed unit lists")


def _measures() -> dict[str, _Measure]:
    vib_scale = 2 * math.pi * PUMP_SPEED_RPM / 60.0 / 1000.0  # mm/s → m/s² at 1× speed
    return {
        "flow": _measure([("VolumeFlowRate", "L-PER-SEC", 1000.0)]),
        "head": _measure([("Pressure", "KiloPA", RHO_G_KPA_PER_M)]),
        "pressure": _measure([("Pressure", "KiloPA", RHO_G_KPA_PER_M)]),
        "power": _measure([("Power", "KiloW", 1.0)]),
        "level": _measure([("Length", "M", 1.0), ("Pressure", "KiloPA", RHO_G_KPA_PER_M)]),
        "vibration": _measure(
            [("Velocity", "MilliM-PER-SEC", 1.0), ("Acceleration", "M-PER-SEC2", vib_scale)]
        ),
        "temperature": _measure([("Temperature", "DEG_C", 1.0)]),
    }


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


def _d(value: float) -> Literal:
    return Literal(float(value), datatype=XSD.double)


def _s(value: str) -> Literal:
    return Literal(value, datatype=XSD.string)


def _design_point(points: list[tuple[float, float]]) -> tuple[float, float]:
    if len(points) == 1:
        return points[0]
    nonzero = [p for p in points if p[0] > 0] or points
    return nonzero[(len(nonzero) - 1) // 2] if len(points) != 3 else points[1]


def plant_name(inp: str | Path) -> str:
    """The network's name: the library name, or the file's stem."""
    path = resolve_inp(inp)
    return path.stem


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
    g = Graph()
    tags = _Tags(name)
    measures = _measures()
    sensors: list[SensorBinding] = []
    actuators: list[Actuator] = []

    def iri(kind: str, element: str) -> URIRef:
        return URIRef(f"{ns}{kind}-{quote(element, safe='')}")

    def asset(
        node: URIRef, cls: URIRef, label: str, tag: str, crit: str, parent: URIRef | None
    ) -> None:
        g.add((node, RDF.type, cls))
        g.add((node, RDFS.label, _s(label)))
        g.add((node, TK.tag, _s(tag)))
        g.add((node, TK.criticality, _s(crit)))
        if parent is not None:
            g.add((node, TK.partOf, parent))

    def envelope(owner: URIRef, key: str, m: _Measure, low: float, high: float, label: str) -> None:
        env = URIRef(f"{owner}-envelope-{key}")
        g.add((env, RDF.type, TK.OperatingEnvelope))
        g.add((env, RDFS.label, _s(label)))
        g.add((env, TK.forQuantityKind, m.kind))
        g.add((env, TK.hasUnit, m.unit))
        g.add((env, TK.minValue, _d(low * m.scale)))
        g.add((env, TK.maxValue, _d(high * m.scale)))
        g.add((env, TK.appliesTo, owner))
        g.add((owner, TK.hasEnvelope, env))

    def sensor(
        equipment: URIRef,
        parent: URIRef,
        key: str,
        code: str,
        element: str,
        output: str,
        label: str,
        high: float,
        low: float = 0.0,
    ) -> None:
        m = measures[key]
        node = URIRef(f"{equipment}-sensor-{output.rsplit(':', 1)[-1].replace('_', '-')}")
        asset(node, TK.Sensor, label, tags(code, element), "C", parent)
        g.add((node, TK.externalId, _s(output)))
        g.add((node, TK.hasQuantityKind, m.kind))
        g.add((node, TK.hasUnit, m.unit))
        g.add((node, TK.physicalMin, _d(low * m.scale)))
        g.add((node, TK.physicalMax, _d(high * m.scale)))
        g.add((node, TK.samplingPeriod, _d(SAMPLING_S)))
        g.add((node, TK.monitors, equipment))
        sensors.append(
            SensorBinding(str(node), output, str(m.unit), str(m.kind), str(equipment), m.scale)
        )

    # ---- site ----
    site = URIRef(f"{ns}site")
    asset(site, TK.Site, f"EPANET network {name}", tags.prefix, "A", None)
    g.add((site, TK.externalId, _s(name)))
    if wn.name or wn.title:
        title = " ".join(" ".join(wn.title).split()) if wn.title else str(wn.name)
        g.add((site, RDFS.comment, _s(f"Read with wntr from {Path(str(inp)).name}: {title}")))

    # ---- demand zones (junctions grouped by the pattern they follow) ----
    default_pattern = wn.options.hydraulic.pattern or "1"
    zone_of: dict[str, URIRef] = {}
    members: dict[str, list[str]] = {}
    for j in sorted(wn.junction_name_list):
        demands = wn.get_node(j).demand_timeseries_list
        pattern = next((d.pattern_name for d in demands if d.pattern_name), None)
        if pattern is None:
            pattern = default_pattern if default_pattern in wn.pattern_name_list else "none"
        key = str(pattern)
        members.setdefault(key, []).append(j)
    for pattern, junctions in sorted(members.items()):
        zone = iri("zone", pattern)
        asset(
            zone,
            TK.DemandZone,
            f"Demand zone (pattern {pattern}, {len(junctions)} junctions)",
            tags("DZ", pattern),
            "B",
            site,
        )
        g.add((zone, TK.externalId, _s(pattern)))
        for j in junctions:
            zone_of[j] = zone
        # the zone's critical node: its highest junction with a demand (lowest pressure)
        with_demand = [
            j
            for j in junctions
            if any(d.base_value > 0 for d in wn.get_node(j).demand_timeseries_list)
        ] or junctions
        critical = max(with_demand, key=lambda j: (wn.get_node(j).elevation, j))
        sensor(
            zone,
            zone,
            "pressure",
            "PT",
            critical,
            f"node:{critical}:pressure",
            f"Service pressure at junction {critical}",
            high=2 * MAX_SERVICE_PRESSURE_M,
            low=-MAX_SERVICE_PRESSURE_M,
        )
        envelope(
            zone,
            "pressure",
            measures["pressure"],
            SERVICE_PRESSURE_M,
            MAX_SERVICE_PRESSURE_M,
            f"Service pressure of zone {pattern}",
        )

    def home(node_name: str) -> URIRef:
        return zone_of.get(node_name, site)

    # ---- tanks and reservoirs ----
    for t in sorted(wn.tank_name_list):
        tank = wn.get_node(t)
        node = iri("tank", t)
        asset(node, TK.Tank, f"Tank {t}", tags("T", t), "B", home(t))
        g.add((node, TK.externalId, _s(t)))
        g.add((node, TK.operationalStatus, _s("running")))
        g.add((node, TK.elevation, _d(tank.elevation)))
        g.add((node, TK.diameter, _d(tank.diameter)))
        if tank.max_level > tank.min_level:
            envelope(
                node, "level", measures["level"], tank.min_level, tank.max_level, f"Tank {t} level"
            )
        sensor(
            node,
            home(t),
            "level",
            "LT",
            t,
            f"tank:{t}:level",
            f"Tank {t} level",
            high=tank.max_level * 1.1 + 1.0,
        )
    for r in sorted(wn.reservoir_name_list):
        res = wn.get_node(r)
        node = iri("reservoir", r)
        asset(node, TK.Reservoir, f"Reservoir {r}", tags("R", r), "B", site)
        g.add((node, TK.externalId, _s(r)))
        g.add((node, TK.elevation, _d(res.base_head)))

    # ---- pumping stations and pumps ----
    stations = pump_stations(wn)
    controlled = controlled_links(wn)
    standby_of: dict[str, str] = {}
    for group in parallel_pumps(wn):
        duty = [p for p in group if initially_open(wn, p) or p in controlled] or [group[0]]
        for p in group:
            if p not in duty:
                standby_of[p] = duty[0]
    efficiency = float(wn.options.energy.global_efficiency or 75.0) / 100.0
    for s, pumps in stations.items():
        station = iri("station", s)
        asset(
            station,
            TK.PumpingStation,
            f"Pumping station {s} ({len(pumps)} pump{'s' if len(pumps) > 1 else ''})",
            tags("PS", s),
            "A",
            site,
        )
        g.add((station, TK.externalId, _s(s)))
        for p in pumps:
            pump = wn.get_link(p)
            node = iri("pump", p)
            asset(node, TK.CentrifugalPump, f"Pump {p}", tags("P", p), "A", station)
            g.add((node, TK.externalId, _s(p)))
            running = initially_open(wn, p) or p in controlled
            standby = p in standby_of
            g.add((node, TK.dutyRole, _s("standby" if standby else "duty")))
            status = "running" if running and not standby else "stopped"
            g.add((node, TK.operationalStatus, _s(status)))
            if standby:
                g.add((node, TK.standbyFor, iri("pump", standby_of[p])))
            for mode in PUMP_FAILURE_MODES:
                g.add((node, TK.susceptibleTo, mode))
            max_flow = 0.0
            if pump.pump_type == "HEAD":
                points = [(float(q), float(h)) for q, h in pump.get_pump_curve().points]
                with warnings.catch_warnings():  # scipy's curve fit warns on exact 3-point fits
                    warnings.simplefilter("ignore")
                    a, b, c = pump.get_head_curve_coefficients()
                q, h = _design_point(points)
                max_flow = (
                    float((a / b) ** (1.0 / c)) if b > 0 and c > 0 else max(x for x, _ in points)
                )
                g.add((node, TK.pumpCurve, _s(json.dumps([[x, y] for x, y in points]))))
                g.add((node, TK.ratedHead, _d(h)))
                g.add((node, TK.shutoffHead, _d(a)))
                if q > 0:
                    g.add((node, TK.ratedFlow, _d(q * 60000.0)))  # the contract's L/min
                    g.add((node, TK.ratedPower, _d(1000 * 9.80665 * q * h / efficiency / 1000)))
                shutoff = a
            else:  # a constant-power pump (EPANET POWER): no curve to state
                g.add((node, TK.ratedPower, _d(float(pump.power) / 1000.0)))
                shutoff = 0.0
            # the pump feeds the links leaving its discharge node
            for link_name in sorted(wn.get_links_for_node(pump.end_node_name)):
                link = wn.get_link(link_name)
                if link_name != p and link.start_node_name == pump.end_node_name:
                    kind = (
                        "pump"
                        if link_name in wn.pump_name_list
                        else ("valve" if link_name in wn.valve_name_list else "pipe")
                    )
                    g.add((node, TK.feeds, iri(kind, link_name)))
            flow_high = max_flow if max_flow > 0 else 1.0
            sensor(
                node,
                station,
                "flow",
                "FT",
                p,
                f"pump:{p}:flow",
                f"Pump {p} flow",
                high=2 * flow_high,
            )
            envelope(node, "flow", measures["flow"], 0.0, flow_high, f"Pump {p} flow")
            head_high = shutoff * 1.5 if shutoff > 0 else 200.0
            sensor(
                node,
                station,
                "head",
                "PDT",
                p,
                f"pump:{p}:head",
                f"Pump {p} differential pressure",
                high=head_high,
                low=-head_high,
            )
            sensor(
                node, station, "power", "JT", p, f"pump:{p}:power", f"Pump {p} power", high=10_000.0
            )
            sensor(
                node,
                station,
                "vibration",
                "VT",
                p,
                f"pump:{p}:vibration",
                f"Pump {p} vibration (mm/s RMS from the degradation model)",
                high=50.0,
            )
            envelope(
                node,
                "vibration",
                measures["vibration"],
                0.0,
                VIBRATION_LIMIT_MM_S,
                f"Pump {p} vibration",
            )
            sensor(
                node,
                station,
                "temperature",
                "TT",
                p,
                f"pump:{p}:bearing_temperature",
                f"Pump {p} bearing temperature",
                high=150.0,
                low=-20.0,
            )
            envelope(
                node,
                "temperature",
                measures["temperature"],
                0.0,
                BEARING_LIMIT_C,
                f"Pump {p} bearing temperature",
            )
            actuators.append(
                Actuator(
                    asset=str(node),
                    kind="Pump",
                    element=p,
                    run_input=f"pump:{p}:status",
                    setpoint_input=f"pump:{p}:speed",
                    setpoint_quantity_kind=str(QUANTITYKIND.Dimensionless),
                    setpoint_unit=str(UNIT.UNITLESS),
                    standby_for=str(iri("pump", standby_of[p])) if standby else None,
                    repairable=p,
                )
            )

    # ---- pipes and valves ----
    for name_ in sorted(wn.pipe_name_list):
        pipe = wn.get_link(name_)
        node = iri("pipe", name_)
        home_node = pipe.end_node_name if pipe.end_node_name in zone_of else pipe.start_node_name
        asset(node, TK.Pipe, f"Pipe {name_}", tags("L", name_), "C", home(home_node))
        g.add((node, TK.externalId, _s(name_)))
        g.add((node, TK.length, _d(pipe.length)))
        g.add((node, TK.diameter, _d(pipe.diameter)))
        g.add((node, TK.roughness, _d(pipe.roughness)))
        g.add(
            (node, TK.operationalStatus, _s("running" if initially_open(wn, name_) else "stopped"))
        )
        g.add((node, TK.susceptibleTo, TK.ExternalLeakageProcessMedium))
        actuators.append(
            Actuator(str(node), "Pipe", name_, run_input=f"pipe:{name_}:status", repairable=name_)
        )
    for v in sorted(wn.valve_name_list):
        valve = wn.get_link(v)
        node = iri("valve", v)
        home_node = valve.end_node_name if valve.end_node_name in zone_of else valve.start_node_name
        asset(node, TK.Valve, f"{valve.valve_type} valve {v}", tags("XV", v), "B", home(home_node))
        g.add((node, TK.externalId, _s(v)))
        g.add((node, TK.diameter, _d(valve.diameter)))
        g.add((node, TK.operationalStatus, _s("running")))
        kind_unit: tuple[str | None, str | None] = (None, None)
        if valve.valve_type == "FCV":
            kind_unit = (str(QUANTITYKIND.VolumeFlowRate), _UNIT + "L-PER-SEC")
        elif valve.valve_type == "TCV":
            kind_unit = (str(QUANTITYKIND.Dimensionless), str(UNIT.UNITLESS))
        actuators.append(
            Actuator(
                str(node),
                "Valve",
                v,
                setpoint_input=f"valve:{v}:setting",
                setpoint_quantity_kind=kind_unit[0],
                setpoint_unit=kind_unit[1],
            )
        )

    # ---- plant-wide sensors ----
    sensor(site, site, "flow", "FT", "SERVED", "plant:demand_served", "Demand served", high=100.0)
    sensor(
        site,
        site,
        "power",
        "JT",
        "TOTAL",
        "plant:power",
        "Pumping power, all stations",
        high=100_000.0,
    )

    # ---- policies and people ----
    trust = URIRef(f"{ns}policy-trust")
    g.add((trust, RDF.type, TK.TrustThreshold))
    g.add((trust, RDFS.label, _s("Autonomy trust threshold")))
    g.add(
        (
            trust,
            RDFS.comment,
            _s("Agents act without a human only when their confidence is at least 0.8."),
        )
    )
    g.add((trust, TK.threshold, _d(0.8)))
    g.add((trust, TK.appliesTo, site))
    approval = URIRef(f"{ns}policy-approval-critical-stop")
    g.add((approval, RDF.type, TK.ApprovalRequirement))
    g.add((approval, RDFS.label, _s("Supervisor approval to stop criticality-A pumps")))
    g.add((approval, TK.appliesToCriticality, _s("A")))
    g.add((approval, TK.appliesToActionKind, _s("controlled_stop")))
    g.add((approval, TK.requiredRole, TK.SupervisorRole))
    g.add((approval, TK.appliesTo, site))
    person = URIRef(f"{ns}person-shift-supervisor")
    g.add((person, RDF.type, TK.Person))
    g.add(
        (person, RDFS.label, _s("Shift supervisor (simulated, answers as the scenario's approver)"))
    )
    g.add((person, TK.hasRole, TK.SupervisorRole))
    g.add((person, TK.hasRole, TK.OperatorRole))

    binding = PlantBinding(
        plant=f"epanet:{name}",
        site=str(site),
        sensors=tuple(sensors),
        actuators=tuple(actuators),
        kpi_outputs={
            "throughput": "plant:demand_served",
            "demand_required": "plant:demand_required",
            "power": "plant:power",
            "running": "plant:running",
        },
    )
    return g, binding


def epanet_records(inp: str | Path, base: str | None = None) -> GraphRecords:
    """The records :func:`epanet_plant` builds, ready for ``seeding.with_ontology``."""
    graph, _ = epanet_plant(inp, base)
    return rdf_to_records(graph)


__all__ = ["LIBRARY_DIR", "epanet_plant", "epanet_records", "plant_name"]
