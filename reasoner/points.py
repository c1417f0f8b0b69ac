"""Telemetry points in columnar form: what producers send, before the contract is applied.

A :class:`PointBatch` keeps, for every property the telemetry contract constrains, how many values
each point gave and the first of them, plus whether that value had the contract's datatype. It is
built from the API's JSON points (:func:`from_json_points`) or from a CSV export
(``reasoner.csv_source``), and checked by ``reasoner.compiled`` without touching RDF.
Malformed values are kept (flagged) so that the contract, not the parser, decides and reports.

Each point is judged on its own: what the parser finds wrong with a point that the contract
cannot see (a JSON array where a number belongs, a name given twice, a time that int64
nanoseconds cannot hold, text that is not Unicode) becomes that point's *defect*, a reason that
quarantines it next to the contract's; the rest of the batch goes on. Times are never rewritten
(``reasoner.timestamps``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from twinkg.ontology.errors import InvalidInputError
from twinkg.reasoner.json_body import JsonText, RepeatedNames, json_kind
from twinkg.reasoner.timestamps import Reading, read_datetime, shown

Bools = npt.NDArray[np.bool_]
Counts = npt.NDArray[np.int8]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# The properties of a point (JSON keys), in the order of ontology terms the contract uses.
FIELDS = ("sensor", "value", "unit", "time", "sequence", "quality", "producer", "batch")
JSON_FIELDS = frozenset(("sensor", "value", "unit", "time", "quality", "producer"))
# What each JSON field must be, in the words of a reason.
_EXPECTED = {
    "sensor": "an IRI string",
    "unit": "an IRI string",
    "time": "a string",
    "quality": "a string",
    "producer": "a string",
    "value": "a number",
}


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
    return isinstance(value, (int, float)) and not isinstance(value, (bool, JsonText))


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


def _json_value(key: str, value: Any, notes: list[str]) -> Any:
    """One JSON field as the contract sees it: an array or object becomes one :class:`JsonText`
    (never several values, never a number), and a value of the wrong JSON type gets a note."""
    if isinstance(value, (list, dict)):
        kind = "array" if isinstance(value, list) else "object"
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=repr)
        value = JsonText(text, kind)
    fits = _is_double(value) if key == "value" else isinstance(value, str)
    if isinstance(value, JsonText) and value.kind == "number":
        notes.append(f"{key} is {json_kind(value)}")
    elif not fits or isinstance(value, JsonText):
        notes.append(f"{key} is {json_kind(value)}, not {_EXPECTED[key]}")
    return value


def _json_record(i: int, point: Any, producer: str | None) -> tuple[dict[str, Any], str | None]:
    """The record of JSON point ``i`` and its defect (``None`` when the parser finds none)."""
    record: dict[str, Any] = {"sequence": i, "batch": True}
    if producer is not None:
        record["producer"] = producer
    if not isinstance(point, Mapping):
        return record, f"the point is {json_kind(point)}, not a JSON object"
    unknown = set(point) - JSON_FIELDS
    if unknown:  # another schema, not a bad reading: the producer must change, not the point
        names = ", ".join(shown(str(name)) for name in sorted(unknown, key=str)[:5])
        raise InvalidInputError(f"point {i} has unknown fields: {names}")
    notes: list[str] = []
    if isinstance(point, RepeatedNames):
        notes.append(f"the point gives {', '.join(point.repeated)} more than once")
    for key, value in point.items():
        kind = type(value)
        if kind is str if key != "value" else kind in (int, float):
            record[key] = value  # the common case, nothing to judge
        elif value is not None:
            record[key] = _json_value(key, value, notes)
    return record, "; ".join(notes) or None


def from_json_points(
    points: Sequence[Any],
    *,
    producer: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PointBatch:
    """Columns of the API's JSON points (``sensor``, ``value``, ``unit``, ``time``, optional
    ``quality`` and ``producer``). ``sequence`` is the position in the list and every point
    belongs to the batch. Each field is one JSON value: an array is one value that is not a
    number (a one-element list never passes as a scalar); ``null`` is a field not given.
    A point that is not an object, repeats a name or holds a value of the wrong JSON type is
    quarantined with that reason; a point with fields the contract does not know refuses the
    batch (:class:`InvalidInputError`). ``progress`` hears ``(done, total)`` in points converted
    (see :func:`from_records`)."""
    records, defects = json_records(points, producer=producer)
    return from_records(records, defects=defects, progress=progress)


def json_records(
    points: Sequence[Any], *, producer: str | None = None
) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The records :func:`from_json_points` checks (what pySHACL is given in the tests) and
    each point's defect so far."""
    records: list[dict[str, Any]] = []
    defects: list[str | None] = []
    seen: dict[str, str] = {}  # one string per distinct defect
    for i, point in enumerate(points):
        record, defect = _json_record(i, point, producer)
        records.append(record)
        defects.append(None if defect is None else seen.setdefault(defect, defect))
    return records, defects


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
