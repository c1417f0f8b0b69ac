"""What :class:`~api.twin.Twin` answers: domain results, typed, free of any interface.

Each way in maps them to its own shapes: the HTTP API to its pydantic bodies
(``api/http/models.py``), the MCP server to its tool outputs (``api/mcp/models.py``), the CLI to
text or JSON. A result is built from the graph's rows here, once, so every interface sees the
same values (numbers as floats where the graph may hold either, times as ISO 8601 text).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rdflib import Graph

from twinkg.agents.state import ProposedAction
from twinkg.ontology.vocab import Label, RelType

if TYPE_CHECKING:
    from twinkg.reasoner.inference import ReclassifySummary
    from twinkg.reasoner.ingest import IngestReport


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _text(value: Any) -> str | None:
    """Text as is; Neo4j's temporal values as their ISO 8601 text."""
    return None if value is None else str(value)


def _texts(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values or ())


@dataclass(frozen=True, slots=True)
class FailureMode:
    """A failure mode the asset is susceptible to, its mitigations and where it shows."""

    mode: str
    code: str | None
    mitigations: tuple[str, ...]
    kinds: tuple[str, ...]  # the quantity kinds the mode manifests in

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FailureMode:
        """From a row of ``ASSET_PROFILE``."""
        return cls(row["mode"], row["code"], _texts(row["mitigations"]), _texts(row["kinds"]))


@dataclass(frozen=True, slots=True)
class SensorTrust:
    """A sensor on the asset and its latest trust score (none before any telemetry)."""

    sensor: str
    tag: str | None
    quantity_kind: str | None
    period: float | None
    trust: str | None
    confidence: float | None
    quality: float | None
    freshness: float | None
    anomaly: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SensorTrust:
        """From a row of ``ASSET_SENSORS``."""
        return cls(
            row["sensor"],
            row["tag"],
            row["quantity_kind"],
            _float(row["period"]),
            row["trust"],
            *(_float(row[k]) for k in ("confidence", "quality", "freshness", "anomaly")),
        )


@dataclass(frozen=True, slots=True)
class Neighbour:
    """Equipment up- or downstream of the asset, or driving it, and its open findings."""

    uri: str
    tag: str | None
    relation: Literal["upstream", "downstream", "driver"]
    hops: int
    status: str | None
    findings: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Neighbour:
        """From a row of ``NEIGHBOURS``."""
        return cls(
            row["uri"],
            row["tag"],
            row["relation"],
            int(row["hops"]),
            row["status"],
            int(row["findings"]),
        )


@dataclass(frozen=True, slots=True)
class Envelope:
    """An operating envelope of the asset."""

    uri: str
    quantity_kind: str | None
    minimum: float | None
    maximum: float | None
    max_rate: float | None


@dataclass(frozen=True, slots=True)
class Partner:
    """The asset's duty/standby partner."""

    uri: str
    tag: str | None
    status: str | None
    duty_role: str | None


@dataclass(frozen=True, slots=True)
class Policies:
    """The policies that apply to the asset."""

    envelopes: tuple[Envelope, ...]
    partners: tuple[Partner, ...]
    threshold: float | None  # the trust threshold for autonomous action

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Policies:
        """From the row of ``POLICIES``."""
        return cls(
            tuple(
                Envelope(
                    e["uri"],
                    e["quantity_kind"],
                    *(_float(e[k]) for k in ("minimum", "maximum", "max_rate")),
                )
                for e in row["envelopes"]
            ),
            tuple(
                Partner(p["uri"], p["tag"], p["status"], p["duty_role"]) for p in row["partners"]
            ),
            _float(row["threshold"]),
        )


@dataclass(frozen=True, slots=True)
class AssetEvent:
    """An event concerning the asset, newest first."""

    uri: str
    types: tuple[str, ...]
    occurred_at: str | None
    ended_at: str | None
    severity: str | None
    status: str | None
    score: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AssetEvent:
        """From a row of ``ASSET_EVENTS``."""
        return cls(
            row["uri"],
            _texts(row["types"]),
            _text(row["occurred_at"]),
            _text(row["ended_at"]),
            row["severity"],
            row["status"],
            _float(row["score"]),
        )


@dataclass(frozen=True, slots=True)
class AssetContext:
    """What an engineer or an agent needs about one asset."""

    asset: str
    tag: str | None
    types: tuple[str, ...]
    criticality: str | None
    status: str | None
    failure_modes: tuple[FailureMode, ...]
    sensors: tuple[SensorTrust, ...]
    neighbours: tuple[Neighbour, ...]
    policies: Policies
    events: tuple[AssetEvent, ...]

    @classmethod
    def from_rows(
        cls,
        profile: list[dict[str, Any]],
        *,
        sensors: list[dict[str, Any]],
        neighbours: list[dict[str, Any]],
        policies: dict[str, Any],
        events: list[dict[str, Any]],
    ) -> AssetContext:
        """From the rows of ``ASSET_PROFILE`` (at least one), ``ASSET_SENSORS``,
        ``NEIGHBOURS``, ``ASSET_EVENTS`` and the row of ``POLICIES``."""
        head = profile[0]
        return cls(
            asset=head["asset"],
            tag=head["tag"],
            types=tuple(head["types"]),
            criticality=head["criticality"],
            status=head["status"],
            failure_modes=tuple(FailureMode.from_row(r) for r in profile if r["mode"] is not None),
            sensors=tuple(SensorTrust.from_row(r) for r in sensors),
            neighbours=tuple(Neighbour.from_row(r) for r in neighbours),
            policies=Policies.from_row(policies),
            events=tuple(AssetEvent.from_row(r) for r in events),
        )


@dataclass(frozen=True, slots=True)
class AssetSummary:
    """One asset of the plant, as a list of assets shows it."""

    uri: str
    tag: str | None
    label: str | None
    types: tuple[str, ...]
    criticality: str | None
    status: str | None
    inferred: tuple[str, ...] = ()
    part_of: str | None = None
    open_findings: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AssetSummary:
        """From a row of ``ASSETS``."""
        return cls(
            row["uri"],
            row["tag"],
            row["label"],
            _texts(row["types"]),
            row["criticality"],
            row["status"],
            _texts(row["inferred"]),
            row["part_of"],
            int(row["open_findings"]),
        )


@dataclass(frozen=True, slots=True)
class RecentDecision:
    """A decision in the list of the latest ones, with the action it proposed (if any)."""

    uri: str
    chain_index: int
    outcome: str
    reason: str | None
    planner: str | None
    kind: str | None  # the proposed action's kind
    target: str | None  # the tag of the asset it targets

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RecentDecision:
        """From a row of ``RECENT_DECISIONS``."""
        return cls(
            row["uri"],
            row["chain_index"],
            row["outcome"],
            row["reason"],
            row["planner"],
            row["kind"],
            row["target"],
        )


@dataclass(frozen=True, slots=True)
class DecisionSummary:
    """One decision's headline, and the later decisions of its run that followed it."""

    uri: str
    run_id: str
    step: int
    outcome: str
    reason: str | None
    as_of: str | None
    planner: str | None
    started: str | None
    ended: str | None
    chain_index: int | None
    followed_by: tuple[str, ...]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DecisionSummary:
        """From the row of ``DECISION_SUMMARY``."""
        return cls(
            row["uri"],
            row["run_id"],
            row["step"],
            row["outcome"],
            row["reason"],
            _text(row["as_of"]),
            row["planner"],
            _text(row["started"]),
            _text(row["ended"]),
            row["chain_index"],
            _texts(row["followed_by"]),
        )


@dataclass(frozen=True, slots=True)
class RunDecision:
    """A decision one run recorded, in the run's order."""

    uri: str
    step: int
    outcome: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunDecision:
        """From a row of ``RUN_DECISIONS``."""
        return cls(row["uri"], row["step"], row["outcome"])


_EVIDENCE_ORDER: tuple[str, ...] = (
    Label.ALARM,
    Label.ANOMALY,
    Label.TELEMETRY_WINDOW,
    Label.TRUST_SCORE,
    Label.HYPOTHESIS,
    Label.OPERATING_ENVELOPE,
    Label.SAFETY_POLICY,
    Label.APPROVAL_REQUIREMENT,
    Label.POLICY,
)
_LONGEST_FACT = 300  # characters of one value an approver is shown


@dataclass(frozen=True, slots=True)
class EvidenceItem:
    """One thing the decision waiting for approval used, as its approver is shown it: what kind
    of thing, its label, its properties as recorded, and what it is about (a window's sensors,
    a trust score's subject, a finding's asset)."""

    iri: str
    kind: str
    label: str | None
    facts: dict[str, str | int | float | bool]
    about: tuple[str, ...]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EvidenceItem:
        """From a row of ``APPROVAL_EVIDENCE``."""
        labels = [str(x) for x in row["labels"] or ()]
        known = [kind for kind in _EVIDENCE_ORDER if kind in labels]
        kind = known[0] if known else min(set(labels) - {Label.RESOURCE}, default="Entity")
        facts: dict[str, str | int | float | bool] = {}
        for key, value in sorted((row["facts"] or {}).items()):
            if key in {"uri", "rdfs_label", "rdf_type"} or value is None:  # kind says the type
                continue
            if isinstance(value, (bool, int, float)):
                facts[key] = value
                continue
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            cut = len(text) > _LONGEST_FACT
            facts[key] = text[: _LONGEST_FACT - 1] + "…" if cut else text
        label = (row["facts"] or {}).get("rdfs_label")
        return cls(row["uri"], str(kind), _text(label), facts, tuple(sorted(_texts(row["about"]))))

    @property
    def rank(self) -> tuple[int, str]:
        """Where it is listed: findings first, then windows, trust, hypotheses and policies."""
        order = _EVIDENCE_ORDER.index(self.kind) if self.kind in _EVIDENCE_ORDER else 99
        return order, self.iri


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """An approval request waiting for a person: the action, its arguments' hash and the graph
    version it was judged on (an approval binds both), the roles that may approve it, and the
    guard's reasons for asking."""

    decision: str
    run_id: str
    action: ProposedAction
    action_hash: str
    graph_version: str
    roles: tuple[str, ...]
    reasons: tuple[str, ...]
    requested_at: str | None = None  # when the decision asked (None: not recorded yet)
    expires_at: str | None = None  # after it the request may only be rejected
    evidence: tuple[EvidenceItem, ...] = ()
    target_criticality: str | None = None  # A/B/C; None: none recorded (approved as A)

    @classmethod
    def from_request(
        cls,
        request: dict[str, Any],
        evidence: Iterable[EvidenceItem] = (),
        target_criticality: str | None = None,
    ) -> PendingApproval:
        """From the request a waiting run made (``agents.approval.approval_request``, dated by
        ``Agents``), what its decisions used and the target's criticality."""
        return cls(
            request["decision"],
            request["run_id"],
            ProposedAction.model_validate(request["action"]),
            request["action_hash"],
            request["graph_version"],
            _texts(request["roles"]),
            _texts(request["reasons"]),
            request.get("requested_at"),
            request.get("expires_at"),
            tuple(sorted(evidence, key=lambda item: item.rank)),
            target_criticality,
        )


@dataclass(frozen=True, slots=True)
class Lineage:
    """A decision's PROV-O record and everything it points at, as RDF, and whether it conforms
    to the PROV-O shapes (``prov_valid`` is ``None`` when that was not checked)."""

    decision: str  # the decision's IRI
    graph: Graph
    prov_valid: bool | None = None
    violations: tuple[str, ...] = ()

    @property
    def triples(self) -> int:
        """How many triples the record holds."""
        return len(self.graph)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """One batch of a source ingested, and the reclassification it asked for.

    ``reclassification`` is the generation the batch asked for (``None`` when it asked for
    none: a duplicate batch changes nothing, or the caller asked for none). When the caller
    waited, ``classification`` is what the run covering it found, or ``classification_error``
    says why that run failed: the batch stands either way (``twinkg reason classify`` runs it
    again)."""

    report: IngestReport
    classification: ReclassifySummary | None = None
    classification_error: str | None = None
    reclassification: int | None = None


_PLANT_EDGE_KINDS: dict[str, Literal["feeds", "drives"]] = {
    RelType.FEEDS.value: "feeds",
    RelType.DRIVES.value: "drives",
}


@dataclass(frozen=True, slots=True)
class PlantNode:
    """An asset or a sensor in the plant graph: what it is (its asserted classes, then those the
    reasoner inferred), how it stands, and, for a sensor, its latest trust score's confidence."""

    iri: str
    tag: str | None
    label: str | None
    kind: Literal["asset", "sensor"]
    classes: tuple[str, ...]
    inferred: tuple[str, ...]
    status: str | None
    criticality: str | None
    open_findings: int
    trust: float | None  # a sensor's latest confidence (0..1); None for an asset or before any
    parent: str | None  # the asset it is part of (the first by IRI, when several)

    @classmethod
    def from_row(cls, row: dict[str, Any], kind: Literal["asset", "sensor"]) -> PlantNode:
        """From a row of ``PLANT_ASSETS``, ``AREA_ASSETS`` or ``SENSORS`` (kg/plant_graph.py)."""
        inferred = _texts(row["inferred"])
        return cls(
            row["uri"],
            row["tag"],
            row["label"],
            kind,
            tuple(dict.fromkeys(_texts(row["types"]) + inferred)),
            inferred,
            row["status"],
            row["criticality"],
            int(row["open_findings"]),
            _float(row.get("trust")),
            row["parent"],
        )


@dataclass(frozen=True, slots=True)
class PlantEdge:
    """A flow (``feeds``), a driver (``drives``) or a sensor on an asset (``monitors``)."""

    source: str
    target: str
    kind: Literal["feeds", "drives", "monitors"]


@dataclass(frozen=True, slots=True)
class PlantGraph:
    """The plant, or one area of it, as a graph: its first assets in IRI order, the sensors on
    them, and the edges among those; ``truncated`` when more assets matched than are shown."""

    nodes: tuple[PlantNode, ...]
    edges: tuple[PlantEdge, ...]
    truncated: bool
    assets: int
    sensors: int

    @classmethod
    def from_rows(
        cls, assets: list[dict[str, Any]], sensors: list[dict[str, Any]], *, limit: int
    ) -> PlantGraph:
        """From the rows of ``PLANT_ASSETS`` or ``AREA_ASSETS`` (up to ``limit + 1``: one more
        says that some were left out) and those of ``SENSORS`` for the assets shown."""
        shown = assets[:limit]
        iris = {row["uri"] for row in shown}
        sensor_nodes = tuple(PlantNode.from_row(row, "sensor") for row in sensors)
        known = {node.iri for node in sensor_nodes}
        edges = [
            PlantEdge(row["uri"], out["target"], _PLANT_EDGE_KINDS[out["kind"]])
            for row in shown
            for out in row["out"]
            if out["target"] in iris
        ]
        edges += [
            PlantEdge(sensor, row["uri"], "monitors")
            for row in shown
            for sensor in row["sensors"]
            if sensor in known
        ]
        return cls(
            tuple(PlantNode.from_row(row, "asset") for row in shown) + sensor_nodes,
            tuple(sorted(set(edges), key=lambda e: (e.kind, e.source, e.target))),
            len(assets) > limit,
            len(shown),
            len(sensor_nodes),
        )
