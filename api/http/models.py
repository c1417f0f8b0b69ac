"""The HTTP API's request and response bodies (pydantic), as the OpenAPI document shows them.

Requests forbid unknown fields, so a typo is an error rather than an ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from twinkg.agents.state import ActionKind, ProposedAction
from twinkg.api.schemas import Moment

_IRI = r"^https?://\S+$"


Finite = Annotated[float, Field(allow_inf_nan=False)]
"""A number that is neither infinite nor NaN."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]


class ProjectionStatus(BaseModel):
    """How far the SPARQL projection is behind the graph's change log."""

    applied_seq: int
    head_seq: int
    pending: int
    lag_s: float


class Readiness(BaseModel):
    """Readiness: Neo4j reachable, and the projection's lag."""

    ready: bool
    neo4j: str
    projection: ProjectionStatus | None
    detail: str | None = None


class CypherRequest(_Request):
    """A read-only Cypher query and its parameters."""

    query: str = Field(min_length=1, max_length=100_000)
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="A shorter server-side timeout than the server's own (never a longer one).",
    )


class CypherResult(BaseModel):
    """The rows of a read-only query; ``truncated`` when the row cap cut it."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


class RunRequest(_Request):
    """Start the agents on every open finding (or one asset and its parts)."""

    scope: str | None = Field(default=None, pattern=_IRI, description="an asset IRI")
    as_of: str | None = Field(
        default=None, description="'now' (default), 'data' (newest reading) or an ISO 8601 time"
    )
    max_runs: int = Field(default=20, ge=1, le=200)


class StepOut(BaseModel):
    """One decision a run recorded."""

    decision: str
    outcome: str
    reason: str
    chain_index: int
    record_hash: str


class EvidenceItemOut(BaseModel):
    """One thing the waiting decision used: its kind (``Alarm``, ``Anomaly``,
    ``TelemetryWindow``, ``TrustScore``, ``Hypothesis``, a policy), label, recorded properties,
    and what it is about (a window's sensors, a score's subject, a finding's asset)."""

    iri: str
    kind: str
    label: str | None
    facts: dict[str, str | int | float | bool]
    about: list[str]


class ApprovalRequestOut(BaseModel):
    """What waits for a person: the action, its hash and graph version (an approval binds both),
    the roles that may approve it, why it waits, when it was asked and until when it may be
    approved, and (in ``GET /approvals``) the evidence its decision used."""

    decision: str
    run_id: str
    action: ProposedAction
    action_hash: str
    graph_version: str
    roles: list[str]
    reasons: list[str]
    requested_at: str | None = None
    expires_at: str | None = None
    evidence: list[EvidenceItemOut] = []
    target_criticality: str | None = None


class RunOut(BaseModel):
    """How one agent run ended this time."""

    run_id: str
    status: str
    steps: list[StepOut]
    approval_request: ApprovalRequestOut | None = None


class MeOut(BaseModel):
    """Who the credentials belong to and what they may do (what a client shows or hides; the
    server checks every request anyway)."""

    subject: str
    name: str
    method: str
    roles: list[str]
    permissions: list[str]
    person: str | None = Field(description="the Person IRI approvals are recorded as")
    approvable_criticality: list[str] = Field(
        description="the asset criticalities (A, B, C) whose actions these credentials may approve"
    )


class AssetOut(BaseModel):
    """One asset of the plant."""

    uri: str
    tag: str | None
    label: str | None
    types: list[str]
    criticality: str | None
    status: str | None
    inferred: list[str] = Field(default_factory=list, description="classes the reasoner inferred")
    part_of: str | None = Field(default=None, description="the asset it is part of")
    open_findings: int = Field(default=0, description="open alarms and anomalies concerning it")


class DecisionRowOut(BaseModel):
    """A decision in the list of the latest ones, with the action it proposed (if any)."""

    uri: str
    chain_index: int
    outcome: str
    reason: str | None
    planner: str | None
    kind: str | None
    target: str | None


class DecisionOut(BaseModel):
    """One decision's headline, and the later decisions of its run that followed it."""

    uri: str
    run_id: str
    step: int
    outcome: str
    reason: str | None
    as_of: Moment
    planner: str | None
    started: Moment
    ended: Moment
    chain_index: int | None
    followed_by: list[str]


class RunEventOut(BaseModel):
    """One event of an agent job: a node finished, a run ended, the job ended."""

    seq: int
    kind: str
    data: dict[str, Any]


class JobOut(BaseModel):
    """An agent job started through the API (one or more runs)."""

    job_id: str
    state: str
    scope: str | None
    created_at: str
    finished_at: str | None
    runs: list[RunOut]
    error: dict[str, Any] | None
    events_url: str


class ProposalRequest(_Request):
    """An action proposed from outside (an operator, an LLM client): the guard decides."""

    kind: ActionKind
    target: str = Field(pattern=_IRI, description="the target asset's IRI")
    confidence: float = Field(ge=0.0, le=1.0, description="capped by the data's own trust")
    quantity_kind: str | None = Field(default=None, pattern=_IRI)
    current_setpoint: float | None = Field(default=None, allow_inf_nan=False)
    proposed_setpoint: float | None = Field(default=None, allow_inf_nan=False)
    ramp_s: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    rationale: str = Field(default="", max_length=4000)
    as_of: str | None = None


class ApprovalRequest(_Request):
    """Approve (optionally editing the setpoint or ramp) or reject a waiting action."""

    role: str | None = Field(
        default=None, description="the role you answer in (IRI or name); default: one you hold"
    )
    edits: dict[Literal["proposed_setpoint", "ramp_s"], Finite] = Field(default_factory=dict)
    expires_in_s: float | None = Field(default=None, gt=0, le=86_400)
    comment: str = Field(default="", max_length=4000)


class EditRequest(ApprovalRequest):
    """An approval of the action as edited: at least one argument changed."""

    edits: dict[Literal["proposed_setpoint", "ramp_s"], Finite] = Field(min_length=1)


class RejectionRequest(_Request):
    """Reject a waiting action."""

    role: str | None = None
    comment: str = Field(default="", max_length=4000)


class ValidationResultOut(BaseModel):
    """One SHACL result."""

    focus_node: str
    path: str | None
    value: str | None
    severity: str
    message: str
    source_shape: str


class ValidationOut(BaseModel):
    """Whether posted data conforms to a contract, and every result."""

    contract: str
    conforms: bool
    results: list[ValidationResultOut]


class AnomalyOut(BaseModel):
    """An anomaly an ingest found."""

    asset: str
    start: str
    end: str
    points: int
    peak: float
    alarm: str | None


class IngestOut(BaseModel):
    """What an ingest did: accepted, quarantined (with reasons), derived, and the
    reclassification it asked for."""

    batch_id: str
    contract: str
    duplicate: bool
    points: int
    accepted: int
    rejected: int
    reasons: dict[str, int]
    aggregates: int
    anomalies: list[AnomalyOut]
    alarms: int
    reclassification: int | None = Field(
        default=None,
        description="the reasoner generation this batch asked for (null for a duplicate); the "
        "inferred labels include it once GET /ready shows reasoner.completed at or past it",
    )


class VerifyOut(BaseModel):
    """The chain check: ok, how many records, the head hash, and every problem found."""

    ok: bool
    records: int
    head_hash: str
    problems: list[dict[str, Any]]
    checked: int = 0  # the records recomputed: all, or the trusted head's and those after it
    since_index: int = 0  # the trusted head's chain index (0: the whole chain was checked)


class AuditVerifyOut(BaseModel):
    """The audit log's hash chain recomputed: ``ok``, the entries that checked out, the first bad
    line and why, the head to keep elsewhere, and the requests announced without an outcome."""

    ok: bool
    count: int
    first_bad_line: int | None
    reason: str | None
    head: str
    open_intents: list[str]


class ReplayOut(BaseModel):
    """Whether the replay reached the recorded decision, and what differs."""

    decision: str
    same: bool
    outcome: str
    steps: int
    differences: list[dict[str, Any]]


class AuditEntryOut(BaseModel):
    """One line of the audit log: the request, its caller, its outcome, and its chain hashes."""

    index: int
    time: str
    request_id: str
    subject: str
    name: str
    roles: list[str]
    person: str | None
    auth: str | None
    client: str | None
    method: str
    path: str
    query: str
    status: int = Field(description="0 on an intent (no response yet)")
    error_code: str | None
    phase: str | None = Field(
        default=None, description="intent (before the request ran) or outcome; none on old entries"
    )
    intent: int | None = Field(default=None, description="on an outcome: its intent's index")
    prev: str
    hash: str


class PlantNodeOut(BaseModel):
    """An asset or a sensor of the plant graph."""

    iri: str
    tag: str | None
    label: str | None
    kind: Literal["asset", "sensor"]
    classes: list[str] = Field(description="its asserted classes, then those inferred (IRIs)")
    inferred: list[str] = Field(description="the classes the reasoner inferred (IRIs)")
    status: str | None
    criticality: str | None
    open_findings: int = Field(description="open alarms and anomalies concerning it")
    trust: float | None = Field(
        description="a sensor's latest trust score's confidence (0..1); null for an asset, or "
        "for a sensor before any score"
    )
    parent: str | None = Field(description="the asset it is part of")


class PlantEdgeOut(BaseModel):
    """A flow (``feeds``), a driver (``drives``) or a sensor on an asset (``monitors``)."""

    source: str
    target: str
    kind: Literal["feeds", "drives", "monitors"]


class PlantGraphOut(BaseModel):
    """The plant, or one area of it, as equipment, flows and sensors: the first ``assets``
    assets in IRI order with the ``sensors`` on them, and the edges among those nodes."""

    nodes: list[PlantNodeOut]
    edges: list[PlantEdgeOut]
    truncated: bool = Field(description="more assets matched than are shown: choose an area")
    assets: int
    sensors: int
