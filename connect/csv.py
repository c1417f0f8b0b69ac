"""Wide CSV exports (one time column, one column per sensor) as a telemetry source.

SKAB's files are the model (``connect.skab``):
``datetime;Accelerometer1RMS;…;anomaly;changepoint``, ';'-separated, local times without a zone.
Columns map to sensors by the sensors' ``tk:externalId``; a column that names no sensor is an
error for the whole file (a schema problem, not a bad reading), while a cell that is not a
number or a time that does not parse stays in the batch, flagged, for the contract to
quarantine with its reason.

A file that is not a table refuses the whole file with one line (:class:`InvalidInputError`):
not UTF-8 (a UTF-8 byte-order mark is allowed), empty, no data rows, a column named twice, a
row with more or fewer fields than the header. Times are never rewritten: a cell the time
format reads only by changing it (30 February, 24:00:00, a leap second) is not a time, and a
time int64 nanoseconds cannot hold is quarantined with that reason (``reasoner.timestamps``).

:class:`CsvSource` is a file as a source of one batch (kind ``csv``); ``connect.skab`` is the
same reading with SKAB's replay defaults.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from twinkg.connect.source import Batch, SourceContext, SourceRequest
from twinkg.ontology.errors import InvalidInputError
from twinkg.reasoner.points import FIELDS, PointBatch
from twinkg.reasoner.timestamps import (
    FIRST_SECOND,
    FIRST_TEXT,
    LAST_SECOND,
    LAST_TEXT,
    NS_AFTER,
    NS_BEFORE,
    shown,
)

LABEL_COLUMNS = ("anomaly", "changepoint")  # SKAB's labels: not readings, ignored by default


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """How to read a wide CSV file (the defaults are SKAB's layout)."""

    time_column: str = "datetime"
    delimiter: str = ";"
    time_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: str = "UTC"
    ignore: tuple[str, ...] = LABEL_COLUMNS


@dataclass(frozen=True, slots=True)
class CsvPoints:
    """The points of a file, its content hash, and the sensor of each value column."""

    batch: PointBatch
    content_hash: str
    columns: tuple[str, ...]
    sensors: tuple[str, ...]
    rows: int


_SHOWN = 120  # characters of a bad row or reason quoted in an error
_BLOCK = 16 * 2**20  # bytes Arrow parses at a time: the longest row a file may have


def _bytes(path: Path) -> bytes:
    """The file's bytes, checked to be UTF-8 text."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InvalidInputError(f"{path} cannot be read: {exc.strerror or exc}") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 1 << 20
    for start in range(0, len(data), step):
        try:
            decoder.decode(data[start : start + step], final=start + step >= len(data))
        except UnicodeDecodeError as exc:
            at = start + exc.start
            line = data.count(b"\n", 0, at) + 1
            raise InvalidInputError(
                f"{path} is not UTF-8 text: byte {at} (line {line}) cannot be decoded"
            ) from None
    return data


def _read(path: Path, data: bytes, layout: CsvLayout) -> pa.Table:
    if len(layout.delimiter) != 1 or layout.delimiter in '\r\n"':
        raise InvalidInputError(f"the delimiter must be one character, not {layout.delimiter!r}")
    ragged: list[str] = []

    def refuse_ragged(row: pacsv.InvalidRow) -> str:
        text = row.text if len(row.text) <= _SHOWN else row.text[:_SHOWN] + "…"
        ragged.append(
            f"a row has {row.actual_columns} fields, the header {row.expected_columns}: {text!r}"
        )
        return "error"

    try:
        return pacsv.read_csv(
            pa.BufferReader(data),
            # Arrow's threads only pay off past one block; and a file of a header alone, read
            # on them, can leave a thread running at exit that aborts the process (SIGABRT,
            # "terminate called without an active exception"; apache/arrow#38676), so the
            # command's one-line refusal would end in a crash.
            read_options=pacsv.ReadOptions(block_size=_BLOCK, use_threads=len(data) > _BLOCK),
            parse_options=pacsv.ParseOptions(
                delimiter=layout.delimiter, invalid_row_handler=refuse_ragged
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={layout.time_column: pa.string()},
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        lines = str(exc).strip().splitlines()
        reason = ragged[0] if ragged else (lines[0] if lines else type(exc).__name__)
        if "Empty CSV file" in reason:
            reason = "the file is empty"
        elif "straddl" in reason:
            reason = f"a row is longer than {_BLOCK // 2**20} MiB"
        cut = reason if len(reason) <= 2 * _SHOWN else reason[: 2 * _SHOWN] + "…"
        raise InvalidInputError(f"{path} is not a readable CSV file: {cut}") from None


def _check_columns(path: Path, table: pa.Table, layout: CsvLayout) -> None:
    names = table.column_names
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise InvalidInputError(f"{path}: column {twice[0]!r} appears more than once")
    if layout.time_column not in names:
        raise InvalidInputError(f"{path}: no {layout.time_column!r} column")
    if table.num_rows == 0:
        raise InvalidInputError(f"{path}: no data rows")


# What float() accepts, as a vectorised test (RE2): decimal and exponent forms, nan and inf.
_NUMBER = r"^\s*[-+]?((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|(?i:nan|inf|infinity))\s*$"


def _numbers(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, given, ok)``: a value column as floats, with cells that are not numbers kept
    as given-but-not-ok (value NaN) so the contract reports them; empty cells are not given."""
    given = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        # integers past 2**53 round to the nearest double, as a JSON number does
        values = pc.cast(column, pa.float64(), safe=False).fill_null(np.nan).to_numpy()
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
    layout: CsvLayout = CsvLayout(),
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
    data = _bytes(path)
    table = _read(path, data, layout)
    _check_columns(path, table, layout)
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
    raw_time = table[layout.time_column].combine_chunks()
    local, time_ok = _local_seconds(raw_time, layout.time_format)
    utc_s = local - _offsets(local, zone)
    inside = (utc_s >= FIRST_SECOND) & (utc_s <= LAST_SECOND)
    utc_ns = np.where(inside, utc_s, 0) * 10**9
    utc_ns = np.where(inside, utc_ns, np.where(utc_s < 0, NS_BEFORE, NS_AFTER))
    lexical = _lexical(raw_time, utc_s, time_ok)
    row_notes = _time_notes(raw_time, lexical, utc_s, time_ok, inside, layout.time_format)
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
        time_us=np.repeat(np.clip(utc_s, -(2**62) // 10**6, 2**62 // 10**6) * 10**6, k),
        time_lexical=lexical.take(pa.array(np.repeat(np.arange(rows), k))),
        sequence=np.arange(n, dtype=np.int64),
        quality=pa.nulls(n, pa.string()),
        producer=pa.array([producer] * n if producer else [None] * n, pa.string()),
        counts=counts,
        ok=ok,
        time_tz=np.repeat(time_ok, k),
        defects=_defects(row_notes, value_cols, [table[c] for c in columns]),
    )
    digest = hashlib.sha256(data + repr((layout, sorted(sensor_columns.items()))).encode())
    return CsvPoints(batch, digest.hexdigest(), tuple(columns), tuple(sensors), rows)


def _no_progress(done: int, total: int) -> None:
    """Reports nothing."""


def _local_seconds(raw: pa.Array, time_format: str) -> tuple[np.ndarray, np.ndarray]:
    """``(seconds since 1970 as written, read exactly)`` per time cell. Arrow's strptime rolls
    impossible dates over (30 February becomes 1 March); a cell whose reading does not print
    back as itself is checked by Python's strptime, which refuses them."""
    try:
        stamps = pc.strptime(raw, format=time_format, unit="s", error_is_null=True)
        printed = pc.strftime(stamps, format=time_format)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"time format {time_format!r} cannot be used: {reason}") from None
    local = stamps.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    ok = np.asarray(stamps.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    same = np.asarray(pc.equal(printed, raw).fill_null(False).to_numpy(zero_copy_only=False))
    cells = raw.to_pylist()
    for i in np.flatnonzero(ok & ~same):
        ok[i] = _python_seconds(str(cells[i]), time_format) == local[i]
    return local, ok


def _python_seconds(cell: str, time_format: str) -> int | None:
    try:
        moment = datetime.strptime(cell, time_format)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return (moment - datetime(1970, 1, 1)) // timedelta(seconds=1)


def _offsets(local_s: np.ndarray, zone: ZoneInfo) -> np.ndarray:
    """UTC offset in seconds of each local time (looked up once per distinct hour)."""
    hours = local_s // 3600
    unique, inverse = np.unique(hours, return_inverse=True)
    offsets = np.array([_offset(int(h) * 3600, zone) for h in unique], dtype=np.int64)
    return np.asarray(offsets[np.asarray(inverse).ravel()], dtype=np.int64)


def _offset(local_s: int, zone: ZoneInfo) -> int:
    try:
        naive = datetime(1970, 1, 1) + timedelta(seconds=local_s)
    except OverflowError:  # beyond Python's years 1..9999: outside the range anyway
        return 0
    delta = naive.replace(tzinfo=zone).utcoffset()
    return int(delta.total_seconds()) if delta else 0


def _lexical(raw: pa.Array, utc_s: np.ndarray, ok: np.ndarray) -> pa.Array:
    """xsd:dateTime lexical forms (UTC, ``Z``) for parsed times, the raw cell otherwise."""
    utc = pa.array(np.where(ok, utc_s, 0), pa.timestamp("s", tz="UTC"))
    formatted = pc.binary_join_element_wise(
        pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S"), pa.scalar("Z"), ""
    )
    return pc.if_else(pa.array(ok), formatted, raw.cast(pa.string()))


def _time_notes(  # noqa: PLR0917 - private, one call site
    raw: pa.Array,
    lexical: pa.Array,
    utc_s: np.ndarray,
    ok: np.ndarray,
    inside: np.ndarray,
    time_format: str,
) -> list[str | None]:
    """Per row: why its time is quarantined beyond what the contract says, or ``None``."""
    notes: list[str | None] = [None] * len(ok)
    given = np.asarray(raw.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    cells, forms = raw.to_pylist(), lexical.to_pylist()
    for i in np.flatnonzero(given & ~ok):
        notes[i] = f"time {shown(str(cells[i]))} is not a time in the format {time_format!r}"
    for i in np.flatnonzero(ok & ~inside):
        side = "before " + FIRST_TEXT if utc_s[i] < 0 else "after " + LAST_TEXT
        notes[i] = f"time {shown(str(forms[i]))}: it is {side}, outside what int64 nanoseconds hold"
    return notes


def _defects(
    row_notes: list[str | None],
    value_cols: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    cells: list[pa.ChunkedArray],
) -> pa.StringArray:
    """Per point (row-major): its row's time note and, for a cell that is not a number, the cell."""
    k = len(value_cols)
    notes: list[str | None] = [note for note in row_notes for _ in range(k)]
    for j, ((_, given, ok), column) in enumerate(zip(value_cols, cells, strict=True)):
        bad = np.flatnonzero(given & ~ok)
        if not len(bad):
            continue
        texts = column.take(pa.array(bad)).cast(pa.string()).to_pylist()
        for row, text in zip(bad, texts, strict=True):
            note = f"value {shown(str(text))} is not a number"
            at = int(row) * k + j
            notes[at] = f"{notes[at]}; {note}" if notes[at] else note
    return pa.array(notes, pa.string())


def column_sensors(rows: Sequence[tuple[str | None, str]]) -> dict[str, str]:
    """``externalId → sensor IRI`` from ``(external_id, uri)`` pairs (those without one skipped)."""
    return {external: uri for external, uri in rows if external}


@dataclass(frozen=True, slots=True)
class CsvSource:
    """A wide CSV file as a source of one batch: each column is the sensor whose
    ``tk:externalId`` it names (from :attr:`SourceContext.sensors`), in that sensor's unit."""

    path: Path
    layout: CsvLayout = CsvLayout()
    contract: str | None = None
    producer: str | None = None
    replay: bool = False
    fit_rows: int | None = None

    @property
    def name(self) -> str:
        """The file's path."""
        return str(self.path)

    def batches(self, context: SourceContext) -> Iterator[Batch]:
        """The file's one batch (:class:`InvalidInputError` when the graph has no sensors to map
        columns to, or the file is not a table; see :func:`read_wide_csv`)."""
        rows = context.sensors()
        columns = column_sensors([(r.external_id, r.uri) for r in rows])
        if not columns:
            raise InvalidInputError(
                "the graph has no sensors with a tk:externalId; seed a plant first"
            )
        points = read_wide_csv(
            self.path,
            sensor_columns=columns,
            units={r.uri: r.unit for r in rows},
            layout=self.layout,
            producer=self.producer,
            progress=context.parsing(),
        )
        yield Batch(
            points.batch,
            points.content_hash,
            self.producer,
            self.contract or "telemetry",
            self.path.name,
            replay=self.replay,
            fit_rows=self.fit_rows,
        )


def csv_source(request: SourceRequest) -> CsvSource:
    """A CSV source from a request; options ``tz``, ``delimiter``, ``time_column`` and
    ``time_format`` (the defaults are SKAB's layout)."""
    default = CsvLayout()
    layout = CsvLayout(
        time_column=request.option("time_column", default.time_column),
        delimiter=request.option("delimiter", default.delimiter),
        time_format=request.option("time_format", default.time_format),
        timezone=request.option("tz", default.timezone),
    )
    return CsvSource(
        Path(request.target), layout, contract=request.contract, producer=request.producer
    )
