"""Telemetry points in columnar form: what producers send, before the contract is applied.

A :class:`PointBatch` keeps, for every property the telemetry contract constrains, how many values
each point gave and the first of them, plus whether that value had the contract's datatype. It is
built from the API's JSON points (:func:`from_json_points`) or from a CSV export
(``reasoner.csv_source``), and checked by ``reasoner.compiled`` without touching RDF.
Malformed values are kept (flagged) so that the contract, not the parser, decides and reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ontology.errors import InvalidInputError

Bools = npt.NDArray[np.bool_]
Counts = npt.NDArray[np.int8]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# The properties of a point (JSON keys), in the order of ontology terms the contract uses.
FIELDS = ("sensor", "value", "unit", "time", "sequence", "quality", "producer", "batch")
JSON_FIELDS = frozenset(("sensor", "value", "unit", "time", "quality", "producer"))

# xsd:dateTime lexical form (XML Schema 1.1 §3.3.8), with the optional time zone captured.
_DATETIME = re.compile(r"^-?\d{4,}-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


@dataclass(frozen=True, slots=True)
class PointBatch:
    """``n`` points as columns. ``*_count`` is how many values the point gave for the field;
    ``*_ok`` whether the (first) value has the field's datatype. Times are UTC nanoseconds."""

    sensor: pa.StringArray
    value: Floats
    unit: pa.StringArray
    time_ns: Ints
    time_lexical: pa.StringArray
    sequence: Ints
    quality: pa.StringArray
    producer: pa.StringArray
    counts: Mapping[str, Counts]
    ok: Mapping[str, Bools]
    time_tz: Bools  # the (valid) time carries a zone

    def __len__(self) -> int:
        return len(self.value)


def parse_datetime(text: str) -> tuple[bool, bool, int]:
    """``(valid xsd:dateTime, has a time zone, UTC nanoseconds)`` of a lexical form."""
    match = _DATETIME.match(text)
    if not match:
        return False, False, 0
    try:
        # Python needs at most microseconds and "+00:00" rather than "Z".
        base, _, frac = text.partition(".")
        zone = match.group(7) or ""
        if frac:
            digits = frac[: len(frac) - len(zone)] if zone else frac
            text = f"{base}.{digits[:6].ljust(6, '0')}{zone}"
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False, False, 0
    if moment.tzinfo is None:
        return True, False, int(moment.replace(tzinfo=UTC).timestamp() * 1e6) * 1000
    return True, True, int(moment.timestamp() * 1e6) * 1000


def _values(point: Mapping[str, Any], key: str) -> list[Any]:
    raw = point.get(key)
    if raw is None:
        return []
    return list(raw) if isinstance(raw, list) else [raw]


def _is_double(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_STRING_COLUMNS = ("sensor", "unit", "time", "quality", "producer")


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


_TYPED: dict[str, Callable[[Any], bool]] = {
    "value": _is_double,
    "sequence": _is_integer,
    "quality": _is_string,
    "producer": _is_string,
}


def from_json_points(
    points: Sequence[Mapping[str, Any]],
    *,
    producer: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PointBatch:
    """Columns of the API's JSON points (``sensor``, ``value``, ``unit``, ``time``, optional
    ``quality`` and ``producer``). ``sequence`` is the position in the list and every point
    belongs to the batch; a field given as a list counts as several values. ``progress`` hears
    ``(done, total)`` in points converted (see :func:`from_records`)."""
    records: list[dict[str, Any]] = []
    for i, point in enumerate(points):
        if not isinstance(point, Mapping):
            raise InvalidInputError(f"point {i} is not a JSON object")
        unknown = set(point) - JSON_FIELDS
        if unknown:
            raise InvalidInputError(f"point {i} has unknown fields: {', '.join(sorted(unknown))}")
        for key in ("sensor", "unit"):
            if any(not isinstance(v, str) for v in _values(point, key)):
                raise InvalidInputError(f"point {i}: {key} must be an IRI string")
        record = dict(point, sequence=i, batch=True)
        if producer is not None and "producer" not in point:
            record["producer"] = producer
        records.append(record)
    return from_records(records, progress=progress)


PROGRESS_EVERY = 10_000  # points between progress reports


def from_records(
    records: Sequence[Mapping[str, Any]], *, progress: Callable[[int, int], None] | None = None
) -> PointBatch:
    """Columns of point records keyed by :data:`FIELDS` (a list value is several values).

    ``progress`` hears ``(done, total)`` in records converted: at the start, every
    :data:`PROGRESS_EVERY` records, and at the end."""
    n = len(records)
    if progress is not None:
        progress(0, n)
    counts = {name: np.zeros(n, np.int8) for name in FIELDS}
    ok = {name: np.zeros(n, np.bool_) for name in (*_TYPED, "time")}
    value = np.full(n, np.nan)
    sequence = np.zeros(n, np.int64)
    time_ns = np.zeros(n, np.int64)
    time_tz = np.zeros(n, np.bool_)
    strings: dict[str, list[str | None]] = {k: [None] * n for k in _STRING_COLUMNS}
    for i, record in enumerate(records):
        if progress is not None and i and i % PROGRESS_EVERY == 0:
            progress(i, n)
        for key in FIELDS:
            vals = _values(record, key)
            if not vals:
                continue
            counts[key][i] = min(len(vals), 2)
            first = vals[0]
            if key in strings:
                strings[key][i] = first if isinstance(first, str) else str(first)
            if key in _TYPED:
                ok[key][i] = _TYPED[key](first)
        vals = _values(record, "value")
        if vals and ok["value"][i]:
            value[i] = float(vals[0])
        vals = _values(record, "sequence")
        if vals and ok["sequence"][i]:
            sequence[i] = int(vals[0])
        vals = _values(record, "time")
        if vals and isinstance(vals[0], str):
            ok["time"][i], time_tz[i], time_ns[i] = parse_datetime(vals[0])
    if progress is not None:
        progress(n, n)
    return PointBatch(
        sensor=pa.array(strings["sensor"], pa.string()),
        value=value,
        unit=pa.array(strings["unit"], pa.string()),
        time_ns=time_ns,
        time_lexical=pa.array(strings["time"], pa.string()),
        sequence=sequence,
        quality=pa.array(strings["quality"], pa.string()),
        producer=pa.array(strings["producer"], pa.string()),
        counts=counts,
        ok=ok,
        time_tz=time_tz,
    )
