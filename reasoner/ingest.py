"""Telemetry ingest: contract → quarantine or log → twin state, events and trust, all or nothing.

One call takes one batch (a CSV file or a JSON batch) through the telemetry contract's compiled
checks. Rejected points go to the quarantine with their reasons, accepted ones to the telemetry
log; Neo4j gets the batch, each sensor's latest state, window aggregates, anomalies (from each
piece of equipment's detector) with the alarms they raise, and trust scores — in one transaction,
after which the log makes the batch visible. A failure anywhere before that leaves nothing. The
same batch content is applied once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kg import telemetry_state
from kg.records import GraphRecords, NodeRecord, RelRecord
from kg.store import GraphStore
from kg.telemetry_log import POINTS_SCHEMA, QUARANTINE_SCHEMA, BatchManifest, TelemetryLog
from ontology.errors import InvalidInputError
from ontology.namespaces import INGEST_BASE
from ontology.vocab import TK, PropKey, RelType
from reasoner import anomaly, trust
from reasoner.aggregates import (
    Aggregate,
    SensorColumns,
    aggregate_records,
    key,
    latest_state,
    moment,
    wide,
    window_aggregates,
)
from reasoner.compiled import CheckResult, CompiledContract, SensorTable, compile_contract
from reasoner.points import PointBatch
from shapes.registry import accept


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
class AnomalyReport:
    """One anomaly episode written to the graph (and the alarm it raised, if any)."""

    uri: str
    asset: str
    start: datetime
    end: datetime
    peak: float
    points: int
    alarm: str | None


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


_COMPILED: dict[str, CompiledContract] = {}


def _compiled(ref: str) -> tuple[str, CompiledContract]:
    contract = accept(ref)
    name = str(contract.ref)
    if name not in _COMPILED:
        _COMPILED[name] = compile_contract(contract.graph)
    return name, _COMPILED[name]


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
            "batch": pa.array([batch_id] * int((~rejected).sum()), pa.string()),
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
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return accepted, quarantine, counts


def ingest(
    store: GraphStore,
    log: TelemetryLog,
    batch: PointBatch,
    *,
    content_hash: str,
    options: IngestOptions = IngestOptions(),
) -> IngestReport:
    """Check ``batch`` against its contract and apply it (see the module docstring)."""
    clock = time.perf_counter()
    seconds: dict[str, float] = {}
    contract, compiled = _compiled(options.contract)
    batch_id = content_hash[:32]
    batch_iri = f"{INGEST_BASE}batch/{batch_id}"
    if log.committed(batch_id) or telemetry_state.batch_applied(store, content_hash):
        return IngestReport(batch_id, batch_iri, contract, len(batch), 0, 0, duplicate=True)
    rows = telemetry_state.sensors(store)
    received = options.received_at or datetime.now(UTC)
    latest = received + timedelta(seconds=options.clock_skew_s)
    result = compiled.check(
        batch, sensor_table(rows), latest_acceptable_ns=int(latest.timestamp() * 1e6) * 1000
    )
    accepted, quarantine, reasons = _tables(batch, result, batch_id=batch_id, received=received)
    seconds["contract"] = time.perf_counter() - clock
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
    subjects = telemetry_state.detector_subjects(store)
    scores, found, notes = _detect(columns, subjects, options)
    alarms = 0
    anomalies: list[AnomalyReport] = []
    for subject, episodes in found:
        for ep in episodes:
            report, records = _anomaly(subject, ep, batch_iri=batch_iri, options=options)
            anomalies.append(report)
            alarms += report.alarm is not None
            nodes += records[0]
            rels += records[1]
    envelope_nodes, envelope_rels = _envelope_alarms(store, aggregates, batch_iri=batch_iri)
    nodes += envelope_nodes
    rels += envelope_rels
    alarms += len([n for n in envelope_nodes if str(TK.Alarm) in n.types])
    scores_out = _trust(
        rows,
        columns,
        batch,
        result,
        subjects,
        scores,
        as_of=as_of,
        window_ns=(_first(columns), newest),
    )
    for score in scores_out:
        nodes.append(_trust_node(score, batch_id))
        rels.append(RelRecord(RelType.SCORE_OF, _trust_node(score, batch_id).uri, score.subject))
        rels.append(RelRecord(RelType.IN_BATCH, _trust_node(score, batch_id).uri, batch_iri))
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
    seconds["derive"] = time.perf_counter() - clock - seconds["contract"]
    manifest = BatchManifest(
        batch_id, contract, received.isoformat(), accepted.num_rows, quarantine.num_rows, ()
    )
    staged = log.stage(manifest=manifest, points=accepted, quarantine=quarantine)
    try:
        store.write(GraphRecords(tuple(nodes), tuple(rels)))
    except BaseException:
        log.abort(staged)
        raise
    log.commit(staged)
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
        anomalies=tuple(anomalies),
        alarms=alarms,
        trust=scores_out,
        notes=tuple(notes),
        seconds=seconds,
    )


def _first(columns: SensorColumns) -> int | None:
    return int(columns.time_ns.min()) if len(columns.time_ns) else None


def _detector_path(options: IngestOptions, asset: str) -> Path | None:
    return None if options.detector_dir is None else options.detector_dir / f"{key(asset)}.npz"


def _detect(
    columns: SensorColumns,
    subjects: Sequence[telemetry_state.DetectorSubject],
    options: IngestOptions,
) -> tuple[dict[str, float], list[tuple[str, tuple[anomaly.Episode, ...]]], list[str]]:
    """Score each subject's channels; fit first when asked. Returns the window anomaly per
    subject, the episodes, and notes for subjects that could not be scored."""
    window_scores: dict[str, float] = {}
    found: list[tuple[str, tuple[anomaly.Episode, ...]]] = []
    notes: list[str] = []
    for subject in subjects:
        times, matrix = wide(columns, subject.sensors)
        if len(times) == 0:
            continue
        path = _detector_path(options, subject.asset)
        if options.fit_rows is not None:
            if len(times) < options.fit_rows:
                raise InvalidInputError(
                    f"cannot fit the detector of {subject.tag or subject.asset} on "
                    f"{options.fit_rows} rows: the batch has {len(times)}"
                )
            detector = anomaly.fit(
                matrix[: options.fit_rows],
                channels=subject.sensors,
                fitted_on=f"first {options.fit_rows} rows of {options.source or 'a batch'}",
            )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                detector.save(path)
        elif path is not None and path.exists():
            detector = anomaly.load(path)
            if detector.channels != subject.sensors:
                notes.append(f"detector of {subject.tag} reads other sensors; refit it")
                continue
        else:
            notes.append(f"no detector for {subject.tag or subject.asset}: not scored")
            continue
        scores = detector.score(matrix)
        skip = options.fit_rows or 0
        window_scores[subject.asset] = (
            trust.window_anomaly(scores[skip:]) if len(scores) > skip else 0.0
        )
        stamps = times.astype("datetime64[ns]")
        eps = anomaly.episodes(stamps[skip:], scores[skip:])
        found.append((subject.asset, eps))
    return window_scores, found, notes


def _anomaly(
    asset: str, ep: anomaly.Episode, *, batch_iri: str, options: IngestOptions
) -> tuple[AnomalyReport, tuple[list[NodeRecord], list[RelRecord]]]:
    uri = f"{INGEST_BASE}anomaly/{key(asset)}/{int(ep.start.timestamp())}"
    nodes = [
        NodeRecord(
            uri,
            (str(TK.Anomaly),),
            {
                PropKey.OCCURRED_AT: ep.start,
                PropKey.ENDED_AT: ep.end,
                PropKey.ANOMALY_SCORE: round(ep.peak_score, 6),
                PropKey.SAMPLE_COUNT: ep.points,
                PropKey.RDFS_LABEL: f"anomaly over {ep.points} readings (peak {ep.peak_score:.2f})",
            },
        )
    ]
    rels = [RelRecord(RelType.CONCERNS, uri, asset), RelRecord(RelType.IN_BATCH, uri, batch_iri)]
    alarm = None
    if ep.peak_score >= options.alarm_score and ep.points >= options.alarm_min_points:
        alarm = f"{INGEST_BASE}alarm/{key(asset)}/{int(ep.start.timestamp())}"
        nodes.append(
            NodeRecord(
                alarm,
                (str(TK.Alarm),),
                {
                    PropKey.OCCURRED_AT: ep.start,
                    PropKey.SEVERITY: "critical",
                    PropKey.STATUS: "open",
                    PropKey.RDFS_LABEL: "sustained anomaly",
                },
            )
        )
        rels += [
            RelRecord(RelType.CONCERNS, alarm, asset),
            RelRecord(RelType.PROV_WAS_DERIVED_FROM, alarm, uri),
        ]
    report = AnomalyReport(uri, asset, ep.start, ep.end, ep.peak_score, ep.points, alarm)
    return report, (nodes, rels)


def _envelope_alarms(
    store: GraphStore, aggregates: Sequence[Aggregate], *, batch_iri: str
) -> tuple[list[NodeRecord], list[RelRecord]]:
    """A "high" alarm for each run of consecutive windows whose mean leaves an envelope."""
    by_sensor: dict[str, list[Aggregate]] = {}
    for a in aggregates:
        by_sensor.setdefault(a.sensor, []).append(a)
    nodes: list[NodeRecord] = []
    rels: list[RelRecord] = []
    for env in telemetry_state.envelopes(store):
        lo = -np.inf if env.minimum is None else env.minimum
        hi = np.inf if env.maximum is None else env.maximum
        for run in _runs(by_sensor.get(env.sensor, []), lo, hi):
            uri = f"{INGEST_BASE}alarm/{key(env.envelope)}/{run[0].start_ns // 10**9}"
            nodes.append(
                NodeRecord(
                    uri,
                    (str(TK.Alarm),),
                    {
                        PropKey.OCCURRED_AT: moment(run[0].start_ns),
                        PropKey.ENDED_AT: moment(run[-1].end_ns),
                        PropKey.SEVERITY: "high",
                        PropKey.STATUS: "open",
                        PropKey.RDFS_LABEL: "window mean outside the operating envelope",
                    },
                )
            )
            rels += [
                RelRecord(RelType.CONCERNS, uri, env.asset),
                RelRecord(RelType.PROV_USED, uri, env.envelope),
                RelRecord(RelType.IN_BATCH, uri, batch_iri),
            ]
    return nodes, rels


def _runs(aggregates: Sequence[Aggregate], lo: float, hi: float) -> list[list[Aggregate]]:
    """Runs of consecutive windows whose mean lies outside [lo, hi]."""
    runs: list[list[Aggregate]] = []
    for agg in aggregates:
        if lo <= agg.mean <= hi:
            continue
        if runs and runs[-1][-1].end_ns == agg.start_ns:
            runs[-1].append(agg)
        else:
            runs.append([agg])
    return runs


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
    rejected_mask = result.rejected
    sensor_col = np.asarray(batch.sensor.to_numpy(zero_copy_only=False), dtype=object)
    index = {s: i for i, s in enumerate(columns.sensors)}
    newest = np.full(len(uris), np.datetime64("NaT"), dtype="datetime64[ns]")
    accepted = np.zeros(len(uris))
    rejected = np.zeros(len(uris))
    for i, uri in enumerate(uris):
        mine = sensor_col == uri
        accepted[i] = int((mine & ~rejected_mask).sum())
        rejected[i] = int((mine & rejected_mask).sum())
        code = index.get(uri)
        if code is not None:
            newest[i] = np.datetime64(int(columns.time_ns[columns.code == code].max()), "ns")
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
