"""The telemetry log: invisible until committed, append-only, deterministic to read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from kg.telemetry_log import POINTS_SCHEMA, QUARANTINE_SCHEMA, BatchManifest, TelemetryLog
from ontology.errors import InvalidInputError

DAY = datetime(2026, 3, 1, 23, 59, 58, tzinfo=UTC)


def _points(batch: str, sensors: list[str], start: datetime) -> pa.Table:
    times = [start + timedelta(seconds=i) for i in range(len(sensors))]
    return pa.table(
        {
            "sensor": sensors,
            "time": pa.array(times, pa.timestamp("ns", tz="UTC")),
            "value": [float(i) for i in range(len(sensors))],
            "quality": [None] * len(sensors),
            "producer": ["edge"] * len(sensors),
            "batch": [batch] * len(sensors),
            "seq": list(range(len(sensors))),
        },
        schema=POINTS_SCHEMA,
    )


def _manifest(batch: str, accepted: int) -> BatchManifest:
    return BatchManifest(batch, "telemetry@1.0.0", DAY.isoformat(), accepted, 0, ())


def test_a_staged_batch_is_invisible_until_committed(tmp_path: Path) -> None:
    log = TelemetryLog(tmp_path)
    staged = log.stage(
        manifest=_manifest("b1", 4),
        points=_points("b1", ["s2", "s1", "s2", "s1"], DAY),
        quarantine=QUARANTINE_SCHEMA.empty_table(),
    )
    assert log.window().num_rows == 0 and not log.committed("b1")
    manifest = log.commit(staged)
    # the batch crosses midnight: one file per day
    assert sorted(manifest.files) == [
        "points/date=2026-03-01/b1.parquet",
        "points/date=2026-03-02/b1.parquet",
    ]
    table = log.window()
    assert table["sensor"].to_pylist() == ["s1", "s1", "s2", "s2"]
    assert table.equals(log.window())
    assert log.window(sensors=["s2"], start=DAY + timedelta(seconds=1)).num_rows == 1


def test_an_aborted_batch_leaves_nothing(tmp_path: Path) -> None:
    log = TelemetryLog(tmp_path)
    staged = log.stage(
        manifest=_manifest("b2", 2),
        points=_points("b2", ["s1", "s1"], DAY),
        quarantine=QUARANTINE_SCHEMA.empty_table(),
    )
    log.abort(staged)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert log.manifests() == []


def test_windows_need_zoned_times(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="time zone"):
        TelemetryLog(tmp_path).window(start=datetime(2026, 1, 1))
