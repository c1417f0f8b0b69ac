"""A JSON body from an untrusted producer, read without trusting it (RFC 8259).

https://www.rfc-editor.org/rfc/rfc8259

* The nesting depth is measured on the raw bytes *before* parsing (a linear, vectorised scan that
  counts brackets outside strings), so a body nested thousands deep is refused with
  ``json_too_deep`` instead of exhausting the parser's recursion.
* The text must be UTF-8 (§8.1); a leading byte-order mark is ignored (§8.1 allows it).
* Numbers are kept as written where a float cannot hold them: an integer or decimal beyond the
  range of a double becomes :class:`JsonText` (its digits), never ``inf`` and never an error, and
  no integer of thousands of digits is ever converted. ``NaN`` and ``Infinity`` (which Python's
  reader accepts) are read as the doubles they name.
* An object whose member names repeat (§4: names SHOULD be unique) is read as a
  :class:`RepeatedNames` dict that keeps the last value and says which names repeated, so the
  caller can judge that object instead of silently taking one of its values.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from twinkg.ontology.errors import InvalidInputError, JsonTooDeepError
from twinkg.reasoner.points import Text

TEXT_LIMIT = 200  # characters of an array, object or huge number kept as JsonText
_CHUNK = 1 << 20  # brackets summed per step of the depth scan
_OTHERS = bytes(b for b in range(256) if b not in b'"[]{}')
_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}:')
_COLON = ord(":")
_QUOTE = ord('"')
_ARRAY, _OBJECT = ord("["), ord("{")


class JsonText(Text):
    """A JSON array, object or out-of-range number, kept as (at most :data:`TEXT_LIMIT`
    characters of) its JSON text: one value that is neither a number nor a string the producer
    wrote. The contract sees it as a plain literal, so it never passes as a number or a time."""

    kind: str
    size: int  # characters of the full text

    def __new__(cls, text: str, kind: str) -> JsonText:
        """``text`` (cut) for a value of ``kind`` ("array", "object", "number")."""
        cut = text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"
        made = super().__new__(cls, cut)
        made.kind = kind
        made.size = len(text)
        return made


class RepeatedNames(dict[str, Any]):
    """A JSON object in which some member names appear more than once (the last value kept)."""

    repeated: tuple[str, ...]
    occurrences: dict[str, list[Any]]  # every value of each repeated name, in order


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw``, brackets inside strings not counted.

    Exact for JSON text; for bytes that are not JSON it is exact up to the first error (where a
    parser stops) and may count more after it, never less. Linear: escapes are removed left to
    right (``\\\\`` first, then ``\\"``), so every quote left delimits a string."""
    plain = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = np.frombuffer(plain.translate(None, _OTHERS), np.uint8)  # quotes and brackets
    depth = deepest = 0
    in_string = False
    for start in range(0, len(kept), _CHUNK):
        chunk = kept[start : start + _CHUNK]
        quote = chunk == _QUOTE
        inside = (np.cumsum(quote, dtype=np.int32) + in_string) % 2 == 1
        counted = chunk[~quote & ~inside]
        in_string = bool(inside[-1])  # the parity after every quote of the chunk
        if len(counted):
            opens = (counted == _ARRAY) | (counted == _OBJECT)
            levels = depth + np.cumsum(np.where(opens, 1, -1), dtype=np.int64)
            deepest = max(deepest, int(levels.max()))
            depth = int(levels[-1])
    return deepest


def structure(raw: bytes) -> tuple[int, int]:
    """The nesting depth of ``raw`` (as :func:`nesting_depth`) and how many object members it
    holds: the name separators (``:``) outside strings, in one scan (in bounded chunks).

    The members are exact for JSON text, repeated names included: a parser that keeps one
    value of a repeated name returns fewer, so comparing the two tells whether a name repeated
    (``connect.json_columns``)."""
    plain = raw.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in raw else raw
    kept = np.frombuffer(plain.translate(None, _STRUCTURE), np.uint8)  # quotes, brackets, colons
    depth = deepest = names = 0
    in_string = False
    for start in range(0, len(kept), _CHUNK):
        chunk = kept[start : start + _CHUNK]
        quote = chunk == _QUOTE
        inside = (np.cumsum(quote, dtype=np.int32) + in_string) % 2 == 1
        counted = chunk[~quote & ~inside]
        in_string = bool(inside[-1])
        colon = counted == _COLON
        names += int(np.count_nonzero(colon))
        brackets = counted[~colon]
        if len(brackets):
            opens = (brackets == _ARRAY) | (brackets == _OBJECT)
            levels = depth + np.cumsum(np.where(opens, 1, -1), dtype=np.int64)
            deepest = max(deepest, int(levels.max()))
            depth = int(levels[-1])
    return deepest, names


def _number(text: str) -> Any:
    """A JSON number: an int or a float when a double holds it, else its digits as JsonText."""
    if "." in text or "e" in text or "E" in text:
        value = float(text)
        return JsonText(text, "number") if math.isinf(value) else value
    if len(text) > 330:  # far beyond 1.8e308: never convert it
        return JsonText(text, "number")
    number = int(text)
    try:
        float(number)
    except OverflowError:
        return JsonText(text, "number")
    return number


def _constant(name: str) -> float:
    return float(name)  # NaN, Infinity, -Infinity


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    made = dict(pairs)
    if len(made) == len(pairs):
        return made
    seen: set[str] = set()
    repeated: set[str] = set()
    for name, _ in pairs:
        (repeated if name in seen else seen).add(name)
    result = RepeatedNames(made)
    result.repeated = tuple(sorted(repeated))
    result.occurrences = {name: [v for n, v in pairs if n == name] for name in repeated}
    return result


def read_json(raw: bytes, *, max_depth: int, source: str) -> Any:
    """The JSON value of ``raw`` (see the module docstring).

    :class:`InvalidInputError` when it is not UTF-8 JSON, :class:`JsonTooDeepError` when it is
    nested deeper than ``max_depth``; both with a one-line reason naming ``source``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{source} is not UTF-8: byte {exc.start} cannot be decoded"
        ) from None
    if nesting_depth(raw) > max_depth:
        raise JsonTooDeepError(f"{source} nests JSON deeper than {max_depth} levels")
    try:
        return json.loads(
            text.removeprefix("\ufeff"),
            parse_int=_number,
            parse_float=_number,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{source} is not JSON: {exc}") from None
    except RecursionError:  # the scan above makes this unreachable; refuse it all the same
        raise JsonTooDeepError(f"{source} nests JSON too deep to read") from None


def json_kind(value: Any) -> str:
    """How a JSON value reads in a reason: ``a JSON string '12.5'``, ``a JSON array [2.5]``."""
    if isinstance(value, JsonText):
        return f"a JSON {value.kind} {value}" if value.kind != "number" else _huge(value)
    if isinstance(value, str):
        cut = value if len(value) <= 40 else value[:40] + "…"
        return f"a JSON string {ascii(cut) if not cut.isprintable() else repr(cut)}"
    names = {
        type(None): "null",
        bool: "a JSON boolean",
        list: "a JSON array",
        dict: "a JSON object",
    }
    for kind, name in names.items():
        if isinstance(value, kind):
            return name if not isinstance(value, bool) else f"{name} {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"a JSON number {value!r}"
    return f"a {type(value).__name__}"


def _huge(value: JsonText) -> str:
    head = value[:12] + "…" if value.size > 12 else str(value)
    return f"the number {head} ({value.size} characters), beyond the range of a double"
