"""JSON telemetry batches: the envelope ``{"contract", "producer", "points"}`` and its points.

A JSON batch is what ``POST /telemetry`` and ``twinkg ingest --json`` take. Only the envelope
can refuse the whole batch (:func:`parse_json_batch`); each point is judged on its own
(:func:`from_json_points`): a point that is not an object, repeats a name or holds a value of the
wrong JSON type is quarantined with that reason, the rest of the batch goes on. The bytes are
read defensively first (``connect.json_body``). :class:`JsonSource` is a body or a file as a
source of one batch (kind ``json``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinkg.connect.json_body import JsonText, RepeatedNames, json_kind, read_json
from twinkg.connect.json_columns import JSON_FIELDS, plain_batch
from twinkg.connect.source import JSON_MAX_DEPTH, Batch, SourceContext, SourceRequest
from twinkg.ontology.errors import InvalidInputError
from twinkg.reasoner.ingest import check_batch_size
from twinkg.reasoner.points import PointBatch, from_records
from twinkg.reasoner.timestamps import shown

# What each JSON field must be, in the words of a reason.
_EXPECTED = {
    "sensor": "an IRI string",
    "unit": "an IRI string",
    "time": "a string",
    "quality": "a string",
    "producer": "a string",
    "value": "a number",
}


def _json_value(key: str, value: Any, notes: list[str]) -> Any:
    """One JSON field as the contract sees it: an array or object becomes one :class:`JsonText`
    (never several values, never a number), and a value of the wrong JSON type gets a note."""
    if isinstance(value, (list, dict)):
        kind = "array" if isinstance(value, list) else "object"
        text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=repr)
        value = JsonText(text, kind)
    fits = _is_number(value) if key == "value" else isinstance(value, str)
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
    if isinstance(point, RepeatedNames):  # every value given is one value, never the last
        for name in point.repeated:
            given = json.dumps(point.occurrences[name], ensure_ascii=True, default=str)
            record[name] = JsonText(given, "array")
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


@dataclass(frozen=True, slots=True)
class JsonBatch:
    """A telemetry batch posted as JSON: its points, declared contract, producer and content
    hash."""

    points: PointBatch
    contract: str
    content_hash: str
    producer: str | None = None


def parse_json_batch(
    raw: bytes,
    *,
    contract: str | None = None,
    source: str = "body",
    progress: Callable[[int, int], None] | None = None,
    max_depth: int = JSON_MAX_DEPTH,
    max_points: int | None = None,
    reference: bool = False,
) -> JsonBatch:
    """Read ``{"contract": "telemetry@x.y.z", "producer": …, "points": [...]}``.

    Only the envelope can refuse the batch, with a one-line reason: not UTF-8 JSON
    (:class:`InvalidInputError`), nested deeper than ``max_depth`` (:class:`JsonTooDeepError`,
    checked before parsing), not that shape, a name given twice, a contract other than
    ``contract`` (what the caller says the data was written for), more than ``max_points``
    points (counted before any is converted), a producer over 1000 characters (it is copied to
    every point), points with fields the contract does not know. Each point is judged on its own
    (:func:`from_json_points`).

    A plain batch takes the fast path (``connect.json_columns``, decision 0060) to the same
    columns; ``reference=True`` always takes the per-point path (what the fast one is tested
    against).
    """
    if not reference:
        plain = plain_batch(
            raw, contract=contract, max_depth=max_depth, max_points=max_points, progress=progress
        )
        if plain is not None:
            points, declared, producer = plain
            return JsonBatch(points, declared, hashlib.sha256(raw).hexdigest(), producer)
    document = read_json(raw, max_depth=max_depth, source=source)
    if not isinstance(document, dict) or not isinstance(document.get("points"), list):
        raise InvalidInputError(f'{source}: expected {{"contract": …, "points": [ … ]}}')
    if isinstance(document, RepeatedNames):
        names = ", ".join(shown(name) for name in document.repeated[:5])
        raise InvalidInputError(f"{source}: the batch gives {names} more than once")
    unknown = sorted(set(document) - {"contract", "producer", "points"})
    if unknown:
        raise InvalidInputError(
            f"{source}: unknown field(s) {', '.join(shown(name) for name in unknown[:5])}"
        )
    declared = document.get("contract", "telemetry")
    if not isinstance(declared, str) or len(declared) > 100:
        raise InvalidInputError(f"{source}: contract must be a name such as telemetry@1.0.0")
    if contract is not None and contract != declared:
        raise InvalidInputError(f"{source} declares {declared!r} but {contract!r} was given")
    producer = document.get("producer")
    if producer is not None and not (isinstance(producer, str) and _unicode(producer)):
        raise InvalidInputError(f"{source}: producer must be a string")
    if producer is not None and len(producer) > 1000:
        raise InvalidInputError(f"{source}: producer is longer than 1000 characters")
    if max_points is not None:
        check_batch_size(len(document["points"]), max_points)
    batch = from_json_points(document["points"], producer=producer, progress=progress)
    return JsonBatch(batch, declared, hashlib.sha256(raw).hexdigest(), producer)


def _unicode(text: str) -> bool:
    """Whether ``text`` is Unicode (JSON escapes can make lone surrogates, which are not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_number(value: Any) -> bool:
    """A JSON number a double holds (a bool is not one; a huge number is :class:`JsonText`)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class JsonSource:
    """A JSON batch as a source of one batch: ``body`` when the bytes are at hand (an HTTP
    request), else read from ``path`` (``-``: stdin) when the batch is asked for."""

    name: str
    body: bytes | None = None
    path: Path | None = None
    contract: str | None = None

    def _raw(self) -> bytes:
        if self.body is not None:
            return self.body
        path = Path(self.name) if self.path is None else self.path
        if str(path) == "-":
            return sys.stdin.buffer.read()
        if not path.is_file():
            raise InvalidInputError(f"{path}: no such file")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"{path} cannot be read: {exc.strerror or exc}") from None

    def batches(self, context: SourceContext) -> Iterator[Batch]:
        """The one batch (see :func:`parse_json_batch` for what refuses it)."""
        parsed = parse_json_batch(
            self._raw(),
            contract=self.contract,
            source=self.name,
            progress=context.parsing(),
            max_depth=context.json_max_depth,
            max_points=context.max_points,
        )
        label = self.name if self.path is None else self.path.name
        yield Batch(parsed.points, parsed.content_hash, parsed.producer, parsed.contract, label)


def json_source(request: SourceRequest) -> JsonSource:
    """A JSON batch file (``-``: stdin) from a request; the producer is the envelope's."""
    return JsonSource(request.target, path=Path(request.target), contract=request.contract)
