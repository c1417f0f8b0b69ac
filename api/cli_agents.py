"""``twinkg agents …``: run the agents, put proposals through the guard, answer approvals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agents.state import ActionKind, ApprovalInput, ProposedAction, parse_time
from api.cli_common import errors_as_exit_codes, load_settings, open_store, out
from api.settings import Settings, checkpoint_target, telemetry_dir
from kg.agent_queries import LATEST_OBSERVATION, RECENT_DECISIONS
from kg.store import GraphStore, QueryResult
from kg.telemetry_log import TelemetryLog
from ontology.errors import ConfigError, InvalidInputError
from ontology.vocab import TK

if TYPE_CHECKING:  # the agents pull in LangGraph: imported where a command needs them
    from agents.planning import Planner
    from agents.runner import Agents, RunResult

app = typer.Typer(help="Run the agents: observe, diagnose, plan, guard, act, record.")


def _planner(settings: Settings, store: GraphStore) -> Planner:
    """The rule planner, or the configured chat model behind read-only Cypher."""
    from agents.llm_planner import LlmPlanner, chat_model_from_settings  # noqa: PLC0415
    from agents.planning import RulePlanner  # noqa: PLC0415

    if not settings.llm_model and not settings.llm_base_url:
        return RulePlanner()
    if not (settings.llm_model and settings.llm_base_url):
        raise ConfigError("TWINKG_LLM_BASE_URL and TWINKG_LLM_MODEL go together")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    model = chat_model_from_settings(settings.llm_base_url, settings.llm_model, key)

    def cypher(query: str, params: dict[str, Any]) -> QueryResult:
        return store.read_only(query, params, timeout_s=settings.query_timeout_s, row_cap=50)

    return LlmPlanner(model, cypher=cypher, model_name=settings.llm_model)


@contextmanager
def _agents(settings: Settings) -> Iterator[Agents]:
    from agents.checkpoint import open_checkpointer  # noqa: PLC0415
    from agents.context import AgentSettings  # noqa: PLC0415
    from agents.runner import Agents  # noqa: PLC0415

    with open_store(settings) as store, open_checkpointer(checkpoint_target(settings)) as saver:
        yield Agents(
            store=store,
            log=TelemetryLog(telemetry_dir(settings)),
            checkpointer=saver,
            planner=_planner(settings, store),
            settings=AgentSettings(
                stale_after_s=settings.agents_stale_after_s,
                lookback_s=settings.agents_lookback_s,
                baseline_s=settings.agents_baseline_s,
            ),
        )


def _as_of(store: GraphStore, value: str | None) -> datetime | None:
    if value is None or value == "now":
        return None
    if value == "data":
        rows = store.read(LATEST_OBSERVATION)
        if not rows or rows[0]["latest"] is None:
            raise InvalidInputError("--as-of data: the graph holds no telemetry yet")
        return parse_time(str(rows[0]["latest"])) + timedelta(seconds=1)
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidInputError(
            f"--as-of must be 'now', 'data' or an ISO 8601 time with a zone, not {value!r}"
        ) from None


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
    settings = load_settings()
    with _agents(settings) as agents:
        results = agents.run_all(scope=asset, as_of=_as_of(agents.store, as_of), max_runs=max_runs)
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
    settings = load_settings()
    with _agents(settings) as agents:
        moment = _as_of(agents.store, as_of) or datetime.now(UTC)
        action = ProposedAction(
            kind=kind,
            target=asset,
            confidence=confidence,
            proposed_at=moment.isoformat(),
            quantity_kind=quantity_kind,
            current_setpoint=current,
            proposed_setpoint=setpoint,
            ramp_s=ramp_s,
            rationale="proposed from the command line",
        )
        _print_run(agents.run(scope=asset, as_of=moment, action=action))


@app.command("list")
@errors_as_exit_codes
def list_command(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="how many, newest first")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The latest decisions: outcome, action and target."""
    settings = load_settings()
    with open_store(settings) as store:
        rows = store.read(RECENT_DECISIONS, limit=limit)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for row in rows:
        action = f"{row['kind']} on {row['target']}" if row["kind"] else "no new action"
        out.print(f"#{row['chain_index']}  {row['uri']}  {row['outcome']}: {action}", markup=False)
    if not rows:
        out.print("no decision recorded yet")


@app.command("pending")
@errors_as_exit_codes
def pending_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The approval requests waiting for a person."""
    settings = load_settings()
    with _agents(settings) as agents:
        requests = agents.pending()
    if as_json:
        out.print_json(json.dumps(requests))
        return
    for r in requests:
        a = r["action"]
        out.print(
            f"{r['decision']}  {a['kind']} on {_short(a['target'])}  roles: "
            f"{', '.join(_short(x) for x in r['roles'])}"
        )
        for reason in r["reasons"]:
            out.print(f"  {reason}", markup=False)
    if not requests:
        out.print("no approval is waiting")


def _answer(  # noqa: PLR0917 - private, called twice
    decision: str,
    outcome: str,
    person: str,
    role: str | None,
    ttl_s: float,
    edits: list[str],
    comment: str,
) -> None:
    settings = load_settings()
    with _agents(settings) as agents:
        request = agents.request_for(decision)
        now = datetime.now(UTC)
        chosen = role or request["roles"][0]
        parsed: dict[str, float] = {}
        for item in edits:
            key, sep, value = item.partition("=")
            try:
                parsed[key.strip()] = float(value)
            except ValueError:
                raise InvalidInputError(f"--set wants NAME=NUMBER, not {item!r}") from None
            if not sep:
                raise InvalidInputError(f"--set wants NAME=NUMBER, not {item!r}")
        answer = ApprovalInput(
            outcome="edited" if parsed and outcome == "approved" else outcome,
            approver=person,
            role=chosen if chosen.startswith("http") else str(TK[chosen]),
            action_hash=request["action_hash"],
            graph_version=request["graph_version"],
            expires_at=(now + timedelta(seconds=ttl_s)).isoformat(),
            given_at=now.isoformat(),
            edits=parsed,
            comment=comment,
        )
        _print_run(agents.answer(decision, answer))


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
    ttl = expires_in_s if expires_in_s is not None else load_settings().approval_ttl_s
    _answer(decision, "approved", person, role, ttl, set_ or [], comment)


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
