"""Events a telemetry batch gives rise to: anomalies from the detectors, and alarms.

Each piece of monitored equipment has a detector over its channels (reasoner.anomaly); a run of
rows its alarm logic holds active (:func:`watch`) becomes a ``tk:Anomaly`` concerning the
equipment, driven by the sensors in alarm (``tk:drivenBy``), and a sustained one whose peak
reaches the alarm score (:func:`raises_alarm`) also raises a critical ``tk:Alarm`` derived from
it. ``benchmarks/skab.py`` scores exactly this code on the SKAB protocol. Window means that
leave an operating envelope raise a "high" alarm that used the envelope.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from twinkg.kg import telemetry_state
from twinkg.kg.records import NodeRecord, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import InvalidInputError
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.ontology.vocab import TK, PropKey, RelType
from twinkg.reasoner import anomaly, trust
from twinkg.reasoner.aggregates import Aggregate, SensorColumns, key, moment, wide

if TYPE_CHECKING:
    from twinkg.reasoner.ingest import IngestOptions

DRIVERS = 3
"""Sensors recorded as drivers of an anomaly (``tk:drivenBy``): those in alarm, strongest first."""


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
class Events:
    """What a batch raised: graph records, the anomaly reports, and the detector scores."""

    nodes: list[NodeRecord]
    rels: list[RelRecord]
    anomalies: tuple[AnomalyReport, ...]
    alarms: int
    subjects: list[telemetry_state.DetectorSubject]
    window_scores: dict[str, float]
    notes: tuple[str, ...]
    fitted: tuple[tuple[Path, anomaly.Detector], ...] = ()
    alarm_assets: tuple[str, ...] = ()  # the assets of the alarms this batch raised anew

    @property
    def finding_assets(self) -> tuple[str, ...]:
        """The assets this batch gave the agents work on (its anomalies and new alarms), each
        once, in the order first met."""
        return tuple(dict.fromkeys([*(a.asset for a in self.anomalies), *self.alarm_assets]))

    def save_detectors(self) -> None:
        """Keep the detectors fitted on this batch (after the batch was applied)."""
        for path, detector in self.fitted:
            path.parent.mkdir(parents=True, exist_ok=True)
            detector.save(path)


@dataclass(frozen=True, slots=True, eq=False)
class Watch:
    """What one detector made of one subject's rows after the fit rows: scores, states, episodes."""

    scored: anomaly.Scored
    episodes: tuple[anomaly.Episode, ...]


def watch(
    detector: anomaly.Detector,
    times_ns: NDArray[np.int64],
    matrix: NDArray[np.float64],
    *,
    skip: int = 0,
) -> Watch:
    """Score a subject's whole run (``matrix`` rows at ``times_ns``) and keep the rows after the
    first ``skip`` (those a detector was fitted on, normal by definition: the alarm logic is
    re-armed after them): the episodes are its alarm logic's runs."""
    scorer = detector.scorer()
    if skip:
        scorer.update(matrix[:skip])
        scorer.rearm()  # the fit rows are normal by definition, whatever the alarm logic saw
    scored = scorer.update(matrix[skip:])
    stamps = np.asarray(times_ns[skip:]).astype("datetime64[ns]")
    return Watch(scored, anomaly.alarm_episodes(stamps, scored))


def raises_alarm(ep: anomaly.Episode, *, alarm_score: float, alarm_min_points: int) -> bool:
    """Whether an episode raises a critical alarm: sustained, and peaking at the alarm score."""
    return ep.peak_score >= alarm_score and ep.points >= alarm_min_points


@dataclass(frozen=True, slots=True)
class _Detection:
    window_scores: dict[str, float]
    # each subject's episodes, and how many leading rows of the batch the alarm logic needs
    # before it can raise (an episode starting within them may continue the one before)
    found: list[tuple[telemetry_state.DetectorSubject, tuple[anomaly.Episode, ...], int]]
    notes: list[str]
    fitted: list[tuple[Path, anomaly.Detector]]


def batch_events(
    store: GraphStore,
    columns: SensorColumns,
    aggregates: Sequence[Aggregate],
    options: IngestOptions,
    *,
    batch_iri: str,
) -> Events:
    """Anomalies from each detector, and the alarms they and the envelopes raise."""
    subjects = telemetry_state.detector_subjects(store, only=columns.sensors)
    detection = _detect(columns, subjects, options)
    scores, found, notes = detection.window_scores, detection.found, detection.notes
    nodes: list[NodeRecord] = []
    rels: list[RelRecord] = []
    anomalies: list[AnomalyReport] = []
    raised: list[str] = []
    for subject, episodes, head in found:
        for i, ep in enumerate(episodes):
            earlier = _continued(subject, ep, head, options) if i == 0 else None
            report, (more_nodes, more_rels) = _anomaly(
                subject, ep, earlier, batch_iri=batch_iri, options=options
            )
            anomalies.append(report)
            if report.alarm is not None and (earlier is None or earlier.alarm is None):
                raised.append(report.asset)
            nodes += more_nodes
            rels += more_rels
    envelope_nodes, envelope_rels, enveloped = _envelope_alarms(
        store, aggregates, batch_iri=batch_iri, realarm_s=options.realarm_s
    )
    return Events(
        nodes + envelope_nodes,
        rels + envelope_rels,
        tuple(anomalies),
        len(raised) + len(enveloped),
        subjects,
        scores,
        tuple(notes),
        tuple(detection.fitted),
        tuple(dict.fromkeys([*raised, *enveloped])),
    )


def _detector_path(options: IngestOptions, asset: str) -> Path | None:
    return None if options.detector_dir is None else options.detector_dir / f"{key(asset)}.npz"


def _detect(
    columns: SensorColumns,
    subjects: Sequence[telemetry_state.DetectorSubject],
    options: IngestOptions,
) -> _Detection:
    """Score each subject's channels; fit first when asked (the fitted detectors are saved by
    the caller once the batch is applied). Also notes subjects that could not be scored."""
    window_scores: dict[str, float] = {}
    found: list[tuple[telemetry_state.DetectorSubject, tuple[anomaly.Episode, ...], int]] = []
    notes: list[str] = []
    fitted: list[tuple[Path, anomaly.Detector]] = []
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
                accuracy=np.array(subject.accuracy) if subject.accuracy else None,
            )
            if path is not None:
                fitted.append((path, detector))
        elif path is not None and path.exists():
            detector = anomaly.load(path)
            if detector.channels != subject.sensors:
                notes.append(f"detector of {subject.tag} reads other sensors; refit it")
                continue
        else:
            notes.append(f"no detector for {subject.tag or subject.asset}: not scored")
            continue
        seen = watch(detector, times, matrix, skip=options.fit_rows or 0)
        scores = seen.scored.scores
        window_scores[subject.asset] = trust.window_anomaly(scores) if len(scores) else 0.0
        found.append((subject, seen.episodes, detector.settings.raise_after))
    return _Detection(window_scores, found, notes, fitted)


def _continued(
    subject: telemetry_state.DetectorSubject,
    ep: anomaly.Episode,
    head: int,
    options: IngestOptions,
) -> telemetry_state.OpenEpisode | None:
    """The subject's anomaly that ``ep`` (the batch's first episode) continues, or None.

    It continues when the anomaly ran through the subject's newest reading before this batch,
    ``ep`` starts within the ``head`` rows the alarm logic needs before it can raise at all, and
    the anomaly began less than ``realarm_s`` before ``ep`` (an older one is announced anew, so
    a condition that outlasts what was done about it is decided on again)."""
    earlier = subject.episode
    if earlier is None or not earlier.active_at(subject.last_observed) or ep.first_row >= head:
        return None
    if (ep.start - earlier.start).total_seconds() >= options.realarm_s:
        return None
    return earlier


def _anomaly(
    subject: telemetry_state.DetectorSubject,
    ep: anomaly.Episode,
    earlier: telemetry_state.OpenEpisode | None,
    *,
    batch_iri: str,
    options: IngestOptions,
) -> tuple[AnomalyReport, tuple[list[NodeRecord], list[RelRecord]]]:
    asset = subject.asset
    start, peak, points = ep.start, ep.peak_score, ep.points
    if earlier is not None:  # the same episode, on: its node grows (decision 0046)
        start, peak, points = earlier.start, max(peak, earlier.peak), points + earlier.points
        ep = replace(ep, start=start, peak_score=peak, points=points)
    uri = f"{INGEST_BASE}anomaly/{key(asset)}/{int(start.timestamp())}"
    nodes = [
        NodeRecord(
            uri,
            (str(TK.Anomaly),),
            {
                PropKey.OCCURRED_AT: start,
                PropKey.ENDED_AT: ep.end,
                PropKey.ANOMALY_SCORE: round(peak, 6),
                PropKey.SAMPLE_COUNT: points,
                PropKey.RDFS_LABEL: f"anomaly over {points} readings (peak {peak:.2f})",
            },
        )
    ]
    rels = [RelRecord(RelType.CONCERNS, uri, asset), RelRecord(RelType.IN_BATCH, uri, batch_iri)]
    rels += [RelRecord(RelType.DRIVEN_BY, uri, subject.sensors[j]) for j in ep.drivers[:DRIVERS]]
    alarm = None
    if raises_alarm(ep, alarm_score=options.alarm_score, alarm_min_points=options.alarm_min_points):
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
    store: GraphStore, aggregates: Sequence[Aggregate], *, batch_iri: str, realarm_s: float
) -> tuple[list[NodeRecord], list[RelRecord], list[str]]:
    """A "high" alarm for each run of windows whose mean leaves an envelope with no window back
    inside between them; the asset of each of them that is new.

    A run that starts with the sensor's first window of the batch continues the envelope's open
    alarm when that alarm ran through the sensor's newest reading before the batch and began
    less than ``realarm_s`` earlier: the standing alarm is extended, not raised again (ISA-18.2;
    decision 0046)."""
    by_sensor: dict[str, list[Aggregate]] = {}
    for a in aggregates:
        by_sensor.setdefault(a.sensor, []).append(a)
    nodes: list[NodeRecord] = []
    rels: list[RelRecord] = []
    new: list[str] = []
    for env in telemetry_state.envelopes(store, only=sorted(by_sensor)):
        lo = -np.inf if env.minimum is None else env.minimum
        hi = np.inf if env.maximum is None else env.maximum
        windows = by_sensor.get(env.sensor, [])
        for run in _runs(windows, lo, hi):
            started = moment(run[0].start_ns)
            uri = f"{INGEST_BASE}alarm/{key(env.envelope)}/{run[0].start_ns // 10**9}"
            standing = env.open_alarm
            if (
                standing is not None
                and run[0] is windows[0]
                and standing.active_at(env.last_observed)
                and (started - standing.start).total_seconds() < realarm_s
            ):
                uri, started = standing.uri, standing.start
            else:
                new.append(env.asset)
            nodes.append(
                NodeRecord(
                    uri,
                    (str(TK.Alarm),),
                    {
                        PropKey.OCCURRED_AT: started,
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
    return nodes, rels, new


def _runs(aggregates: Sequence[Aggregate], lo: float, hi: float) -> list[list[Aggregate]]:
    """Runs of windows (in time order) whose mean lies outside [lo, hi], each ended by a window
    back inside: a gap with no reading does not clear a condition."""
    runs: list[list[Aggregate]] = []
    inside = True
    for agg in aggregates:
        if lo <= agg.mean <= hi:
            inside = True
            continue
        if runs and not inside:
            runs[-1].append(agg)
        else:
            runs.append([agg])
        inside = False
    return runs
