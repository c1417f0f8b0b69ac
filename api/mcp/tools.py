"""The twin's MCP tools: typed inputs, typed results, one permission each.

Five tools are each a thin translation to one :class:`~api.twin.Twin` operation behind one
permission (least privilege, ``api/roles.py``): ``cypher`` and ``sparql`` (QUERY),
``asset_context`` (READ), ``lineage`` (AUDIT) and ``propose_action`` (PROPOSE, through the same
guard and approval flow as every other proposal). Given the simulation jobs, two what-if tools over
:class:`~api.sim_service.SimJobs` join them (seven in all, as the app serves them):
``start_what_if_run`` (RUN_AGENTS) and ``what_if_run`` (READ). A result is JSON, as text for the
model and as structured content matching the tool's output schema. A refused or failed call is a
tool error (``isError``) with ``{"error": {"code": …, "message": …}}``, the code one of the stable
codes of :mod:`ontology.errors` and :mod:`api.errors` (``internal_error`` for a bug, logged). Each
tool maps the twin's domain result to its own output model (``api/mcp/models.py``). The caller is
the principal the endpoint (``api/mcp/server.py``) authenticated and left in the request's
``scope["state"]``.
"""

import inspect
import json
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ContentBlock, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from twinkg.agents.state import ActionKind
from twinkg.api.errors import AuthenticationError
from twinkg.api.mcp.models import (
    CypherOutput,
    LineageOutput,
    ProposalOutput,
    SparqlOutput,
    StepOutput,
)
from twinkg.api.schemas import AssetContextOut
from twinkg.api.security import Permission, Principal
from twinkg.api.sim_service import MAX_JOB_SEEDS, SimJob, SimJobs, parse_seeds
from twinkg.api.twin import Twin
from twinkg.kg import rdf_text
from twinkg.ontology.errors import TwinKGError

_log = logging.getLogger("twinkg.mcp")

PRINCIPAL = "principal"
"""The key of the authenticated caller in ``scope["state"]`` (as the HTTP routes leave it)."""

INSTRUCTIONS = (
    "TwinKG is the knowledge graph of a plant's digital twin: assets, sensors, failure modes, "
    "operating envelopes, events and every agent decision with its PROV-O provenance. Start "
    "with asset_context for an asset IRI; query with cypher (Neo4j) or sparql (RDF); propose "
    "changes with propose_action, which never acts by itself: the safety guard decides and a "
    "person may have to approve. Every result is JSON; errors carry a stable code."
)


# -- results and errors ----------------------------------------------------------------------


def _text(document: Any) -> list[ContentBlock]:
    return [TextContent(type="text", text=json.dumps(document, default=str, ensure_ascii=False))]


def _ok(output: BaseModel) -> CallToolResult:
    document = output.model_dump(mode="json")
    return CallToolResult(content=_text(document), structured_content=document)


def _failed(code: str, message: str) -> CallToolResult:
    document = {"error": {"code": code, "message": " ".join(message.split())}}
    return CallToolResult(content=_text(document), structured_content=document, is_error=True)


def principal_of(ctx: Context) -> Principal:
    """The caller the endpoint authenticated for this request (fails closed without one)."""
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state", {})
    principal = state.get(PRINCIPAL)
    if not isinstance(principal, Principal):
        raise AuthenticationError("this request carries no authenticated caller")
    return principal


def _guarded(ctx: Context, permission: Permission, work: Callable[[], BaseModel]) -> CallToolResult:
    try:
        principal_of(ctx).require(permission)
        return _ok(work())
    except TwinKGError as exc:
        return _failed(exc.code, str(exc))
    except Exception:
        _log.exception("MCP tool failed")
        return _failed("internal_error", "an unexpected error; it has been logged")


# -- the tools ---------------------------------------------------------------------------------

Iri = Annotated[str, Field(min_length=1, max_length=2048)]
_Tool = TypeVar("_Tool", bound=Callable[..., CallToolResult])
_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False, idempotent_hint=True)


def _tool(
    server: MCPServer, *, title: str, annotations: ToolAnnotations = _READ
) -> Callable[[_Tool], _Tool]:
    """Register a tool, its docstring (dedented) as the description the model reads."""

    def decorator(fn: _Tool) -> _Tool:
        server.add_tool(fn, title=title, description=inspect.getdoc(fn), annotations=annotations)
        return fn

    return decorator


class WhatIfJobOutput(BaseModel):
    """A what-if simulation job: where it is and each finished seed's run (KPIs, run IRI)."""

    job_id: str
    state: str = Field(description="queued, running, done or failed")
    scenario: str
    policy: str
    seeds: list[int]
    progress: float = Field(description="0..1 over all seeds")
    results: list[dict[str, Any]]
    error: dict[str, Any] | None


def _job_output(job: SimJob) -> WhatIfJobOutput:
    return WhatIfJobOutput(
        job_id=job.job_id,
        state=job.state,
        scenario=job.scenario,
        policy=job.policy,
        seeds=list(job.seeds),
        progress=job.progress,
        results=list(job.results),
        error=job.error,
    )


def register_tools(
    server: MCPServer,
    twin: Callable[[], Twin],
    sim_jobs: Callable[[], SimJobs] | None = None,
) -> None:
    """Add the five twin tools to ``server``; ``twin()`` is called per call (opened after
    startup). With ``sim_jobs``, also the two what-if tools ``start_what_if_run`` (RUN_AGENTS)
    and ``what_if_run`` (READ), seven in all."""
    if sim_jobs is not None:
        _register_what_if(server, sim_jobs)

    @_tool(server, title="Read-only Cypher", annotations=_READ)
    def cypher(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, max_length=20_000, description="Cypher")],
        params: Annotated[
            dict[str, Any] | None,
            Field(description="values for the query's $parameters (JSON values)"),
        ] = None,
    ) -> Annotated[CallToolResult, CypherOutput]:
        """Run a read-only Cypher query on the twin's Neo4j graph and return its rows.

        Nodes carry the labels of their ontology class and all superclasses (e.g. :Pump,
        :Sensor, :Alarm, :Decision) and a stable IRI in `uri`; put values in $parameters.
        Writes, LOAD CSV and procedures that are not read-only are refused (code
        `query_rejected`); the query runs with a time limit and at most `row_cap` rows come
        back (`truncated` says when the cap cut it).
        """

        def work() -> CypherOutput:
            t = twin()
            result = t.cypher(query, params)
            return CypherOutput(
                columns=list(result.columns),
                rows=[list(row) for row in result.rows],
                truncated=result.truncated,
                row_cap=t.settings.query_row_cap,
            )

        return _guarded(ctx, Permission.QUERY, work)

    @_tool(server, title="SPARQL query", annotations=_READ)
    def sparql(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, max_length=20_000, description="SPARQL 1.1")],
        accept: Annotated[
            str | None,
            Field(
                description="result media type, e.g. application/sparql-results+json or "
                "text/turtle; default: JSON results for SELECT/ASK, Turtle for graphs"
            ),
        ] = None,
    ) -> Annotated[CallToolResult, SparqlOutput]:
        """Run a SPARQL 1.1 query (SELECT, ASK, CONSTRUCT, DESCRIBE) on the RDF projection.

        The projection holds the ontology, the plant and every decision's PROV-O record
        (prefixes: tk: <https://w3id.org/twinkg/ontology#>, prov:). Updates, SERVICE and
        LOAD are refused (code `sparql_refused`); results are row-capped (`truncated`) and
        the projection may lag the graph by `lag_pending` changes. Each query has a time and a
        memory limit (`query_timeout`, `sparql_memory_limit`: narrow the query); `sparql_busy`
        and `sparql_user_limit` mean: try again shortly.
        """

        def work() -> SparqlOutput:
            result = twin().sparql(query, accept=accept, caller=principal_of(ctx).subject)
            return SparqlOutput(
                media_type=result.media_type,
                body=result.body.decode("utf-8", errors="replace"),
                truncated=result.truncated,
                lag_pending=result.lag.pending,
                lag_seconds=result.lag.seconds,
            )

        return _guarded(ctx, Permission.QUERY, work)

    @_tool(server, title="Asset context", annotations=_READ)
    def asset_context(
        ctx: Context,
        asset: Annotated[Iri, Field(description="the asset's IRI")],
        events: Annotated[int, Field(ge=0, le=200, description="newest events to include")] = 20,
    ) -> Annotated[CallToolResult, AssetContextOut]:
        """Everything needed to reason about one asset, in one call.

        Returns its tag, classes, criticality (A most critical) and status; the failure
        modes it is susceptible to with their mitigations; its sensors with their latest
        trust scores; its neighbours up- and downstream with open findings; its policies
        (operating envelopes with minimum, maximum and maximum rate of change per quantity
        kind, standby partners, the trust threshold for autonomy) and its newest events.
        Unknown IRI: code `not_found`.
        """

        def work() -> AssetContextOut:
            context = twin().asset_context(asset, events=events)
            return AssetContextOut.model_validate(context, from_attributes=True)

        return _guarded(ctx, Permission.READ, work)

    @_tool(server, title="Decision lineage", annotations=_READ)
    def lineage(
        ctx: Context,
        decision: Annotated[
            str, Field(min_length=1, max_length=2048, description="decision IRI or <run id>/<step>")
        ],
        format: Annotated[
            Literal["turtle", "json-ld"], Field(description="serialisation of the document")
        ] = "turtle",
    ) -> Annotated[CallToolResult, LineageOutput]:
        """The full PROV-O lineage of one agent decision, for audit.

        The decision (activity), the agent with its code and model versions, the action and
        its exact arguments, every piece of evidence used (queries with their rows, telemetry
        windows with content hashes, trust scores, alarms), the safety shapes' verdict, any
        approval and the approver, and the effects. `prov_valid` says whether the record
        conforms to the PROV-O shapes. Unknown decision: code `decision_not_found`.
        """

        def work() -> LineageOutput:
            record = twin().lineage(decision)
            return LineageOutput(
                decision=record.decision,
                format=format,
                triples=record.triples,
                prov_valid=bool(record.prov_valid),
                violations=list(record.violations),
                document=rdf_text.serialize(record.graph, format),
            )

        return _guarded(ctx, Permission.AUDIT, work)

    @_tool(
        server,
        title="Propose an action",
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    def propose_action(
        ctx: Context,
        *,
        kind: Annotated[ActionKind, Field(description="what to do")],
        target: Annotated[Iri, Field(description="IRI of the asset acted on")],
        confidence: Annotated[
            float, Field(ge=0.0, le=1.0, description="how sure you are that it is needed")
        ],
        quantity_kind: Annotated[
            str | None,
            Field(description="setpoint_change: the QUDT quantity kind IRI of the setpoint"),
        ] = None,
        current_setpoint: Annotated[
            float | None, Field(description="setpoint_change: the value now")
        ] = None,
        proposed_setpoint: Annotated[
            float | None, Field(description="setpoint_change: the value wanted")
        ] = None,
        ramp_s: Annotated[
            float | None, Field(description="setpoint_change: seconds to ramp over")
        ] = None,
        rationale: Annotated[
            str, Field(max_length=4000, description="why, in a few sentences")
        ] = "",
        as_of: Annotated[
            str | None,
            Field(description="judge as of 'now' (default), 'data' or an ISO 8601 time"),
        ] = None,
    ) -> Annotated[CallToolResult, ProposalOutput]:
        """Propose an action on an asset; the graph's safety guard decides, not you.

        The action is checked against the safety shapes on a copy of the asset's subgraph:
        a violation (e.g. a setpoint outside the operating envelope, a ramp faster than the
        envelope's maximum rate) refuses it; a warning (low confidence, low data trust, a
        critical asset) leaves it `awaiting_approval` until a person with the right role
        approves, edits or rejects it; otherwise it is applied. Every outcome is recorded as
        a decision with PROV-O provenance. Read the asset's envelopes with asset_context
        first. Returns the run's status, its decisions and, when waiting, the approval
        request.
        """

        def work() -> ProposalOutput:
            t = twin()
            action = t.new_action(
                kind,
                target,
                confidence,
                quantity_kind=quantity_kind,
                current_setpoint=current_setpoint,
                proposed_setpoint=proposed_setpoint,
                ramp_s=ramp_s,
                rationale=rationale or f"proposed over MCP by {principal_of(ctx).name}",
                as_of=as_of,
            )
            result = t.propose(action, as_of=as_of)
            return ProposalOutput(
                run_id=result.run_id,
                status=result.status,
                steps=[
                    StepOutput(decision=s.decision, outcome=s.outcome.value, reason=s.reason)
                    for s in result.steps
                ],
                approval_request=result.request,
            )

        return _guarded(ctx, Permission.PROPOSE, work)


def _register_what_if(server: MCPServer, sim_jobs: Callable[[], SimJobs]) -> None:
    """The what-if simulation tools: start a background run, read it back."""

    @_tool(
        server,
        title="Start a what-if simulation",
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    def start_what_if_run(
        ctx: Context,
        *,
        policy: Annotated[
            Literal["run-to-failure", "preventive", "reactive", "twinkg", "twinkg-llm"],
            Field(description="the operating policy to simulate"),
        ],
        scenario: Annotated[
            str | None,
            Field(max_length=64, description="a shipped scenario's name, e.g. net1-pump-wear"),
        ] = None,
        scenario_toml: Annotated[
            str | None, Field(max_length=65_536, description="or the scenario itself, as TOML")
        ] = None,
        seeds: Annotated[
            str | None,
            Field(
                max_length=64,
                description=f"'1-5', '1,3,7' or '4' (at most {MAX_JOB_SEEDS}); "
                "default: the scenario's own",
            ),
        ] = None,
        horizon_h: Annotated[
            float | None, Field(gt=0, le=24 * 366, description="simulate only this many hours")
        ] = None,
    ) -> Annotated[CallToolResult, WhatIfJobOutput]:
        """Start a what-if run on a simulated plant, in the background; returns its job id.

        The scenario (plant, faults, maintenance, approver) runs under the policy once per
        seed; the twin's policies (`twinkg`) let the agents decide on the simulated plant
        through the same safety guard as on the real one. Every run is recorded in the graph
        as a tk:SimulationRun with its KPIs (availability, unplanned downtime, throughput …)
        and the decisions it informed. Read the job with what_if_run. Bad scenario: code
        `scenario_invalid` (with the line); unknown shipped name: `not_found`.
        """

        def work() -> WhatIfJobOutput:
            jobs = sim_jobs()
            loaded = SimJobs.scenario_from(scenario, scenario_toml)
            picked = tuple(loaded.run.seeds) if seeds is None else parse_seeds(seeds)
            job = jobs.start(
                loaded,
                policy=policy,
                seeds=picked,
                by=principal_of(ctx).subject,
                horizon_h=horizon_h,
            )
            return _job_output(job)

        return _guarded(ctx, Permission.RUN_AGENTS, work)

    @_tool(server, title="What-if simulation status", annotations=_READ)
    def what_if_run(
        ctx: Context,
        job_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the job's id")],
    ) -> Annotated[CallToolResult, WhatIfJobOutput]:
        """A what-if job: its state (queued, running, done, failed), progress, and each
        finished seed's KPIs and run IRI (query it with sparql: ?kpi tk:kpiOf ?run).
        Unknown job: code `not_found` (jobs are kept in the server's memory)."""

        def work() -> WhatIfJobOutput:
            return _job_output(sim_jobs().get(job_id))

        return _guarded(ctx, Permission.READ, work)
