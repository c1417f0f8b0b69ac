"""Routes: agent jobs (start, status, live stream of steps), proposals, approvals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from twinkg.api.errors import PermissionDeniedError
from twinkg.api.http.auth import requires
from twinkg.api.http.deps import JobsDep, RunId, Step, TwinDep
from twinkg.api.http.errors import STREAM_ERRORS
from twinkg.api.http.jobs import Job, run_summary
from twinkg.api.http.models import (
    ApprovalRequest,
    ApprovalRequestOut,
    EditRequest,
    JobOut,
    ProposalRequest,
    RejectionRequest,
    RunOut,
    RunRequest,
)
from twinkg.api.security import Permission, Principal, may_approve
from twinkg.api.twin import Twin
from twinkg.ontology.errors import InvalidInputError

router = APIRouter(tags=["agents"])
_POLL_S = 0.2


def _job_out(job: Job) -> JobOut:
    return JobOut(
        job_id=job.job_id,
        state=job.state.value,
        scope=job.scope,
        created_at=job.created_at,
        finished_at=job.finished_at,
        runs=[RunOut.model_validate(r) for r in job.runs],
        error=job.error,
        events_url=f"/agents/jobs/{job.job_id}/events",
    )


@router.post("/agents/jobs", status_code=202)
def start_job(
    jobs: JobsDep,
    principal: Annotated[Principal, Depends(requires(Permission.RUN_AGENTS))],
    body: RunRequest | None = None,
) -> JobOut:
    """Start the agents in the background: they resume crashed runs, then decide on every
    open finding. Follow the job at its ``events_url`` (server-sent events) or poll it."""
    req = body or RunRequest()
    job = jobs.start(scope=req.scope, as_of=req.as_of, max_runs=req.max_runs, by=principal.subject)
    return _job_out(job)


@router.get("/agents/jobs/{job_id}")
def job_status(
    jobs: JobsDep,
    job_id: RunId,
    _: Annotated[Principal, Depends(requires(Permission.READ))],
) -> JobOut:
    """Where a job is, and the runs it finished."""
    return _job_out(jobs.get(job_id))


def known_job(jobs: JobsDep, job_id: RunId) -> str:
    """The job id, or 404 (as a dependency: a stream's body runs after its headers are sent)."""
    return jobs.get(job_id).job_id


def last_event_id(
    last_event: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=20,
            description="resume after this event (what an EventSource sends on reconnecting)",
        ),
    ] = None,
) -> int:
    """The event to resume after (0: from the first); 400 when it is not an event number."""
    text = (last_event or "").strip()
    if not text:
        return 0
    if not text.isascii() or not text.isdigit():
        raise InvalidInputError(f"Last-Event-ID must be an event number, not {text!r}")
    return int(text)


@router.get(
    "/agents/jobs/{job_id}/events", response_class=EventSourceResponse, responses=STREAM_ERRORS
)
async def job_events(
    _: Annotated[Principal, Depends(requires(Permission.READ))],
    jobs: JobsDep,
    job_id: Annotated[str, Depends(known_job)],
    last: Annotated[int, Depends(last_event_id)],
    request: Request,
) -> AsyncIterator[ServerSentEvent]:
    """The job's steps as server-sent events, from the first (or after ``Last-Event-ID``):
    ``node`` (a node of a run finished), ``run`` (a run ended, with its decisions), ``end``
    (the job ended)."""
    while True:
        events, finished = jobs.events_after(job_id, last)
        for event in events:
            last = event.seq
            yield ServerSentEvent(data=event.data, event=event.kind, id=str(event.seq))
        if finished and not events:
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(_POLL_S)


@router.post("/actions")
def propose(
    twin: TwinDep,
    body: ProposalRequest,
    principal: Annotated[Principal, Depends(requires(Permission.PROPOSE))],
) -> RunOut:
    """Propose an action: the same guard judges it as the agents' own, so it is applied,
    refused, or left waiting for a person; the decision is recorded either way."""
    action = twin.new_action(
        body.kind,
        body.target,
        body.confidence,
        quantity_kind=body.quantity_kind,
        current_setpoint=body.current_setpoint,
        proposed_setpoint=body.proposed_setpoint,
        ramp_s=body.ramp_s,
        rationale=body.rationale or f"proposed over the API by {principal.name}",
        as_of=body.as_of,
    )
    return RunOut.model_validate(run_summary(twin.propose(action, as_of=body.as_of)))


@router.get("/approvals")
def pending(
    twin: TwinDep, _: Annotated[Principal, Depends(requires(Permission.READ))]
) -> list[ApprovalRequestOut]:
    """The approval requests waiting for a person, oldest first."""
    return [
        ApprovalRequestOut.model_validate(request, from_attributes=True)
        for request in twin.pending()
    ]


def _person(principal: Principal) -> str:
    if principal.person is None:
        raise PermissionDeniedError(
            f"{principal.name}'s credentials name no person in the graph; approvals need one"
        )
    return principal.person


@router.post("/decisions/{run_id}/{step}/approve")
def approve(
    twin: TwinDep,
    run_id: RunId,
    step: Step,
    principal: Annotated[Principal, Depends(requires(Permission.APPROVE))],
    body: ApprovalRequest | None = None,
) -> RunOut:
    """Approve (with ``edits``: edit and approve) the waiting action. The approval is bound to
    the action's arguments and the graph version, expires, and the guard judges again."""
    return _approve(twin, f"{run_id}/{step}", principal, body or ApprovalRequest())


@router.post("/decisions/{run_id}/{step}/edit")
def edit(
    twin: TwinDep,
    run_id: RunId,
    step: Step,
    principal: Annotated[Principal, Depends(requires(Permission.APPROVE))],
    body: EditRequest,
) -> RunOut:
    """Edit the waiting action's arguments (``proposed_setpoint``, ``ramp_s``) and approve the
    edited action: recorded as an edit, and the guard judges the action as edited."""
    return _approve(twin, f"{run_id}/{step}", principal, body)


def _approve(twin: Twin, decision: str, principal: Principal, req: ApprovalRequest) -> RunOut:
    result = twin.answer(
        decision,
        outcome="approved",
        person=_person(principal),
        role=req.role,
        ttl_s=req.expires_in_s,
        edits={str(k): v for k, v in req.edits.items()},
        comment=req.comment,
        may_approve=lambda level: may_approve(principal, level),
    )
    return RunOut.model_validate(run_summary(result))


@router.post("/decisions/{run_id}/{step}/reject")
def reject(
    twin: TwinDep,
    run_id: RunId,
    step: Step,
    principal: Annotated[Principal, Depends(requires(Permission.APPROVE))],
    body: RejectionRequest | None = None,
) -> RunOut:
    """Reject the waiting action; the rejection is recorded."""
    req = body or RejectionRequest()
    result = twin.answer(
        f"{run_id}/{step}",
        outcome="rejected",
        person=_person(principal),
        role=req.role,
        ttl_s=60.0,
        comment=req.comment,
    )
    return RunOut.model_validate(run_summary(result))
