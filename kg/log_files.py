"""What of the telemetry log can be read: manifests, files and rows, judged before Arrow sees them.

The log's readers must never crash on what the log holds (decision 0028): a manifest that is not
JSON or not a manifest, or a file it names that is outside the log, missing, truncated, not
Parquet or of another schema, is left out, and each is reported as a :class:`LogIssue` with a
stable code. Rows are never dropped: times are int64 nanoseconds, read back exactly.
Files are immutable once named in a manifest, so a file's verdict is cached by path, size and
modification time, together with its :class:`Zone`: what its footer's statistics say its rows
span, so that a window skips the files that cannot hold one of its rows without opening them
(decision 0051).
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

_log = logging.getLogger("twinkg.telemetry_log")


class IssueCode(StrEnum):
    """Why something in the log was left out of a read."""

    MANIFEST_UNREADABLE = "manifest_unreadable"
    FILE_MISSING = "file_missing"
    FILE_UNREADABLE = "file_unreadable"
    FILE_FOREIGN = "file_foreign"
    PENDING_UNREADABLE = "pending_unreadable"


@dataclass(frozen=True, slots=True)
class LogIssue:
    """Something a read of the log left out, and why."""

    code: IssueCode
    path: str
    reason: str


def report(issues: list[LogIssue], issue: LogIssue) -> None:
    """Add ``issue`` to ``issues`` and log it (once per read)."""
    issues.append(issue)
    _log.warning("telemetry log: %s %s: %s", issue.code.value, issue.path, issue.reason)


def manifest_document(path: Path) -> dict[str, Any]:
    """A manifest's JSON; ``ValueError`` unless it has a manifest's fields and types."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for name, kind in (
        ("batch_id", str),
        ("contract", str),
        ("received_at", str),
        ("accepted", int),
        ("rejected", int),
        ("files", list),
    ):
        if not isinstance(data.get(name), kind):
            raise ValueError(f"{name} is missing or not a {kind.__name__}")
    if not all(isinstance(f, str) for f in data["files"]):
        raise ValueError("files must be relative paths")
    return data


def inside(root: Path, relative: str, kind: str) -> Path | None:
    """``root/relative`` when it names a file of ``kind`` inside the log, else ``None``."""
    path = Path(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != kind:
        return None
    return root / path


@dataclass(frozen=True, slots=True)
class Zone:
    """What a Parquet file's footer says its rows span: the least and greatest ``sensor`` (UTF-8
    bytes, compared as Parquet orders them) and ``time`` (int64 nanoseconds since the epoch).
    ``None`` where the footer does not state it for every row group: then the file may hold
    anything."""

    sensors: tuple[bytes, bytes] | None = None
    times: tuple[int, int] | None = None

    def may_hold(self, sensors: Sequence[bytes] | None, low: int | None, high: int | None) -> bool:
        """Whether a row with one of ``sensors`` (sorted; ``None``: any) and ``low <= time <
        high`` (``None``: unbounded) can lie in the file. ``False`` only when it cannot."""
        if self.times is not None:
            if high is not None and self.times[0] >= high:
                return False
            if low is not None and self.times[1] < low:
                return False
        if sensors is not None and self.sensors is not None:
            least, greatest = self.sensors
            at = bisect.bisect_left(sensors, least)
            return at < len(sensors) and sensors[at] <= greatest
        return True


def readable(
    files: list[Path], schema: pa.Schema, issues: list[LogIssue]
) -> list[tuple[str, Zone]]:
    """The files that exist and are Parquet with ``schema``'s columns, each with its
    :class:`Zone`; the others reported."""
    good: list[tuple[str, Zone]] = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            report(issues, LogIssue(IssueCode.FILE_MISSING, str(path), "named by a manifest"))
            continue
        verdict, zone = _footer(str(path), stat.st_size, stat.st_mtime_ns, schema)
        if verdict is None:
            good.append((str(path), zone))
        else:
            report(issues, LogIssue(verdict[0], str(path), verdict[1]))
    return good


@functools.lru_cache(maxsize=65_536)
def _footer(
    path: str, size: int, mtime_ns: int, schema: pa.Schema
) -> tuple[tuple[IssueCode, str] | None, Zone]:
    """The file's verdict (``None`` when its footer reads and its columns match ``schema``)
    and its zone."""
    del size, mtime_ns  # part of the cache key only: a replaced file is judged again
    try:
        with pq.ParquetFile(path) as parquet:  # the footer only; the file is closed at once
            found = parquet.schema_arrow
            metadata = parquet.metadata
    except (OSError, pa.ArrowException) as exc:
        return (IssueCode.FILE_UNREADABLE, _one_line(exc)), Zone()
    for field in schema:
        index = found.get_field_index(field.name)
        if index < 0 or found.field(index).type != field.type:
            return (IssueCode.FILE_FOREIGN, f"no column {field.name} of type {field.type}"), Zone()
    names = schema.names
    strings = "sensor" in names and schema.field("sensor").type == pa.string()
    time = schema.field("time").type if "time" in names else None
    nanoseconds = isinstance(time, pa.TimestampType) and time.unit == "ns"
    sensors = _span(metadata, "sensor", "BYTE_ARRAY") if strings else None
    times = _span(metadata, "time", "INT64") if nanoseconds else None
    return None, Zone(sensors, times)


def _span(metadata: pq.FileMetaData, column: str, physical: str) -> tuple[Any, Any] | None:
    """The least and greatest raw value of ``column`` over every row group, when each row
    group's statistics state them; else ``None``."""
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    if column not in names:
        return None
    index = names.index(column)
    least: Any = None
    greatest: Any = None
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(index)
        stats = chunk.statistics
        if chunk.num_values == 0:
            continue
        if stats is None or not stats.has_min_max or stats.physical_type != physical:
            return None
        low, high = stats.min_raw, stats.max_raw
        least = low if least is None else min(least, low)
        greatest = high if greatest is None else max(greatest, high)
    if least is None:
        return None
    return least, greatest


def read_files(
    files: list[str],
    schema: pa.Schema,
    issues: list[LogIssue],
    *,
    condition: ds.Expression | None = None,
) -> pa.Table:
    """The rows of ``files`` that meet ``condition`` (only ``schema``'s columns). Files that
    passed :func:`readable` are read as one dataset; when one of them is damaged past its
    footer, each is read alone and the damaged ones are left out and reported."""
    if not files:
        return schema.empty_table()
    try:
        return ds.dataset(files, schema=schema, format="parquet").to_table(filter=condition)
    except (OSError, pa.ArrowException):
        pass
    tables: list[pa.Table] = []
    for path in files:
        try:
            part = ds.dataset(path, schema=schema, format="parquet").to_table(filter=condition)
        except (OSError, pa.ArrowException) as exc:
            report(issues, LogIssue(IssueCode.FILE_UNREADABLE, path, _one_line(exc)))
            continue
        tables.append(part)
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__
