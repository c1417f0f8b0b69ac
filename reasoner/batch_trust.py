"""The trust scores one telemetry batch gives: of every sensor it spoke of, and of every piece
of equipment a detector scored (decision 0012; the scores themselves are ``reasoner.trust``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from twinkg.kg import telemetry_state
from twinkg.kg.records import NodeRecord
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.ontology.vocab import TK, PropKey
from twinkg.reasoner import trust
from twinkg.reasoner.aggregates import SensorColumns, key, moment
from twinkg.reasoner.compiled import CheckResult
from twinkg.reasoner.points import PointBatch


def first_time(columns: SensorColumns) -> int | None:
    """The oldest accepted point's time (ns), if any."""
    return int(columns.time_ns.min()) if len(columns.time_ns) else None


def batch_trust(  # noqa: PLR0917 - called once, by the ingest
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


def trust_node(score: trust.TrustScore, batch_id: str) -> NodeRecord:
    """The ``tk:TrustScore`` node of ``score``, minted under the batch."""
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
