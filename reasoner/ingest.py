"""Telemetry ingest: contract → quarantine or log → twin state, events and trust, all or nothing.

One call takes one batch (a CSV file or a JSON batch) through the telemetry contract's compiled
checks. Rejected points go to the quarantine with their reasons, accepted ones to the telemetry
log; Neo4j gets the batch, each sensor's latest state, window aggregates, anomalies (from each
piece of equipment's detector) with the alarms they raise, and trust scores, in one transaction.
The same batch content is applied once.

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

import functools
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
from twinkg.reasoner.compiled import CheckResult, CompiledContract, SensorTable, compile_contract
from twinkg.reasoner.events import AnomalyReport, Events, batch_events
from twinkg.reasoner.ingest_commit import Staging, commit_batch
from twinkg.reasoner.ingest_recovery import batch_iri, resolve
from twinkg.reasoner.points import PointBatch
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


def check_batch_size(points: int, max_points: int) -> None:
    """:class:`PayloadTooLargeError` when a batch of ``points`` points is more than one batch may
    hold. :func:`ingest` checks every batch; a source may check its count before converting."""
    if points > max_points:
        raise PayloadTooLargeError(
            f"{points:,} points exceed the {max_points:,} one batch may hold "
            "(TWINKG_INGEST_MAX_POINTS): send them in smaller batches"
        )


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
    report = progress or no_progress
    clock = time.perf_counter()
    contract, compiled = _compiled(options.contract)
    check_batch_size(len(batch), options.max_points)
    batch_id = content_hash[:32]
    with log.writer():  # one ingest at a time per log: the contract reads the sensors' state
        resolve(store, log)  # a batch a crash cut short first
        if log.committed(batch_id) or telemetry_state.batch_applied(store, content_hash):
            return IngestReport(
                batch_id, batch_iri(batch_id), contract, len(batch), 0, 0, duplicate=True
            )
        derived = _derive(store, batch, compiled, options, batch_id=batch_id, report=report)
        derived.seconds["contract"] = derived.contract_s
        derived.seconds["derive"] = time.perf_counter() - clock - derived.contract_s
        derived.nodes.append(_batch_node(derived, contract=contract, content_hash=content_hash))
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
    return IngestReport(
        batch_id,
        batch_iri(batch_id),
        contract,
        len(batch),
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
    )


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
    batch: PointBatch,
    compiled: CompiledContract,
    options: IngestOptions,
    *,
    batch_id: str,
    report: Progress,
) -> _Derived:
    """Contract check, window aggregates, latest state, events and trust: the records."""
    clock = time.perf_counter()
    iri = batch_iri(batch_id)
    report(IngestPhase.CONTRACT, 0, len(batch))
    rows = telemetry_state.sensors(store, only=_named_sensors(batch))
    received = options.received_at or datetime.now(UTC)
    latest = received + timedelta(seconds=options.clock_skew_s)
    result = compiled.check(batch, sensor_table(rows), latest_acceptable_ns=nanos(latest))
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
        options.source or f"batch {batch_id[:12]}",
        contract_s,
    )


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
