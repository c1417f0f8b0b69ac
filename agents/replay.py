"""Deterministic replay: run the agent graph again from a decision's recorded inputs.

The inputs come from the run's records in Neo4j: every query's rows (the graph snapshot facts),
the telemetry windows (read again from the log and checked against their hashes), the time the
run judged data against, the seed, the planner and its recorded model outputs, the external
proposal if there was one, and the approval a person gave. The same nodes run with these facts,
and the decision records they would write are compared with the stored ones, property by
property; wall-clock times are the only thing left out. Progress goes to an optional callback,
phase by phase (``reasoner.progress.ReplayPhase``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from rdflib import RDF, Graph, Literal, URIRef
from rdflib.namespace import PROV
from rdflib.term import Node

from twinkg.agents.checkpoint import serializer
from twinkg.agents.context import AgentInfo, AgentSettings, RecordedFacts, RunContext
from twinkg.agents.graph import compile_graph
from twinkg.agents.llm_planner import LlmPlanner
from twinkg.agents.planning import Plan, Planner, PlanningCase, RulePlanner
from twinkg.agents.record import decision_iri, decision_records
from twinkg.agents.state import (
    ActionKind,
    AgentState,
    ApprovalInput,
    Candidate,
    Evidence,
    Outcome,
    ProposedAction,
    Step,
    Trigger,
    WindowEvidence,
    parse_time,
)
from twinkg.kg import agent_queries as q
from twinkg.kg.chain_verify import stored_record
from twinkg.kg.mapping import records_to_rdf
from twinkg.kg.provenance import decision_ref, owns
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import DecisionNotFoundError, ReplayInputsMissingError
from twinkg.ontology.namespaces import DECISION_BASE
from twinkg.ontology.vocab import TK
from twinkg.reasoner.progress import Progress, ReplayPhase, Tally, no_progress

# Wall-clock times and chain bookkeeping differ between a run and its replay by design.
_IGNORED = {
    PROV.startedAtTime,
    PROV.endedAtTime,
    TK.occurredAt,
    TK.chainIndex,
    TK.previousHash,
    TK.recordHash,
}


@dataclass(frozen=True, slots=True)
class Difference:
    """One field that differs: where, what was recorded, what the replay reached."""

    field: str
    recorded: str
    replayed: str


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """Whether the replay reached the same decision, and every difference if not."""

    decision: str
    steps: int
    outcome: str
    differences: tuple[Difference, ...]

    @property
    def same(self) -> bool:
        """True when every compared field is equal."""
        return not self.differences


class _Capture:
    """A recorder that writes nothing: it keeps what would have been recorded."""

    def __init__(self, agent: AgentInfo, clock: datetime) -> None:
        self.agent = agent
        self.clock = clock
        self.records: dict[str, Graph] = {}

    def record(self, state: AgentState) -> Step:
        records = decision_records(state, self.agent, ended_at=self.clock)
        iri = decision_iri(state)
        self.records[iri] = records_to_rdf(records)
        return Step(
            decision=iri,
            outcome=state.outcome or Outcome.REFUSED,
            reason=state.reason,
            chain_index=0,
            record_hash="",
            gathered=len(state.evidence) + len(state.windows),
        )


class _Fixed:
    """The planner a replay uses for an external proposal: the proposal as recorded."""

    kind = "external"

    def plan(self, case: PlanningCase) -> Plan:
        raise ReplayInputsMissingError("an external proposal needs no planner")  # pragma: no cover


class _RecordedLookahead:
    """A look-ahead plan (``sim.lookahead``) replayed from its record.

    Its forks ran on a simulated plant that a replay does not have, so what they found stands in
    for them, as a model's recorded outputs do for an LLM plan: the candidates with their
    utilities, the transcript with every fork's predicted KPIs, and the action proposed. The rest
    of the run (monitor, diagnosis, the case, the guard, approvals, the effect, the record) is
    derived again from the recorded inputs and compared. A record whose proposed action is not
    its best-rated candidate is replayed with that candidate, so the replay differs.
    """

    def __init__(self, kind: str, plan: Plan) -> None:
        self.kind = kind
        self._plan = plan

    def plan(self, case: PlanningCase) -> Plan:
        del case  # the recorded plan was made for this very case
        return self._plan


def _recorded_lookahead(kind: str, graph: Graph, decision: URIRef) -> _RecordedLookahead | None:
    """The recorded look-ahead plan of ``decision``, or None when its plan had no look-ahead
    (or the look-ahead was skipped: the inner planner's plan stands, and is replayed as such)."""
    text = _value(graph, URIRef(str(decision) + "/transcript"), TK.transcript)
    if text is None:
        return None
    transcript = json.loads(text)
    if not any(
        isinstance(entry, dict) and "candidates" in entry.get("lookahead", {})
        for entry in transcript
    ):
        return None
    candidates = [
        Candidate.model_validate(c) for c in json.loads(str(_value(graph, decision, TK.candidates)))
    ]
    action = _action(graph, URIRef(str(decision) + "/action"), None)
    best = candidates[0].action if candidates else None
    if best is not None and (best.kind, best.target, best.proposed_setpoint) != (
        action.kind,
        action.target,
        action.proposed_setpoint,
    ):
        action = best
    model = _value(graph, decision, TK.modelName)
    prompt = _value(graph, decision, TK.promptVersion)
    plan = Plan(
        planner=kind,
        candidates=candidates,
        action=action,
        model=None if model is None else str(model),
        prompt_version=None if prompt is None else str(prompt),
        transcript=transcript,
    )
    return _RecordedLookahead(kind, plan)


def _value(graph: Graph, node: Node, prop: URIRef) -> Any:
    found = graph.value(node, prop)
    return None if found is None else found.toPython() if isinstance(found, Literal) else str(found)


def _settings(evidence: list[Evidence], windows: list[WindowEvidence]) -> AgentSettings:
    """The agents' tuning the run had, as far as its record shows it: the monitor's look-back,
    silence and limit from its queries' parameters, the diagnosis's baseline from its first
    window (the one that ends where the second begins). A decision made with other settings
    than the defaults (a simulated run's, say) is replayed with its own."""
    default = AgentSettings()

    def param(query: str, name: str, fallback: float) -> float:
        found = next(
            (e.params[name] for e in evidence if e.query == query and name in e.params), None
        )
        return fallback if found is None else float(found)

    baseline = default.baseline_s
    if len(windows) >= 2 and windows[0].end == windows[1].start:
        span = parse_time(windows[0].end) - parse_time(windows[0].start)
        baseline = span.total_seconds()
    return replace(
        default,
        lookback_s=param(q.OPEN_FINDINGS.name, "lookback_s", default.lookback_s),
        stale_after_s=param(q.STALE_SENSORS.name, "stale_s", default.stale_after_s),
        finding_limit=int(param(q.OPEN_FINDINGS.name, "limit", default.finding_limit)),
        baseline_s=baseline,
    )


def _inputs(graphs: dict[str, Graph]) -> tuple[list[Evidence], list[WindowEvidence]]:
    evidence, windows = [], []
    for graph in graphs.values():
        for node in graph.subjects(RDF.type, TK.QueryEvidence):
            evidence.append(
                Evidence(
                    ordinal=int(_value(graph, node, TK.ordinal)),
                    query=str(_value(graph, node, TK.queryName)),
                    params=json.loads(_value(graph, node, TK.queryParameters)),
                    rows=json.loads(_value(graph, node, TK.resultRows)),
                )
            )
        for node in graph.subjects(RDF.type, TK.TelemetryWindow):
            windows.append(
                WindowEvidence(
                    ordinal=int(_value(graph, node, TK.ordinal)),
                    sensors=sorted(str(s) for s in graph.objects(node, TK.windowOf)),
                    start=_value(graph, node, TK.windowStart).isoformat(),
                    end=_value(graph, node, TK.windowEnd).isoformat(),
                    points=int(_value(graph, node, TK.sampleCount)),
                    content_hash=str(_value(graph, node, TK.contentHash)),
                )
            )
    return sorted(evidence, key=lambda e: e.ordinal), sorted(windows, key=lambda w: w.ordinal)


def _action(graph: Graph, node: URIRef, asset: str | None) -> ProposedAction:
    def num(prop: URIRef) -> float | None:
        value = _value(graph, node, prop)
        return None if value is None else float(value)

    return ProposedAction(
        kind=ActionKind(str(_value(graph, node, TK.actionKind))),
        target=str(_value(graph, node, TK.targets) or asset),
        confidence=float(_value(graph, node, TK.confidence)),
        proposed_at=_value(graph, node, TK.proposedAt).isoformat(),
        quantity_kind=_value(graph, node, TK.setpointQuantityKind),
        current_setpoint=num(TK.currentSetpoint),
        proposed_setpoint=num(TK.proposedSetpoint),
        ramp_s=num(TK.rampDuration),
        demanded_by=_value(graph, node, TK.demandedBy),
        failure_mode=_value(graph, node, TK.addresses),
        rationale=str(_value(graph, node, TK.rationale) or ""),
    )


def _approval(graph: Graph, node: URIRef, edits: dict[str, float]) -> ApprovalInput:
    outcome = str(_value(graph, node, TK.outcome))
    given = _value(graph, node, PROV.startedAtTime)
    return ApprovalInput(
        outcome=outcome,
        approver=str(_value(graph, node, PROV.wasAssociatedWith)),
        role=str(_value(graph, node, TK.approverRole)),
        action_hash=str(_value(graph, node, TK.argumentsHash)),
        graph_version=str(_value(graph, node, TK.graphVersion)),
        expires_at=_value(graph, node, TK.expiresAt).isoformat(),
        given_at=given.isoformat(),
        edits=edits,
        comment=str(_value(graph, node, RDFS_COMMENT) or ""),
    )


RDFS_COMMENT = URIRef("http://www.w3.org/2000/01/rdf-schema#comment")


def _flatten(decision: str, graph: Graph) -> dict[str, list[str]]:
    """The record as ``{"<node> <property>": sorted values}``, nodes named relative to it."""
    out: dict[str, list[str]] = defaultdict(list)
    for s, p, o in graph:
        if p in _IGNORED or not owns(decision, str(s)):
            continue
        node = str(s).removeprefix(decision).lstrip("/") or "decision"
        name = graph.namespace_manager.normalizeUri(p) if isinstance(p, URIRef) else str(p)
        value = o.toPython() if isinstance(o, Literal) else str(o)
        if isinstance(value, datetime):
            value = value.astimezone(UTC).isoformat()
        out[f"{node} {name}"].append(str(value).removeprefix(DECISION_BASE))
    return {k: sorted(v) for k, v in out.items()}


def replay(
    store: GraphStore,
    log: TelemetryLog | None,
    decision: str,
    *,
    planner: Planner | None = None,
    progress: Progress | None = None,
) -> ReplayReport:
    """Re-run the decision's run from its recorded inputs and compare, field by field.

    ``planner`` replaces the rule planner for LLM runs (a planner that replays the recorded
    model outputs). ``progress`` hears ``(phase, done, total)`` for each :class:`ReplayPhase`,
    in order, counted in the run's steps up to this decision. Raises
    :class:`DecisionNotFoundError` for an unknown decision and
    :class:`ReplayInputsMissingError` when recorded inputs are gone (a purged telemetry window).
    """
    iri = decision_ref(decision)
    rows = store.read(q.DECISION_SUMMARY, decision=iri)
    if not rows:
        raise DecisionNotFoundError(f"no decision {iri!r} in the graph")
    head = rows[0]
    step = int(head["step"])
    run = [r for r in store.read(q.RUN_DECISIONS, run_id=head["run_id"]) if r["step"] <= step]
    report = progress or no_progress
    loaded = Tally(report, ReplayPhase.LOAD, len(run))
    loaded.start()
    graphs = stored_record(store, [r["uri"] for r in run])
    loaded.advance(len(graphs))
    evidence, windows = _inputs(graphs)
    first_iri = f"{DECISION_BASE}{head['run_id']}/1"
    first = graphs[first_iri]
    d1 = URIRef(first_iri)
    planner_kind = str(_value(first, d1, TK.plannerKind) or "rules")
    external = None
    if planner_kind == "external":
        external = _action(first, URIRef(first_iri + "/action"), None)
    monitored = (q.OPEN_FINDINGS.name, q.RESTART_DUE.name)
    scope = next((e.params.get("scope") for e in evidence if e.query in monitored), None)
    clock = parse_time(str(head["started"]))
    agent = str(_value(first, d1, PROV.wasAssociatedWith))
    capture = _Capture(AgentInfo(agent, "replay", "replay"), clock)
    facts = RecordedFacts(evidence, windows, log)
    chosen: Planner = planner or _planner(planner_kind, first, URIRef(first_iri), external)
    ctx = RunContext(
        facts, chosen, capture, capture.agent, lambda: clock, settings=_settings(evidence, windows)
    )
    graph = compile_graph(InMemorySaver(serde=serializer()))
    config: Any = {"configurable": {"thread_id": "replay"}}
    state = AgentState(
        run_id=str(head["run_id"]),
        scope=scope,
        as_of=_value(first, d1, TK.asOf).isoformat(),
        seed=int(_value(first, d1, TK.randomSeed)),
        started_at=_value(first, d1, PROV.startedAtTime).isoformat(),
        action=external,
        # a first decision is informed by nothing but the simulation run it was made in, if any
        informed_by=next((str(o) for o in first.objects(d1, PROV.wasInformedBy)), None),
        # a restart-due run's monitor asked for due restarts, not for findings
        trigger=Trigger.RESTART_DUE
        if any(e.query == q.RESTART_DUE.name for e in evidence)
        else Trigger.FINDINGS,
        # a watching monitor asked which assets were watched, and for how long
        watch_s=next(
            (float(e.params["watch_s"]) for e in evidence if e.query == q.WATCHED.name), 0.0
        ),
    )
    replayed = Tally(report, ReplayPhase.REPLAY, len(run))
    replayed.start()
    graph.invoke(state, config, context=ctx)
    replayed.advance()
    for r in run[1:]:
        g = graphs[r["uri"]]
        node = URIRef(r["uri"] + "/approval")
        if (node, RDF.type, TK.Approval) not in g:
            raise ReplayInputsMissingError(f"{r['uri']} holds no approval to resume with")
        edits = _edits(g, URIRef(r["uri"] + "/action"))
        graph.invoke(
            Command(resume=_approval(g, node, edits).model_dump(mode="json")), config, context=ctx
        )
        replayed.advance()
    differences = [Difference("replay", "", d) for d in facts.divergences]
    compared = Tally(report, ReplayPhase.COMPARE, len(run))
    compared.start()
    for r in run:
        differences += _compare(iri, r["uri"], graphs[r["uri"]], capture.records.get(r["uri"]))
        compared.advance()
    return ReplayReport(iri, len(run), str(head["outcome"]), tuple(differences))


def _compare(decision: str, uri: str, recorded: Graph, replayed: Graph | None) -> list[Difference]:
    """The fields of one step's record that the replay did not reproduce."""
    if replayed is None:
        return [Difference(uri, "recorded", "not reached")]
    before, after = _flatten(uri, recorded), _flatten(uri, replayed)
    prefix = "" if uri == decision else uri.removeprefix(DECISION_BASE) + " "
    return [
        Difference(prefix + key, "; ".join(before.get(key, [])), "; ".join(after.get(key, [])))
        for key in sorted(set(before) | set(after))
        if before.get(key, []) != after.get(key, [])
    ]


def _planner(kind: str, graph: Graph, decision: URIRef, external: ProposedAction | None) -> Planner:
    """The planner that reproduces the recorded one without a model, a network or a plant."""
    if external is not None:
        return _Fixed()
    recorded = _recorded_lookahead(kind, graph, decision)
    if recorded is not None:
        return recorded
    if kind == "llm":
        text = _value(graph, URIRef(str(decision) + "/transcript"), TK.transcript)
        if text is None:
            raise ReplayInputsMissingError(
                f"{decision} was planned by a model but holds no transcript"
            )
        return LlmPlanner.replaying(
            json.loads(text),
            model_name=str(_value(graph, decision, TK.modelName)),
            prompt_version=str(_value(graph, decision, TK.promptVersion)),
        )
    return RulePlanner()


def _edits(graph: Graph, action: URIRef) -> dict[str, float]:
    if (action, RDF.type, TK.ProposedAction) not in graph:
        return {}
    edits = {}
    for prop, name in ((TK.proposedSetpoint, "proposed_setpoint"), (TK.rampDuration, "ramp_s")):
        value = _value(graph, action, prop)
        if value is not None:
            edits[name] = float(value)
    return edits
