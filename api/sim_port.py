"""The twin as a simulated run reaches it: :class:`TwinSimPort` implements ``sim.loop.TwinPort``
over the store, the telemetry log and the agents, and :class:`GraphRunRecorder` implements
``sim.loop.RunRecorder`` over ``kg.sim_runs``.

Everything happens at simulated time: the port's :class:`SimClock` is set to the loop's instant
before each call, so the agents' timestamps, the approvals' expiry and the ingest's freshness
checks all read simulated time. A run's plant graph is seeded through the same path as any plant
(``graph_seed.seeding``), under the run's own IRI prefix. The simulated approver answers as the
supervisor the seeded plant holds, with a comment that says it is the scenario's simulated
approver (kept in the approval's provenance).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from rdflib import RDF, Graph

from twinkg.agents.state import Effect, Outcome, Trigger
from twinkg.api.settings import Settings
from twinkg.api.twin import ingest_options
from twinkg.connect.json import from_json_points
from twinkg.kg import sim_runs
from twinkg.kg.run_feedback import apply_run_feedback
from twinkg.kg.sim_runs import SimRunStart
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import ApprovalError, ConfigError
from twinkg.ontology.vocab import TK
from twinkg.reasoner.ingest import ingest
from twinkg.sim.loop import PortDecision, run_prefix

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from twinkg.agents.planning import Planner
    from twinkg.agents.runner import Agents, RunResult
    from twinkg.agents.state import ProposedAction


PRODUCER = "twinkg-sim"
"""The producer the loop's telemetry points name."""


@dataclass
class SimClock:
    """A clock that reads the simulated instant the loop last set."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now


@dataclass
class TwinSimPort:
    """``sim.loop.TwinPort`` over the twin's store, telemetry log, checkpointer and agents.

    ``baseline_s`` and ``stale_after_s`` tune the agents to simulated telemetry, which comes
    every ``telemetry_s`` (minutes) rather than every second.
    """

    store: GraphStore
    log: TelemetryLog
    checkpointer: BaseCheckpointSaver[Any]
    settings: Settings
    baseline_s: float = 4 * 3600.0
    stale_after_s: float = 2 * 3600.0
    clock: SimClock = field(default_factory=SimClock)
    stale_approvals: int = field(default=0, init=False)  # answers the agents could not bind
    _agents: dict[int, Agents] = field(default_factory=dict, init=False, repr=False)
    _actions: dict[str, ProposedAction] = field(default_factory=dict, init=False, repr=False)
    _effects: dict[str, Effect] = field(default_factory=dict, init=False, repr=False)
    _approvers: list[str] = field(default_factory=list, init=False, repr=False)
    _runs: int = field(default=0, init=False, repr=False)
    _planner: Planner | None = field(default=None, init=False, repr=False)

    # -- TwinPort ---------------------------------------------------------------------------

    def seed(self, run_id: str, graph: Graph) -> None:
        """Write the run's plant graph (with the ontology) through the seeding path."""
        from twinkg.graph_seed import seeding  # noqa: PLC0415 - only a twin run seeds
        from twinkg.kg.mapping import rdf_to_records  # noqa: PLC0415

        seeding.load(self.store, f"sim:{run_id}", seeding.with_ontology(rdf_to_records(graph)))
        people = set(graph.subjects(RDF.type, TK.Person))
        self._approvers = sorted(
            str(p) for p in people if (p, TK.hasRole, TK.SupervisorRole) in graph
        )

    def planner(self, policy: str) -> Planner:
        """The rule planner (``twinkg``) or the configured LLM planner (``twinkg-llm``)."""
        from twinkg.agents.planning import RulePlanner  # noqa: PLC0415
        from twinkg.api.agent_inputs import planner_for  # noqa: PLC0415

        if policy == "twinkg":
            return RulePlanner()
        if not (self.settings.llm_base_url and self.settings.llm_model):
            raise ConfigError(
                "the twinkg-llm policy needs a configured LLM planner "
                "(TWINKG_LLM_BASE_URL and TWINKG_LLM_MODEL); none is, so it cannot run"
            )
        return planner_for(self.settings, self.store)

    def ingest(
        self,
        points: Sequence[Mapping[str, Any]],
        *,
        received_at: datetime,
        fit_rows: int | None,
        source: str,
    ) -> int:
        """Ingest ``points`` as received at simulated ``received_at``; the alarms raised."""
        if not points:
            return 0
        self.clock.now = received_at
        text = json.dumps(list(points), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(f"{source}\n{text}".encode()).hexdigest()
        options = ingest_options(
            self.settings,
            received_at=received_at,
            fit_rows=fit_rows,
            source=source,
        )
        report = ingest(
            self.store,
            self.log,
            from_json_points(list(points), producer=PRODUCER),
            content_hash=digest,
            options=options,
        )
        return report.alarms

    def decide(
        self,
        *,
        run_id: str,
        scope: str,
        as_of: datetime,
        planner: Planner,
        max_runs: int,
        trigger: Trigger = Trigger.FINDINGS,
    ) -> list[PortDecision]:
        """Run the agents on ``scope`` as of ``as_of``, looking for ``trigger``, until nothing is
        left (or ``max_runs``)."""
        self.clock.now = as_of
        agents = self._agents_for(planner)
        found: list[PortDecision] = []
        for _ in range(max_runs):
            self._runs += 1
            result = agents.run(
                scope=scope,
                as_of=as_of,
                run_id=f"{run_id}-a{self._runs}",
                seed=self._runs,
                informed_by=f"{run_prefix(run_id)}run",  # the decision's own record says so
                trigger=trigger,
            )
            if result.status == "nothing_to_do":
                break
            found += self._decisions(result, as_of, seen=set())
        return found

    def answer(
        self, decision: str, *, approve: bool, at: datetime, comment: str
    ) -> list[PortDecision]:
        """Answer as the plant's simulated supervisor at ``at``; the resumed run's decisions."""
        from twinkg.agents.state import ApprovalInput  # noqa: PLC0415
        from twinkg.kg import agent_queries as aq  # noqa: PLC0415

        self.clock.now = at
        if not self._approvers or self._planner is None:
            raise ConfigError("the run's plant graph holds no supervisor to answer approvals")
        agents = self._agents_for(self._planner)
        request = agents.request_for(decision)
        person = self._approvers[0]
        held = set(self.store.read(aq.PERSON, person=person)[0]["roles"])
        role = next((r for r in request["roles"] if r in held), request["roles"][0])
        answer = ApprovalInput(
            outcome="approved" if approve else "rejected",
            approver=person,
            role=role,
            action_hash=request["action_hash"],
            graph_version=request["graph_version"],
            expires_at=(at + timedelta(seconds=self.settings.approval_ttl_s)).isoformat(),
            given_at=at.isoformat(),
            comment=comment,
        )
        try:
            result = agents.answer(decision, answer)
        except ApprovalError:
            # the graph around the action changed since it was judged (or the request lapsed):
            # the approval cannot bind to it; the agents propose again on the next findings
            self.stale_approvals += 1
            return []
        return self._decisions(result, at, seen={decision})

    def recheck(self, decision: PortDecision) -> int:
        """The safety shapes' violations of the applied action, judged again on the graph as the
        action found it: the graph now, with the target's status put back to what the action's
        own effect changed it from (a restart, judged after it ran, would find its target
        running and break the rule that it starts only what is stopped)."""
        from rdflib import Literal, URIRef  # noqa: PLC0415

        from twinkg.agents.guard import action_graph  # noqa: PLC0415
        from twinkg.kg.context import action_context  # noqa: PLC0415
        from twinkg.reasoner.safety import assess  # noqa: PLC0415

        action = self._actions.get(decision.decision)
        if action is None:
            return 0
        context = action_context(self.store, action.target)
        effect = self._effects.get(decision.decision)
        if effect is not None and effect.to_status is not None:
            target = URIRef(effect.asset)
            context.remove((target, TK.operationalStatus, None))
            if effect.from_status is not None:
                context.add((target, TK.operationalStatus, Literal(effect.from_status)))
        assessment = assess(action_graph(action, decision.decision + "/recheck"), context)
        return len(assessment.blocking)

    def run_feedback(self, running: Mapping[str, bool]) -> int:
        """See ``kg.run_feedback.apply_run_feedback``: the assets' statuses follow whether they
        run; how many changed."""
        return len(apply_run_feedback(self.store, running))

    # -- internals ----------------------------------------------------------------------------

    def _agents_for(self, planner: Planner) -> Agents:
        from twinkg.agents.context import AgentSettings  # noqa: PLC0415
        from twinkg.agents.runner import Agents  # noqa: PLC0415

        self._planner = planner
        key = id(planner)
        if key not in self._agents:
            self._agents[key] = Agents(
                store=self.store,
                log=self.log,
                checkpointer=self.checkpointer,
                planner=planner,
                clock=self.clock,
                settings=AgentSettings(
                    stale_after_s=self.stale_after_s,
                    lookback_s=self.settings.agents_lookback_s,
                    baseline_s=self.baseline_s,
                ),
            )
        return self._agents[key]

    def _decisions(self, result: RunResult, at: datetime, seen: set[str]) -> list[PortDecision]:
        action = result.state.action
        out = []
        for step in result.steps:
            if step.decision in seen:
                continue
            if action is not None:
                self._actions[step.decision] = action
            if step.outcome is Outcome.APPLIED and result.state.effect is not None:
                self._effects[step.decision] = result.state.effect
            out.append(
                PortDecision(
                    decision=step.decision,
                    outcome=step.outcome.value,
                    kind=None if action is None else action.kind.value,
                    target=None if action is None else action.target,
                    at=at.isoformat(),
                    proposed_setpoint=None if action is None else action.proposed_setpoint,
                    quantity_kind=None if action is None else action.quantity_kind,
                    ramp_s=None if action is None else action.ramp_s,
                    reason=step.reason,
                )
            )
        return out


@dataclass
class GraphRunRecorder:
    """``sim.loop.RunRecorder`` over ``kg.sim_runs`` on one store: the run's start record as
    the loop gives it, the check that its decisions name it, its end status, KPIs and wall-clock
    end time. The one recorder of simulated runs (``api.sim_service`` and the tests use it)."""

    store: GraphStore

    def start_run(self, start: SimRunStart) -> None:
        """The run and its scenario, status "running"."""
        sim_runs.start_run(self.store, start)

    def link_decisions(self, run: str, decisions: Sequence[str]) -> None:
        """Check that each decision recorded ``prov:wasInformedBy`` the run in its own record
        (nothing is added to a hash-chained decision afterwards; ``kg.sim_runs``)."""
        sim_runs.link_decisions(self.store, run, decisions)

    def finish_run(
        self,
        run: str,
        status: str,
        reason: str | None,
        partial: bool,
        kpis: Mapping[str, tuple[float, str]],
    ) -> None:
        """The end status, the KPIs and the end time (wall clock, as the start's)."""
        sim_runs.finish_run(
            self.store,
            run,
            status=status,
            reason=reason,
            partial=partial,
            kpis=kpis,
            ended_at=datetime.now(UTC),
        )
