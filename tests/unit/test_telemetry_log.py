"""The telemetry log: invisible until committed, append-only, deterministic to read back, and
never a crash of its reader, whatever it holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twinkg.kg.telemetry_log import POINTS_SCHEMA, QUARANTINE_SCHEMA, BatchManifest, TelemetryLog
from twinkg.ontology.errors import InvalidInputError

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


def _committed(log: TelemetryLog, batch: str, sensors: list[str], start: datetime = DAY) -> None:
    staged = log.stage(
        manifest=_manifest(batch, len(sensors)),
        points=_points(batch, sensors, start),
        quarantine=QUARANTINE_SCHEMA.empty_table(),
    )
    log.commit(staged)


def _codes(log: TelemetryLog) -> list[str]:
    return sorted(issue.code.value for issue in log.issues)


def test_reads_leave_out_what_they_cannot_read_and_say_why(tmp_path: Path) -> None:
    log = TelemetryLog(tmp_path)
    _committed(log, "good", ["s1", "s2"])
    _committed(log, "gone", ["s1"], DAY + timedelta(hours=1))
    _committed(log, "torn", ["s1"], DAY + timedelta(hours=2))
    _committed(log, "other", ["s1"], DAY + timedelta(hours=3))
    next(tmp_path.glob("points/*/gone.parquet")).unlink()
    torn = next(tmp_path.glob("points/*/torn.parquet"))
    torn.write_bytes(torn.read_bytes()[:40])  # cut short: no footer
    other = next(tmp_path.glob("points/*/other.parquet"))
    pq.write_table(pa.table({"sensor": ["s1"], "reading": [1.0]}), other)
    (tmp_path / "batches" / "junk.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "batches" / "list.json").write_text("[1, 2]", encoding="utf-8")
    escape = {**_asdict_of(_manifest("escape", 1)), "files": ["../../etc/passwd"]}
    (tmp_path / "batches" / "escape.json").write_text(json.dumps(escape), encoding="utf-8")

    table = log.window()
    assert table["batch"].to_pylist() == ["good", "good"]
    assert _codes(log) == [
        "file_foreign",
        "file_foreign",
        "file_missing",
        "file_unreadable",
        "manifest_unreadable",
        "manifest_unreadable",
    ]
    assert [m.batch_id for m in log.manifests()] == ["escape", "gone", "good", "other", "torn"]
    assert log.quarantined().num_rows == 0


def test_times_come_back_exactly_and_any_bound_is_an_answer(tmp_path: Path) -> None:
    """Times are int64 nanoseconds and read back as stored, a reading with nanoseconds and a row
    a former version stored with a wrapped-around time (a year-0001 reading kept as
    1759-12-31T22:33:41.128654848) alike: the log drops no row. Window bounds beyond what a
    nanosecond timestamp holds are open bounds, not an error."""
    log = TelemetryLog(tmp_path)
    stamps = [int(DAY.timestamp()) * 10**9 + 1, -6_626_971_578_871_345_152]
    points = _points("old", ["s1", "s1"], DAY)
    points = points.set_column(1, "time", pa.array(stamps, pa.int64()).cast(points["time"].type))
    log.commit(log.stage(manifest=_manifest("old", 2), points=points, quarantine=_none()))
    table = log.window()
    assert table["time"].cast(pa.int64()).to_pylist() == sorted(stamps)
    assert log.issues == []
    early, late = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)
    assert log.window(start=early).num_rows == 2
    assert log.window(end=late).num_rows == 2
    assert log.window(start=late).num_rows == 0 and log.window(end=early).num_rows == 0
    assert log.window(start=DAY).num_rows == 1  # the nanosecond after DAY, not the 1759 one


def test_a_pending_batch_is_invisible_until_completed_and_can_be_rolled_back(
    tmp_path: Path,
) -> None:
    log = TelemetryLog(tmp_path)
    detector = tmp_path.parent / f"{tmp_path.name}-detectors" / "pump.npz"

    def fitted(path: Path) -> None:
        path.write_bytes(b"fitted")

    staged = log.stage(
        manifest=_manifest("p1", 2),
        points=_points("p1", ["s1", "s2"], DAY),
        quarantine=_none(),
        extra=[(detector, fitted)],
        content_hash="ab" * 32,
    )
    (entry,) = log.pending()
    assert entry == staged.entry and entry.content_hash == "ab" * 32
    assert log.window().num_rows == 0 and not detector.exists()
    log.complete(entry)
    log.complete(entry)  # recovery may repeat what a crash cut short
    assert log.window().num_rows == 2 and detector.read_bytes() == b"fitted"
    assert log.pending() == [] and list(tmp_path.rglob("*.tmp")) == []

    staged = log.stage(
        manifest=_manifest("p2", 1),
        points=_points("p2", ["s1"], DAY + timedelta(hours=1)),
        quarantine=_none(),
        content_hash="cd" * 32,
    )
    assert staged.entry is not None
    log.roll_back(staged.entry)
    assert log.pending() == [] and list(tmp_path.rglob("*.tmp")) == []
    assert not log.committed("p2") and log.window().num_rows == 2


def test_stray_temporary_files_are_swept_and_foreign_entries_left_alone(tmp_path: Path) -> None:
    log = TelemetryLog(tmp_path)
    stray = tmp_path / "points" / "date=2026-03-01" / "old.parquet.tmp"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"left by a crash of an older version")
    journal = tmp_path / "journal"
    journal.mkdir()
    (journal / "evil.json").write_text(
        json.dumps(
            {"batch_id": "evil", "content_hash": "x", "finals": ["../../home.txt"], "manifest": {}}
        ),
        encoding="utf-8",
    )
    assert log.pending() == [] and _codes(log) == ["pending_unreadable"]
    assert log.sweep() == 1 and not stray.exists()


def test_only_one_writer_at_a_time(tmp_path: Path) -> None:
    log = TelemetryLog(tmp_path)
    with log.writer() as held:
        assert held
        with TelemetryLog(tmp_path).writer(wait=False) as other:
            assert not other
    with TelemetryLog(tmp_path).writer(wait=False) as other:
        assert other


def _none() -> pa.Table:
    return QUARANTINE_SCHEMA.empty_table()


def _asdict_of(manifest: BatchManifest) -> dict[str, object]:
    return {
        "batch_id": manifest.batch_id,
        "contract": manifest.contract,
        "received_at": manifest.received_at,
        "accepted": manifest.accepted,
        "rejected": manifest.rejected,
        "files": list(manifest.files),
    }
