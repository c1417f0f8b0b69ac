"""Running the agents: new runs, crashed runs resumed, approvals answered (checkpointed).

:class:`Agents` is what the CLI and the API use. Every run is a LangGraph thread whose id is the
run id, checkpointed after each node; a run cut off by a crash resumes where it stopped and, since
the recorder is idempotent by decision IRI, never applies an action twice. An approval is
checked against what it approves before the run resumes, and the guard checks it again.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.types import Command, StateSnapshot
from opentelemetry import trace

from twinkg.agents.checkpoint import DURABILITY, forget_finished, unfinished_threads
from twinkg.agents.context import AgentInfo, AgentSettings, LiveFacts, RunContext
from twinkg.agents.graph import compile_graph
from twinkg.agents.monitor import monitor
from twinkg.agents.planning import Planner, RulePlanner
from twinkg.agents.record import GraphRecorder
from twinkg.agents.state import (
    AgentState,
    ApprovalInput,
    Outcome,
    ProposedAction,
    Step,
    Trigger,
    parse_time,
)
from twinkg.kg import agent_queries as q
from twinkg.kg.context import CONTEXT_NODES, action_context, graph_version
from twinkg.kg.provenance import decision_ref
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import (
    ApprovalExpiredError,
    ApprovalMismatchError,
    ApprovalRequestExpiredError,
    ApprovalStaleError,
    ApproverRoleError,
    ContextChangedError,
    DecisionNotFoundError,
    NotAwaitingApprovalError,
)
from twinkg.ontology.namespaces import AGENT_BASE

_tracer = trace.get_tracer("twinkg.agents")
_log = logging.getLogger(__name__)

CONTEXT_RETRIES = 5
"""How many times a run is guarded again because its action's context changed between its guard
and its record (decision 0086) before :class:`ContextChangedError` is raised to the caller."""


def default_agent() -> AgentInfo:
    """The TwinKG agent at the installed code version."""
    try:
        version = metadata.version("twinkg")
    except metadata.PackageNotFoundError:  # running from a source tree
        version = "0+source"
    return AgentInfo(f"{AGENT_BASE}twinkg-agents/{version}", "TwinKG agents", version)


NodeListener = Callable[[str, str], None]
"""Called with a run id and the name of a node that has just finished."""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended this time: done, waiting for a person, or nothing to decide on."""

    run_id: str
    status: str  # "done" | "awaiting_approval" | "nothing_to_do"
    steps: tuple[Step, ...]
    request: dict[str, Any] | None
    state: AgentState


@dataclass
class Agents:
    """The agents over one store, telemetry log and checkpointer."""

    store: GraphStore
    log: TelemetryLog | None
    checkpointer: BaseCheckpointSaver[Any]
    planner: Planner = field(default_factory=RulePlanner)
    clock: Callable[[], datetime] = _now
    settings: AgentSettings = field(default_factory=AgentSettings)
    agent: AgentInfo = field(default_factory=default_agent)
    # told the run id each time a run is guarded again (decision 0086), for a metric
    on_guard_again: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self._graph = compile_graph(self.checkpointer)
        forget_finished(self.checkpointer)  # left by a process that ended before it could

    def context(self) -> RunContext:
        """The live run context."""
        return RunContext(
            facts=LiveFacts(self.store, self.log),
            planner=self.planner,
            recorder=GraphRecorder(self.store, self.agent, self.clock),
            agent=self.agent,
            clock=self.clock,
            settings=self.settings,
        )

    def _config(self, run_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": run_id}}

    def _invoke(
        self,
        value: AgentState | Command[Any] | None,
        run_id: str,
        on_node: NodeListener | None = None,
    ) -> None:
        """Run the graph on thread ``run_id``, each node's checkpoint written before the next;
        ``on_node(run_id, node)`` hears of each node as it finishes (for a live stream)."""
        config, context = self._config(run_id), self.context()
        with _tracer.start_as_current_span("twinkg.agents.run") as span:
            span.set_attribute("twinkg.run_id", run_id)
            if on_node is None:
                self._graph.invoke(value, config, context=context, durability=DURABILITY)
                return
            for update in self._graph.stream(
                value, config, context=context, durability=DURABILITY, stream_mode="updates"
            ):
                for node in update:
                    on_node(run_id, node)

    def _decide(
        self,
        value: AgentState | Command[Any] | None,
        run_id: str,
        on_node: NodeListener | None = None,
    ) -> None:
        """:meth:`_invoke`, guarding the run again each time the context its guard judged
        changed before the action was recorded (decision 0086): the record's transaction wrote
        nothing, the run's guard evidence is dropped, and the guard reads the context as it is
        now; at most :data:`CONTEXT_RETRIES` times, then the error is raised."""
        for tries_left in range(CONTEXT_RETRIES, -1, -1):
            try:
                self._invoke(value, run_id, on_node)
                return
            except ContextChangedError as exc:
                if not tries_left:
                    raise
                _log.warning("run %s: %s; guarding it again", run_id, exc)
                self._guard_again(run_id)
                if self.on_guard_again is not None:
                    self.on_guard_again(run_id)
                value = None

    def _guard_again(self, run_id: str) -> None:
        """Put run ``run_id`` back before its guard: the evidence from the guard's context read
        on is dropped (the guard gathers it again at the same ordinals, so the record and its
        replay are those of a run that met no change)."""
        config = self._config(run_id)
        state = AgentState.model_validate(self._graph.get_state(config).values)
        cut = max(e.ordinal for e in state.evidence if e.query == CONTEXT_NODES.name)
        kept = [e for e in state.evidence if e.ordinal < cut]
        # the node the guard follows: the approval on a resumed run, the planner otherwise
        before = "approval" if state.approval is not None else "plan"
        # the effect too: act computes it again if the guard allows the action again
        self._graph.update_state(config, {"evidence": kept, "effect": None}, as_node=before)

    def _result(
        self,
        run_id: str,
        snapshot: StateSnapshot | None = None,
        *,
        ended: tuple[str, Any] | None = None,
    ) -> RunResult:
        """How run ``run_id`` stands; ``ended``: a decision's IRI and its recorded end, read by
        the caller already (used to date the request when it is that decision's)."""
        snapshot = snapshot or self._graph.get_state(self._config(run_id))
        if not snapshot.values:
            raise NotAwaitingApprovalError(f"run {run_id} has no checkpoint here")
        state = AgentState.model_validate(snapshot.values)
        request = snapshot.interrupts[0].value if snapshot.interrupts else None
        if request is not None:
            request = self._dated(request, ended)
            status = "awaiting_approval"
        elif not state.steps:
            status = "nothing_to_do"
        else:
            status = "done"
        return RunResult(run_id, status, tuple(state.steps), request, state)

    def _dated(
        self, request: dict[str, Any], ended: tuple[str, Any] | None = None
    ) -> dict[str, Any]:
        """``request`` with when it was made (its decision's recorded end: ``ended`` when it
        names that decision, read otherwise) and until when it may be approved
        (``request_ttl_s`` later); as it was when its decision is not recorded."""
        if ended is not None and ended[0] == request["decision"]:
            made_at = ended[1]
        else:
            rows = self.store.read(q.DECISION_SUMMARY, decision=request["decision"])
            made_at = rows[0]["ended"] if rows else None
        if not made_at:
            return request
        made = parse_time(str(made_at))
        until = made + timedelta(seconds=self.settings.request_ttl_s)
        return {**request, "requested_at": made.isoformat(), "expires_at": until.isoformat()}

    def _ended(self, run_id: str) -> RunResult:
        """How the run just invoked stands; a run that ended has its checkpoints deleted (its
        decisions are recorded; only a run waiting for a person, or cut off, resumes)."""
        snapshot = self._graph.get_state(self._config(run_id))
        result = self._result(run_id, snapshot)
        if result.request is None and not snapshot.next:
            self.checkpointer.delete_thread(run_id)
        return result

    def run(
        self,
        *,
        scope: str | None = None,
        as_of: datetime | None = None,
        seed: int | None = None,
        run_id: str | None = None,
        action: ProposedAction | None = None,
        on_node: NodeListener | None = None,
        informed_by: str | None = None,
        trigger: Trigger = Trigger.FINDINGS,
        watch_s: float | None = None,
    ) -> RunResult:
        """One run: observe the most urgent case in ``scope`` and decide on it.

        ``action`` is an external proposal (an operator's or another agent's) for ``scope``:
        it skips the planner but not the guard, and its confidence is capped by TwinKG's own.
        ``informed_by`` is the simulation run (``tk:SimulationRun``) the run decides in: each of
        its decisions records ``prov:wasInformedBy`` it, inside its own hash-chained record.
        ``trigger`` picks what the monitor looks for: open findings, or stopped assets whose
        restart is due (decision 0049). ``watch_s`` (default: the settings') is how long the
        new anomalies of an asset the agents last decided to watch wait (decision 0052).
        """
        run_id = run_id or uuid.uuid4().hex[:20]
        state = self._state(
            run_id,
            scope=scope,
            as_of=as_of,
            seed=seed,
            action=action,
            informed_by=informed_by,
            trigger=trigger,
            watch_s=watch_s,
        )
        self._decide(state, run_id, on_node)
        return self._ended(run_id)

    def _state(
        self,
        run_id: str,
        *,
        scope: str | None,
        as_of: datetime | None,
        trigger: Trigger,
        seed: int | None = None,
        action: ProposedAction | None = None,
        informed_by: str | None = None,
        watch_s: float | None = None,
    ) -> AgentState:
        moment = (as_of or self.clock()).astimezone(UTC)
        return AgentState(
            run_id=run_id,
            scope=scope,
            as_of=moment.isoformat(),
            seed=seed if seed is not None else _seed(run_id),
            started_at=self.clock().isoformat(),
            action=action,
            informed_by=informed_by,
            trigger=trigger,
            watch_s=self.settings.watch_s if watch_s is None else watch_s,
        )

    def has_case(self, *, scope: str | None, as_of: datetime | None, trigger: Trigger) -> bool:
        """Whether a run would find a case in ``scope``: the monitor's own reads, without a
        run's thread and checkpoints (a run that finds nothing records nothing either)."""
        state = self._state("probe", scope=scope, as_of=as_of, trigger=trigger)
        return bool(monitor(state, self.context()).get("asset"))

    def resume_crashed(
        self, on_node: NodeListener | None = None, *, scope: str | None = None
    ) -> list[RunResult]:
        """Finish every run a crash cut off (not those waiting for a person); with ``scope``,
        only the runs scoped to that asset.

        Scoped is how a worker that holds the asset's lease resumes: no other worker runs on
        the asset meanwhile, so a run of that scope that has not ended was cut off, and is not
        another worker's run in flight. A run that ended (and was forgotten) between the look
        and the resume is passed over."""
        results = []
        for thread in unfinished_threads(self.checkpointer):
            if thread.waiting or (scope is not None and thread.scope != scope):
                continue
            if self.checkpointer.get_tuple(self._config(thread.thread_id)) is None:
                continue  # ended and forgotten meanwhile
            self._decide(None, thread.thread_id, on_node)
            try:
                results.append(self._ended(thread.thread_id))
            except NotAwaitingApprovalError:
                continue  # another process finished and forgot it while this one looked
        return results

    def run_all(
        self,
        *,
        scope: str | None = None,
        as_of: datetime | None = None,
        max_runs: int = 50,
        on_node: NodeListener | None = None,
        resume_all: bool = True,
    ) -> list[RunResult]:
        """Resume crashed runs, then start runs until nothing is left to decide (or max): on the
        open findings first, then on the restarts that are due. ``resume_all=False`` resumes
        only the runs scoped to ``scope`` (a worker under that asset's lease)."""
        results = self.resume_crashed(on_node, scope=None if resume_all else scope)
        started = 0
        for trigger in Trigger:
            first = True
            while started < max_runs:
                # a run that finds nothing is the common end of a pass (after the case it was
                # woken for, and for the rarer trigger): ask the monitor first, without a graph
                # run and its checkpoints; the first run on findings goes straight in
                likely = first and trigger is Trigger.FINDINGS
                first = False
                if not likely and not self.has_case(scope=scope, as_of=as_of, trigger=trigger):
                    break
                started += 1
                result = self.run(scope=scope, as_of=as_of, on_node=on_node, trigger=trigger)
                if result.status == "nothing_to_do":
                    break
                results.append(result)
        return results

    def pending(self) -> list[dict[str, Any]]:
        """The approval requests waiting, oldest first."""
        requests = []
        for row in self.store.read(q.AWAITING, limit=1000):
            try:
                result = self._result(row["run_id"], ended=(row["uri"], row["ended"]))
            except NotAwaitingApprovalError:  # recorded by a run whose checkpoint is elsewhere
                continue
            if result.request is not None:
                requests.append(result.request)
        return requests

    def request_for(self, decision: str) -> dict[str, Any]:
        """The approval request a decision made; errors when it is not waiting."""
        iri = decision_ref(decision)
        rows = self.store.read(q.DECISION_SUMMARY, decision=iri)
        if not rows:
            raise DecisionNotFoundError(f"no decision {iri!r} in the graph")
        row = rows[0]
        if row["outcome"] != Outcome.AWAITING_APPROVAL.value or row["followed_by"]:
            raise NotAwaitingApprovalError(
                f"decision {iri} is not waiting for approval (outcome {row['outcome']})"
            )
        result = self._result(row["run_id"], ended=(iri, row["ended"]))
        if result.request is None or result.request["decision"] != iri:
            raise NotAwaitingApprovalError(f"run {row['run_id']} is not waiting for approval")
        return result.request

    def answer(self, decision: str, answer: ApprovalInput) -> RunResult:
        """Check ``answer`` against the request it answers, then resume the run with it.

        Raises an :class:`ontology.errors.ApprovalError` (and resumes nothing) when the answer
        names other arguments or another graph version, or (unless it rejects: a rejection applies
        nothing, so it may close a stale or expired request) when the graph changed since, when
        it or the request has expired, or when the approver does not hold an allowed role.
        """
        request = self.request_for(decision)
        if answer.action_hash != request["action_hash"]:
            raise ApprovalMismatchError("the approval is for other arguments than the request")
        if answer.graph_version != request["graph_version"]:
            raise ApprovalMismatchError("the approval names another graph version")
        if answer.outcome != "rejected":  # a rejection applies nothing: it closes any request
            target = request["action"]["target"]
            if graph_version(action_context(self.store, target)) != request["graph_version"]:
                raise ApprovalStaleError(
                    "the graph around the action changed since it was judged; it must be "
                    "proposed again (the request may be rejected)"
                )
            until = request.get("expires_at")
            if until is not None and parse_time(until) <= self.clock():
                raise ApprovalRequestExpiredError(
                    f"the request expired at {until}; it may only be rejected now"
                )
            if parse_time(answer.expires_at) <= self.clock():
                raise ApprovalExpiredError(f"the approval expired at {answer.expires_at}")
            people = self.store.read(q.PERSON, person=answer.approver)
            if not people:
                raise ApproverRoleError(f"no person {answer.approver!r} in the graph")
            if answer.role not in people[0]["roles"]:
                raise ApproverRoleError(f"{answer.approver} does not hold the role {answer.role}")
            if answer.role not in request["roles"]:
                raise ApproverRoleError(
                    f"the role {answer.role} may not approve this action "
                    f"(allowed: {', '.join(request['roles'])})"
                )
        self._decide(Command(resume=answer.model_dump(mode="json")), request["run_id"])
        return self._ended(request["run_id"])


def _seed(run_id: str) -> int:
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big")


__all__ = ["Agents", "NodeListener", "RunResult", "default_agent"]
