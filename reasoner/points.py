"""Telemetry points in columnar form: what producers send, before the contract is applied.

A :class:`PointBatch` keeps, for every property the telemetry contract constrains, whether the
point gave it, the value, and whether that value has the contract's datatype. What each value
*is* to the contract is decided in one place, :func:`contract_value`, which the RDF form that
pySHACL judges (``reasoner.telemetry_rdf``) uses too, so both paths judge the same thing
(decision 0037). It is
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

import json
import unicodedata
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
    """``n`` points as columns. ``counts[field]`` is 1 when the point gave the field, else 0 (a
    list is one value, :func:`contract_value`); ``ok[field]`` whether the value has the field's
    datatype (``ok["sensor"]``: an IRI string). Times are UTC nanoseconds."""

    sensor: pa.StringArray
    value: Floats
    unit: pa.StringArray
    time_ns: Ints  # the exact instant of a time TwinKG keeps (see ``ok["time"]``)
    time_us: Ints  # the instant rdflib reads (to the microsecond): what the order checks compare
    time_lexical: pa.StringArray
    sequence: Ints
    quality: pa.StringArray
    producer: pa.StringArray
    counts: Mapping[str, Counts]
    ok: Mapping[str, Bools]
    time_tz: Bools  # the time reads as an instant with a zone (rdflib's reading; see timestamps)
    defects: pa.StringArray  # why the parser quarantines the point; null when it does not

    def __len__(self) -> int:
        return len(self.value)


def concat_points(batches: Sequence[PointBatch]) -> PointBatch:
    """The points of ``batches`` one after the other, as one batch (a group of messages
    ingested together, ``reasoner.ingest``); each point keeps its own fields and sequence."""
    if len(batches) == 1:
        return batches[0]

    def text(arrays: Sequence[pa.Array]) -> pa.StringArray:
        return pa.concat_arrays([a.cast(pa.string()) for a in arrays])

    keys = set(batches[0].ok)
    if any(set(b.ok) != keys or set(b.counts) != set(batches[0].counts) for b in batches):
        raise ValueError("point batches of different shapes cannot be joined")
    return PointBatch(
        sensor=text([b.sensor for b in batches]),
        value=np.concatenate([b.value for b in batches]),
        unit=text([b.unit for b in batches]),
        time_ns=np.concatenate([b.time_ns for b in batches]),
        time_us=np.concatenate([b.time_us for b in batches]),
        time_lexical=text([b.time_lexical for b in batches]),
        sequence=np.concatenate([b.sequence for b in batches]),
        quality=text([b.quality for b in batches]),
        producer=text([b.producer for b in batches]),
        counts={k: np.concatenate([b.counts[k] for b in batches]) for k in batches[0].counts},
        ok={k: np.concatenate([b.ok[k] for b in batches]) for k in batches[0].ok},
        time_tz=np.concatenate([b.time_tz for b in batches]),
        defects=text([b.defects for b in batches]),
    )


class Text(str):
    """A value written where the field wants another type (a JSON array, object, bool, an
    out-of-range or non-finite number, a number where text belongs, text where a number
    belongs), kept as its JSON text. Never a value of the field's datatype: RDF gets it as an
    ``rdf:JSON`` literal, the compiled checks as a value whose datatype does not hold."""


def _json_text(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    if isinstance(value, float) and not np.isfinite(value):
        return Text("NaN" if np.isnan(value) else "Infinity" if value > 0 else "-Infinity")
    try:
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=repr)
    except (ValueError, OverflowError, RecursionError):  # pragma: no cover - defensive
        text = ascii(value)
    cut = text if len(text) <= _TEXT_LIMIT else text[:_TEXT_LIMIT] + "…"
    return Text(cut)


_TEXT_LIMIT = 200  # characters of a Text kept (the reason quotes fewer)
_INT64 = (-(2**63), 2**63 - 1)


def _escaped(key: str, value: str, notes: list[str]) -> str:
    """``value`` as a lexical form both regex engines read alike: text that is not Unicode
    (lone surrogates from JSON escapes) and control characters (a final newline passes
    Python's ``$`` but not RE2's) are escaped with backslashes and noted."""
    if value.isascii() and value.isprintable():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        notes.append(f"{key} is not valid Unicode (it holds a lone surrogate)")
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    if any(unicodedata.category(c) == "Cc" for c in value):
        notes.append(f"{key} holds a control character (shown escaped)")
        value = "".join(c if unicodedata.category(c) != "Cc" else ascii(c)[1:-1] for c in value)
    return value


def _number(value: Any, notes: list[str]) -> float | Text:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return _json_text(value)
    try:
        number = float(value)
    except OverflowError:  # an integer no double holds
        notes.append("value is beyond the range of a double")
        return _json_text(value)
    if not np.isfinite(number):
        notes.append(f"value {_json_text(number)} is not a finite number")
        return _json_text(number)
    return number


def _integer(value: Any) -> int | Text:
    fits = isinstance(value, int) and not isinstance(value, bool)
    return int(value) if fits and _INT64[0] <= value <= _INT64[1] else _json_text(value)


def contract_value(key: str, value: Any, notes: list[str]) -> Any:
    """One field of a point as the contract reads it, the same for the compiled checks and for
    pySHACL (``reasoner.telemetry_rdf``): the one place where what RDF would lose is decided.

    * A field is one value: a list (even ``[5.0, 5.0]``, even ``[2.5]``) is one :class:`Text`,
      never several values an RDF graph would collapse or the compiled checks count.
    * ``value`` is a finite double or a :class:`Text` (NaN, ±Infinity, a bool, a string, an
      integer no double holds); ``sequence`` an int64 integer or a :class:`Text`.
    * ``sensor``, ``unit``, ``time``, ``quality``, ``producer`` are strings (anything else is a
      :class:`Text`) with control characters and lone surrogates escaped and noted, so that
      Python's and RE2's ``$`` (``sh:pattern``) see the same text. Whether a time is kept is
      :func:`reasoner.timestamps.read_datetime`'s verdict, on this same text.

    ``notes`` gets the reasons TwinKG refuses what the contract's words cannot say."""
    if isinstance(value, Text):
        return value
    if isinstance(value, (list, tuple, dict)):
        return _json_text(list(value) if isinstance(value, tuple) else value)
    if key == "value":
        return _number(value, notes)
    if key == "sequence":
        return _integer(value)
    if key in _STRING_COLUMNS:
        return _escaped(key, value, notes) if type(value) is str else _json_text(value)
    return value


def contract_record(record: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The fields of :data:`FIELDS` in ``record`` as :func:`contract_value` reads them (a field
    that is absent or ``None`` is left out) and the notes it made."""
    notes: list[str] = []
    made = {
        key: contract_value(key, record[key], notes)
        for key in FIELDS
        if record.get(key) is not None
    }
    return made, notes


def _is_double(value: Any) -> bool:
    return type(value) is float


def _is_integer(value: Any) -> bool:
    return type(value) is int


_STRING_COLUMNS = ("sensor", "unit", "time", "quality", "producer")


def _is_string(value: Any) -> bool:
    return type(value) is str


_TYPED: dict[str, Callable[[Any], bool]] = {
    "sensor": _is_string,
    "value": _is_double,
    "sequence": _is_integer,
    "quality": _is_string,
    "producer": _is_string,
}


PROGRESS_EVERY = 10_000  # points between progress reports


def _plain(key: str, value: Any) -> bool:
    """Whether ``value`` is already what :func:`contract_value` would make of it (the common
    case, checked cheaply)."""
    kind = type(value)
    if key == "value":
        return kind is float and value - value == 0.0  # finite
    if key == "sequence":
        return kind is int and _INT64[0] <= value <= _INT64[1]
    if key == "batch":
        return True
    return kind is str and value.isascii() and value.isprintable()


def _reading(given: str, notes: list[str]) -> Reading:
    """The reading of a time field's text (a :class:`Text` included: the SPARQL casts read
    any text), its defect noted for a time string."""
    reading = read_datetime(given)
    if reading.defect is not None and type(given) is str:
        notes.append(reading.defect)
    return reading


def from_records(
    records: Sequence[Mapping[str, Any]],
    *,
    defects: Sequence[str | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PointBatch:
    """Columns of point records keyed by :data:`FIELDS`, each field read by
    :func:`contract_value` (a list is one value, never several).

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
    time_us = np.zeros(n, np.int64)
    time_tz = np.zeros(n, np.bool_)
    strings: dict[str, list[str | None]] = {k: [None] * n for k in _STRING_COLUMNS}
    notes: list[str | None] = list(defects) if defects is not None else [None] * n
    for i, record in enumerate(records):
        if progress is not None and i and i % PROGRESS_EVERY == 0:
            progress(i, n)
        found: list[str] = []
        for key, raw in record.items():
            if raw is None or key not in counts:
                continue
            given = raw if _plain(key, raw) else contract_value(key, raw, found)
            counts[key][i] = 1
            if key in strings:
                strings[key][i] = given
            if key in _TYPED:
                ok[key][i] = _TYPED[key](given)
            if key == "value" and ok["value"][i]:
                value[i] = given
            elif key == "sequence" and ok["sequence"][i]:
                sequence[i] = given
            elif key == "time":
                reading = _reading(given, found)
                ok["time"][i] = type(given) is str and reading.kept
                time_tz[i], time_ns[i], time_us[i] = reading.zoned, reading.ns, reading.us
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
        time_us=time_us,
        time_lexical=pa.array(strings["time"], pa.string()),
        sequence=sequence,
        quality=pa.array(strings["quality"], pa.string()),
        producer=pa.array(strings["producer"], pa.string()),
        counts=counts,
        ok=ok,
        time_tz=time_tz,
        defects=pa.array(notes, pa.string()),
    )
