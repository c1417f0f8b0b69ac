"""Wide CSV files become points; bad cells stay in the batch, flagged for the contract; a file
that is not a table is refused in one line; times are never rewritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinkg.connect.csv import CsvLayout, read_wide_csv
from twinkg.ontology.errors import InvalidInputError
from twinkg.reasoner.timestamps import FIRST_SECOND, LAST_SECOND, NS_AFTER, NS_BEFORE

COLUMNS = {"Pressure": "urn:s:p", "Current": "urn:s:c"}
UNITS = {"urn:s:p": "urn:u:bar", "urn:s:c": "urn:u:a"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_rows_become_points_in_row_major_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "datetime;Pressure;Current;anomaly\n"
        "2020-01-01 00:00:00;0.5;2.0;0\n2020-01-01 00:00:01;0.6;2.1;1\n",
    )
    points = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS)
    batch = points.batch
    assert batch.sensor.to_pylist() == ["urn:s:p", "urn:s:c"] * 2
    assert batch.value.tolist() == [0.5, 2.0, 0.6, 2.1]
    assert batch.unit.to_pylist() == ["urn:u:bar", "urn:u:a"] * 2
    assert batch.time_lexical.to_pylist()[2] == "2020-01-01T00:00:01Z"
    assert batch.sequence.tolist() == [0, 1, 2, 3]
    assert (
        points.content_hash == read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).content_hash
    )


def test_local_times_are_converted_with_their_zone(tmp_path: Path) -> None:
    path = _write(tmp_path, "datetime;Pressure\n2020-07-01 12:00:00;0.5\n")
    points = read_wide_csv(
        path, sensor_columns=COLUMNS, units=UNITS, layout=CsvLayout(timezone="Europe/Moscow")
    )
    assert points.batch.time_lexical.to_pylist() == ["2020-07-01T09:00:00Z"]


def test_bad_cells_are_flagged_not_dropped(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "datetime;Pressure;Current\n2020-01-01 00:00:00;n/a;\nyesterday;nan;1.0\n"
    )
    batch = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).batch
    assert batch.counts["value"].tolist() == [1, 0, 1, 1]
    assert batch.ok["value"].tolist() == [False, False, True, True]
    assert np.isnan(batch.value[2])
    assert batch.ok["time"].tolist() == [True, True, False, False]
    assert batch.time_lexical.to_pylist()[2] == "yesterday"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("datetime;Humidity\n2020-01-01 00:00:00;1\n", "'Humidity' is not the externalId"),
        ("time;Pressure\n2020-01-01 00:00:00;1\n", "no 'datetime' column"),
        ("datetime\n2020-01-01 00:00:00\n", "no sensor columns"),
        ("datetime;Pressure\n2020-01-01 00:00:00;1;2;3\n", "a row has 4 fields, the header 2"),
        ("datetime;Pressure\n2020-01-01 00:00:00\n", "a row has 1 fields, the header 2"),
        ("datetime;Pressure;Pressure\n2020-01-01 00:00:00;1;2\n", "'Pressure' appears more"),
        ("datetime;Pressure;datetime\n2020-01-01 00:00:00;1;x\n", "'datetime' appears more"),
        ("", "the file is empty"),
        ("\n\n", "not a readable CSV"),
        ("datetime;Pressure\n", "no data rows"),
    ],
)
def test_unusable_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        read_wide_csv(_write(tmp_path, text), sensor_columns=COLUMNS, units=UNITS)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"datetime;Pressure\n2020-01-01 00:00:00;\xff\n", "byte 38 (line 2)"),
        (b"datetime;Pres\xc3sure\n2020-01-01 00:00:00;1\n", "byte 13 (line 1)"),
        (b"\xff\xfed\x00a\x00t\x00", "byte 0 (line 1)"),
    ],
)
def test_bytes_that_are_not_utf8_are_refused_with_where(
    tmp_path: Path, data: bytes, where: str
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(data)
    with pytest.raises(InvalidInputError, match="is not UTF-8 text") as caught:
        read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS)
    assert where in str(caught.value)


def test_a_utf8_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfdatetime;Pressure\n2020-01-01 00:00:00;0.5\n")
    batch = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).batch
    assert batch.value.tolist() == [0.5] and batch.defects.to_pylist() == [None]


def test_a_folder_a_bad_delimiter_and_a_bad_format_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot be read"):
        read_wide_csv(tmp_path, sensor_columns=COLUMNS, units=UNITS)
    path = _write(tmp_path, "datetime;Pressure\n2020-01-01 00:00:00;0.5\n")
    with pytest.raises(InvalidInputError, match="one character"):
        read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS, layout=CsvLayout(delimiter=";;"))
    batch = read_wide_csv(
        path, sensor_columns=COLUMNS, units=UNITS, layout=CsvLayout(time_format="%Q")
    ).batch
    assert batch.ok["time"].tolist() == [False]
    assert "not a time in the format '%Q'" in str(batch.defects[0])


def test_integers_no_double_holds_exactly_are_rounded_like_json_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, "datetime;Pressure\n2020-01-01 00:00:00;9007199254740993\n")
    batch = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).batch
    assert batch.value.tolist() == [9007199254740992.0] and batch.ok["value"].tolist() == [True]


def test_a_huge_cell_is_a_bad_value_not_a_crash(tmp_path: Path) -> None:
    huge = "x" * 3_000_000
    path = _write(tmp_path, f"datetime;Pressure\n2020-01-01 00:00:00;{huge}\n")
    batch = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).batch
    assert batch.ok["value"].tolist() == [False]
    note = str(batch.defects[0])
    assert note.startswith("value 'xxx") and len(note) < 200


@pytest.mark.parametrize(
    ("cell", "lexical", "ns", "note"),
    [
        ("0000-01-01 00:00:00", "0000-01-01T00:00:00Z", NS_BEFORE, "before 1677-09-21"),
        ("0001-01-01 00:00:00", "0001-01-01T00:00:00Z", NS_BEFORE, "before 1677-09-21"),
        ("1600-06-01 12:00:00", "1600-06-01T12:00:00Z", NS_BEFORE, "before 1677-09-21"),
        ("2300-01-01 00:00:00", "2300-01-01T00:00:00Z", NS_AFTER, "after 2262-04-11"),
        ("1677-09-21 00:12:44", "1677-09-21T00:12:44Z", FIRST_SECOND * 10**9, None),
        ("2262-04-11 23:47:16", "2262-04-11T23:47:16Z", LAST_SECOND * 10**9, None),
        ("2020-02-29 00:00:00", "2020-02-29T00:00:00Z", 1582934400 * 10**9, None),
        ("2020-1-2 3:04:05", "2020-01-02T03:04:05Z", 1577934245 * 10**9, None),
    ],
)
def test_times_are_kept_as_written_or_quarantined(
    tmp_path: Path, cell: str, lexical: str, ns: int, note: str | None
) -> None:
    path = _write(tmp_path, f"datetime;Pressure\n{cell};0.5\n")
    batch = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).batch
    assert batch.ok["time"].tolist() == [True]
    assert batch.time_lexical.to_pylist() == [lexical]
    assert batch.time_ns.tolist() == [ns]
    defect = batch.defects.to_pylist()[0]
    assert (defect is None) if note is None else (note in str(defect))


@pytest.mark.parametrize(
    "cell",
    ["2020-02-30 00:00:00", "2021-02-29 12:00:00", "2020-01-01 23:59:60", "2020-01-01 24:00:00"],
)
def test_times_strptime_would_roll_over_are_not_times(tmp_path: Path, cell: str) -> None:
    path = _write(tmp_path, f"datetime;Pressure\n{cell};0.5\n")
    batch = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).batch
    assert batch.ok["time"].tolist() == [False]
    assert batch.time_lexical.to_pylist() == [cell]
    assert "is not a time in the format" in str(batch.defects[0])


@settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    moments=st.lists(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        min_size=1,
        max_size=20,
    )
)
def test_no_time_is_wrapped_around(
    tmp_path_factory: pytest.TempPathFactory, moments: list[datetime]
) -> None:
    rows = "".join(f"{m:%Y-%m-%d %H:%M:%S}".zfill(19) + ";0.5\n" for m in moments)
    path = tmp_path_factory.mktemp("times") / "t.csv"
    path.write_text("datetime;Pressure\n" + rows, encoding="utf-8")
    batch = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).batch
    for i, m in enumerate(moments):
        seconds = (
            m.replace(microsecond=0, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        ) // timedelta(seconds=1)
        assert batch.time_lexical[i].as_py() == f"{m:%Y-%m-%dT%H:%M:%S}".zfill(19) + "Z"
        if FIRST_SECOND <= seconds <= LAST_SECOND:
            assert batch.time_ns[i] == seconds * 10**9 and batch.defects[i].as_py() is None
        else:
            assert batch.time_ns[i] == (NS_BEFORE if seconds < 0 else NS_AFTER)
            assert "outside what int64 nanoseconds hold" in str(batch.defects[i])


_cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["1e400", "-0", "nan", "inf", "9" * 30, "true", "2020-01-01", "12:00:00", '"a;b"']
    ),
    st.integers().map(str),
    st.floats().map(str),
)


@settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    rows=st.lists(st.lists(_cells, min_size=3, max_size=3), min_size=1, max_size=8),
    raw=st.binary(max_size=60),
)
def test_any_file_reads_or_is_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]], raw: bytes
) -> None:
    folder = tmp_path_factory.mktemp("any")
    text = "datetime;Pressure;Current\n" + "".join(";".join(row) + "\n" for row in rows)
    for data in (text.encode("utf-8", "surrogatepass"), raw, b"datetime;Pressure\n" + raw):
        path = folder / "f.csv"
        path.write_bytes(data)
        try:
            batch = read_wide_csv(path, sensor_columns=COLUMNS, units=UNITS).batch
        except InvalidInputError as exc:
            assert "\n" not in str(exc)
        else:
            assert len(batch.defects) == len(batch)
