"""Guard: the safety shapes decide whether the proposed action may act, and on what terms.

The guard validates the proposed action, added to a copy of its context subgraph read from the
graph (never to the graph itself), against the safety shapes (``reasoner.safety.assess``):
``sh:Violation`` refuses, ``sh:Warning`` asks a person, ``sh:Info`` is recorded. A confidence
below the trust threshold never acts alone, whatever the shapes say, and where no
``tk:TrustThreshold`` applies to the target nothing acts alone at all: autonomy is something a
plant grants by policy, never a default. When the run resumes with an
approval, the guard runs again on the graph as it is then, and the approval must be bound to
what it approves: the same arguments, the same graph version, an approver holding a role the
requirement names, an expiry still ahead (:func:`approval_problem`).
"""

from __future__ import annotations

from typing import Any

from rdflib import RDF, XSD, Graph, Literal, URIRef
from rdflib.compare import to_canonical_graph
from rdflib.namespace import PROV

from twinkg.agents.context import Gather, RunContext, gathered_rows
from twinkg.agents.record import decision_iri
from twinkg.agents.state import (
    ActionKind,
    AgentState,
    ApprovalInput,
    GuardResult,
    GuardVerdict,
    Outcome,
    ProposedAction,
    parse_time,
)
from twinkg.kg import agent_queries as q
from twinkg.kg.context import (
    CONTEXT_NODES,
    CONTEXT_RELATIONSHIPS,
    context_from_rows,
    context_params,
)
from twinkg.kg.context import graph_version as version_of
from twinkg.kg.provenance import canonical_ntriples
from twinkg.ontology.errors import InvalidInputError
from twinkg.ontology.vocab import TK
from twinkg.reasoner.safety import SafetyAssessment, Verdict, assess

DEFAULT_APPROVER_ROLES = (str(TK.OperatorRole), str(TK.SupervisorRole))


def action_graph(
    action: ProposedAction,
    iri: str,
    approval: ApprovalInput | None = None,
    roles: list[str] | None = None,
) -> Graph:
    """The proposed action (and the approval given for it) as RDF for the safety shapes."""
    g = Graph()
    a = URIRef(iri)
    g.add((a, RDF.type, TK.ProposedAction))
    g.add((a, TK.actionKind, Literal(action.kind.value)))
    g.add((a, TK.targets, URIRef(action.target)))
    g.add((a, TK.proposedAt, Literal(parse_time(action.proposed_at), datatype=XSD.dateTime)))
    g.add((a, TK.confidence, Literal(float(action.confidence), datatype=XSD.double)))
    if action.quantity_kind:
        g.add((a, TK.setpointQuantityKind, URIRef(action.quantity_kind)))
    for prop, value in (
        (TK.currentSetpoint, action.current_setpoint),
        (TK.proposedSetpoint, action.proposed_setpoint),
        (TK.rampDuration, action.ramp_s),
    ):
        if value is not None:
            g.add((a, prop, Literal(float(value), datatype=XSD.double)))
    if action.demanded_by:
        g.add((a, TK.demandedBy, URIRef(action.demanded_by)))
    if approval is not None and approval.outcome in ("approved", "edited"):
        ok = URIRef(iri + "/approval")
        person = URIRef(approval.approver)
        g.add((ok, RDF.type, TK.Approval))
        g.add((ok, TK.approves, a))
        g.add((ok, TK.outcome, Literal("approved")))
        g.add((ok, TK.expiresAt, Literal(parse_time(approval.expires_at), datatype=XSD.dateTime)))
        g.add((ok, PROV.wasAssociatedWith, person))
        g.add((person, RDF.type, TK.Person))
        for role in roles or []:
            g.add((person, TK.hasRole, URIRef(role)))
    return g


def _results(assessment: SafetyAssessment) -> list[GuardResult]:
    return [
        GuardResult(
            severity=v.severity.name.title(),
            shape=None if v.source_shape is None else str(v.source_shape),
            message=v.message or "",
            value=None if v.value is None else str(v.value),
        )
        for v in (*assessment.blocking, *assessment.approvals_needed, *assessment.recorded)
    ]


def _approver_roles(assessment: SafetyAssessment, context: Graph) -> list[str]:
    """Roles that may approve: those the approval requirements name, else operator/supervisor."""
    required: set[str] = set()
    for requirement in _requirements(assessment, context):
        required.update(str(r) for r in context.objects(requirement, TK.requiredRole))
    return sorted(required) if required else list(DEFAULT_APPROVER_ROLES)


def _requirements(assessment: SafetyAssessment, context: Graph) -> list[URIRef]:
    """The approval requirements behind the warnings (others ask for any approver)."""
    values = [URIRef(v.value) for v in assessment.approvals_needed if v.value is not None]
    return [v for v in values if (v, RDF.type, TK.ApprovalRequirement) in context]


def _unmet_requirement(assessment: SafetyAssessment, context: Graph) -> bool:
    return bool(_requirements(assessment, context))


def guard(state: AgentState, ctx: RunContext) -> dict[str, Any]:
    """Guard: judge the action on a copy of its context; on resume, check the approval too."""
    gather = Gather(ctx, state)
    action = state.action
    if action is None:
        verdict = GuardVerdict(
            verdict="block",
            graph_version="",
            results=[],
            report="",
            conforms=False,
            note="the planner proposed no action",
        )
        update = gather.update(state)
        update.update(guard=verdict, outcome=Outcome.REFUSED, reason=verdict.note)
        return update
    nodes = gather.rows(CONTEXT_NODES, uri=action.target)
    if not nodes:
        raise InvalidInputError(f"the action's target {action.target} is not in the graph")
    rels = gather.rows(CONTEXT_RELATIONSHIPS, **context_params(nodes))
    context = context_from_rows(nodes, rels)
    version = version_of(context)
    approval = state.approval
    person = gathered_rows(state, q.PERSON)
    roles = person[0]["roles"] if approval and person else []
    iri = decision_iri(state) + "/action"
    assessment = assess(action_graph(action, iri, approval, roles), context)
    verdict = GuardVerdict(
        verdict=assessment.verdict.value,
        graph_version=version,
        results=_results(assessment),
        report=canonical_ntriples(to_canonical_graph(assessment.outcome.report)),
        conforms=assessment.outcome.conforms,
        approval_roles=_approver_roles(assessment, context),
    )
    outcome, reason = _judge(state, ctx, assessment, verdict, context, roles)
    update = gather.update(state)
    first = state.first_guard
    if outcome is Outcome.AWAITING_APPROVAL:
        first = verdict
    update.update(guard=verdict, first_guard=first, outcome=outcome, reason=reason)
    return update


def _judge(  # noqa: PLR0911, PLR0917 - one outcome per rule, private
    state: AgentState,
    ctx: RunContext,
    assessment: SafetyAssessment,
    verdict: GuardVerdict,
    context: Graph,
    roles: list[str],
) -> tuple[Outcome, str]:
    """The outcome the guard's verdict and the approval (if any) lead to, and why."""
    action = state.action
    assert action is not None
    if assessment.verdict is Verdict.BLOCK:
        return Outcome.REFUSED, "; ".join(v.message or "" for v in assessment.blocking)
    approval = state.approval
    threshold = _threshold(context, action.target)
    if approval is None:
        if assessment.verdict is Verdict.NEEDS_APPROVAL:
            return Outcome.AWAITING_APPROVAL, "; ".join(
                v.message or "" for v in assessment.approvals_needed
            )
        if action.kind is ActionKind.GATHER_DATA:  # changes nothing: asks no one (decision 0050)
            return Outcome.APPLIED, "allowed by the safety shapes: gathering data changes nothing"
        if threshold is None:  # no policy grants autonomy here: a person decides
            return Outcome.AWAITING_APPROVAL, "no trust threshold applies: a person decides"
        if not action.confidence >= threshold:  # belt and braces: the shapes say so too
            return Outcome.AWAITING_APPROVAL, f"confidence {action.confidence} below {threshold}"
        return Outcome.APPLIED, "allowed by the safety shapes"
    if approval.outcome == "rejected":
        return Outcome.REJECTED, f"rejected by {approval.approver}: {approval.comment}".rstrip(": ")
    problem = approval_problem(state, approval, verdict.graph_version, roles, ctx)
    if problem:
        return Outcome.REFUSED, problem
    if _unmet_requirement(assessment, context):
        return Outcome.REFUSED, "the approver lacks the role the approval requirement names"
    return Outcome.APPLIED, f"approved by {approval.approver}"


def _threshold(context: Graph, target: str) -> float | None:
    del target  # every threshold in the context applies to the target or an asset above it
    values = [
        float(t.toPython())
        for policy in context.subjects(RDF.type, TK.TrustThreshold)
        for t in context.objects(policy, TK.threshold)
        if isinstance(t, Literal)
    ]
    return max(values) if values else None


def approval_problem(  # noqa: PLR0911 - one check per binding
    state: AgentState,
    approval: ApprovalInput,
    current_version: str,
    roles: list[str],
    ctx: RunContext,
) -> str | None:
    """Why ``approval`` cannot authorise the run's action now (None: it can)."""
    approved = state.original_action or state.action
    first = state.first_guard
    if approved is None or first is None:
        return "approval_mismatch: there is no action awaiting approval"
    if approval.action_hash != approved.arguments_hash():
        return "approval_mismatch: the approval is for other arguments than the proposed action"
    if approval.graph_version != first.graph_version or current_version != first.graph_version:
        return "approval_stale: the graph changed since the action was judged"
    if parse_time(approval.expires_at) <= ctx.clock():
        return f"approval_expired: the approval expired at {approval.expires_at}"
    if approval.role not in roles:
        return f"approver_role: {approval.approver} does not hold {approval.role}"
    if approval.role not in first.approval_roles:
        return f"approver_role: {approval.role} may not approve this action"
    return None
