"""Routes: what-if simulation jobs (start, status, list), run in the background as agent jobs are.

A request names a shipped scenario (``scenarios/<name>.toml``) or carries the scenario as TOML
text; the server never reads a path a caller names (an uploaded scenario may run a wntr library
network or TEP only). Starting needs the ``run_agents`` permission, as an agent run does;
reading needs ``read``. Bad input answers 4xx with a stable code: ``scenario_invalid`` (the
TOML, with its line), ``not_found`` (no such shipped scenario or job), ``invalid_input`` (an
unknown policy, bad seeds), ``invalid_request`` (the body's shape).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from twinkg.api.http.auth import requires
from twinkg.api.http.deps import RunId
from twinkg.api.security import Permission, Principal
from twinkg.api.sim_service import MAX_JOB_SEEDS, SimJob, SimJobs, parse_seeds

router = APIRouter(tags=["simulation"])


def sim_jobs_of(request: Request) -> SimJobs:
    """The app's simulation jobs."""
    jobs: SimJobs = request.app.state.sim_jobs
    return jobs


SimJobsDep = Annotated[SimJobs, Depends(sim_jobs_of)]


class SimRunRequest(BaseModel):
    """A what-if run: one scenario (shipped name or TOML text), one policy, some seeds."""

    model_config = ConfigDict(extra="forbid")

    scenario: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        description="a shipped scenario's name, e.g. net1-pump-wear",
    )
    scenario_toml: str | None = Field(
        default=None, max_length=65_536, description="the scenario itself, as TOML text"
    )
    policy: str = Field(max_length=32, description="run-to-failure, preventive, reactive, twinkg")
    seeds: str | list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        default=None,
        description=f"'1-5', '1,3,7', [1, 2] (at most {MAX_JOB_SEEDS}); default: the scenario's",
    )
    horizon_h: float | None = Field(
        default=None, gt=0, le=24 * 366, description="simulate only this many hours"
    )


class SimRunResultOut(BaseModel):
    """One seed's run as recorded (its IRI finds it in the graph and over SPARQL)."""

    run: str
    scenario: str
    scenario_version: str
    scenario_hash: str
    policy: str
    seed: int
    status: str
    reason: str | None
    partial: bool
    kpis: dict[str, float | None]
    units: dict[str, str]
    decisions: list[str]
    simulator: str
    simulator_version: str
    simulated_s: float


class SimJobOut(BaseModel):
    """A simulation job: where it is and the runs it finished."""

    job_id: str
    state: str  # queued | running | done | failed
    scenario: str
    policy: str
    seeds: list[int]
    progress: float
    started_by: str
    created_at: str
    finished_at: str | None
    results: list[SimRunResultOut]
    error: dict[str, Any] | None


class RecordedRunOut(BaseModel):
    """A simulation run recorded in the graph."""

    run: str
    scenario: str | None
    scenario_version: str | None
    scenario_hash: str | None
    policy: str | None
    seed: int | None
    status: str | None
    partial: bool | None
    started_at: str | None


class SimRunsOut(BaseModel):
    """This process's jobs (newest first) and the runs recorded in the graph (newest first)."""

    jobs: list[SimJobOut]
    runs: list[RecordedRunOut]


def job_out(job: SimJob) -> SimJobOut:
    """A job as the API shows it."""
    return SimJobOut(
        job_id=job.job_id,
        state=job.state,
        scenario=job.scenario,
        policy=job.policy,
        seeds=list(job.seeds),
        progress=job.progress,
        started_by=job.started_by,
        created_at=job.created_at,
        finished_at=job.finished_at,
        results=[SimRunResultOut.model_validate(r) for r in job.results],
        error=job.error,
    )


@router.post("/sim/runs", status_code=202)
def start_sim_run(
    jobs: SimJobsDep,
    principal: Annotated[Principal, Depends(requires(Permission.RUN_AGENTS))],
    body: SimRunRequest,
) -> SimJobOut:
    """Start a what-if run in the background: the scenario under the policy, once per seed,
    each run recorded in the graph. Poll ``/sim/runs/{job_id}`` for progress and results."""
    scenario = SimJobs.scenario_from(body.scenario, body.scenario_toml)
    if body.seeds is None:
        seeds: tuple[int, ...] = tuple(scenario.run.seeds)
    elif isinstance(body.seeds, str):
        seeds = parse_seeds(body.seeds)
    else:
        seeds = parse_seeds(",".join(map(str, body.seeds))) if body.seeds else ()
    job = jobs.start(
        scenario, policy=body.policy, seeds=seeds, by=principal.subject, horizon_h=body.horizon_h
    )
    return job_out(job)


@router.get("/sim/runs/{job_id}")
def sim_run_status(
    jobs: SimJobsDep,
    job_id: RunId,
    _: Annotated[Principal, Depends(requires(Permission.READ))],
) -> SimJobOut:
    """A simulation job: state, progress (0..1 over all seeds), each finished seed's KPIs and
    run IRI, and the error when it failed."""
    return job_out(jobs.get(job_id))


@router.get("/sim/runs")
def sim_runs(
    jobs: SimJobsDep,
    _: Annotated[Principal, Depends(requires(Permission.READ))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> SimRunsOut:
    """This process's simulation jobs and the simulation runs recorded in the graph."""
    recorded = jobs.service.runs(limit=limit)
    return SimRunsOut(
        jobs=[job_out(j) for j in jobs.list()],
        runs=[
            RecordedRunOut(
                run=r.run,
                scenario=r.scenario,
                scenario_version=r.scenario_version,
                scenario_hash=r.scenario_hash,
                policy=r.policy,
                seed=r.seed,
                status=r.status,
                partial=r.partial,
                started_at=r.started_at,
            )
            for r in recorded
        ],
    )
