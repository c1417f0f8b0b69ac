"""Wide CSV files become points; bad cells stay in the batch, flagged for the contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ontology.errors import InvalidInputError
from reasoner.csv_source import CsvLayout, read_wide_csv

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
        ("datetime;Pressure\n2020-01-01 00:00:00;1;2;3\n", "not a readable CSV"),
    ],
)
def test_unusable_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        read_wide_csv(_write(tmp_path, text), sensor_columns=COLUMNS, units=UNITS)
