"""The twin's operations, shared by every way in: the HTTP API, the MCP server and the CLI.

A :class:`Twin` holds what one process opened (the store, the telemetry log, the checkpointer)
and offers each operation once, so the HTTP routes and the MCP tools only translate their
protocol to these calls and back. Agent work (runs, proposals, approvals) holds the twin's
:class:`RunLock` alone, except the runs of a worker scoped to an asset it leases: those share it
with each other (decision 0084), since the lease keeps each asset's runs and checkpoints to one
of them, and the provenance chain's head is locked in Neo4j by each record's transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from twinkg.agents.state import ActionKind, ApprovalInput, ProposedAction
from twinkg.api.agent_inputs import as_of_moment, planner_for, role_iri
from twinkg.api.errors import PermissionDeniedError
from twinkg.api.metrics import Metrics
from twinkg.api.offline import OfflineTwin
from twinkg.api.reclassification import (
    Reclassifier,
    Reclassify,
    ReclassifyOutcome,
    ReclassifyStatus,
)
from twinkg.api.resources import open_checkpointer
from twinkg.api.results import (
    AssetContext,
    AssetSummary,
    DecisionSummary,
    EvidenceItem,
    IngestResult,
    Lineage,
    PendingApproval,
    PlantGraph,
    RecentDecision,
    RunDecision,
)
from twinkg.api.settings import Settings, detector_dir, telemetry_dir
from twinkg.api.site_scope import SiteBound
from twinkg.connect.source import Batch, Source, SourceContext
from twinkg.kg import agent_queries as aq
from twinkg.kg import api_queries, chain_verify, telemetry_state
from twinkg.kg import plant_graph as plant_queries
from twinkg.kg.lineage import lineage
from twinkg.kg.provenance import decision_ref
from twinkg.kg.store import GraphStore, QueryResult
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import (
    ConfigError,
    InvalidInputError,
    NotFoundError,
    UnknownQuantityKindError,
)
from twinkg.ontology.vocab import Label
from twinkg.reasoner.ingest import (
    IngestOptions,
    IngestReport,
    Member,
    contract_of,
    ingest,
    ingest_group,
)
from twinkg.reasoner.ingest_recovery import RecoveryReport, recover
from twinkg.reasoner.progress import Progress

if TYPE_CHECKING:  # LangGraph and pySHACL load only when an agent operation needs them
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from twinkg.agents.replay import ReplayReport
    from twinkg.agents.runner import Agents, RunResult
    from twinkg.kg.projection import Projection
    from twinkg.reasoner.inference import ReclassifySummary


EVIDENCE_LIMIT = 500
"""The most evidence items of each kind shown with one approval request."""


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _way(name: str) -> str:
    """Which way a batch came in, for the metrics: ``mqtt``, ``api``, ``opcua`` (a name's
    scheme), else ``file``."""
    scheme, colon, _ = name.partition(":")
    return scheme if colon and scheme in ("mqtt", "api", "opcua") else "file"


def ingest_options(settings: Settings, **kwargs: Any) -> IngestOptions:
    """The ingest's options from the settings, plus per-batch ones (contract, replay, source)."""
    return IngestOptions(
        clock_skew_s=settings.ingest_clock_skew_s,
        window_s=settings.ingest_window_s,
        alarm_score=settings.ingest_alarm_score,
        realarm_s=settings.ingest_realarm_s,
        detector_dir=detector_dir(settings),
        max_points=settings.ingest_max_points,
        max_graph_records=settings.ingest_max_graph_records,
        **kwargs,
    )


class RunLock:
    """The twin's lock on agent work: held *alone* by whatever may touch any run (a pass that
    resumes every cut-off run, an approval, a proposal, the inbox), and *shared* by the runs of
    workers each scoped to an asset it leases. A thread that holds it may take it again: alone
    inside alone, shared inside either (a sharer may not then take it alone: it would wait for
    itself). One waiting to hold it alone stops new sharers, so a stream of scoped runs does not
    keep it out for ever."""

    def __init__(self) -> None:
        self._state = threading.Condition()
        self._owner: int | None = None  # the thread holding it alone
        self._depth = 0  # how many times the owner took it (either way)
        self._sharers: dict[int, int] = {}  # each sharing thread: how many times it took it
        self._waiting_alone = 0  # threads waiting to hold it alone
        self._waiting_shared = 0  # and to share it

    @contextmanager
    def alone(self) -> Iterator[None]:
        """Hold it with no other thread in any run."""
        me = threading.get_ident()
        with self._state:
            if me in self._sharers:
                raise RuntimeError("a thread sharing the run lock cannot take it alone")
            if self._owner != me:
                self._waiting_alone += 1
                try:
                    self._state.wait_for(lambda: self._owner is None and not self._sharers)
                finally:
                    self._waiting_alone -= 1
                self._owner = me
            self._depth += 1
        try:
            yield
        finally:
            with self._state:
                self._depth -= 1
                if not self._depth:
                    self._owner = None
                    self._state.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold it beside other sharers (inside the owner's own hold, it is that hold)."""
        me = threading.get_ident()
        with self._state:
            if self._owner == me:
                self._depth += 1
            elif me in self._sharers:
                self._sharers[me] += 1
            else:
                self._waiting_shared += 1
                try:
                    self._state.wait_for(lambda: self._owner is None and not self._waiting_alone)
                finally:
                    self._waiting_shared -= 1
                self._sharers[me] = 1
        try:
            yield
        finally:
            with self._state:
                if self._owner == me:
                    self._depth -= 1
                else:
                    self._sharers[me] -= 1
                    if not self._sharers[me]:
                        del self._sharers[me]
                        if not self._sharers:
                            self._state.notify_all()


@dataclass
class Twin(OfflineTwin):
    """One process's handle on the twin: the store, the telemetry log and, lazily, the agents."""

    store: GraphStore
    checkpointer: BaseCheckpointSaver[Any] | None = None
    projection: Projection | None = None  # when SPARQL is served
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    metrics: Metrics = field(default_factory=Metrics)  # this process's (``GET /metrics``)
    _agents: Agents | None = field(default=None, init=False, repr=False)
    _lock: RunLock = field(default_factory=RunLock, init=False, repr=False)
    _reclassifier: Reclassifier = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._reclassifier = Reclassifier(
            self._reclassify_now, min_gap_s=self.settings.reclassify_min_gap_s
        )

    @property
    def log(self) -> TelemetryLog:
        """The telemetry log (append-only Parquet under ``TWINKG_HOME/telemetry``), with any
        ingest a crash cut short resolved first (unless another ingest is running)."""
        log = TelemetryLog(telemetry_dir(self.settings))
        if log.journal.has_entries():
            recover(self.store, log)
        return log

    def recover_ingests(self) -> RecoveryReport:
        """Complete or roll back the ingests a crash cut short (at start; decision 0028)."""
        return recover(self.store, TelemetryLog(telemetry_dir(self.settings)))

    # -- assets ---------------------------------------------------------------------------

    def assets(self, *, kind: str | None, offset: int, limit: int) -> list[AssetSummary]:
        """Assets in IRI order; ``kind`` a Neo4j label of the ontology (``Pump``)."""
        if kind is not None and kind not in Label.__members__.values():
            raise InvalidInputError(f"{kind!r} is not a class of the ontology")
        rows = self.store.read(api_queries.ASSETS, label=kind, offset=offset, limit=limit)
        return [AssetSummary.from_row(row) for row in rows]

    def asset_context(self, asset: str, *, events: int = 20) -> AssetContext:
        """What an engineer or an agent needs about one asset: profile and failure modes,
        sensors with their latest trust, neighbours with their findings, policies and the
        newest events."""
        now = self.clock().isoformat()
        profile, sensors, neighbours, policies, recent = self.store.read_all(
            [
                (aq.ASSET_PROFILE, {"asset": asset}),
                (aq.ASSET_SENSORS, {"asset": asset, "as_of": now}),
                (aq.NEIGHBOURS, {"asset": asset, "as_of": now}),
                (aq.POLICIES, {"asset": asset}),
                (api_queries.ASSET_EVENTS, {"asset": asset, "limit": events}),
            ]
        )
        if not profile:
            raise NotFoundError(f"no asset {asset!r} in the graph")
        return AssetContext.from_rows(
            profile, sensors=sensors, neighbours=neighbours, policies=policies[0], events=recent
        )

    def plant_graph(self, *, area: str | None, limit: int, sensors: bool = True) -> PlantGraph:
        """The plant as a graph of equipment, flows and sensors (decision 0076): the first
        ``limit`` assets other than sensors in IRI order, of the whole plant or of ``area`` (the
        IRI or tag of an asset: it and what is transitively part of it), with the sensors on
        them when ``sensors`` (each with its latest trust as of now) and the ``feeds``,
        ``drives`` and ``monitors`` edges among them. :class:`NotFoundError` for an unknown
        ``area``."""
        if limit < 1:
            raise InvalidInputError(f"limit must be at least 1, got {limit}")
        read = self.store.read
        if area is None:
            rows = read(plant_queries.PLANT_ASSETS, limit=limit + 1, sensors=sensors)
        else:
            found = read(plant_queries.AREA_BY_IRI, iri=area) or read(
                plant_queries.AREA_BY_TAG, tag=area
            )
            if not found:
                raise NotFoundError(f"no asset or area {area!r} in the graph")
            rows = read(
                plant_queries.AREA_ASSETS, area=found[0]["uri"], limit=limit + 1, sensors=sensors
            )
        iris = sorted({sensor for row in rows[:limit] for sensor in row["sensors"]})
        now = self.clock().isoformat()
        on = read(plant_queries.SENSORS, uris=iris, as_of=now) if iris else []
        return PlantGraph.from_rows(rows, on, limit=limit)

    def criticality(self, asset: str) -> str | None:
        """The asset's criticality class (A/B/C), or ``None`` when it has none."""
        profile = self.store.read(aq.ASSET_PROFILE, asset=asset)
        if not profile:
            raise NotFoundError(f"no asset {asset!r} in the graph")
        return _text_or_none(profile[0]["criticality"])

    # -- queries and data in --------------------------------------------------------------

    def cypher(
        self, query: str, params: dict[str, Any] | None = None, *, timeout_s: float | None = None
    ) -> QueryResult:
        """Untrusted Cypher: read-only by construction, time-limited, row-capped. A caller may
        ask for a shorter timeout than the server's, never a longer one."""
        limit = self.settings.query_timeout_s
        return self.store.read_only(
            query,
            params or {},
            timeout_s=limit if timeout_s is None else min(timeout_s, limit),
            row_cap=self.settings.query_row_cap,
            byte_cap=self.settings.query_max_bytes,
        )

    def sparql(self, query: str, *, accept: str | None = None, caller: str = "anonymous") -> Any:
        """A SPARQL 1.1 query on the RDF projection (refusing updates, SERVICE and LOAD), run in
        a worker process; ``caller`` (a subject) counts against the per-caller limit."""
        if self.projection is None:
            raise ConfigError("this twin serves no SPARQL projection")
        return self.projection.query(
            query,
            accept=accept,
            timeout_s=self.settings.sparql_timeout_s,
            row_cap=self.settings.sparql_row_cap,
            caller=caller,
        )

    def ingest(
        self,
        source: Source,
        *,
        replay: bool | None = None,
        fit_rows: int | None = None,
        reclassify: Reclassify = Reclassify.WAIT,
        progress: Progress | None = None,
        bound: SiteBound | None = None,
    ) -> Iterator[IngestResult]:
        """Ingest every batch of ``source``, each checked against its declared contract point
        by point and applied all or nothing (``reasoner.ingest``), and have the assets
        reclassified after each batch that changed something.

        The one way telemetry comes in, whatever its source: the limits (points per batch,
        JSON depth, graph records) come from the settings here. Lazy: each batch is read,
        ingested and reclassified as the caller takes the next result, so a push source is
        ingested for as long as it runs. ``replay`` and ``fit_rows`` override the source's
        defaults (:class:`connect.source.Batch`); ``progress`` hears every phase, parse first.
        Reclassification is coalesced (``api/reclassification.py``): ``WAIT`` returns what the
        run covering the batch found, ``BACKGROUND`` only the generation it will reach
        (:meth:`reclassification`), ``OFF`` asks for none. ``bound``: a producer bound to sites;
        a batch naming a sensor of another site, or of none, is refused whole before anything
        of it is written (:class:`SiteMismatchError`, decision 0085).
        """
        context = self._source_context(progress)
        log = self.log
        for batch in source.batches(context):
            if bound is not None:
                bound.check(self.store, batch)
            options = ingest_options(
                self.settings,
                contract=batch.contract,
                replay=batch.replay if replay is None else replay,
                fit_rows=batch.fit_rows if fit_rows is None else fit_rows,
                source=batch.name,
            )
            started = time.perf_counter()
            report = ingest(
                self.store,
                log,
                batch.points,
                content_hash=batch.content_hash,
                options=options,
                progress=progress,
            )
            self.metrics.ingested(_way(batch.name), report, time.perf_counter() - started)
            yield self._reclassified(report, reclassify)

    def _source_context(self, progress: Progress | None = None) -> SourceContext:
        """What a source may ask of the twin while it reads, with the settings' limits."""
        return SourceContext(
            sensors=lambda: telemetry_state.sensors(self.store),
            max_points=self.settings.ingest_max_points,
            json_max_depth=self.settings.ingest_json_max_depth,
            progress=progress,
        )

    def _reclassified(self, report: IngestReport, reclassify: Reclassify) -> IngestResult:
        """``report`` with the reclassification it asks for (none for a duplicate)."""
        if reclassify is Reclassify.OFF or report.duplicate:
            return IngestResult(report)
        generation = self._reclassifier.request()
        if reclassify is Reclassify.BACKGROUND:
            return IngestResult(report, reclassification=generation)
        outcome = self._reclassifier.wait(generation)
        return IngestResult(report, outcome.summary, outcome.error, generation)

    def read_batches(self, source: Source) -> list[Batch]:
        """Every batch of ``source``, parsed under the settings' limits; nothing is ingested.
        :class:`InvalidInputError` (and its kin) for a source refused whole."""
        return list(source.batches(self._source_context()))

    def ingest_batches(
        self, batches: Sequence[Batch], *, reclassify: Reclassify = Reclassify.WAIT
    ) -> IngestResult:
        """Ingest ``batches`` (messages declaring the same contract, read by
        :meth:`read_batches`) together as one batch (``reasoner.ingest.ingest_group``,
        decision 0067): each message accepts and quarantines what it would alone, one after the
        other, and the report's ``members`` say so message by message. The same contract is the
        one their references resolve to (``telemetry`` and ``telemetry@1.0.0`` are one)."""
        if not batches:
            raise InvalidInputError("no batches to ingest")
        first = batches[0]
        mode = (contract_of(first.contract), first.replay, first.fit_rows)
        if any((contract_of(b.contract), b.replay, b.fit_rows) != mode for b in batches):
            raise InvalidInputError("batches ingested together must declare the same contract")
        options = ingest_options(
            self.settings,
            contract=first.contract,
            replay=first.replay,
            fit_rows=first.fit_rows,
            source=first.name,
        )
        started = time.perf_counter()
        members = [Member(b.points, b.content_hash, b.name) for b in batches]
        report = ingest_group(self.store, self.log, members, options=options)
        self.metrics.ingested(_way(first.name), report, time.perf_counter() - started)
        return self._reclassified(report, reclassify)

    def reclassification(self) -> ReclassifyStatus:
        """How far reclassification after ingest has come (generations asked for and done)."""
        return self._reclassifier.status()

    def settle_reclassification(self) -> ReclassifyOutcome:
        """Wait until the inferred labels cover every batch ingested so far (a state to wait
        on before reading them, as tests and a graceful shutdown do)."""
        return self._reclassifier.settle()

    def _reclassify_now(self) -> ReclassifySummary:
        from twinkg.reasoner.inference import reclassify  # noqa: PLC0415 - loads owlready2

        return reclassify(self.store)

    def close(self) -> None:
        """Finish the reclassification the ingests so far asked for; take no more."""
        self._reclassifier.close()

    # -- agents ---------------------------------------------------------------------------

    def agents(self) -> Agents:
        """The agents (built on first use: LangGraph loads only when needed)."""
        from twinkg.agents.context import AgentSettings  # noqa: PLC0415
        from twinkg.agents.runner import Agents  # noqa: PLC0415

        if self.checkpointer is None:
            raise ConfigError("this twin was opened without a checkpointer: agents cannot run")
        if self._agents is not None:  # built: no lock, or each run would wait for the others
            return self._agents
        with self._lock.alone():
            if self._agents is None:
                self._agents = Agents(
                    store=self.store,
                    log=self.log,
                    checkpointer=self.checkpointer,
                    planner=planner_for(self.settings, self.store),
                    settings=AgentSettings(
                        stale_after_s=self.settings.agents_stale_after_s,
                        lookback_s=self.settings.agents_lookback_s,
                        baseline_s=self.settings.agents_baseline_s,
                        watch_s=self.settings.agents_watch_s,
                        request_ttl_s=self.settings.approval_request_ttl_s,
                    ),
                    on_guard_again=lambda _run: self.metrics.guarded_again.inc(),
                )
            return self._agents

    def run_agents(
        self,
        *,
        scope: str | None,
        as_of: str | None,
        max_runs: int,
        on_node: Callable[[str, str], None] | None = None,
        resume_all: bool = True,
    ) -> list[RunResult]:
        """Resume crashed runs (only those scoped to ``scope`` with ``resume_all=False``), then
        decide on every open finding (one run per case).

        ``resume_all=False`` with a ``scope`` is a worker's pass under the lease of ``scope``
        (:class:`~twinkg.api.agent_worker.AgentWorker`): it runs beside other such passes of this
        process. The caller must hold that lease; every other pass runs alone."""
        agents = self.agents()
        # a worker's runs scoped to an asset it leases touch no other run: they run side by side
        hold = self._lock.alone() if resume_all or scope is None else self._lock.shared()
        with hold:
            moment = as_of_moment(self.store, as_of)
            timed = self.metrics.node_timer(on_node)
            results = agents.run_all(
                scope=scope,
                as_of=moment,
                max_runs=max_runs,
                on_node=timed,
                resume_all=resume_all,
            )
        return self._counted(results)

    def case_assets(self, *, as_of: str | None = None, limit: int = 1000) -> list[str]:
        """The assets the agents have something to decide on (open findings, silent sensors,
        restarts due), each once, the earliest finding's first: the work a worker leases."""
        moment = (as_of_moment(self.store, as_of) or self.clock()).isoformat()
        s = self.settings
        rows = [
            *self.store.read(
                aq.OPEN_FINDINGS,
                scope=None,
                as_of=moment,
                lookback_s=s.agents_lookback_s,
                limit=limit,
            ),
            *self.store.read(
                aq.STALE_SENSORS,
                scope=None,
                as_of=moment,
                stale_s=s.agents_stale_after_s,
                limit=limit,
            ),
            *self.store.read(aq.RESTART_DUE, scope=None, as_of=moment, limit=limit),
        ]
        rows.sort(key=lambda row: (str(row["occurred_at"]), str(row["asset"])))
        return list(dict.fromkeys(str(row["asset"]) for row in rows))

    def propose(self, action: ProposedAction, *, as_of: str | None) -> RunResult:
        """An external proposal (an operator's, an LLM client's) through the same guard;
        :class:`NotFoundError` when the target is no asset of the graph,
        :class:`UnknownQuantityKindError` when its quantity kind is none of the graph's."""
        self.criticality(action.target)  # the agents assume their scope exists
        kind = action.quantity_kind
        if kind is not None and not self.store.read(api_queries.QUANTITY_KIND, uri=kind):
            raise UnknownQuantityKindError(f"no quantity kind {kind!r} in the graph")
        agents = self.agents()
        with self._lock.alone():
            moment = as_of_moment(self.store, as_of)
            timer = self.metrics.node_timer()
            result = agents.run(scope=action.target, as_of=moment, action=action, on_node=timer)
        return self._counted([result])[0]

    def new_action(
        self,
        kind: ActionKind,
        target: str,
        confidence: float,
        *,
        quantity_kind: str | None = None,
        current_setpoint: float | None = None,
        proposed_setpoint: float | None = None,
        ramp_s: float | None = None,
        rationale: str = "",
        as_of: str | None = None,
    ) -> ProposedAction:
        """A proposal stamped with the time it is judged at."""
        moment = as_of_moment(self.store, as_of) or self.clock()
        return ProposedAction(
            kind=kind,
            target=target,
            confidence=confidence,
            proposed_at=moment.isoformat(),
            quantity_kind=quantity_kind,
            current_setpoint=current_setpoint,
            proposed_setpoint=proposed_setpoint,
            ramp_s=ramp_s,
            rationale=rationale,
        )

    def pending(self) -> list[PendingApproval]:
        """The approval requests waiting for a person, oldest first."""
        agents = self.agents()
        with self._lock.alone():
            requests = agents.pending()
        # two reads for the whole inbox, not two a request
        evidence: dict[str, list[EvidenceItem]] = {r["run_id"]: [] for r in requests}
        for row in self.store.read(
            aq.APPROVALS_EVIDENCE, run_ids=list(evidence), limit=EVIDENCE_LIMIT
        ):
            evidence[row["run_id"]].append(EvidenceItem.from_row(row))
        targets = sorted({r["action"]["target"] for r in requests})
        criticality = {  # a target that left the graph since has none: the strictest rule
            row["asset"]: row["criticality"]
            for row in self.store.read(aq.CRITICALITIES, assets=targets)
        }
        return [
            PendingApproval.from_request(
                request,
                evidence[request["run_id"]],
                _text_or_none(criticality.get(request["action"]["target"])),
            )
            for request in requests
        ]

    def evidence(self, run_id: str, *, limit: int = EVIDENCE_LIMIT) -> list[EvidenceItem]:
        """What run ``run_id``'s decisions used, as its approver is shown it (findings,
        telemetry windows, trust scores, hypotheses, policies)."""
        rows = self.store.read(aq.APPROVAL_EVIDENCE, run_id=run_id, limit=limit)
        return [EvidenceItem.from_row(row) for row in rows]

    def answer(
        self,
        decision: str,
        *,
        outcome: str,
        person: str,
        role: str | None,
        ttl_s: float | None = None,
        edits: dict[str, float] | None = None,
        comment: str = "",
        may_approve: Callable[[str | None], bool] | None = None,
    ) -> RunResult:
        """Approve, edit or reject a waiting action as ``person`` in ``role``.

        The answer is bound to the request's argument hash and graph version and expires after
        ``ttl_s``; the agents check it against the graph (the person must hold the role, the
        role must be one the request allows) and the guard judges the action again.
        ``may_approve`` is the caller's own limit by the target's criticality (the API's roles).
        """
        from twinkg.agents.approval import check_edits  # noqa: PLC0415 - loads LangGraph

        check_edits(edits or {})
        agents = self.agents()
        with self._lock.alone():
            request = agents.request_for(decision)
            if may_approve is not None and outcome != "rejected":
                level = self.criticality(request["action"]["target"])
                if not may_approve(level):
                    raise PermissionDeniedError(
                        f"your role may not approve actions on criticality {level} assets"
                    )
            now = self.clock()
            ttl = self.settings.approval_ttl_s if ttl_s is None else ttl_s
            chosen = role_iri(role) if role else self._role_held(person, request["roles"])
            answer = ApprovalInput(
                outcome="edited" if edits and outcome == "approved" else outcome,
                approver=person,
                role=chosen,
                action_hash=request["action_hash"],
                graph_version=request["graph_version"],
                expires_at=(now + timedelta(seconds=ttl)).isoformat(),
                given_at=now.isoformat(),
                edits=dict(edits or {}),
                comment=comment,
            )
            return self._counted([agents.answer(decision, answer)])[0]

    def _counted(self, results: list[RunResult]) -> list[RunResult]:
        """``results``, each counted in the metrics by how it ended."""
        for result in results:
            outcome = result.state.outcome
            self.metrics.decided(outcome.value if outcome is not None else result.status)
        return results

    def _role_held(self, person: str, allowed: list[str]) -> str:
        """The first allowed role the person holds (else the first allowed: the agents then
        refuse the approval with the reason)."""
        people = self.store.read(aq.PERSON, person=person)
        held = set(people[0]["roles"]) if people else set()
        return next((r for r in allowed if r in held), allowed[0])

    # -- decisions and compliance ---------------------------------------------------------

    def decisions(self, *, limit: int) -> list[RecentDecision]:
        """The latest decisions, newest first."""
        return [
            RecentDecision.from_row(r) for r in self.store.read(aq.RECENT_DECISIONS, limit=limit)
        ]

    def decision(self, decision: str) -> DecisionSummary:
        """One decision's headline; :class:`NotFoundError` when there is none."""
        from twinkg.ontology.errors import DecisionNotFoundError  # noqa: PLC0415

        iri = decision_ref(decision)
        rows = self.store.read(aq.DECISION_SUMMARY, decision=iri)
        if not rows:
            raise DecisionNotFoundError(f"no decision {iri!r} in the graph")
        return DecisionSummary.from_row(rows[0])

    def run_decisions(self, run_id: str) -> list[RunDecision]:
        """The decisions one run recorded, in order."""
        return [RunDecision.from_row(r) for r in self.store.read(aq.RUN_DECISIONS, run_id=run_id)]

    def lineage(self, decision: str, *, check: bool = True) -> Lineage:
        """The decision's PROV-O record and everything it points at, as RDF; with ``check``,
        whether it conforms to the PROV-O shapes (pySHACL: skip it when only the RDF is
        wanted). :class:`DecisionNotFoundError` when there is no such decision."""
        graph = lineage(self.store, decision)
        iri = decision_ref(decision)
        if not check:
            return Lineage(iri, graph)
        from twinkg.reasoner.prov_check import check_prov  # noqa: PLC0415 - pySHACL, only here

        outcome = check_prov(graph)
        return Lineage(iri, graph, outcome.conforms, tuple(v.message for v in outcome.violations))

    def replay(self, decision: str, *, progress: Progress | None = None) -> ReplayReport:
        """Re-run a decision from its recorded inputs and compare, field by field; nothing is
        written. ``progress`` follows loading the records, each step and the comparison."""
        from twinkg.agents.replay import replay  # noqa: PLC0415

        return replay(self.store, self.log, decision, progress=progress)

    def verify(
        self, *, expect_head: str | None = None, since: str | None = None
    ) -> chain_verify.VerifyReport:
        """Recompute every decision record's hash (with ``since``, a trusted head hash: only
        that record's and those after it); the report lists each record altered, deleted or
        unchained, and a head that is not ``expect_head``."""
        return chain_verify.verify(self.store, expect_head=expect_head, since=since)


@contextmanager
def agents_twin(settings: Settings, store: GraphStore) -> Iterator[Twin]:
    """A twin over ``store`` with the configured checkpointer open (for agent work)."""
    with ExitStack() as stack:
        saver = stack.enter_context(open_checkpointer(settings))
        twin = Twin(settings, store, checkpointer=saver)
        stack.callback(twin.close)
        yield twin
