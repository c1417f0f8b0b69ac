"""A detector episode that runs on from the batch before continues its anomaly (decision 0046)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twinkg.kg.telemetry_state import DetectorSubject, OpenEpisode
from twinkg.ontology.vocab import PropKey
from twinkg.reasoner.anomaly import Episode
from twinkg.reasoner.events import _anomaly, _continued
from twinkg.reasoner.ingest import IngestOptions

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PUMP = "https://example.org/plant/pump"
OPTIONS = IngestOptions(realarm_s=3600.0, alarm_score=0.8, alarm_min_points=30)


def _episode(start_s: float, points: int, peak: float, first_row: int) -> Episode:
    start = T0 + timedelta(seconds=start_s)
    return Episode(
        start=start,
        end=start + timedelta(seconds=60 * (points - 1)),
        first_row=first_row,
        last_row=first_row + points - 1,
        peak_score=peak,
        mean_score=peak,
        points=points,
    )


def _subject(earlier: OpenEpisode | None, last_s: float) -> DetectorSubject:
    return DetectorSubject(PUMP, "P-1", ("s1",), (0.0,), T0 + timedelta(seconds=last_s), earlier)


def _earlier(end_s: float, points: int = 25, alarm: str | None = None) -> OpenEpisode:
    return OpenEpisode(
        "urn:anomaly/0", T0, T0 + timedelta(seconds=end_s), peak=0.7, points=points, alarm=alarm
    )


def test_an_episode_that_ran_through_the_last_reading_continues() -> None:
    subject = _subject(_earlier(end_s=1440), last_s=1440)  # it ended at the newest reading
    ep = _episode(1560, points=10, peak=0.9, first_row=1)  # within the 5 rows the logic needs
    earlier = _continued(subject, ep, 5, OPTIONS)
    assert earlier is subject.episode
    report, (nodes, _) = _anomaly(subject, ep, earlier, batch_iri="urn:b", options=OPTIONS)
    assert report.start == T0 and report.points == 35 and report.peak == 0.9
    assert nodes[0].uri.endswith(f"/{int(T0.timestamp())}")  # the same node, grown
    assert nodes[0].props[PropKey.SAMPLE_COUNT] == 35
    # 35 readings peaking at 0.9 now sustain an alarm: it is raised, dated from the start
    assert report.alarm is not None and report.alarm.endswith(f"/{int(T0.timestamp())}")


def test_an_episode_starts_anew_when_the_condition_had_cleared_or_is_old() -> None:
    ep = _episode(1560, points=10, peak=0.9, first_row=1)
    cleared = _subject(_earlier(end_s=1200), last_s=1440)  # a normal reading came after it
    assert _continued(cleared, ep, 5, OPTIONS) is None
    late = _episode(1560, points=10, peak=0.9, first_row=5)  # normal rows first in this batch
    assert _continued(_subject(_earlier(end_s=1440), 1440), late, 5, OPTIONS) is None
    old = _episode(3600 + 60, points=10, peak=0.9, first_row=0)  # began ≥ realarm_s before
    assert _continued(_subject(_earlier(end_s=3600), 3600), old, 5, OPTIONS) is None
    assert _continued(_subject(None, 1440), ep, 5, OPTIONS) is None
    report, (nodes, _) = _anomaly(
        DetectorSubject(PUMP, "P-1", ("s1",)), ep, None, batch_iri="urn:b", options=OPTIONS
    )
    assert report.start == ep.start and report.points == 10 and report.alarm is None
    assert nodes[0].uri.endswith(f"/{int(ep.start.timestamp())}")
