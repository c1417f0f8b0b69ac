"""The fast path of a JSON telemetry batch: plain points straight to columns (decision 0060).

Most batches are plain: every point an object of the contract's fields, each a string or a
number, no name repeated, nothing a reason would have to quote. For those,
:func:`plain_batch` parses the bytes with ``orjson`` and builds the
:class:`~reasoner.points.PointBatch` column by column (list comprehensions, pyarrow and numpy),
instead of one Python record per point.

It only ever *accepts*: anything it does not recognise as plain (bytes orjson will not read, a
name given twice, an array or an object or a bool or a null where a value belongs, text that
is not printable ASCII, a time with a defect, an envelope the reference would refuse) returns
``None``, and the caller takes the reference path (``connect.json``, ``reasoner.points``),
which judges, quarantines and refuses as it always has. For a batch both paths take, the
columns are the same (``tests/unit/test_ingest_fast_path.py`` checks it on hostile input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from twinkg.connect.json_body import structure
from twinkg.reasoner.points import FIELDS, PROGRESS_EVERY, Bools, Ints, PointBatch
from twinkg.reasoner.timestamps import read_datetime, read_plain_utc

JSON_FIELDS = frozenset(("sensor", "value", "unit", "time", "quality", "producer"))
_ENVELOPE = frozenset(("contract", "producer", "points"))
_STRINGS = ("sensor", "unit", "time", "quality", "producer")
_NONE = type(None)
_TEXT = frozenset((str, _NONE))
_NUMBERS = frozenset((float, int, _NONE))


def plain_batch(
    raw: bytes,
    *,
    contract: str | None,
    max_depth: int,
    max_points: int | None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[PointBatch, str, str | None] | None:
    """The points, declared contract and producer of a plain batch; ``None`` when the batch is
    not plain (the reference path then reads it, and refuses it if it must)."""
    depth, names = structure(raw)
    if depth > max_depth:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    envelope = _envelope(document, contract=contract, max_points=max_points)
    if envelope is None or not _plain_points(envelope[2], names - len(document)):
        return None
    declared, producer, points = envelope
    batch = _columns(points, set().union(*points), producer)
    if batch is None:
        return None
    if progress is not None:  # the reference's reports, in one go: converting is quick here
        progress(0, len(points))
        for done in range(PROGRESS_EVERY, len(points), PROGRESS_EVERY):
            progress(done, len(points))
        progress(len(points), len(points))
    return batch, declared, producer


def _envelope(
    document: Any, *, contract: str | None, max_points: int | None
) -> tuple[str, str | None, list[Any]] | None:
    """The envelope's contract, producer and points when the reference would take it."""
    if type(document) is not dict or not set(document) <= _ENVELOPE:
        return None
    points = document.get("points")
    declared = document.get("contract", "telemetry")
    producer = document.get("producer")
    fits = (
        type(points) is list
        and type(declared) is str
        and len(declared) <= 100
        and (contract is None or contract == declared)
        and (producer is None or (type(producer) is str and _printable(producer)))
        and (producer is None or len(producer) <= 1000)
        and (max_points is None or len(points) <= max_points)
    )
    if not fits:
        return None
    assert isinstance(points, list)
    return str(declared), None if producer is None else str(producer), points


def _plain_points(points: list[Any], names: int) -> bool:
    """Whether every point is an object of the contract's fields, none given twice: ``names``
    is how many member names the text gives them (orjson keeps one of a repeated name)."""
    if points and set(map(type, points)) != {dict}:
        return False
    return set().union(*points) <= JSON_FIELDS and names == sum(map(len, points))


def _printable(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _column(points: Sequence[dict[str, Any]], key: str, *, everywhere: bool) -> list[Any]:
    """One field of every point (``None`` where not given); ``everywhere``: every point has it."""
    return list(map(itemgetter(key), points)) if everywhere else [p.get(key) for p in points]


def _columns(
    points: Sequence[dict[str, Any]], keys: set[str], producer: str | None
) -> PointBatch | None:
    n = len(points)
    uniform = sum(map(len, points)) == len(keys) * n  # every point gives the same fields
    strings: dict[str, pa.StringArray] = {}
    for key in _STRINGS:
        if key not in keys:
            strings[key] = pa.nulls(n, pa.string())
        else:
            column = _column(points, key, everywhere=uniform)
            kinds = set(map(type, column))
            if not kinds <= _TEXT:
                return None
            texts = column if _NONE not in kinds else [v for v in column if v is not None]
            if not _printable("".join(texts)):
                return None
            strings[key] = pa.array(column, pa.string())
        if key == "producer" and producer is not None:
            strings[key] = pc.fill_null(strings[key], producer)
    values = _column(points, "value", everywhere=uniform and "value" in keys)
    kinds = set(map(type, values))
    if not kinds <= _NUMBERS:
        return None
    if int in kinds:  # as the reference converts them: float(int), correctly rounded
        values = [float(v) if type(v) is int else v for v in values]
    value = np.array(values, dtype=np.float64)  # None → NaN: a value not given
    given_value = np.array([v is not None for v in values], dtype=np.bool_)
    if not np.isfinite(value[given_value]).all():
        return None
    times = _times(strings["time"])
    if times is None:
        return None
    time_ns, time_us, time_tz, time_ok = times
    counts = {name: np.zeros(n, np.int8) for name in FIELDS}
    for key, array in strings.items():
        counts[key] = _valid(array).astype(np.int8)
    counts["value"] = given_value.astype(np.int8)
    counts["sequence"] = np.ones(n, np.int8)
    counts["batch"] = np.ones(n, np.int8)
    ok = {
        "sensor": _valid(strings["sensor"]),
        "value": given_value,
        "sequence": np.ones(n, np.bool_),
        "quality": _valid(strings["quality"]),
        "producer": _valid(strings["producer"]),
        "time": time_ok,
    }
    return PointBatch(
        sensor=strings["sensor"],
        value=value,
        unit=strings["unit"],
        time_ns=time_ns,
        time_us=time_us,
        time_lexical=strings["time"],
        sequence=np.arange(n, dtype=np.int64),
        quality=strings["quality"],
        producer=strings["producer"],
        counts=counts,
        ok=ok,
        time_tz=time_tz,
        defects=pa.nulls(n, pa.string()),
    )


def _valid(array: pa.Array) -> Bools:
    return np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _times(lexical: pa.StringArray) -> tuple[Ints, Ints, Bools, Bools] | None:
    """Each point's instant (ns, µs), zone flag and verdict, read once per distinct time
    (a batch repeats its times across sensors); ``None`` when a time has a defect."""
    encoded = pc.dictionary_encode(lexical)
    distinct = len(encoded.dictionary)
    # one slot past the distinct times for a point without a time: zeros, not kept
    index = np.asarray(
        encoded.indices.fill_null(distinct).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    bulk = read_plain_utc(encoded.dictionary)
    if bulk is not None:  # every distinct time plain UTC: zoned and kept, read at once
        held = np.append(np.ones(distinct, dtype=np.bool_), False)[index]
        return np.append(bulk[0], 0)[index], np.append(bulk[1], 0)[index], held, held.copy()
    readings = [read_datetime(text) for text in encoded.dictionary.to_pylist()]
    if any(r.defect is not None for r in readings):
        return None
    ns = np.array([r.ns for r in readings] + [0], dtype=np.int64)[index]
    us = np.array([r.us for r in readings] + [0], dtype=np.int64)[index]
    tz = np.array([r.zoned for r in readings] + [False], dtype=np.bool_)[index]
    kept = np.array([r.kept for r in readings] + [False], dtype=np.bool_)[index]
    return ns, us, tz, kept
