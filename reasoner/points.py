"""Telemetry points in columnar form: what producers send, before the contract is applied.

A :class:`PointBatch` keeps, for every property the telemetry contract constrains, how many values
each point gave and the first of them, plus whether that value had the contract's datatype. It is
built by the telemetry sources (``connect``: JSON points, CSV exports) or from point records
(:func:`from_records`), and checked by ``reasoner.compiled`` without touching RDF.
Malformed values are kept (flagged) so that the contract, not the parser, decides and reports.

Each point is judged on its own: what the parser finds wrong with a point that the contract
cannot see (a JSON array where a number belongs, a name given twice, a time that int64
nanoseconds cannot hold, text that is not Unicode) becomes that point's *defect*, a reason that
quarantines it next to the contract's; the rest of the batch goes on. Times are never rewritten
(``reasoner.timestamps``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from twinkg.reasoner.timestamps import Reading, read_datetime

Bools = npt.NDArray[np.bool_]
Counts = npt.NDArray[np.int8]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# The properties of a point (JSON keys), in the order of ontology terms the contract uses.
FIELDS = ("sensor", "value", "unit", "time", "sequence", "quality", "producer", "batch")


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
    defects: pa.StringArray  # why the parser quarantines the point; null when it does not

    def __len__(self) -> int:
        return len(self.value)


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


PROGRESS_EVERY = 10_000  # points between progress reports


def _lexical(key: str, value: Any, notes: list[str]) -> str:
    """The lexical form of a value in a string column (as rdflib writes a literal), with text
    that is not Unicode (lone surrogates from JSON escapes) escaped and noted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        notes.append(f"{key} is not valid Unicode (it holds a lone surrogate)")
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _time(record: Mapping[str, Any], notes: list[str]) -> Reading | None:
    """The reading of a record's (first) time string, its defect noted; ``None`` if none."""
    vals = _values(record, "time")
    if not vals or not isinstance(vals[0], str):
        return None
    reading = read_datetime(vals[0])
    if reading.defect is not None:
        notes.append(reading.defect)
    return reading


def _double(given: Any, notes: list[str]) -> tuple[bool, float]:
    """``(held by a double, the double)`` of a numeric value (the first of a list)."""
    first = given[0] if isinstance(given, list) else given
    try:
        return True, float(first)
    except OverflowError:  # an integer no double holds (JSON's reader never gives one)
        notes.append("value is beyond the range of a double")
        return False, float("nan")


def from_records(
    records: Sequence[Mapping[str, Any]],
    *,
    defects: Sequence[str | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PointBatch:
    """Columns of point records keyed by :data:`FIELDS` (a list value is several values).

    ``defects`` are reasons the caller already found per record (see the module docstring);
    times and text add theirs. ``progress`` hears ``(done, total)`` in records converted: at the
    start, every :data:`PROGRESS_EVERY` records, and at the end."""
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
    notes: list[str | None] = list(defects) if defects is not None else [None] * n
    for i, record in enumerate(records):
        if progress is not None and i and i % PROGRESS_EVERY == 0:
            progress(i, n)
        found: list[str] = []
        for key, raw in record.items():
            vals = raw if isinstance(raw, list) else () if raw is None else (raw,)
            if not vals or key not in counts:
                continue
            counts[key][i] = 1 if len(vals) == 1 else 2
            first = vals[0]
            if key in strings:
                plain = type(first) is str and first.isascii()
                strings[key][i] = first if plain else _lexical(key, first, found)
            if key in _TYPED:
                ok[key][i] = _TYPED[key](first)
        if ok["value"][i]:
            ok["value"][i], value[i] = _double(record["value"], found)
        if ok["sequence"][i]:
            sequence[i] = int(_values(record, "sequence")[0])
        reading = _time(record, found)
        if reading is not None:
            ok["time"][i], time_tz[i], time_ns[i] = reading.well_typed, reading.zoned, reading.ns
        if found:
            earlier = notes[i]
            notes[i] = "; ".join([earlier, *found] if earlier else found)
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
        defects=pa.array(notes, pa.string()),
    )
