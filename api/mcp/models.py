"""The MCP tools' typed results: the output schemas an MCP client sees, mapped from the twin's
domain results (``api/results.py``) by the tools. They are the MCP server's own, independent of
the HTTP API's bodies, even where the two say the same."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CypherOutput(_Out):
    """Rows of a read-only Cypher query."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="true when the row cap cut the result")
    row_cap: int


class SparqlOutput(_Out):
    """A SPARQL result as the projection serialised it."""

    media_type: str
    body: str
    truncated: bool = Field(description="true when the row cap cut the result")
    lag_pending: int = Field(description="graph changes not yet in the projection")
    lag_seconds: float = Field(description="age of the oldest change not yet projected")


class LineageOutput(_Out):
    """A decision's PROV-O record and everything it points at."""

    decision: str
    format: str
    triples: int
    prov_valid: bool
    violations: list[str]
    document: str


class StepOutput(_Out):
    """One decision recorded for the proposal."""

    decision: str
    outcome: str
    reason: str


class ProposalOutput(_Out):
    """How the proposal ended: its decisions and, when a person must decide, the request."""

    run_id: str
    status: str
    steps: list[StepOutput]
    approval_request: dict[str, Any] | None


class FailureModeOutput(_Out):
    """A failure mode the asset is susceptible to, its mitigations and where it shows."""

    mode: str
    code: str | None
    mitigations: list[str]
    kinds: list[str] = Field(description="quantity kinds the mode manifests in")


class SensorTrustOutput(_Out):
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


class NeighbourOutput(_Out):
    """Equipment up- or downstream of the asset, or driving it, and its open findings."""

    uri: str
    tag: str | None
    relation: Literal["upstream", "downstream", "driver"]
    hops: int
    status: str | None
    findings: int


class EnvelopeOutput(_Out):
    """An operating envelope of the asset."""

    uri: str
    quantity_kind: str | None
    minimum: float | None
    maximum: float | None
    max_rate: float | None


class PartnerOutput(_Out):
    """The asset's duty/standby partner."""

    uri: str
    tag: str | None
    status: str | None
    duty_role: str | None


class PoliciesOutput(_Out):
    """The policies that apply to the asset."""

    envelopes: list[EnvelopeOutput]
    partners: list[PartnerOutput]
    threshold: float | None = Field(description="the trust threshold for autonomous action")


class EventOutput(_Out):
    """An event concerning the asset, newest first."""

    uri: str
    types: list[str]
    occurred_at: str | None
    ended_at: str | None
    severity: str | None
    status: str | None
    score: float | None


class AssetContextOutput(_Out):
    """What an engineer or an agent needs about one asset."""

    asset: str
    tag: str | None
    types: list[str]
    criticality: str | None
    status: str | None
    failure_modes: list[FailureModeOutput]
    sensors: list[SensorTrustOutput]
    neighbours: list[NeighbourOutput]
    policies: PoliciesOutput
    events: list[EventOutput]
