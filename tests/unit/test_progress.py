"""Progress reports of the readers and the tally: in order, never past their totals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from twinkg.connect.csv import CsvLayout, read_wide_csv
from twinkg.connect.json import from_json_points
from twinkg.reasoner.points import PROGRESS_EVERY
from twinkg.reasoner.progress import Tally

SENSOR = "https://example.org/test-progress/sensor-"


def test_a_tally_reports_its_start_and_never_passes_its_total() -> None:
    seen: list[tuple[str, int, int]] = []
    tally = Tally(lambda *r: seen.append(r), "graph write", 5)
    tally.start()
    tally.advance(2)
    tally.advance(2)
    tally.advance(4)  # a miscount past the total is capped
    assert seen == [
        ("graph write", 0, 5),
        ("graph write", 2, 5),
        ("graph write", 4, 5),
        ("graph write", 5, 5),
    ]


def test_csv_parse_reports_each_column(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(
        "datetime;A;B;C;anomaly\n2020-01-01 00:00:00;1;2;3;0\n2020-01-01 00:00:01;4;x;6;0\n",
        encoding="utf-8",
    )
    seen: list[tuple[int, int]] = []
    points = read_wide_csv(
        path,
        sensor_columns={c: SENSOR + c for c in "ABC"},
        units={},
        layout=CsvLayout(),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert len(points.batch) == 6
    # the time column, then each of the three sensor columns
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]


def test_json_parse_reports_points_in_chunks() -> None:
    n = 2 * PROGRESS_EVERY + 7
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [
        {
            "sensor": SENSOR + "a",
            "value": float(i),
            "unit": "u",
            "time": (start + timedelta(seconds=i)).isoformat(),
        }
        for i in range(n)
    ]
    seen: list[tuple[int, int]] = []
    batch = from_json_points(points, progress=lambda done, total: seen.append((done, total)))
    assert len(batch) == n
    assert seen == [(0, n), (PROGRESS_EVERY, n), (2 * PROGRESS_EVERY, n), (n, n)]


def test_an_empty_json_batch_reports_zero_of_zero() -> None:
    seen: list[tuple[int, int]] = []
    from_json_points([], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 0), (0, 0)]
