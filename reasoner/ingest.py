"""Telemetry ingest: contract → quarantine or log → twin state, events and trust, all or nothing.

One call takes one batch (a CSV file or a JSON batch) through the telemetry contract's compiled
checks. Rejected points go to the quarantine with their reasons, accepted ones to the telemetry
log; Neo4j gets the batch, each sensor's latest state, window aggregates, anomalies (from each
piece of equipment's detector) with the alarms they raise, and trust scores, in one transaction.
The same batch content is applied once.

Several messages may be ingested together as one batch (:func:`ingest_group`, decision 0067):
each is checked against the contract on its own, in order, as if ingested alone one after the
other, so it accepts and quarantines exactly the points it would have; the window aggregates,
trust and events are then derived from their accepted points together, in one transaction.
Each message is recorded as a ``tk:IngestMessage`` in the batch, so a repeat of any one of them
is recognised as a duplicate.

The two stores commit as one unit (``reasoner.ingest_commit``, decision 0028): the log's journal
records the batch as pending and its files are staged and flushed before Neo4j commits; Neo4j's
commit (the batch node with its content hash) decides; then the log makes the batch visible. A
crash at any step leaves an entry that recovery (``reasoner.ingest_recovery``, run first by every
ingest) completes or rolls back. One ingest runs at a time per log (its writer lock). A batch
larger than ``max_points``, or whose graph records would not fit one transaction
(``max_graph_records``), is refused before anything is written.

Progress goes to an optional callback, phase by phase (``reasoner.progress.IngestPhase``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from twinkg.kg import telemetry_state
from twinkg.kg.records import GraphRecords, NodeRecord, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import (
    POINTS_SCHEMA,
    QUARANTINE_SCHEMA,
    BatchManifest,
    TelemetryLog,
)
from twinkg.ontology.errors import PayloadTooLargeError
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.ontology.vocab import TK, PropKey, RelType
from twinkg.reasoner import trust
from twinkg.reasoner.aggregates import (
    SensorColumns,
    aggregate_records,
    latest_state,
    moment,
    nanos,
    window_aggregates,
)
from twinkg.reasoner.batch_trust import batch_trust, first_time, trust_node
from twinkg.reasoner.compiled import (
    CheckResult,
    CompiledContract,
    SensorTable,
    advance,
    compile_contract,
    concat_results,
)
from twinkg.reasoner.events import AnomalyReport, Events, batch_events
from twinkg.reasoner.ingest_commit import Staging, commit_batch
from twinkg.reasoner.ingest_recovery import batch_iri, resolve
from twinkg.reasoner.points import PointBatch, concat_points
from twinkg.reasoner.progress import IngestPhase, Progress, Tally, no_progress
from twinkg.shapes.registry import accept

DERIVE_STEPS = 4  # windows and latest state, events, trust, records
MAX_POINTS = 5_000_000
"""Most points one batch may hold (the default of ``TWINKG_INGEST_MAX_POINTS``)."""
MAX_GRAPH_RECORDS = 300_000
"""Most nodes and relationships one batch may write (the default of
``TWINKG_INGEST_MAX_GRAPH_RECORDS``): about 100,000 window aggregates, measured to need about
0.9 GiB of Neo4j's transaction memory at its peak (2 GiB by default; decision 0028)."""


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """How to ingest: the declared contract, the clock, windows, detectors and alarm policy."""

    contract: str = "telemetry"
    clock_skew_s: float = 300.0
    window_s: float = 60.0
    received_at: datetime | None = None  # default: now
    replay: bool = False  # trust "as of" the newest point instead of the reception time
    fit_rows: int | None = None  # fit each detector on this many leading rows of the batch
    detector_dir: Path | None = None
    alarm_score: float = 0.8  # a sustained anomaly peaking here (4× threshold) raises an alarm
    alarm_min_points: int = 30
    realarm_s: float = 3600.0  # a standing episode older than this is announced anew
    source: str = ""
    max_points: int = MAX_POINTS
    max_graph_records: int = MAX_GRAPH_RECORDS


def contract_of(ref: str) -> str:
    """The contract data declared against ``ref`` is checked with (its full reference);
    the contract's error (unknown, retired) for one the ingest would refuse."""
    return _compiled(ref)[0]


def check_batch_size(points: int, max_points: int) -> None:
    """:class:`PayloadTooLargeError` when a batch of ``points`` points is more than one batch may
    hold. :func:`ingest` checks every batch; a source may check its count before converting."""
    if points > max_points:
        raise PayloadTooLargeError(
            f"{points:,} points exceed the {max_points:,} one batch may hold "
            "(TWINKG_INGEST_MAX_POINTS): send them in smaller batches"
        )


@dataclass(frozen=True, slots=True)
class Member:
    """One message of a group ingested as one batch: its points, content hash and name."""

    points: PointBatch
    content_hash: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class MemberReport:
    """What became of one message of a group: its points accepted and quarantined, or that it
    had been applied before (``duplicate``); ``batch_iri`` is the batch that holds it."""

    content_hash: str
    points: int
    accepted: int = 0
    rejected: int = 0
    duplicate: bool = False
    batch_iri: str = ""


def message_iri(content_hash: str) -> str:
    """The IRI of the ``tk:IngestMessage`` node of the message with this content hash."""
    return f"{INGEST_BASE}message/{content_hash[:32]}"


def group_hash(content_hashes: Sequence[str]) -> str:
    """The content hash of a group: SHA-256 of its messages' hashes in order."""
    return hashlib.sha256("\n".join(("group", *content_hashes)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one ingest did; ``duplicate`` when the same content had been applied before."""

    batch_id: str
    batch_iri: str
    contract: str
    points: int
    accepted: int
    rejected: int
    duplicate: bool = False
    reasons: dict[str, int] = field(default_factory=dict)
    aggregates: int = 0
    anomalies: tuple[AnomalyReport, ...] = ()
    alarms: int = 0
    trust: tuple[trust.TrustScore, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)
    finding_assets: tuple[str, ...] = ()  # the assets its anomalies and new alarms concern
    members: tuple[MemberReport, ...] = ()  # a group's messages, in order (else empty)


@functools.cache
def _compiled(ref: str) -> tuple[str, CompiledContract]:
    """The current contract for data declared against ``ref``, compiled (once per process:
    contract files are read at start-up, like code)."""
    contract = accept(ref)
    return str(contract.ref), compile_contract(contract.graph)


def sensor_table(rows: Sequence[telemetry_state.SensorRow]) -> SensorTable:
    """The contract's view of the sensors in the graph."""
    last = [r.last_observed_at for r in rows]
    return SensorTable(
        uris=pa.array([r.uri for r in rows], pa.string()),
        physical_min=np.array([np.nan if r.physical_min is None else r.physical_min for r in rows]),
        physical_max=np.array([np.nan if r.physical_max is None else r.physical_max for r in rows]),
        units=pa.array([r.unit for r in rows], pa.string()),
        last_ns=np.array([0 if t is None else nanos(t) for t in last], dtype=np.int64),
        has_last=np.array([t is not None for t in last], dtype=np.bool_),
    )


def _tables(
    batch: PointBatch, result: CheckResult, *, batch_id: str, received: datetime
) -> tuple[pa.Table, pa.Table, dict[str, int]]:
    rejected = result.rejected
    keep = pa.array(~rejected)
    accepted = pa.table(
        {
            "sensor": batch.sensor.filter(keep),
            "time": pa.array(batch.time_ns[~rejected], pa.timestamp("ns", tz="UTC")),
            "value": pa.array(batch.value[~rejected]),
            "quality": batch.quality.filter(keep),
            "producer": batch.producer.filter(keep),
            "batch": pa.repeat(pa.scalar(batch_id, pa.string()), int((~rejected).sum())),
            "seq": pa.array(batch.sequence[~rejected]),
        },
        schema=POINTS_SCHEMA,
    )
    bad = pa.array(rejected)
    reasons = result.reasons()
    quarantine = pa.table(
        {
            "batch": pa.array([batch_id] * len(reasons), pa.string()),
            "seq": pa.array(batch.sequence[rejected]),
            "received_at": pa.array([received] * len(reasons), pa.timestamp("ns", tz="UTC")),
            "sensor": batch.sensor.filter(bad),
            "time": batch.time_lexical.filter(bad),
            "value": pa.array(
                np.where(batch.counts["value"][rejected] > 0, batch.value[rejected], np.nan)
            ),
            "unit": batch.unit.filter(bad),
            "quality": batch.quality.filter(bad),
            "producer": batch.producer.filter(bad),
            "reason": pa.array(reasons, pa.string()),
        },
        schema=QUARANTINE_SCHEMA,
    )
    return accepted, quarantine, dict(Counter(reasons))


def ingest(
    store: GraphStore,
    log: TelemetryLog,
    batch: PointBatch,
    *,
    content_hash: str,
    options: IngestOptions = IngestOptions(),
    progress: Progress | None = None,
) -> IngestReport:
    """Check ``batch`` against its contract and apply it (see the module docstring).

    ``progress`` hears ``(phase, done, total)`` for each :class:`IngestPhase` after the parse, in
    order; the graph write's last report is the number of records written. A duplicate batch
    reports nothing. :class:`PayloadTooLargeError` before anything is written when the batch
    holds more points, or would write more graph records, than ``options`` allow.
    """
    report = ingest_group(
        store,
        log,
        [Member(batch, content_hash, options.source)],
        options=options,
        progress=progress,
    )
    return dataclasses.replace(report, members=())


def ingest_group(
    store: GraphStore,
    log: TelemetryLog,
    members: Sequence[Member],
    *,
    options: IngestOptions = IngestOptions(),
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest ``members`` (messages declaring the same contract) as one batch, all or nothing.

    A message applied before, or repeated within the group, is reported as a duplicate and
    skipped; one message left is ingested as a batch of its own, as :func:`ingest` would. The
    report's ``members`` say, message by message, what became of each. The limits of
    ``options`` hold for the group as a whole.
    """
    if not members:
        raise ValueError("a group needs at least one message")
    report = progress or no_progress
    clock = time.perf_counter()
    contract, compiled = _compiled(options.contract)
    check_batch_size(sum(len(m.points) for m in members), options.max_points)
    with log.writer():  # one ingest at a time per log: the contract reads the sensors' state
        resolve(store, log)  # a batch a crash cut short first
        applied = telemetry_state.batches_applied(store, [m.content_hash for m in members])
        fresh: dict[str, Member] = {}
        for m in members:
            if m.content_hash not in applied and not log.committed(m.content_hash[:32]):
                fresh.setdefault(m.content_hash, m)
        group = list(fresh.values())
        if not group:
            return _all_duplicates(members, applied, contract)
        grouped = len(group) > 1
        content_hash = (
            group_hash([m.content_hash for m in group]) if grouped else (group[0].content_hash)
        )
        batch_id = content_hash[:32]
        derived = _derive(store, group, compiled, options, batch_id=batch_id, report=report)
        derived.seconds["contract"] = derived.contract_s
        derived.seconds["derive"] = time.perf_counter() - clock - derived.contract_s
        derived.nodes.append(_batch_node(derived, contract=contract, content_hash=content_hash))
        if grouped:
            _member_records(derived, group, batch_iri(batch_id))
        records = GraphRecords(tuple(derived.nodes), tuple(dict.fromkeys(derived.rels)))
        _check_records(records, derived, options)
        received = derived.received.isoformat()
        manifest = BatchManifest(
            batch_id, contract, received, derived.accepted.num_rows, derived.rejected, ()
        )
        mark = time.perf_counter()
        written = commit_batch(
            store,
            log,
            records,
            staging=Staging(manifest, derived.accepted, derived.quarantine, derived.detectors),
            content_hash=content_hash,
            report=report,
            seconds=derived.seconds,
        )
    seconds = derived.seconds
    seconds["graph"] = time.perf_counter() - mark
    seconds["graph_nodes"] = written.node_seconds
    seconds["graph_relationships"] = written.relationship_seconds
    seconds["graph_commit"] = written.commit_seconds
    seconds["total"] = time.perf_counter() - clock
    iri = batch_iri(batch_id)
    counts = dict(zip((m.content_hash for m in group), derived.member_counts, strict=True))
    member_reports = []
    for m in members:
        accepted, rejected = counts.pop(m.content_hash, (-1, -1))
        if accepted < 0:  # applied before, or a repeat within the group
            where = applied.get(m.content_hash, iri)
            member_reports.append(MemberReport(m.content_hash, len(m.points), 0, 0, True, where))
        else:
            member_reports.append(
                MemberReport(m.content_hash, len(m.points), accepted, rejected, False, iri)
            )
    return IngestReport(
        batch_id,
        iri,
        contract,
        derived.points,
        derived.accepted.num_rows,
        derived.rejected,
        reasons=derived.reasons,
        aggregates=derived.aggregates,
        anomalies=derived.events.anomalies,
        alarms=derived.events.alarms,
        trust=derived.trust,
        notes=derived.events.notes,
        seconds=seconds,
        finding_assets=derived.events.finding_assets,
        members=tuple(member_reports),
    )


def _all_duplicates(
    members: Sequence[Member], applied: dict[str, str], contract: str
) -> IngestReport:
    """The report of a group (or a batch) whose every message had been applied before."""
    first = members[0]
    where = applied.get(first.content_hash, batch_iri(first.content_hash[:32]))
    return IngestReport(
        first.content_hash[:32],
        where,
        contract,
        sum(len(m.points) for m in members),
        0,
        0,
        duplicate=True,
        members=tuple(
            MemberReport(
                m.content_hash,
                len(m.points),
                duplicate=True,
                batch_iri=applied.get(m.content_hash, batch_iri(m.content_hash[:32])),
            )
            for m in members
        ),
    )


def _member_records(derived: _Derived, group: Sequence[Member], iri: str) -> None:
    """Each message of a group as a ``tk:IngestMessage`` in its batch (decision 0067)."""
    for m in group:
        node = NodeRecord(
            message_iri(m.content_hash),
            (str(TK.IngestMessage),),
            {
                PropKey.CONTENT_HASH: m.content_hash,
                PropKey.SAMPLE_COUNT: len(m.points),
                PropKey.RDFS_LABEL: m.source or f"message {m.content_hash[:12]}",
            },
        )
        derived.nodes.append(node)
        derived.rels.append(RelRecord(RelType.IN_BATCH, node.uri, iri))


@dataclass(slots=True)
class _Derived:
    """What the contract and the derivations made of a batch, before anything is written."""

    received: datetime
    latest: datetime
    points: int
    accepted: pa.Table
    quarantine: pa.Table
    reasons: dict[str, int]
    aggregates: int
    events: Events
    trust: tuple[trust.TrustScore, ...]
    nodes: list[NodeRecord]
    rels: list[RelRecord]
    source: str
    contract_s: float
    member_counts: tuple[tuple[int, int], ...]  # (accepted, quarantined) of each message
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Points quarantined."""
        return int(self.quarantine.num_rows)

    @property
    def detectors(self) -> tuple[tuple[Path, Callable[[Path], None]], ...]:
        """The detectors fitted on this batch, each as its file and how to write it."""
        return tuple((path, detector.save) for path, detector in self.events.fitted)


def _named_sensors(batch: PointBatch) -> list[str]:
    """The distinct sensor IRIs a batch names (only those the contract needs to know)."""
    named = pc.unique(pc.drop_null(batch.sensor)).to_pylist()
    return sorted(str(x) for x in named)


def _derive(
    store: GraphStore,
    members: Sequence[Member],
    compiled: CompiledContract,
    options: IngestOptions,
    *,
    batch_id: str,
    report: Progress,
) -> _Derived:
    """Contract check, window aggregates, latest state, events and trust: the records."""
    clock = time.perf_counter()
    iri = batch_iri(batch_id)
    batch = concat_points([m.points for m in members])
    report(IngestPhase.CONTRACT, 0, len(batch))
    named = sorted({s for m in members for s in _named_sensors(m.points)})
    rows = telemetry_state.sensors(store, only=named)
    received = options.received_at or datetime.now(UTC)
    latest = received + timedelta(seconds=options.clock_skew_s)
    table = sensor_table(rows)
    results: list[CheckResult] = []
    for m in members:  # each message as if ingested alone, one after the other
        checked = compiled.check(m.points, table, latest_acceptable_ns=nanos(latest))
        results.append(checked)
        if len(members) > 1:
            table = advance(table, m.points, checked)
    result = concat_results(results)
    member_counts = tuple(
        (len(r.failures) - int(r.rejected.sum()), int(r.rejected.sum())) for r in results
    )
    accepted, quarantine, reasons = _tables(batch, result, batch_id=batch_id, received=received)
    report(IngestPhase.CONTRACT, len(batch), len(batch))
    contract_s = time.perf_counter() - clock
    derive = Tally(report, IngestPhase.DERIVE, DERIVE_STEPS)
    derive.start()
    columns = SensorColumns.of(accepted)
    aggregates = window_aggregates(columns, window_s=options.window_s)
    nodes, rels = aggregate_records(aggregates, batch_iri=iri, batch_key=batch_id[:16])
    nodes += latest_state(columns)
    newest = int(columns.time_ns.max()) if len(columns.time_ns) else None
    # Replays judge freshness at the newest point; live batches at reception (or at the
    # newest point when a producer's clock runs ahead within the allowed skew).
    as_of = received if newest is None else max(moment(newest), received)
    if options.replay and newest is not None:
        as_of = moment(newest)
    derive.advance()
    events = batch_events(store, columns, aggregates, options, batch_iri=iri)
    nodes += events.nodes
    rels += events.rels
    derive.advance()
    scores_out = batch_trust(
        rows,
        columns,
        batch,
        result,
        events.subjects,
        events.window_scores,
        as_of=as_of,
        window_ns=(first_time(columns), newest),
    )
    derive.advance()
    for score in scores_out:
        node = trust_node(score, batch_id)
        nodes.append(node)
        rels.append(RelRecord(RelType.SCORE_OF, node.uri, score.subject))
        rels.append(RelRecord(RelType.IN_BATCH, node.uri, iri))
    derive.advance()
    return _Derived(
        received,
        latest,
        len(batch),
        accepted,
        quarantine,
        reasons,
        len(aggregates),
        events,
        scores_out,
        nodes,
        rels,
        _source(options, members, batch_id),
        contract_s,
        member_counts,
    )


def _source(options: IngestOptions, members: Sequence[Member], batch_id: str) -> str:
    """The batch's label: its source, and for a group how many messages it holds."""
    name = options.source or f"batch {batch_id[:12]}"
    return name if len(members) == 1 else f"{name} ({len(members)} messages)"


def _batch_node(derived: _Derived, *, contract: str, content_hash: str) -> NodeRecord:
    """The batch's own node: its content hash makes it the commit record (decision 0028)."""
    return NodeRecord(
        batch_iri(content_hash[:32]),
        (str(TK.IngestBatch),),
        {
            PropKey.RECEIVED_AT: derived.received,
            PropKey.LATEST_ACCEPTABLE_TIME: derived.latest,
            PropKey.CONTRACT_VERSION: contract,
            PropKey.CONTENT_HASH: content_hash,
            PropKey.ACCEPTED_COUNT: derived.accepted.num_rows,
            PropKey.REJECTED_COUNT: derived.rejected,
            PropKey.SAMPLE_COUNT: derived.points,
            PropKey.RDFS_LABEL: derived.source,
        },
    )


def _check_records(records: GraphRecords, derived: _Derived, options: IngestOptions) -> None:
    """Refuse a batch whose graph records would not fit one Neo4j transaction's memory."""
    count = len(records.nodes) + len(records.rels)
    if count > options.max_graph_records:
        raise PayloadTooLargeError(
            f"the batch would write {count:,} nodes and relationships to Neo4j "
            f"({derived.aggregates:,} window aggregates), more than the "
            f"{options.max_graph_records:,} one batch may write all or nothing "
            "(TWINKG_INGEST_MAX_GRAPH_RECORDS): send it in smaller batches"
        )
