"""Wide CSV exports (one time column, one column per sensor) as telemetry points.

SKAB's files are the model: ``datetime;Accelerometer1RMS;…;anomaly;changepoint``, ';'-separated,
local times without a zone. Columns map to sensors by the sensors' ``tk:externalId``; a column
that names no sensor is an error for the whole file (a schema problem, not a bad reading), while
a cell that is not a number or a time that does not parse stays in the batch, flagged, for the
contract to quarantine with its reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ontology.errors import InvalidInputError
from reasoner.points import FIELDS, PointBatch

SKAB_LABEL_COLUMNS = ("anomaly", "changepoint")


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How to read a wide CSV file."""

    time_column: str = "datetime"
    delimiter: str = ";"
    time_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: str = "UTC"
    ignore: tuple[str, ...] = SKAB_LABEL_COLUMNS


SKAB = CsvLayout()


@dataclass(frozen=True, slots=True)
class CsvPoints:
    """The points of a file, its content hash, and the sensor of each value column."""

    batch: PointBatch
    content_hash: str
    columns: tuple[str, ...]
    sensors: tuple[str, ...]
    rows: int


def _read(path: Path, layout: CsvLayout) -> pa.Table:
    try:
        return pacsv.read_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=layout.delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types={layout.time_column: pa.string()},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise InvalidInputError(f"{path} is not a readable CSV file: {reason}") from exc


# What float() accepts, as a vectorised test (RE2): decimal and exponent forms, nan and inf.
_NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|(?i:nan|inf|infinity))\s*$"


def _numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, given, ok)``: a value column as floats, with cells that are not numbers kept
    as given-but-not-ok (value NaN) so the contract reports them; empty cells are not given."""
    given = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        values = column.cast(pa.float64()).fill_null(np.nan).to_numpy()
        return np.asarray(values, np.float64), given, given.copy()
    text = column.cast(pa.string())
    numeric = pc.match_substring_regex(text, pattern=_NUMBER).fill_null(False)
    cleaned = pc.if_else(numeric, pc.utf8_trim_whitespace(text), pa.scalar(None, pa.string()))
    values = cleaned.cast(pa.float64()).fill_null(np.nan).to_numpy()
    ok = np.asarray(numeric.to_numpy(zero_copy_only=False), dtype=np.bool_)
    return np.asarray(values, np.float64), given, ok


def read_wide_csv(
    path: Path,
    *,
    sensor_columns: Mapping[str, str],
    units: Mapping[str, str | None],
    layout: CsvLayout = SKAB,
    producer: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CsvPoints:
    """Points of a wide CSV: ``sensor_columns`` maps column names to sensor IRIs, ``units``
    sensor IRIs to their unit (a CSV carries no units: each column is in its sensor's unit).

    ``progress`` hears ``(done, total)`` in columns converted (the time column, then each sensor
    column) once the file has been read."""
    try:
        zone = ZoneInfo(layout.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInputError(f"unknown time zone {layout.timezone!r}") from None
    data = path.read_bytes() if path.exists() else b""
    table = _read(path, layout)
    if layout.time_column not in table.column_names:
        raise InvalidInputError(f"{path}: no {layout.time_column!r} column")
    columns = [c for c in table.column_names if c not in (layout.time_column, *layout.ignore)]
    unknown = [c for c in columns if c not in sensor_columns]
    if unknown:
        known = ", ".join(sorted(sensor_columns))
        raise InvalidInputError(
            f"{path}: column {unknown[0]!r} is not the externalId of any sensor (known: {known})"
        )
    if not columns:
        raise InvalidInputError(f"{path}: no sensor columns")
    rows, k = table.num_rows, len(columns)
    report = progress or _no_progress
    report(0, k + 1)
    raw_time = table[layout.time_column]
    stamps = pc.strptime(raw_time, format=layout.time_format, unit="s", error_is_null=True)
    local = stamps.cast(pa.int64()).fill_null(0).to_numpy().astype(np.int64)
    time_ok = np.asarray(stamps.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    offsets = _offsets(local, zone)
    utc_ns = (local - offsets) * 10**9
    lexical = _lexical(raw_time, stamps, utc_ns, time_ok)
    report(1, k + 1)
    value_cols = []
    for i, c in enumerate(columns, start=2):
        value_cols.append(_numbers(table[c]))
        report(i, k + 1)
    sensors = [sensor_columns[c] for c in columns]
    n = rows * k
    counts = {name: np.ones(n, np.int8) for name in FIELDS}
    counts["value"] = np.stack([g for _, g, _ in value_cols], axis=1).ravel().astype(np.int8)
    counts["time"] = np.repeat(np.asarray(raw_time.is_valid().to_numpy(zero_copy_only=False)), k)
    counts["time"] = counts["time"].astype(np.int8)
    if producer is None:
        counts["producer"] = np.zeros(n, np.int8)
    counts["quality"] = np.zeros(n, np.int8)
    ok = {
        "value": np.stack([o for _, _, o in value_cols], axis=1).ravel(),
        "time": np.repeat(time_ok, k),
        "sequence": np.ones(n, np.bool_),
        "quality": np.zeros(n, np.bool_),
        "producer": np.full(n, producer is not None),
    }
    column_of = pa.array(np.tile(np.arange(k, dtype=np.int32), rows))
    batch = PointBatch(
        sensor=pa.array(sensors, pa.string()).take(column_of),
        value=np.stack([v for v, _, _ in value_cols], axis=1).ravel(),
        unit=pa.array([units.get(s) for s in sensors], pa.string()).take(column_of),
        time_ns=np.repeat(utc_ns, k),
        time_lexical=lexical.take(pa.array(np.repeat(np.arange(rows), k))),
        sequence=np.arange(n, dtype=np.int64),
        quality=pa.nulls(n, pa.string()),
        producer=pa.array([producer] * n if producer else [None] * n, pa.string()),
        counts=counts,
        ok=ok,
        time_tz=np.repeat(time_ok, k),
    )
    digest = hashlib.sha256(data + repr((layout, sorted(sensor_columns.items()))).encode())
    return CsvPoints(batch, digest.hexdigest(), tuple(columns), tuple(sensors), rows)


def _no_progress(done: int, total: int) -> None:
    """Reports nothing."""


def _offsets(local_s: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """UTC offset in seconds of each local time (looked up once per distinct hour)."""
    hours = local_s // 3600
    unique, inverse = np.unique(hours, return_inverse=True)
    offsets = np.array([_offset(int(h) * 3600, zone) for h in unique], dtype=np.int64)
    return np.asarray(offsets[np.asarray(inverse).ravel()], dtype=np.int64)


def _offset(local_s: int, zone: ZoneInfo) -> int:
    naive = datetime(1970, 1, 1) + timedelta(seconds=local_s)
    delta = naive.replace(tzinfo=zone).utcoffset()
    return int(delta.total_seconds()) if delta else 0


def _lexical(
    raw: pa.ChunkedArray, stamps: pa.ChunkedArray, utc_ns: np.ndarray, ok: np.ndarray
) -> pa.Array:
    """xsd:dateTime lexical forms (UTC, ``Z``) for parsed times, the raw cell otherwise."""
    # whole seconds: Arrow's %S prints the fraction for finer units
    utc = pa.array(utc_ns // 10**9, pa.timestamp("s", tz="UTC"))
    formatted = pc.binary_join_element_wise(
        pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S"), pa.scalar("Z"), ""
    )
    return pc.if_else(pa.array(ok), formatted, raw.combine_chunks().cast(pa.string()))


def column_sensors(rows: Sequence[tuple[str | None, str]]) -> dict[str, str]:
    """``externalId → sensor IRI`` from ``(external_id, uri)`` pairs (those without one skipped)."""
    return {external: uri for external, uri in rows if external}
