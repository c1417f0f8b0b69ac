"""What an agent run knows: data only (IRIs, numbers, text), never a driver or a store.

The LangGraph state of one run (:class:`AgentState`) and the pydantic models it holds. Every
model is frozen and JSON-serialisable: the checkpointer stores it, the recorder turns it into
PROV-O, and a replay compares two of them field by field.
"""

from __future__ import annotations

import enum
import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ActionKind(enum.StrEnum):
    """What an agent may propose (the safety shapes' ``tk:actionKind`` values)."""

    SETPOINT_CHANGE = "setpoint_change"
    CONTROLLED_STOP = "controlled_stop"
    SWITCH_TO_STANDBY = "switch_to_standby"
    WORK_ORDER = "work_order"
    RESTART = "restart"  # start again what one of the agents' own controlled stops took down
    GATHER_DATA = "gather_data"


class Trigger(enum.StrEnum):
    """What a run looks for (``AgentState.trigger``): the open findings (anomalies, alarms,
    stale sensors), or the assets a controlled stop took down whose restart hold-off has
    passed (decision 0049)."""

    FINDINGS = "findings"
    RESTART_DUE = "restart_due"


class Outcome(enum.StrEnum):
    """How a decision ended (``tk:outcome``)."""

    APPLIED = "applied"  # the guard allowed it (with a valid approval when one was needed)
    REFUSED = "refused"  # a sh:Violation, or an approval that could not authorise it
    AWAITING_APPROVAL = "awaiting_approval"  # a sh:Warning: waiting for a person
    REJECTED = "rejected"  # a person rejected it


class Evidence(_Data):
    """One named query an agent ran: its name, parameters and rows (graph snapshot facts)."""

    ordinal: int
    query: str
    params: dict[str, Any]
    rows: list[dict[str, Any]]

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of name, parameters and rows."""
        return sha256_json({"query": self.query, "params": self.params, "rows": self.rows})


class WindowEvidence(_Data):
    """Raw telemetry read from the log: which sensors, which window, and the points' hash."""

    ordinal: int
    sensors: list[str]
    start: str  # ISO 8601, timezone-aware
    end: str
    points: int
    content_hash: str


class Finding(_Data):
    """Something the monitor observed that nobody has decided on yet."""

    uri: str  # the anomaly, alarm, (stale) sensor, or the state change a stop made (restart)
    kind: str  # "alarm" | "anomaly" | "stale_sensor" | "restart_due"
    asset: str
    occurred_at: str | None = None
    ended_at: str | None = None
    severity: str | None = None
    score: float | None = None


class Symptom(_Data):
    """How far one sensor moved during the finding, against the window before it."""

    sensor: str
    quantity_kind: str
    baseline_mean: float
    baseline_std: float
    mean: float
    shift: float  # (mean - baseline mean) / baseline std, in standard deviations
    spread: float  # std during / baseline std (a change in variability, e.g. cavitation's)
    trust: float  # the sensor's data trust (quality · freshness) in [0, 1]
    trust_score: str | None = None  # IRI of the tk:TrustScore it came from
    asset: str | None = None  # the asset the sensor monitors, when it is a neighbour's
    relation: str = "own"  # "own", or how that asset relates: upstream, downstream, driver, system


class Hypothesis(_Data):
    """A failure mode that would explain the symptoms, with how well it does."""

    mode: str  # IRI of the tk:FailureMode
    code: str | None
    score: float  # in [0, 1]
    explained: list[str]  # quantity kinds it explains that moved
    rank: int  # position in the ranking, from 1 (tied hypotheses hold consecutive positions)
    contradicted: list[str] = Field(default_factory=list)  # kinds that moved the other way
    coverage: float = 0.0  # share of all the movement seen that its signature explains
    tied_with: list[str] = Field(default_factory=list)  # modes it ties with on all the evidence


class EvidenceTrust(_Data):
    """The trust of one piece of evidence a hypothesis rests on: a sensor or a finding's subject."""

    subject: str  # IRI of the sensor or asset the trust score is about
    trust_score: str | None  # IRI of its tk:TrustScore; None: it has none (no evidence of trust)
    confidence: float  # the score's full confidence (quality, freshness, anomaly); 0 without one


class ConfidenceBound(_Data):
    """The highest confidence the evidence allows: its lowest trust, and which evidence set it."""

    value: float  # in [0, 1]
    subject: str | None  # the bounding sensor or asset (None: there was no evidence at all)
    trust_score: str | None  # its tk:TrustScore (None: it has none, or there was no evidence)
    evidence: list[EvidenceTrust] = Field(default_factory=list)  # all that was considered


class ProposedAction(_Data):
    """An action with its exact arguments, as the guard and the approver see it."""

    kind: ActionKind
    target: str
    confidence: float
    proposed_at: str
    quantity_kind: str | None = None
    current_setpoint: float | None = None
    proposed_setpoint: float | None = None
    ramp_s: float | None = None
    failure_mode: str | None = None
    demanded_by: str | None = None
    rationale: str = ""

    def arguments(self) -> dict[str, Any]:
        """The arguments an approval binds to (everything but the rationale)."""
        return self.model_dump(mode="json", exclude={"rationale"})

    def arguments_hash(self) -> str:
        """SHA-256 of :meth:`arguments` as canonical JSON."""
        return sha256_json(self.arguments())


class Candidate(_Data):
    """An action the planner weighed, with its utility (higher is better)."""

    action: ProposedAction
    utility: float
    risk_reduction: float
    throughput: float


class GuardResult(_Data):
    """One SHACL result of the safety shapes, as data."""

    severity: str  # "Violation" | "Warning" | "Info"
    shape: str | None
    message: str
    value: str | None = None


class GuardVerdict(_Data):
    """The guard's judgement of one action on one version of its context."""

    verdict: str  # "block" | "needs_approval" | "allow"
    graph_version: str
    results: list[GuardResult]
    report: str  # the SHACL report graph, canonical N-Triples
    conforms: bool
    approval_roles: list[str] = Field(default_factory=list)  # roles that may approve
    note: str = ""


class ApprovalInput(_Data):
    """A person's answer to an approval request, bound to what they approved."""

    outcome: str  # "approved" | "edited" | "rejected"
    approver: str  # IRI of the tk:Person
    role: str  # IRI of the tk:Role they approve in
    action_hash: str  # the arguments hash of the action they saw
    graph_version: str  # the graph version they saw
    expires_at: str  # ISO 8601
    given_at: str  # ISO 8601
    edits: dict[str, float] = Field(default_factory=dict)  # edited setpoint or ramp, if any
    comment: str = ""


class Effect(_Data):
    """What applying an action changes: a new event node and, maybe, an asset's status."""

    kind: ActionKind
    asset: str
    from_status: str | None = None
    to_status: str | None = None
    partner: str | None = None  # the standby that starts on a switch
    value: float | None = None
    previous_value: float | None = None


class Step(_Data):
    """One decision record of the run (a run that waited for approval has two)."""

    decision: str
    outcome: Outcome
    reason: str
    chain_index: int
    record_hash: str
    gathered: int  # evidence and windows numbered below this belong to this step or earlier


class AgentState(BaseModel):
    """The state of one agent run. Data only; the stores come through the run context."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    scope: str | None = None  # an asset IRI, or None for the whole plant
    as_of: str  # ISO 8601: the time the run judges data against (the data's time in replays)
    seed: int = 0
    started_at: str = ""
    informed_by: str | None = None  # the tk:SimulationRun the run decides in (prov:wasInformedBy)
    trigger: Trigger = Trigger.FINDINGS  # what the monitor looks for
    # seconds a watched asset's new anomalies wait after the decision to watch it (0: none;
    # decision 0052)
    watch_s: float = Field(default=0.0, ge=0.0)
    step: int = 1
    findings: list[Finding] = Field(default_factory=list)
    asset: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    windows: list[WindowEvidence] = Field(default_factory=list)
    symptoms: list[Symptom] = Field(default_factory=list)
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    candidates: list[Candidate] = Field(default_factory=list)
    planner: str = ""  # "rules" | "llm" | "external"
    model: str | None = None
    prompt_version: str | None = None
    transcript: list[dict[str, Any]] = Field(default_factory=list)  # recorded model outputs
    bound: ConfidenceBound | None = None  # what the evidence's trust allows the action
    action: ProposedAction | None = None
    original_action: ProposedAction | None = None  # before an approver's edit
    guard: GuardVerdict | None = None
    first_guard: GuardVerdict | None = None  # the verdict that asked for approval
    approval: ApprovalInput | None = None
    effect: Effect | None = None
    outcome: Outcome | None = None
    reason: str = ""
    steps: list[Step] = Field(default_factory=list)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the form that is hashed and stored."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_json(value: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def parse_time(text: str) -> datetime:
    """An ISO 8601 time from a row or the state (Neo4j writes ``Z`` and nanoseconds)."""
    text = text.replace("Z", "+00:00")
    if "." in text:  # Python takes at most microseconds
        head, _, rest = text.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return moment
