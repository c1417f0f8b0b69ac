"""Telemetry ingest: contract → quarantine or log → twin state, events and trust, all or nothing.

One call takes one batch (a CSV file or a JSON batch) through the telemetry contract's compiled
checks. Rejected points go to the quarantine with their reasons, accepted ones to the telemetry
log; Neo4j gets the batch, each sensor's latest state, window aggregates, anomalies (from each
piece of equipment's detector) with the alarms they raise, and trust scores — in one transaction,
after which the log makes the batch visible. A failure anywhere before that leaves nothing. The
same batch content is applied once.

Progress goes to an optional callback, phase by phase (``reasoner.progress.IngestPhase``).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kg import telemetry_state
from kg.records import GraphRecords, NodeRecord, RelRecord
from kg.store import GraphStore, WriteSummary
from kg.telemetry_log import (
    POINTS_SCHEMA,
    QUARANTINE_SCHEMA,
    BatchManifest,
    StagedBatch,
    TelemetryLog,
)
from ontology.namespaces import INGEST_BASE
from ontology.vocab import TK, PropKey, RelType
from reasoner import trust
from reasoner.aggregates import (
    SensorColumns,
    aggregate_records,
    key,
    latest_state,
    moment,
    window_aggregates,
)
from reasoner.compiled import CheckResult, CompiledContract, SensorTable, compile_contract
from reasoner.events import AnomalyReport, batch_events
from reasoner.points import PointBatch
from reasoner.progress import IngestPhase, Progress, Tally, no_progress
from shapes.registry import accept

DERIVE_STEPS = 4  # windows and latest state, events, trust, records


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
    source: str = ""


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
        last_ns=np.array(
            [0 if t is None else int(t.timestamp() * 1e6) * 1000 for t in last], dtype=np.int64
        ),
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
    reports nothing.
    """
    report = progress or no_progress
    clock = time.perf_counter()
    seconds: dict[str, float] = {}
    contract, compiled = _compiled(options.contract)
    batch_id = content_hash[:32]
    batch_iri = f"{INGEST_BASE}batch/{batch_id}"
    if log.committed(batch_id) or telemetry_state.batch_applied(store, content_hash):
        return IngestReport(batch_id, batch_iri, contract, len(batch), 0, 0, duplicate=True)
    report(IngestPhase.CONTRACT, 0, len(batch))
    rows = telemetry_state.sensors(store)
    received = options.received_at or datetime.now(UTC)
    latest = received + timedelta(seconds=options.clock_skew_s)
    result = compiled.check(
        batch, sensor_table(rows), latest_acceptable_ns=int(latest.timestamp() * 1e6) * 1000
    )
    accepted, quarantine, reasons = _tables(batch, result, batch_id=batch_id, received=received)
    report(IngestPhase.CONTRACT, len(batch), len(batch))
    seconds["contract"] = time.perf_counter() - clock
    derive = Tally(report, IngestPhase.DERIVE, DERIVE_STEPS)
    derive.start()
    columns = SensorColumns.of(accepted)
    aggregates = window_aggregates(columns, window_s=options.window_s)
    nodes, rels = aggregate_records(aggregates, batch_iri=batch_iri, batch_key=batch_id[:16])
    nodes += latest_state(columns)
    newest = int(columns.time_ns.max()) if len(columns.time_ns) else None
    # Replays judge freshness at the newest point; live batches at reception (or at the
    # newest point when a producer's clock runs ahead within the allowed skew).
    as_of = received if newest is None else max(moment(newest), received)
    if options.replay and newest is not None:
        as_of = moment(newest)
    derive.advance()
    events = batch_events(store, columns, aggregates, options, batch_iri=batch_iri)
    nodes += events.nodes
    rels += events.rels
    derive.advance()
    scores_out = _trust(
        rows,
        columns,
        batch,
        result,
        events.subjects,
        events.window_scores,
        as_of=as_of,
        window_ns=(_first(columns), newest),
    )
    derive.advance()
    for score in scores_out:
        node = _trust_node(score, batch_id)
        nodes.append(node)
        rels.append(RelRecord(RelType.SCORE_OF, node.uri, score.subject))
        rels.append(RelRecord(RelType.IN_BATCH, node.uri, batch_iri))
    nodes.append(
        NodeRecord(
            batch_iri,
            (str(TK.IngestBatch),),
            {
                PropKey.RECEIVED_AT: received,
                PropKey.LATEST_ACCEPTABLE_TIME: latest,
                PropKey.CONTRACT_VERSION: contract,
                PropKey.CONTENT_HASH: content_hash,
                PropKey.ACCEPTED_COUNT: accepted.num_rows,
                PropKey.REJECTED_COUNT: quarantine.num_rows,
                PropKey.SAMPLE_COUNT: len(batch),
                PropKey.RDFS_LABEL: options.source or f"batch {batch_id[:12]}",
            },
        )
    )
    derive.advance()
    seconds["derive"] = time.perf_counter() - clock - seconds["contract"]
    manifest = BatchManifest(
        batch_id, contract, received.isoformat(), accepted.num_rows, quarantine.num_rows, ()
    )
    mark = time.perf_counter()
    staged, written, seconds["log"] = _apply(
        store,
        log,
        GraphRecords(tuple(nodes), tuple(rels)),
        manifest=manifest,
        tables=(accepted, quarantine),
        report=report,
    )
    seconds["graph"] = time.perf_counter() - mark
    seconds["graph_nodes"] = written.node_seconds
    seconds["graph_relationships"] = written.relationship_seconds
    seconds["graph_commit"] = written.commit_seconds
    log.commit(staged)
    events.save_detectors()
    seconds["total"] = time.perf_counter() - clock
    return IngestReport(
        batch_id,
        batch_iri,
        contract,
        len(batch),
        accepted.num_rows,
        quarantine.num_rows,
        reasons=reasons,
        aggregates=len(aggregates),
        anomalies=events.anomalies,
        alarms=events.alarms,
        trust=scores_out,
        notes=events.notes,
        seconds=seconds,
    )


def _apply(
    store: GraphStore,
    log: TelemetryLog,
    records: GraphRecords,
    *,
    manifest: BatchManifest,
    tables: tuple[pa.Table, pa.Table],
    report: Progress,
) -> tuple[StagedBatch, WriteSummary, float]:
    """Write ``records`` while the log stages the (accepted, quarantined) ``tables``: the
    staged batch, what Neo4j wrote, and the staging time."""
    graph = Tally(report, IngestPhase.GRAPH, len(records.nodes) + len(set(records.rels)))
    graph.start()
    rows = Tally(report, IngestPhase.LOG, sum(t.num_rows for t in tables))
    # Stage the log files (pyarrow, off the GIL) while Neo4j writes; the transaction commits
    # only once staging succeeded, and the files become visible only after the commit.
    with ThreadPoolExecutor(max_workers=1) as pool:
        staging = pool.submit(
            _timed, log.stage, manifest=manifest, points=tables[0], quarantine=tables[1]
        )

        def staged() -> None:
            rows.start()
            staging.result()
            rows.advance(rows.total)

        try:
            written = store.write(records, progress=graph.advance, before_commit=staged)
        except BaseException:
            if staging.exception() is None:  # waits for it; then remove what it wrote
                log.abort(staging.result()[0])
            raise
    batch, seconds = staging.result()
    return batch, written, seconds


def _timed(stage: Callable[..., StagedBatch], **kwargs: object) -> tuple[StagedBatch, float]:
    started = time.perf_counter()
    return stage(**kwargs), time.perf_counter() - started


def _first(columns: SensorColumns) -> int | None:
    return int(columns.time_ns.min()) if len(columns.time_ns) else None


def _trust(  # noqa: PLR0917 - private, called once
    rows: Sequence[telemetry_state.SensorRow],
    columns: SensorColumns,
    batch: PointBatch,
    result: CheckResult,
    subjects: Sequence[telemetry_state.DetectorSubject],
    window_scores: dict[str, float],
    *,
    as_of: datetime,
    window_ns: tuple[int | None, int | None],
) -> tuple[trust.TrustScore, ...]:
    """Trust of every sensor the batch spoke of, and of every scored piece of equipment."""
    known = {r.uri: r for r in rows}
    named = pc.unique(batch.sensor.drop_null()).to_pylist()
    uris = sorted(str(u) for u in named if u in known)
    if not uris:
        return ()
    start_ns, end_ns = window_ns
    window = (
        trust.Window(moment(start_ns), moment(end_ns))
        if start_ns is not None and end_ns is not None
        else trust.Window(as_of, as_of)
    )
    # points per named sensor, accepted and rejected, counted on dictionary codes
    position = pc.index_in(batch.sensor, value_set=pa.array(uris, pa.string()))
    code = np.asarray(position.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    named = code >= 0
    rejected_mask = result.rejected
    accepted = np.bincount(code[named & ~rejected_mask], minlength=len(uris)).astype(float)
    rejected = np.bincount(code[named & rejected_mask], minlength=len(uris)).astype(float)
    newest = np.full(len(uris), np.datetime64("NaT"), dtype="datetime64[ns]")
    index = {s: i for i, s in enumerate(columns.sensors)}
    # columns are sorted by sensor then time: each sensor's newest point ends its run
    ends = np.flatnonzero(np.append(columns.code[1:] != columns.code[:-1], True))
    ends = ends if len(columns.code) else ends[:0]
    last_ns = {columns.sensors[int(columns.code[e])]: int(columns.time_ns[e]) for e in ends}
    for i, uri in enumerate(uris):
        if uri in index and uri in last_ns:
            newest[i] = np.datetime64(last_ns[uri], "ns")
    sensor_anomaly = np.array(
        [
            max(
                (window_scores.get(s.asset, 0.0) for s in subjects if uri in s.sensors), default=0.0
            )
            for uri in uris
        ]
    )
    periods = np.array([known[u].sampling_period_s or 1.0 for u in uris])
    scores = trust.sensor_scores(
        uris,
        accepted=accepted,
        rejected=rejected,
        newest=newest,
        period_s=periods,
        anomaly=sensor_anomaly,
        window=window,
        as_of=as_of,
    )
    by_uri = {s.subject: s for s in scores}
    assets = [
        trust.asset_score(
            s.asset,
            [by_uri[u] for u in s.sensors if u in by_uri],
            anomaly=window_scores[s.asset],
        )
        for s in subjects
        if s.asset in window_scores and any(u in by_uri for u in s.sensors)
    ]
    return (*scores, *assets)


def _trust_node(score: trust.TrustScore, batch_id: str) -> NodeRecord:
    return NodeRecord(
        f"{INGEST_BASE}trust/{batch_id[:16]}/{key(score.subject)}",
        (str(TK.TrustScore),),
        {
            PropKey.QUALITY_SCORE: score.quality,
            PropKey.FRESHNESS_SCORE: score.freshness,
            PropKey.ANOMALY_SCORE: score.anomaly,
            PropKey.CONFIDENCE: score.confidence,
            PropKey.WINDOW_START: score.window.start,
            PropKey.WINDOW_END: score.window.end,
            PropKey.AS_OF: score.as_of,
        },
    )
