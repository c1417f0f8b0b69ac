"""The JSON shapes more than one interface answers with, mapped from the twin's domain results.

An asset's context is the same document over HTTP (``GET /assets/context``) and MCP (the
``asset_context`` tool): one model, so the two cannot drift apart. Each interface maps
:class:`~twinkg.api.results.AssetContext` with ``AssetContextOut.model_validate(context,
from_attributes=True)``; shapes only one interface answers with stay in its own folder
(``api/http/models.py``, ``api/mcp/models.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field


def _as_text(value: Any) -> Any:
    """Neo4j's temporal values as their ISO 8601 text."""
    return value if value is None or isinstance(value, str) else str(value)


Moment = Annotated[str | None, BeforeValidator(_as_text)]
"""A point in time as ISO 8601 text (a Neo4j temporal value is written out)."""


class FailureModeOut(BaseModel):
    """A failure mode the asset is susceptible to, its mitigations and where it shows."""

    mode: str
    code: str | None
    mitigations: list[str]
    kinds: list[str] = Field(description="quantity kinds the mode manifests in")


class SensorTrustOut(BaseModel):
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


class NeighbourOut(BaseModel):
    """Equipment up- or downstream of the asset, or driving it, and its open findings."""

    uri: str
    tag: str | None
    relation: Literal["upstream", "downstream", "driver"]
    hops: int
    status: str | None
    findings: int


class EnvelopeOut(BaseModel):
    """An operating envelope of the asset."""

    uri: str
    quantity_kind: str | None
    minimum: float | None
    maximum: float | None
    max_rate: float | None


class PartnerOut(BaseModel):
    """The asset's duty/standby partner."""

    uri: str
    tag: str | None
    status: str | None
    duty_role: str | None


class PoliciesOut(BaseModel):
    """The policies that apply to the asset."""

    envelopes: list[EnvelopeOut]
    partners: list[PartnerOut]
    threshold: float | None = Field(description="the trust threshold for autonomous action")


class EventOut(BaseModel):
    """An event concerning the asset, newest first."""

    uri: str
    types: list[str]
    occurred_at: Moment
    ended_at: Moment
    severity: str | None
    status: str | None
    score: float | None


class AssetContextOut(BaseModel):
    """What an engineer or an agent needs about one asset."""

    asset: str
    tag: str | None
    types: list[str]
    criticality: str | None
    status: str | None
    failure_modes: list[FailureModeOut]
    sensors: list[SensorTrustOut]
    neighbours: list[NeighbourOut]
    policies: PoliciesOut
    events: list[EventOut]
