"""Routes: health and readiness, assets and their context, telemetry in, contract validation,
read-only Cypher. Each route translates HTTP to one call of :class:`api.twin.Twin` and back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from rdflib import Graph
from starlette.concurrency import run_in_threadpool

from twinkg.api.errors import UnsupportedMediaTypeError
from twinkg.api.http.auth import requires
from twinkg.api.http.deps import TwinDep, media_type, twin_of
from twinkg.api.http.models import (
    AnomalyOut,
    AssetOut,
    CypherRequest,
    CypherResult,
    Health,
    IngestOut,
    MeOut,
    PlantGraphOut,
    ProjectionStatus,
    Readiness,
    ValidationOut,
    ValidationResultOut,
)
from twinkg.api.metrics import CONTENT_TYPE as METRICS_TYPE
from twinkg.api.reclassification import Reclassify
from twinkg.api.results import IngestResult
from twinkg.api.schemas import AssetContextOut
from twinkg.api.security import APPROVABLE_CRITICALITY, Permission, Principal, may_approve
from twinkg.api.site_scope import SiteBound
from twinkg.api.twin import Twin
from twinkg.connect.json import JsonSource
from twinkg.ontology.errors import TurtleSyntaxError, TwinKGError

router = APIRouter()
_RDF_INPUT = {"text/turtle": "turtle", "application/n-triples": "nt"}


def projection_status(request: Request) -> ProjectionStatus | None:
    """The projection's lag now, or ``None`` when this app serves no SPARQL."""
    twin = twin_of(request)
    if twin.projection is None:
        return None
    lag = twin.projection.lag()
    return ProjectionStatus(
        applied_seq=lag.applied_seq, head_seq=lag.head_seq, pending=lag.pending, lag_s=lag.seconds
    )


@router.get(
    "/metrics",
    tags=["system"],
    response_class=Response,
    responses={200: {"content": {METRICS_TYPE: {}}, "description": "Prometheus text format"}},
)
def metrics(
    request: Request, _: Annotated[Principal, Depends(requires(Permission.READ))]
) -> Response:
    """This process's Prometheus metrics: points ingested and quarantined, messages refused,
    decisions by outcome, decision, node and guard latency, projection lag. Read when scraped
    (the projection's lag is asked of Neo4j then; left as it was when Neo4j cannot answer)."""
    twin = twin_of(request)
    if twin.projection is not None:
        try:
            lag = twin.projection.lag()
        except TwinKGError:
            pass  # the gauges keep their last values; /ready says Neo4j is away
        else:
            twin.metrics.projection_lag.set(lag.seconds)
            twin.metrics.projection_pending.set(lag.pending)
    return Response(twin.metrics.render(), media_type=METRICS_TYPE)


@router.get("/health", tags=["system"])
def health() -> Health:
    """Liveness: the process answers (no credentials needed, no data shown)."""
    return Health(status="ok")


class SparqlReadiness(BaseModel):
    """The SPARQL workers: ``building`` until a first projection is published, queries
    running (``busy``) of ``capacity``, requests waiting, ``saturated`` when every worker is
    taken (new queries wait, then get ``sparql_busy``), and the projection's rebuilds since the
    process started (0 when it reopened the persisted one)."""

    building: bool
    busy: int
    capacity: int
    queued: int
    saturated: bool
    rebuilds: int


class ReasonerReadiness(BaseModel):
    """Reclassification after ingest: the generations asked for (one per batch that changed
    something) and the newest one the inferred labels include, whether a run is going on, and
    the last run's duration or error (ingest goes on when it fails)."""

    requested: int
    completed: int
    running: bool
    last_seconds: float | None
    last_error: str | None
    held: bool = False  # a run is due and waits out TWINKG_RECLASSIFY_MIN_GAP_S


class ReadinessOut(Readiness):
    """Readiness with the SPARQL workers' state (``None`` when this app serves no SPARQL) and
    the reasoner's."""

    sparql: SparqlReadiness | None = None
    reasoner: ReasonerReadiness | None = None


def _sparql_readiness(twin: Twin) -> SparqlReadiness | None:
    if twin.projection is None:
        return None
    status = twin.projection.status()
    pool = status.pool
    return SparqlReadiness(
        building=status.building,
        busy=pool.busy,
        capacity=pool.capacity,
        queued=pool.queued,
        saturated=pool.saturated,
        rebuilds=status.rebuilds,
    )


def _reasoner_readiness(twin: Twin) -> ReasonerReadiness:
    return ReasonerReadiness.model_validate(twin.reclassification(), from_attributes=True)


@router.get(
    "/ready",
    tags=["system"],
    responses={503: {"model": ReadinessOut, "description": "Neo4j unreachable"}},
)
def ready(request: Request) -> Any:
    """Readiness: Neo4j reachable, how far the SPARQL projection lags, and how busy its
    workers are (no credentials). SPARQL saturated or still building shows in ``sparql`` and
    ``detail`` but keeps the API ready: every other route answers."""
    twin = twin_of(request)
    sparql = _sparql_readiness(twin)
    reasoner = _reasoner_readiness(twin)
    try:
        twin.store.ping()
        status = projection_status(request)
    except TwinKGError as exc:
        body = ReadinessOut(
            ready=False,
            neo4j="unreachable",
            projection=None,
            detail=exc.code,
            sparql=sparql,
            reasoner=reasoner,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    detail = None
    if sparql is not None and sparql.building:
        detail = "projection_building"
    elif sparql is not None and sparql.saturated:
        detail = "sparql_saturated"
    return ReadinessOut(
        ready=True,
        neo4j="ok",
        projection=status,
        detail=detail,
        sparql=sparql,
        reasoner=reasoner,
    )


@router.get("/me", tags=["system"])
def me(principal: Annotated[Principal, Depends(requires(Permission.READ))]) -> MeOut:
    """Who these credentials are: roles, permissions, the person approvals are recorded as, and
    the criticalities they may approve (the console hides what they may not do; every route
    still checks)."""
    levels = sorted({c for r in principal.roles for c in APPROVABLE_CRITICALITY.get(r, ())})
    return MeOut(
        subject=principal.subject,
        name=principal.name,
        method=principal.method,
        roles=sorted(principal.roles),
        permissions=sorted(principal.permissions),
        person=principal.person,
        approvable_criticality=[c for c in levels if may_approve(principal, c)],
    )


@router.get("/assets", tags=["assets"])
def assets(
    twin: TwinDep,
    _: Annotated[Principal, Depends(requires(Permission.READ))],
    kind: Annotated[str | None, Query(max_length=100, description="a class, e.g. Pump")] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AssetOut]:
    """Assets in IRI order, a page at a time."""
    return [
        AssetOut.model_validate(asset, from_attributes=True)
        for asset in twin.assets(kind=kind, offset=offset, limit=limit)
    ]


@router.get("/assets/graph", tags=["assets"])
def asset_graph(
    twin: TwinDep,
    _: Annotated[Principal, Depends(requires(Permission.READ))],
    area: Annotated[
        str | None,
        Query(min_length=1, max_length=2000, description="an asset's IRI or tag, e.g. L-1"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="the most assets shown")] = 500,
    sensors: Annotated[bool, Query(description="the sensors on the assets too")] = True,
) -> PlantGraphOut:
    """The plant (or ``area``: it and what is part of it) as a graph: assets with their status,
    criticality, open findings and classes (inferred ones too), sensors with their latest trust,
    and the ``feeds``, ``drives`` and ``monitors`` edges among them; the first ``limit`` assets
    in IRI order, ``truncated`` when more matched. 404 ``not_found`` for an unknown area."""
    graph = twin.plant_graph(area=area, limit=limit, sensors=sensors)
    return PlantGraphOut.model_validate(graph, from_attributes=True)


@router.get("/assets/context", tags=["assets"])
def asset_context(
    twin: TwinDep,
    _: Annotated[Principal, Depends(requires(Permission.READ))],
    iri: Annotated[str, Query(pattern=r"^https?://\S+$", max_length=2000)],
    events: Annotated[int, Query(ge=0, le=500)] = 20,
) -> AssetContextOut:
    """One asset with its failure modes, sensors (latest trust), neighbours, policies and
    newest events."""
    return AssetContextOut.model_validate(
        twin.asset_context(iri, events=events), from_attributes=True
    )


def _ingest_out(result: IngestResult) -> IngestOut:
    report = result.report
    return IngestOut(
        batch_id=report.batch_id,
        contract=report.contract,
        duplicate=report.duplicate,
        points=report.points,
        accepted=report.accepted,
        rejected=report.rejected,
        reasons=report.reasons,
        aggregates=report.aggregates,
        anomalies=[
            AnomalyOut(
                asset=a.asset,
                start=a.start.isoformat(),
                end=a.end.isoformat(),
                points=a.points,
                peak=a.peak,
                alarm=a.alarm,
            )
            for a in report.anomalies
        ],
        alarms=report.alarms,
        reclassification=result.reclassification,
    )


@router.post(
    "/telemetry",
    tags=["telemetry"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["points"],
                        "properties": {
                            "contract": {"type": "string", "example": "telemetry@1.0.0"},
                            "producer": {"type": "string"},
                            "points": {"type": "array", "items": {"type": "object"}},
                        },
                    }
                }
            },
        }
    },
)
async def ingest(
    request: Request,
    principal: Annotated[Principal, Depends(requires(Permission.INGEST))],
    contract: Annotated[str | None, Query(max_length=100)] = None,
) -> IngestOut:
    """Check a batch of points against its telemetry contract and apply it, all or nothing.

    Each point is judged on its own: one that breaks the contract, or that cannot be kept as
    given (a value of the wrong JSON type, a time int64 nanoseconds cannot hold), goes to the
    quarantine with its reason (the answer counts them). Only a body that is not a batch (not
    UTF-8 JSON, nested deeper than the limit, not ``{"points": [...]}``) is refused, with a 4xx
    and a stable code, and changes nothing. Parsing runs in a worker thread, never on the event
    loop. The same content twice is applied once. After a batch that changed something the
    assets are reclassified, as after every ingest, on the twin's reasoner thread (coalesced:
    a burst of batches costs one or two runs): ``reclassification`` in the answer is the
    generation the batch asked for; ``GET /ready`` shows ``reasoner.completed`` reaching it
    when the inferred labels include it. A caller bound to sites (an API key made with
    ``--site``, a token's ``twinkg_sites``) gets 403 ``site_mismatch``, and nothing is written,
    for a batch naming a sensor of another site or of none.
    """
    if media_type(request) != "application/json":
        raise UnsupportedMediaTypeError("telemetry is posted as application/json")
    raw = await request.body()
    twin = twin_of(request)
    source = JsonSource(f"api:{principal.subject}", body=raw, contract=contract)
    bound = None
    if principal.sites:  # a caller bound to sites names only their sensors (decision 0085)
        bound = SiteBound(f"caller {principal.name!r}", principal.sites)
    (result,) = await run_in_threadpool(
        lambda: list(twin.ingest(source, reclassify=Reclassify.BACKGROUND, bound=bound))
    )
    return _ingest_out(result)


@router.post(
    "/contracts/{name}/validate",
    tags=["contracts"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {m: {"schema": {"type": "string"}} for m in _RDF_INPUT},
        }
    },
)
async def validate(
    request: Request,
    name: Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,63}$", description="e.g. asset")],
    _: Annotated[Principal, Depends(requires(Permission.VALIDATE))],
    version: Annotated[str | None, Query(pattern=r"^\d+\.\d+\.\d+$")] = None,
) -> ValidationOut:
    """Validate posted RDF (Turtle or N-Triples) against a contract; nothing is stored."""
    fmt = _RDF_INPUT.get(media_type(request))
    if fmt is None:
        raise UnsupportedMediaTypeError(f"post {' or '.join(_RDF_INPUT)}")
    raw = await request.body()
    ref = f"{name}@{version}" if version else name

    def parse() -> Graph:
        graph = Graph()
        try:
            graph.parse(data=raw.decode("utf-8"), format=fmt)
        except Exception as exc:  # rdflib raises many unrelated types for bad syntax
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TurtleSyntaxError(f"the body is not valid {fmt}: {reason}") from exc
        return graph

    outcome = await run_in_threadpool(twin_of(request).validate, ref, parse)
    return ValidationOut(
        contract=ref,
        conforms=outcome.conforms,
        results=[
            ValidationResultOut(
                focus_node=v.focus_node,
                path=v.path,
                value=v.value,
                severity=v.severity.name.lower(),
                message=v.message,
                source_shape=v.source_shape,
            )
            for v in outcome.violations
        ],
    )


@router.post("/cypher", tags=["query"])
def cypher(
    twin: TwinDep,
    body: CypherRequest,
    _: Annotated[Principal, Depends(requires(Permission.QUERY))],
) -> CypherResult:
    """Run Cypher that may only read: checked by Neo4j's planner, run in a read transaction
    with a server-side timeout, at most the row cap of rows."""
    result = twin.cypher(body.query, body.params, timeout_s=body.timeout_s)
    return CypherResult(
        columns=list(result.columns),
        rows=[list(r) for r in result.rows],
        truncated=result.truncated,
    )
