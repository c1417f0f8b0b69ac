"""Simulation runs as traceable records (decision 0044).

A run of a scenario under one policy and one seed is a ``tk:SimulationRun`` (a ``prov:Activity``:
the writer gives it both labels, from the ontology's class hierarchy). :func:`start_run` writes
it with what makes it repeatable (scenario name, version, content hash and file, seed, policy,
simulator and its version, the TwinKG, ontology and shapes versions, horizon and step) and links
it to its ``tk:Scenario`` (a ``prov:Entity`` whose IRI is made from the scenario's content hash,
so every run of the same content shares one node). :func:`finish_run` sets the end status and
writes one ``tk:KPIResult`` per KPI (``tk:kpiOf`` and ``prov:wasGeneratedBy`` the run; IRI
``<run>/kpi/<name>``, so finishing twice rewrites the same nodes).

A decision made in a run says so itself: the agents decide with ``informed_by=<run>``
(``Agents.run``), and the decision recorder writes ``prov:wasInformedBy <run>`` inside the
decision's own record, in the same transaction, covered by its chain hash (``kg.provenance``).
Nothing here adds an edge to a recorded decision: that would change a hash-chained record after
the fact, and ``twinkg verify`` would rightly report the decision altered. :func:`link_decisions`
only checks that each decision the loop saw was recorded in the run, and refuses (writing
nothing) one that was not.

Every write goes through :meth:`GraphStore.transaction` and its record writer, so the nodes get
their class and superclass labels and ``rdf_type``, and the change log entry the SPARQL
projection follows commits with them (:mod:`kg.outbox`). All are idempotent.

A KPI whose value is not finite (NaN: the plant has no output it is built on) is not recorded:
a ``tk:KPIResult`` always has a ``tk:kpiValue``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twinkg.kg.queries import NamedQuery, token
from twinkg.kg.records import GraphRecords, NodeRecord, PropValue, RelRecord
from twinkg.kg.store import GraphStore, StoreTx
from twinkg.ontology.errors import InvalidInputError, NotFoundError
from twinkg.ontology.vocab import TK, Label, PropKey, RelType

__all__ = [
    "RUN_STATUSES",
    "SCENARIO_BASE",
    "GraphRunStore",
    "SimRunRecord",
    "SimRunStart",
    "SimRunSummary",
    "finish_run",
    "get_run",
    "kpi_iri",
    "link_decisions",
    "list_runs",
    "scenario_iri",
    "start_run",
]

SCENARIO_BASE = "https://w3id.org/twinkg/sim/scenario/"
"""Scenario nodes are ``SCENARIO_BASE + <content hash>``."""

RUN_STATUSES = ("running", "completed", "failed")

_R, _RUN, _SCENARIO, _KPI, _DECISION = (
    token(Label.RESOURCE),
    token(Label.SIMULATION_RUN),
    token(Label.SCENARIO),
    token(Label.KPI_RESULT),
    token(Label.DECISION),
)
_HAS_SCENARIO, _KPI_OF, _INFORMED = (
    token(RelType.SCENARIO),
    token(RelType.KPI_OF),
    token(RelType.PROV_WAS_INFORMED_BY),
)
_P = {key: token(key) for key in PropKey}


def _p(key: PropKey) -> str:
    return _P[key]


_RUN_FIELDS = (
    f"r.uri AS run, r.{_p(PropKey.POLICY)} AS policy, r.{_p(PropKey.SIMULATION_SEED)} AS seed, "
    f"r.{_p(PropKey.RUN_STATUS)} AS status, r.{_p(PropKey.PARTIAL)} AS partial, "
    f"r.{_p(PropKey.REASON)} AS reason, r.{_p(PropKey.PROV_STARTED_AT_TIME)} AS started_at, "
    f"r.{_p(PropKey.PROV_ENDED_AT_TIME)} AS ended_at, "
    f"s.{_p(PropKey.SCENARIO_NAME)} AS scenario, s.{_p(PropKey.VERSION)} AS scenario_version, "
    f"s.{_p(PropKey.CONTENT_HASH)} AS scenario_hash"
)

GET_RUN = NamedQuery(
    "sim.run",
    f"MATCH (r:{_R}:{_RUN} {{uri: $run}}) "
    f"OPTIONAL MATCH (r)-[:{_HAS_SCENARIO}]->(s:{_SCENARIO}) "
    f"RETURN {_RUN_FIELDS}, "
    f"r.{_p(PropKey.RDFS_COMMENT)} AS scenario_file, "
    f"r.{_p(PropKey.SIMULATOR_NAME)} AS simulator, "
    f"r.{_p(PropKey.SIMULATOR_VERSION)} AS simulator_version, "
    f"r.{_p(PropKey.TWINKG_VERSION)} AS twinkg_version, "
    f"r.{_p(PropKey.ONTOLOGY_VERSION)} AS ontology_version, "
    f"r.{_p(PropKey.SHAPES_VERSION)} AS shapes_version, "
    f"r.{_p(PropKey.HORIZON)} AS horizon_s, r.{_p(PropKey.STEP_SIZE)} AS step_s, "
    f"[(k:{_KPI})-[:{_KPI_OF}]->(r) | {{name: k.{_p(PropKey.KPI_NAME)}, "
    f"value: k.{_p(PropKey.KPI_VALUE)}, unit: k.{_p(PropKey.KPI_UNIT)}}}] AS kpis, "
    f"[(d:{_DECISION})-[:{_INFORMED}]->(r) | d.uri] AS decisions",
)
"""One run with its scenario, versions, KPIs and the decisions it informed."""

LIST_RUNS = NamedQuery(
    "sim.runs",
    f"MATCH (r:{_R}:{_RUN}) "
    f"OPTIONAL MATCH (r)-[:{_HAS_SCENARIO}]->(s:{_SCENARIO}) "
    f"RETURN {_RUN_FIELDS} "
    "ORDER BY started_at DESC, run LIMIT $limit",
)
"""The newest runs first."""

RUN_DECISIONS = NamedQuery(
    "sim.run_decisions",
    "UNWIND $decisions AS decision "
    f"OPTIONAL MATCH (d:{_R}:{_DECISION} {{uri: decision}}) "
    f"OPTIONAL MATCH (d)-[i:{_INFORMED}]->(:{_R}:{_RUN} {{uri: $run}}) "
    "RETURN decision, count(DISTINCT d) > 0 AS recorded, count(i) > 0 AS informed",
)
"""For each decision IRI: whether it is recorded, and whether its record says it was made in
(``prov:wasInformedBy``) the run."""


@dataclass(frozen=True, slots=True)
class SimRunStart:
    """What is known of a run before it starts (everything needed to repeat it)."""

    run: str  # the tk:SimulationRun IRI
    scenario: str
    scenario_version: str
    scenario_hash: str
    scenario_file: str  # where the scenario came from (a path, or "<upload>")
    seed: int
    policy: str
    simulator: str
    simulator_version: str
    twinkg_version: str
    ontology_version: str
    shapes_version: str
    horizon_s: float
    step_s: float
    started_at: str  # ISO 8601 with a UTC offset (wall clock)


@dataclass(frozen=True, slots=True)
class SimRunSummary:
    """A recorded run in a listing."""

    run: str
    scenario: str | None
    scenario_version: str | None
    scenario_hash: str | None
    policy: str | None
    seed: int | None
    status: str | None
    partial: bool | None
    reason: str | None
    started_at: str | None
    ended_at: str | None


@dataclass(frozen=True, slots=True)
class SimRunRecord:
    """A recorded run, as :func:`get_run` reads it back."""

    summary: SimRunSummary
    scenario_file: str | None
    simulator: str | None
    simulator_version: str | None
    twinkg_version: str | None
    ontology_version: str | None
    shapes_version: str | None
    horizon_s: float | None
    step_s: float | None
    kpis: Mapping[str, tuple[float, str]]  # name → (value, unit)
    decisions: tuple[str, ...]  # sorted

    @property
    def run(self) -> str:
        """The run's IRI."""
        return self.summary.run


def scenario_iri(content_hash: str) -> str:
    """The IRI of the scenario node with this content hash (SHA-256, hex)."""
    if len(content_hash) != 64 or any(c not in "0123456789abcdef" for c in content_hash):
        raise InvalidInputError(f"a scenario's content hash is 64 hex digits, not {content_hash!r}")
    return SCENARIO_BASE + content_hash


def kpi_iri(run: str, name: str) -> str:
    """The IRI of a run's KPI result ``name``."""
    return f"{run}/kpi/{name}"


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise InvalidInputError(f"a run's start time needs a UTC offset: {text!r}")
    return moment


def _props(**values: PropValue | None) -> dict[PropKey, PropValue]:
    return {PropKey(k): v for k, v in values.items() if v is not None}


def _write(store: GraphStore, records: GraphRecords) -> None:
    def work(tx: StoreTx) -> None:
        tx.write(records)

    store.transaction(work)


def start_run(store: GraphStore, start: SimRunStart) -> None:
    """Record ``start``: the run (status "running") and its scenario, in one transaction."""
    if start.seed < 0:
        raise InvalidInputError(f"a seed is a non-negative integer, not {start.seed}")
    scenario = scenario_iri(start.scenario_hash)
    run = NodeRecord(
        start.run,
        (str(TK.SimulationRun),),
        _props(
            rdfs_label=f"{start.scenario}@{start.scenario_version} {start.policy} "
            f"seed {start.seed}",
            rdfs_comment=start.scenario_file,
            policy=start.policy,
            simulationSeed=start.seed,
            simulatorName=start.simulator,
            simulatorVersion=start.simulator_version,
            twinkgVersion=start.twinkg_version,
            ontologyVersion=start.ontology_version,
            shapesVersion=start.shapes_version,
            horizon=float(start.horizon_s),
            stepSize=float(start.step_s),
            runStatus="running",
            partial=False,
            prov_startedAtTime=_time(start.started_at),
        ),
    )
    node = NodeRecord(
        scenario,
        (str(TK.Scenario),),
        _props(
            rdfs_label=f"{start.scenario}@{start.scenario_version}",
            scenarioName=start.scenario,
            version=start.scenario_version,
            contentHash=start.scenario_hash,
        ),
    )
    _write(store, GraphRecords((run, node), (RelRecord(RelType.SCENARIO, start.run, scenario),)))


def _known(store: GraphStore, run: str) -> None:
    if not store.read(GET_RUN, run=run):
        raise NotFoundError(f"no simulation run {run!r} in the graph")


def link_decisions(store: GraphStore, run: str, decisions: Sequence[str]) -> tuple[str, ...]:
    """Check that each of ``decisions`` was recorded in ``run``; the decisions, once each.

    Writes nothing: a decision made in a run records ``prov:wasInformedBy`` the run itself, in
    its own hash-chained record (the agents decide with ``informed_by=run``). A decision's record
    cannot be changed after the fact, so one recorded without the link is refused with
    :class:`InvalidInputError`; a run or decision that does not exist with
    :class:`NotFoundError`. (The name is the loop's ``RunRecorder.link_decisions``.)
    """
    _known(store, run)
    unique = tuple(dict.fromkeys(decisions))
    if not unique:
        return ()
    rows = {
        str(row["decision"]): row
        for row in store.read(RUN_DECISIONS, run=run, decisions=list(unique))
    }
    for decision in unique:
        row = rows.get(decision)
        if row is None or not row["recorded"]:
            raise NotFoundError(f"no decision {decision!r} in the graph")
        if not row["informed"]:
            raise InvalidInputError(
                f"decision {decision} was not recorded in simulation run {run}: its record "
                "cannot be changed after the fact (hash chain); decide with informed_by=run "
                "to record it in the run"
            )
    return unique


def finish_run(
    store: GraphStore,
    run: str,
    *,
    status: str,
    reason: str | None,
    partial: bool,
    kpis: Mapping[str, tuple[float, str]],
    ended_at: datetime | None = None,
) -> None:
    """Record the run's end: its status, reason, whether it is partial, and its KPIs
    (name → (value, unit)), in one transaction; finishing again overwrites, never duplicates."""
    if status not in RUN_STATUSES[1:]:
        raise InvalidInputError(f"a run ends 'completed' or 'failed', not {status!r}")
    _known(store, run)
    nodes = [
        NodeRecord(
            run,
            (),
            _props(
                runStatus=status,
                partial=partial,
                reason=reason,
                prov_endedAtTime=ended_at,
            ),
        )
    ]
    rels: list[RelRecord] = []
    for name, (value, unit) in sorted(kpis.items()):
        if not math.isfinite(float(value)):
            continue
        uri = kpi_iri(run, name)
        nodes.append(
            NodeRecord(
                uri,
                (str(TK.KPIResult),),
                _props(kpiName=name, kpiValue=float(value), kpiUnit=unit, rdfs_label=name),
            )
        )
        rels.append(RelRecord(RelType.KPI_OF, uri, run))
        rels.append(RelRecord(RelType.PROV_WAS_GENERATED_BY, uri, run))
    _write(store, GraphRecords(tuple(nodes), tuple(rels)))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _summary(row: Mapping[str, Any]) -> SimRunSummary:
    return SimRunSummary(
        run=str(row["run"]),
        scenario=_text(row["scenario"]),
        scenario_version=_text(row["scenario_version"]),
        scenario_hash=_text(row["scenario_hash"]),
        policy=_text(row["policy"]),
        seed=None if row["seed"] is None else int(row["seed"]),
        status=_text(row["status"]),
        partial=None if row["partial"] is None else bool(row["partial"]),
        reason=_text(row["reason"]),
        started_at=_text(row["started_at"]),
        ended_at=_text(row["ended_at"]),
    )


def get_run(store: GraphStore, run: str) -> SimRunRecord | None:
    """The run ``run`` (its IRI) as recorded, or None when there is none."""
    rows = store.read(GET_RUN, run=run)
    if not rows:
        return None
    row = rows[0]
    kpis = {
        str(k["name"]): (float(k["value"]), str(k["unit"]))
        for k in sorted(row["kpis"], key=lambda k: str(k["name"]))
        if k["name"] is not None and k["value"] is not None
    }
    return SimRunRecord(
        summary=_summary(row),
        scenario_file=_text(row["scenario_file"]),
        simulator=_text(row["simulator"]),
        simulator_version=_text(row["simulator_version"]),
        twinkg_version=_text(row["twinkg_version"]),
        ontology_version=_text(row["ontology_version"]),
        shapes_version=_text(row["shapes_version"]),
        horizon_s=None if row["horizon_s"] is None else float(row["horizon_s"]),
        step_s=None if row["step_s"] is None else float(row["step_s"]),
        kpis=kpis,
        decisions=tuple(sorted(set(row["decisions"]))),
    )


def list_runs(store: GraphStore, *, limit: int = 50) -> list[SimRunSummary]:
    """The recorded runs, newest first, at most ``limit``."""
    if not 1 <= limit <= 10_000:
        raise InvalidInputError(f"limit must be 1..10000, not {limit}")
    return [_summary(row) for row in store.read(LIST_RUNS, limit=limit)]


@dataclass(frozen=True, slots=True)
class GraphRunStore:
    """The functions above bound to one store (what a recorder adapter holds)."""

    store: GraphStore

    def start_run(self, start: SimRunStart) -> None:
        """See :func:`start_run`."""
        start_run(self.store, start)

    def link_decisions(self, run: str, decisions: Sequence[str]) -> None:
        """See :func:`link_decisions` (a check: writes nothing)."""
        link_decisions(self.store, run, decisions)

    def finish_run(
        self,
        run: str,
        status: str,
        reason: str | None,
        partial: bool,
        kpis: Mapping[str, tuple[float, str]],
    ) -> None:
        """See :func:`finish_run`."""
        finish_run(self.store, run, status=status, reason=reason, partial=partial, kpis=kpis)
