"""Act: what applying the proposed action changes, as data.

:func:`effect_of` turns the run's action into an :class:`agents.state.Effect`: a controlled stop
takes the target from its status to stopped, a restart from stopped to running, a switch to
standby puts it in standby and names the standby partner that takes over, a setpoint change holds
the new and the previous value,
any other kind just its target; gathering data changes nothing. The node only computes the
effect; ``agents.record`` applies it with the decision's provenance, in one transaction.
"""

from __future__ import annotations

from typing import Any

from twinkg.agents.context import RunContext, gathered_rows
from twinkg.agents.state import ActionKind, AgentState, Effect
from twinkg.kg.context import CONTEXT_NODES, CONTEXT_RELATIONSHIPS
from twinkg.ontology.vocab import PropKey, RelType

_PAIRED = (RelType.STANDBY_FOR.value, RelType.HAS_STANDBY.value)


def effect_of(state: AgentState) -> Effect | None:
    """What applying the run's action changes (None for gathering data)."""
    action = state.action
    assert action is not None
    if action.kind is ActionKind.GATHER_DATA:
        return None
    status = _status(state)
    if action.kind is ActionKind.CONTROLLED_STOP:
        return Effect(
            kind=action.kind, asset=action.target, from_status=status, to_status="stopped"
        )
    if action.kind is ActionKind.RESTART:
        return Effect(
            kind=action.kind, asset=action.target, from_status=status, to_status="running"
        )
    if action.kind is ActionKind.SWITCH_TO_STANDBY:
        partner = _partner(state)
        return Effect(
            kind=action.kind,
            asset=action.target,
            from_status=status,
            to_status="standby",
            partner=partner,
        )
    if action.kind is ActionKind.SETPOINT_CHANGE:
        return Effect(
            kind=action.kind,
            asset=action.target,
            value=action.proposed_setpoint,
            previous_value=action.current_setpoint,
        )
    return Effect(kind=action.kind, asset=action.target)


def _context_node(state: AgentState, uri: str) -> dict[str, Any] | None:
    for evidence in reversed(state.evidence):
        if evidence.query == CONTEXT_NODES.name:
            return next((r for r in evidence.rows if r["uri"] == uri), None)
    return None


def _status(state: AgentState) -> str | None:
    assert state.action is not None
    row = _context_node(state, state.action.target)
    return None if row is None else row["props"].get(PropKey.OPERATIONAL_STATUS.value)


def _partner(state: AgentState) -> str | None:
    """The target's standby: a context node in the standby role tied to the target itself (the
    context also holds a shared standby's other duty pumps, decision 0086)."""
    assert state.action is not None
    target = state.action.target
    tied = {
        row["end"] if row["start"] == target else row["start"]
        for row in gathered_rows(state, CONTEXT_RELATIONSHIPS)
        if row["type"] in _PAIRED and target in (row["start"], row["end"])
    }
    for evidence in reversed(state.evidence):
        if evidence.query == CONTEXT_NODES.name:
            standbys = [
                r["uri"]
                for r in evidence.rows
                if r["uri"] in tied and r["props"].get(PropKey.DUTY_ROLE.value) == "standby"
            ]
            return standbys[0] if standbys else None
    return None


def act(state: AgentState, ctx: RunContext) -> dict[str, Any]:
    """Act: compute the effect; :func:`agents.record.record` applies it, in the same transaction."""
    del ctx
    return {"effect": effect_of(state)}
