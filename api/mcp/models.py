"""The MCP tools' own typed results: the output schemas an MCP client sees, mapped from the
twin's domain results (``api/results.py``) by the tools. A document the HTTP API answers with
too (an asset's context) is one shared model, in ``api/schemas.py``."""

from typing import Any

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
