"""Routes: decisions, their lineage (JSON, Turtle, JSON-LD), replay, chain verification and
the audit log: what a compliance team works with."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from twinkg.api.http.auth import requires
from twinkg.api.http.deps import RunId, Step, TwinDep
from twinkg.api.http.models import (
    AuditEntryOut,
    AuditVerifyOut,
    DecisionOut,
    DecisionRowOut,
    ReplayOut,
    VerifyOut,
)
from twinkg.api.security import Permission, Principal
from twinkg.kg import rdf_text
from twinkg.ontology.errors import NotAcceptableError

router = APIRouter(tags=["decisions"])

_LINEAGE_TYPES = ("application/json", "text/turtle", "application/ld+json")


def _negotiate(accept: str | None, offered: tuple[str, ...]) -> str:
    """The first offered type the ``Accept`` header allows (by q-value, then its order)."""
    if not accept or not accept.strip():
        return offered[0]
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, kind.lower()))
    for neg_q, _, kind in sorted(ranked):
        if neg_q >= 0:
            continue
        for media in offered:
            top, _, _sub = media.partition("/")
            if kind in (media, "*/*", f"{top}/*"):
                return media
    raise NotAcceptableError(f"this resource is offered as {', '.join(offered)}")


@router.get("/decisions")
def decisions(
    twin: TwinDep,
    _: Annotated[Principal, Depends(requires(Permission.READ))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[DecisionRowOut]:
    """The latest decisions, newest first, with the action each proposed."""
    return [
        DecisionRowOut.model_validate(row, from_attributes=True)
        for row in twin.decisions(limit=limit)
    ]


@router.get("/decisions/{run_id}/{step}")
def decision(
    twin: TwinDep,
    run_id: RunId,
    step: Step,
    _: Annotated[Principal, Depends(requires(Permission.READ))],
) -> DecisionOut:
    """One decision's headline: outcome, reason, times, chain position, what followed it."""
    return DecisionOut.model_validate(twin.decision(f"{run_id}/{step}"), from_attributes=True)


@router.get(
    "/decisions/{run_id}/{step}/lineage",
    response_class=Response,
    responses={
        200: {
            "description": "the lineage",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/turtle": {"schema": {"type": "string"}},
                "application/ld+json": {"schema": {"type": "object"}},
            },
        }
    },
)
def lineage(
    twin: TwinDep,
    request: Request,
    run_id: RunId,
    step: Step,
    _: Annotated[Principal, Depends(requires(Permission.AUDIT))],
) -> Response:
    """The chain from the action back to raw data, shapes, policies and people, as PROV-O:
    Turtle, JSON-LD, or JSON (the headline, whether it is valid PROV-O, and the JSON-LD)."""
    media = _negotiate(request.headers.get("accept"), _LINEAGE_TYPES)
    ref = f"{run_id}/{step}"
    headline = twin.decision(ref)
    record = twin.lineage(ref, check=media == "application/json")  # only JSON says prov_valid
    if media == "text/turtle":
        return Response(rdf_text.serialize(record.graph, "turtle"), media_type=media)
    jsonld = record.graph.serialize(format="json-ld")
    if media == "application/ld+json":
        return Response(jsonld, media_type=media)
    body = {
        "decision": record.decision,
        "summary": asdict(headline),
        "prov_valid": record.prov_valid,
        "prov_violations": list(record.violations),
        "triples": record.triples,
        "graph": json.loads(jsonld),
    }
    return Response(json.dumps(body), media_type="application/json")


@router.post("/decisions/{run_id}/{step}/replay")
def replay(
    twin: TwinDep,
    run_id: RunId,
    step: Step,
    _: Annotated[Principal, Depends(requires(Permission.AUDIT))],
) -> ReplayOut:
    """Re-run the decision from its recorded inputs; ``same`` says whether it decides alike,
    ``differences`` lists every field that does not. Nothing is written."""
    report = twin.replay(f"{run_id}/{step}")
    return ReplayOut(
        decision=report.decision,
        same=report.same,
        outcome=report.outcome,
        steps=report.steps,
        differences=[
            {"field": d.field, "recorded": d.recorded, "replayed": d.replayed}
            for d in report.differences
        ],
    )


@router.get("/provenance/verify")
def verify(
    twin: TwinDep,
    _: Annotated[Principal, Depends(requires(Permission.AUDIT))],
    expect_head: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    since: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
) -> VerifyOut:
    """Recompute every decision record's hash; ``ok`` is false when any record was altered,
    deleted or unchained (or the head is not ``expect_head``). ``since``, a head hash an
    earlier verify printed and kept elsewhere, checks only that record and those after it."""
    report = twin.verify(expect_head=expect_head, since=since)
    return VerifyOut(
        ok=report.ok,
        records=report.records,
        head_hash=report.head_hash,
        checked=report.checked,
        since_index=report.since_index,
        problems=[
            {
                "chain_index": p.chain_index,
                "decision": p.decision,
                "kind": p.kind,
                "detail": p.detail,
            }
            for p in report.problems
        ],
    )


@router.get("/audit")
def audit(
    twin: TwinDep,
    _: Annotated[Principal, Depends(requires(Permission.AUDIT))],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AuditEntryOut]:
    """The newest entries of the audit log of state-changing requests, newest last."""
    return [AuditEntryOut.model_validate(e.document()) for e in twin.audit_entries(limit=limit)]


@router.get("/audit/verify")
def audit_verify(
    twin: TwinDep,
    _: Annotated[Principal, Depends(requires(Permission.AUDIT))],
    expect_head: Annotated[str | None, Query(pattern=r"^[0-9a-f]{64}$")] = None,
    expect_count: Annotated[int | None, Query(ge=0)] = None,
) -> AuditVerifyOut:
    """Recompute the audit log's hash chain (as ``twinkg audit verify`` does); ``ok`` is false
    at the first entry that does not fit, or when the log no longer holds ``expect_head`` or
    ``expect_count`` entries (a head and a count kept elsewhere: its tail was cut off)."""
    report = twin.verify_audit(expect_head=expect_head, expect_count=expect_count)
    return AuditVerifyOut.model_validate(report, from_attributes=True)
