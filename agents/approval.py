"""Approval: the run waits for a person, who approves, edits or rejects the proposed action.

The node interrupts the run (a LangGraph interrupt) with :func:`approval_request`: the action,
its arguments' hash and the graph version it was judged on, the roles that may approve and the
guard's reasons. The answer is recorded with the approver's roles read from the graph; an edit
may change only the setpoint and the ramp. Whatever the answer, the graph routes back to the
guard, which checks the approval against what it approves (``agents.guard.approval_problem``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from langgraph.types import interrupt

from twinkg.agents.context import Gather, RunContext
from twinkg.agents.state import AgentState, ApprovalInput
from twinkg.kg import agent_queries as q
from twinkg.ontology.errors import InvalidInputError
from twinkg.ontology.namespaces import DECISION_BASE


def approval_request(state: AgentState) -> dict[str, Any]:
    """What a person is asked to approve, with what the approval must be bound to."""
    assert state.action is not None and state.guard is not None
    return {
        "decision": f"{DECISION_BASE}{state.run_id}/{state.step - 1}",
        "run_id": state.run_id,
        "action": state.action.model_dump(mode="json"),
        "action_hash": state.action.arguments_hash(),
        "graph_version": state.guard.graph_version,
        "roles": state.guard.approval_roles,
        "reasons": [r.message for r in state.guard.results if r.severity == "Warning"],
    }


def approval(state: AgentState, ctx: RunContext) -> dict[str, Any]:
    """Approval: wait for a person (a LangGraph interrupt); then re-guard what they answered."""
    answer = ApprovalInput.model_validate(interrupt(approval_request(state)))
    gather = Gather(ctx, state)
    gather.rows(q.PERSON, person=answer.approver)
    update = gather.update(state)
    # The next decision starts when the person answers.
    update.update(approval=answer, outcome=None, reason="", started_at=ctx.clock().isoformat())
    if answer.outcome == "edited" and state.action is not None:
        edited = state.action.model_copy(update=check_edits(answer.edits))
        update.update(action=edited, original_action=state.action)
    return update


EDITABLE: Final = ("proposed_setpoint", "ramp_s")
"""The arguments of an action a person may change when approving it."""


def check_edits(edits: Mapping[str, float]) -> dict[str, float]:
    """``edits`` when each names an :data:`EDITABLE` argument, else :class:`InvalidInputError`
    naming the others (every way in checks edits here, before the run resumes)."""
    unknown = sorted(set(edits) - set(EDITABLE))
    if unknown:
        raise InvalidInputError(
            f"only {' and '.join(EDITABLE)} can be edited, not {', '.join(unknown)}"
        )
    return dict(edits)
