"""A deterministic generator of plants of any size.

``generate(assets=N, seed=S)`` yields exactly N assets (sites, areas, lines, equipment, sensors)
plus the policies around them. The plant is built as a stream of *process units* (a duty/standby
pump pair with their motors, valves, a vessel, piping and sensors), so the same seed always gives
the same plant, and a smaller plant is a prefix of a larger one with the same seed. IRIs live
under ``https://w3id.org/twinkg/plant/generated/<seed>/``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count, pairwise

from rdflib import URIRef

from twinkg.kg.records import GraphRecords, NodeRecord, PropValue, RelRecord
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.vocab import QUANTITYKIND, TK, UNIT, PropKey, RelType

_LINES_PER_AREA = (2, 5)
_AREAS_PER_SITE = (2, 4)
_UNITS_PER_LINE = (3, 8)
_VESSELS = (TK.Tank, TK.HeatExchanger, TK.Compressor, TK.Fan)
# (tag prefix, quantity kind, unit, physical min, physical max): one row per sensor kind
_SENSORS = {
    "vibration": ("VT", QUANTITYKIND.Acceleration, UNIT.G, 0.0, 5.0),
    "pressure": ("PT", QUANTITYKIND.Pressure, UNIT.BAR, -1.0, 16.0),
    "flow": ("FT", QUANTITYKIND.VolumeFlowRate, UNIT["L-PER-MIN"], 0.0, 2000.0),
    "current": ("IT", QUANTITYKIND.ElectricCurrent, UNIT.A, 0.0, 400.0),
    "temperature": ("TT", QUANTITYKIND.Temperature, UNIT.DEG_C, -20.0, 150.0),
}


@dataclass
class _Builder:
    """Collects records while counting assets; stops the stream at the requested size."""

    base: str
    limit: int
    rng: random.Random
    nodes: list[NodeRecord] = field(default_factory=list)
    rels: list[RelRecord] = field(default_factory=list)
    assets: int = 0

    @property
    def full(self) -> bool:
        return self.assets >= self.limit

    def iri(self, path: str) -> str:
        return f"{self.base}{path}"

    def node(
        self, path: str, cls: URIRef, label: str, *, asset: bool = True, **props: PropValue
    ) -> str:
        uri = self.iri(path)
        values: dict[PropKey, PropValue] = {PropKey.RDFS_LABEL: label}
        values.update({PropKey(k): v for k, v in props.items()})
        self.nodes.append(NodeRecord(uri, (str(cls),), values))
        self.assets += asset
        return uri

    def rel(self, rel_type: RelType, start: str, end: str | URIRef) -> None:
        self.rels.append(RelRecord(rel_type, start, str(end)))


def _structure(b: _Builder) -> Iterator[str]:
    """Sites, areas and lines, created only when a unit needs a line to live in."""
    site_no = 0
    while not b.full:
        site_no += 1
        site = b.node(
            f"site-{site_no}", TK.Site, f"Site {site_no}", tag=f"S{site_no}", criticality="A"
        )
        _site_policies(b, site, site_no)
        for area_no in range(1, b.rng.randint(*_AREAS_PER_SITE) + 1):
            if b.full:
                return
            area = b.node(
                f"site-{site_no}/area-{area_no}",
                TK.Area,
                f"Area {site_no}.{area_no}",
                tag=f"S{site_no}-A{area_no}",
                criticality="B",
            )
            b.rel(RelType.PART_OF, area, site)
            for line_no in range(1, b.rng.randint(*_LINES_PER_AREA) + 1):
                if b.full:
                    return
                path = f"site-{site_no}/area-{area_no}/line-{line_no}"
                line = b.node(
                    path,
                    TK.ProductionLine,
                    f"Line {site_no}.{area_no}.{line_no}",
                    tag=f"S{site_no}-A{area_no}-L{line_no}",
                    criticality="B",
                )
                b.rel(RelType.PART_OF, line, area)
                for _ in range(b.rng.randint(*_UNITS_PER_LINE)):
                    yield line


def _site_policies(b: _Builder, site: str, n: int) -> None:
    trust = b.node(
        f"site-{n}/policy/trust",
        TK.TrustThreshold,
        f"Trust threshold, site {n}",
        asset=False,
        threshold=0.8,
    )
    b.rel(RelType.APPLIES_TO, trust, site)
    approval = b.node(
        f"site-{n}/policy/approval-a",
        TK.ApprovalRequirement,
        f"Supervisor approval for criticality A, site {n}",
        asset=False,
        appliesToCriticality="A",
    )
    b.rel(RelType.APPLIES_TO, approval, site)
    b.rel(RelType.REQUIRED_ROLE, approval, TK.SupervisorRole)
    supervisor = b.node(
        f"site-{n}/people/supervisor", TK.Person, f"Shift supervisor, site {n}", asset=False
    )
    b.rel(RelType.HAS_ROLE, supervisor, TK.SupervisorRole)
    b.rel(RelType.HAS_ROLE, supervisor, TK.OperatorRole)


def _sensor(b: _Builder, path: str, kind: str, target: str, tag: str) -> None:
    if b.full:
        return
    prefix, quantity, unit, low, high = _SENSORS[kind]
    sensor = b.node(
        path,
        TK.Sensor,
        f"{kind} sensor {prefix}-{tag}",
        tag=f"{prefix}-{tag}",
        criticality="C",
        physicalMin=low,
        physicalMax=high,
        samplingPeriod=1.0,
    )
    b.rel(RelType.MONITORS, sensor, target)
    b.rel(RelType.HAS_QUANTITY_KIND, sensor, quantity)
    b.rel(RelType.HAS_UNIT, sensor, unit)


def _envelope(b: _Builder, path: str, asset: str, *, kind: str, low: float, high: float) -> None:
    _, quantity, unit, _, _ = _SENSORS[kind]
    envelope = b.node(
        path,
        TK.OperatingEnvelope,
        f"{kind} envelope",
        asset=False,
        minValue=low,
        maxValue=high,
        maxRateOfChange=round((high - low) / 60, 3),
    )
    b.rel(RelType.HAS_ENVELOPE, asset, envelope)
    b.rel(RelType.FOR_QUANTITY_KIND, envelope, quantity)
    b.rel(RelType.HAS_UNIT, envelope, unit)


def _pump_train(b: _Builder, line: str, path: str, *, tag: str, role: str, crit: str) -> str | None:
    """A centrifugal pump, its motor and their sensors; None when the plant is already full."""
    if b.full:
        return None
    flow = float(b.rng.choice((200, 400, 600, 900)))
    pump = b.node(
        f"{path}/pump-{role}",
        TK.CentrifugalPump,
        f"Pump P-{tag}{role[0].upper()}",
        tag=f"P-{tag}{role[0].upper()}",
        criticality=crit,
        dutyRole=role,
        ratedFlow=flow,
        operationalStatus="running" if role == "duty" else "stopped",
    )
    b.rel(RelType.PART_OF, pump, line)
    for mode in (TK.Cavitation, TK.Vibration, TK.LowOutput, TK.ExternalLeakageProcessMedium):
        b.rel(RelType.SUSCEPTIBLE_TO, pump, mode)
    _envelope(
        b, f"{path}/pump-{role}/envelope-flow", pump, kind="flow", low=0.2 * flow, high=1.1 * flow
    )
    if not b.full:
        motor = b.node(
            f"{path}/motor-{role}",
            TK.Motor,
            f"Motor M-{tag}{role[0].upper()}",
            tag=f"M-{tag}{role[0].upper()}",
            criticality=crit,
            ratedPower=float(b.rng.choice((15, 30, 55, 90))),
            ratedSpeed=2950.0,
        )
        b.rel(RelType.PART_OF, motor, line)
        b.rel(RelType.DRIVES, motor, pump)
        b.rel(RelType.SUSCEPTIBLE_TO, motor, TK.Overheating)
        _envelope(
            b,
            f"{path}/motor-{role}/envelope-temperature",
            motor,
            kind="temperature",
            low=10.0,
            high=95.0,
        )
        _sensor(b, f"{path}/motor-{role}/current", "current", motor, f"{tag}{role[0].upper()}")
        _sensor(
            b, f"{path}/motor-{role}/temperature", "temperature", motor, f"{tag}{role[0].upper()}"
        )
    _sensor(b, f"{path}/pump-{role}/vibration", "vibration", pump, f"{tag}{role[0].upper()}")
    _sensor(b, f"{path}/pump-{role}/pressure", "pressure", pump, f"{tag}{role[0].upper()}")
    return pump


def _static(b: _Builder, line: str, path: str, *, name: str, cls: URIRef, tag: str) -> str | None:
    if b.full:
        return None
    node = b.node(f"{path}/{name}", cls, f"{name} {tag}", tag=tag, criticality="B")
    b.rel(RelType.PART_OF, node, line)
    return node


def _unit(b: _Builder, line: str, number: int) -> None:
    """One process unit: vessel → inlet valve → duty/standby pumps → outlet valve."""
    path = f"{line[len(b.base) :]}/unit-{number}"
    tag = f"{number:05d}"
    crit = b.rng.choices("ABC", weights=(2, 5, 3))[0]
    vessel_cls = b.rng.choice(_VESSELS)
    vessel = _static(b, line, path, name="vessel", cls=vessel_cls, tag=f"V-{tag}")
    inlet = _static(b, line, path, name="inlet-valve", cls=TK.Valve, tag=f"XV-{tag}1")
    duty = _pump_train(b, line, path, tag=tag, role="duty", crit=crit)
    standby = _pump_train(b, line, path, tag=tag, role="standby", crit=crit)
    outlet = _static(b, line, path, name="outlet-valve", cls=TK.Valve, tag=f"XV-{tag}2")
    pipe = _static(b, line, path, name="pipe", cls=TK.Pipe, tag=f"L-{tag}")
    if duty and standby:
        b.rel(RelType.STANDBY_FOR, standby, duty)
    chain = [vessel, inlet, duty, outlet, pipe]
    for upstream, downstream in pairwise(chain):
        if upstream and downstream:
            b.rel(RelType.FEEDS, upstream, downstream)
    if inlet and standby:
        b.rel(RelType.FEEDS, inlet, standby)
    if standby and outlet:
        b.rel(RelType.FEEDS, standby, outlet)
    if outlet:
        _sensor(b, f"{path}/outlet-valve/flow", "flow", outlet, tag)


def generate(*, assets: int, seed: int) -> GraphRecords:
    """A plant of exactly ``assets`` assets, the same for the same ``seed``."""
    builder = _Builder(plant_namespace(f"generated/{seed}"), assets, random.Random(seed))
    numbers = count(1)
    for line in _structure(builder):
        if builder.full:
            break
        _unit(builder, line, next(numbers))
    referenced = {r.end for r in builder.rels} - {n.uri for n in builder.nodes}
    nodes = builder.nodes + [NodeRecord(uri) for uri in sorted(referenced)]
    return GraphRecords(tuple(nodes), tuple(builder.rels))
