"""``twinkg agents …``: run the agents, put proposals through the guard, answer approvals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from twinkg.agents.state import ActionKind
from twinkg.api.cli.common import errors_as_exit_codes, load_settings, open_store, out
from twinkg.api.results import PendingApproval
from twinkg.api.settings import Settings
from twinkg.api.twin import Twin, agents_twin
from twinkg.ontology.errors import InvalidInputError

if TYPE_CHECKING:  # the agents pull in LangGraph: imported where a command needs them
    from twinkg.agents.runner import RunResult

app = typer.Typer(help="Run the agents: observe, diagnose, plan, guard, act, record.")


@contextmanager
def _twin(settings: Settings) -> Iterator[Twin]:
    with open_store(settings) as store, agents_twin(settings, store) as twin:
        yield twin


def _short(iri: str | None) -> str:
    return "" if iri is None else iri.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def _print_run(result: RunResult) -> None:
    state = result.state
    if result.status == "nothing_to_do":
        out.print("agents: nothing to decide on")
        return
    action = state.action
    what = "no action" if action is None else f"{action.kind.value} on {_short(action.target)}"
    if action is not None and action.proposed_setpoint is not None:
        what += f" ({action.current_setpoint:g} → {action.proposed_setpoint:g}"
        what += f" over {action.ramp_s:g} s)"
    top = state.hypotheses[0] if state.hypotheses else None
    why = f"; top hypothesis {_short(top.mode)} {top.score:.2f}" if top else ""
    for step in result.steps:
        out.print(f"{step.decision}  {step.outcome.value}: {what}{why}")
        out.print(f"  reason: {step.reason}", markup=False)
    if result.request is not None:
        roles = ", ".join(_short(r) for r in result.request["roles"])
        decision = result.request["decision"]
        out.print(
            f"  waiting for approval by: {roles}  (twinkg agents approve {decision} --as PERSON)"
        )


@app.command("run")
@errors_as_exit_codes
def run_command(
    asset: Annotated[str | None, typer.Option(help="only this asset (IRI) and its parts")] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="judge data as of: 'now' (default), 'data' (newest reading), or a time"),
    ] = None,
    max_runs: Annotated[int, typer.Option(min=1, help="at most this many decisions")] = 20,
) -> None:
    """Resume runs a crash cut off, then decide on every open finding (one run per case)."""
    with _twin(load_settings()) as twin:
        results = twin.run_agents(scope=asset, as_of=as_of, max_runs=max_runs)
        for result in results:
            _print_run(result)
        if not results:
            out.print("agents: nothing to decide on")


@app.command("propose")
@errors_as_exit_codes
def propose_command(  # noqa: PLR0917 - one parameter per option
    asset: Annotated[str, typer.Option(help="the target asset's IRI")],
    kind: Annotated[ActionKind, typer.Option(help="the action kind")],
    quantity_kind: Annotated[str | None, typer.Option(help="setpoint's quantity kind IRI")] = None,
    current: Annotated[float | None, typer.Option(help="current setpoint")] = None,
    setpoint: Annotated[float | None, typer.Option(help="proposed setpoint")] = None,
    ramp_s: Annotated[float | None, typer.Option(help="ramp duration in seconds")] = None,
    confidence: Annotated[float, typer.Option(min=0.0, max=1.0, help="your confidence")] = 1.0,
    as_of: Annotated[str | None, typer.Option(help="as for `agents run`")] = None,
) -> None:
    """Put an external proposal through the same guard, approval and record."""
    with _twin(load_settings()) as twin:
        action = twin.new_action(
            kind,
            asset,
            confidence,
            quantity_kind=quantity_kind,
            current_setpoint=current,
            proposed_setpoint=setpoint,
            ramp_s=ramp_s,
            rationale="proposed from the command line",
            as_of=as_of,
        )
        _print_run(twin.propose(action, as_of=as_of))


@app.command("list")
@errors_as_exit_codes
def list_command(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="how many, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The latest decisions: outcome, action and target."""
    settings = load_settings()
    with open_store(settings) as store:
        rows = Twin(settings, store).decisions(limit=limit)
    if as_json:
        out.print_json(json.dumps([asdict(row) for row in rows]))
        return
    for row in rows:
        action = f"{row.kind} on {row.target}" if row.kind else "no new action"
        out.print(f"#{row.chain_index}  {row.uri}  {row.outcome}: {action}", markup=False)
    if not rows:
        out.print("no decision recorded yet")


@app.command("pending")
@errors_as_exit_codes
def pending_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The approval requests waiting for a person."""
    with _twin(load_settings()) as twin:
        requests = twin.pending()
    if as_json:
        out.print_json(json.dumps([_request_json(r) for r in requests]))
        return
    for r in requests:
        a = r.action
        out.print(
            f"{r.decision}  {a.kind.value} on {_short(a.target)}  roles: "
            f"{', '.join(_short(x) for x in r.roles)}"
            + (f"  expires {r.expires_at}" if r.expires_at else "")
        )
        for reason in r.reasons:
            out.print(f"  {reason}", markup=False)
    if not requests:
        out.print("no approval is waiting")


def _request_json(request: PendingApproval) -> dict[str, Any]:
    """A waiting approval request as ``pending --json`` prints it (the action as JSON)."""
    return {
        "decision": request.decision,
        "run_id": request.run_id,
        "action": request.action.model_dump(mode="json"),
        "action_hash": request.action_hash,
        "graph_version": request.graph_version,
        "roles": list(request.roles),
        "reasons": list(request.reasons),
        "requested_at": request.requested_at,
        "expires_at": request.expires_at,
        "target_criticality": request.target_criticality,
        "evidence": [
            {"iri": e.iri, "kind": e.kind, "label": e.label, "facts": e.facts, "about": e.about}
            for e in request.evidence
        ],
    }


def _answer(  # noqa: PLR0917 - private, called twice
    decision: str,
    outcome: str,
    person: str,
    role: str | None,
    ttl_s: float | None,
    edits: list[str],
    comment: str,
) -> None:
    parsed: dict[str, float] = {}
    for item in edits:
        key, sep, value = item.partition("=")
        try:
            parsed[key.strip()] = float(value)
        except ValueError:
            raise InvalidInputError(f"--set wants NAME=NUMBER, not {item!r}") from None
        if not sep:
            raise InvalidInputError(f"--set wants NAME=NUMBER, not {item!r}")
    with _twin(load_settings()) as twin:
        result = twin.answer(
            decision,
            outcome=outcome,
            person=person,
            role=role,
            ttl_s=ttl_s,
            edits=parsed,
            comment=comment,
        )
        _print_run(result)


@app.command("approve")
@errors_as_exit_codes
def approve_command(  # noqa: PLR0917 - one parameter per option
    decision: Annotated[str, typer.Argument(help="the decision waiting (IRI or run/step)")],
    person: Annotated[str, typer.Option("--as", help="your person IRI in the graph")],
    role: Annotated[str | None, typer.Option(help="the role you approve in")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="edit: proposed_setpoint=N or ramp_s=N")
    ] = None,
    expires_in_s: Annotated[float | None, typer.Option(help="validity (default setting)")] = None,
    comment: Annotated[str, typer.Option()] = "",
) -> None:
    """Approve (or edit and approve) an action; the guard judges it again before it acts."""
    _answer(decision, "approved", person, role, expires_in_s, set_ or [], comment)


@app.command("reject")
@errors_as_exit_codes
def reject_command(
    decision: Annotated[str, typer.Argument(help="the decision waiting (IRI or run/step)")],
    person: Annotated[str, typer.Option("--as", help="your person IRI in the graph")],
    role: Annotated[str | None, typer.Option(help="the role you reject in")] = None,
    comment: Annotated[str, typer.Option()] = "",
) -> None:
    """Reject an action; the rejection is recorded."""
    _answer(decision, "rejected", person, role, 60.0, [], comment)
