"""A window skips the files whose footer shows they hold none of its rows (decision 0051), and
gives the same rows as reading every file; manifests are read once and again when rewritten.

The differential test is hostile: sensor names that share prefixes, are empty, hold NUL or
characters outside the Basic Multilingual Plane (UTF-8 byte order against code-point order),
duplicates of the same point, times at the extremes an int64 nanosecond holds, and window bounds
beyond what Arrow's timestamps hold.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinkg.kg import log_files
from twinkg.kg.telemetry_log import (
    POINTS_SCHEMA,
    QUARANTINE_SCHEMA,
    BatchManifest,
    TelemetryLog,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE_NS = 1_780_000_000 * 10**9  # mid-2026
NAMES = ["s", "s1", "s10", "s2", "", "a\x00b", "é", "\uffff", "\U00010000", "z" * 300]

Row = tuple[str, int]


def _table(batch: str, rows: list[Row]) -> pa.Table:
    return pa.table(
        {
            "sensor": [s for s, _ in rows],
            "time": pa.array([t for _, t in rows], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "value": [float(i) for i in range(len(rows))],
            "quality": [None] * len(rows),
            "producer": ["edge"] * len(rows),
            "batch": [batch] * len(rows),
            "seq": list(range(len(rows))),
        },
        schema=POINTS_SCHEMA,
    )


def _commit(log: TelemetryLog, batch: str, rows: list[Row]) -> None:
    manifest = BatchManifest(batch, "telemetry@1.0.0", EPOCH.isoformat(), len(rows), 0, ())
    quarantine = QUARANTINE_SCHEMA.empty_table()
    log.commit(log.stage(manifest=manifest, points=_table(batch, rows), quarantine=quarantine))


def _ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def _expected(
    batches: list[list[Row]],
    sensors: list[str] | None,
    start: datetime | None,
    end: datetime | None,
) -> list[tuple[bytes, int, str, int]]:
    """The rows a window must give, computed from what was written, not from the log."""
    low = None if start is None or start.year < 1678 else _ns(start)
    high = None if end is None or end.year > 2261 else _ns(end)
    empty = (start is not None and start.year > 2261) or (end is not None and end.year < 1678)
    out = []
    for b, rows in enumerate(batches):
        for seq, (sensor, t) in enumerate(rows):
            if empty or (sensors is not None and sensor not in sensors):
                continue
            if (low is not None and t < low) or (high is not None and t >= high):
                continue
            out.append((sensor.encode(), t, f"b{b:02d}", seq))
    return sorted(out)


def _got(table: pa.Table) -> list[tuple[bytes, int, str, int]]:
    times = table["time"].cast(pa.int64()).to_pylist()
    return sorted(
        (s.encode(), t, b, q)
        for s, t, b, q in zip(
            table["sensor"].to_pylist(),
            times,
            table["batch"].to_pylist(),
            table["seq"].to_pylist(),
            strict=True,
        )
    )


_times = st.one_of(
    st.integers(BASE_NS - 3 * 86_400 * 10**9, BASE_NS + 3 * 86_400 * 10**9),
    st.sampled_from([-(2**62), -1, 0, 1, 2**62, BASE_NS, BASE_NS + 1]),
)
_rows = st.lists(st.tuples(st.sampled_from(NAMES), _times), min_size=1, max_size=12)
_bounds = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(2026, 5, 25),
        max_value=datetime(2026, 6, 4),
        timezones=st.just(UTC),
    ),
    st.sampled_from([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), EPOCH]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(_rows, min_size=1, max_size=6),
    sensors=st.one_of(st.none(), st.lists(st.sampled_from([*NAMES, "absent", "s0"]), max_size=4)),
    start=_bounds,
    end=_bounds,
)
def test_a_window_gives_the_rows_of_every_file_it_could_have_read(
    tmp_path_factory: Any,
    batches: list[list[Row]],
    sensors: list[str] | None,
    start: datetime | None,
    end: datetime | None,
) -> None:
    log = TelemetryLog(tmp_path_factory.mktemp("log"))
    for b, rows in enumerate(batches):
        _commit(log, f"b{b:02d}", rows)
    table = log.window(sensors=sensors, start=start, end=end)
    assert _got(table) == _expected(batches, sensors, start, end)
    assert log.issues == []


def test_a_window_opens_only_the_files_that_can_hold_its_rows(
    tmp_path: Path, monkeypatch: Any
) -> None:
    log = TelemetryLog(tmp_path)
    _commit(log, "b00", [("run-1/s1", BASE_NS), ("run-1/s2", BASE_NS + 10)])
    _commit(log, "b01", [("run-2/s1", BASE_NS), ("run-2/s2", BASE_NS + 10)])
    _commit(log, "b02", [("run-1/s1", BASE_NS + 86_400 * 10**9)])  # the next day
    opened: list[list[str]] = []
    read = log_files.read_files

    def spy(files: list[str], *args: Any, **kwargs: Any) -> pa.Table:
        opened.append([Path(f).name for f in files])
        return read(files, *args, **kwargs)

    monkeypatch.setattr(log_files, "read_files", spy)
    day = EPOCH + timedelta(microseconds=BASE_NS // 1000)
    table = log.window(sensors=["run-1/s1"], start=day, end=day + timedelta(hours=1))
    assert table["sensor"].to_pylist() == ["run-1/s1"]
    assert opened == [["b00.parquet"]]
    log.window(sensors=["run-1/s1"])
    assert opened[-1] == ["b00.parquet", "b02.parquet"]
    log.window(sensors=["run-3/s1"])
    assert opened[-1] == []


def test_a_file_without_statistics_is_always_read(tmp_path: Path) -> None:
    """A file another writer stored without column statistics may hold anything: it is read."""
    log = TelemetryLog(tmp_path)
    _commit(log, "b00", [("s1", BASE_NS)])
    path = next(tmp_path.glob("points/*/b00.parquet"))
    pq.write_table(_table("b00", [("s1", BASE_NS)]), path, write_statistics=False)
    day = EPOCH + timedelta(microseconds=BASE_NS // 1000)
    assert log.window(sensors=["s1"], start=day).num_rows == 1
    assert log.window(sensors=["s0"]).num_rows == 0  # the row filter still applies


def test_a_rewritten_manifest_is_read_again(tmp_path: Path) -> None:
    log = TelemetryLog(tmp_path)
    _commit(log, "b00", [("s1", BASE_NS)])
    _commit(log, "b01", [("s2", BASE_NS)])
    assert [m.batch_id for m in log.manifests()] == ["b00", "b01"]
    manifest = tmp_path / "batches" / "b01.json"
    manifest.write_text("{torn", encoding="utf-8")
    assert log.window()["sensor"].to_pylist() == ["s1"]
    assert [i.code for i in log.issues] == [log_files.IssueCode.MANIFEST_UNREADABLE]
    assert log.window()["sensor"].to_pylist() == ["s1"]  # reported on every read
    assert [i.code for i in log.issues] == [log_files.IssueCode.MANIFEST_UNREADABLE]
    document = {
        "batch_id": "b01",
        "contract": "telemetry@1.0.0",
        "received_at": EPOCH.isoformat(),
        "accepted": 1,
        "rejected": 0,
        "files": [str(next(tmp_path.glob("points/*/b01.parquet")).relative_to(tmp_path))],
    }
    manifest.write_text(json.dumps(document), encoding="utf-8")
    assert log.window()["sensor"].to_pylist() == ["s1", "s2"]
    assert log.issues == []
    (tmp_path / "batches" / "b00.json").unlink()
    assert log.window()["sensor"].to_pylist() == ["s2"]
