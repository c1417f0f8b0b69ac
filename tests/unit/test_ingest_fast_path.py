"""The fast path of a JSON batch gives what the reference path gives, on hostile input
(decision 0060; Hypothesis, derandomised).

Batches are written as raw JSON text, fragment by fragment, so that anything a producer can
send is sent: names given twice, numbers in odd lexical forms (``1e3``, ``-0.0``, ``1E+400``,
``NaN``/``Infinity`` tokens, integers of hundreds of digits, strings that look like numbers),
unicode escapes and lone surrogates, impossible and out-of-range dates and odd time forms,
several values for one field, missing fields, nested junk, deep nesting, a BOM, unknown fields,
envelopes that are not batches. For every one, :func:`connect.json.parse_json_batch` with the
fast path and with ``reference=True`` give the same outcome: the same refusal (type, code and
reason) or the same batch, column by column (values to the bit, times, counts, datatype flags,
defects), and the compiled contract quarantines the same points with the same reasons. Plain
batches are checked to take the fast path, so the comparison is never vacuous.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from twinkg.connect.json import JsonBatch, parse_json_batch
from twinkg.connect.json_body import nesting_depth, structure
from twinkg.connect.json_columns import plain_batch
from twinkg.graph_seed.telemetry import sensor_table
from twinkg.ontology.errors import TwinKGError
from twinkg.reasoner.compiled import CompiledContract, compile_contract
from twinkg.reasoner.points import PointBatch
from twinkg.shapes.registry import accept

SENSORS = sensor_table(3)
URIS: list[str] = SENSORS.uris.to_pylist()
UNITS: list[str] = SENSORS.units.to_pylist()
LATEST_NS = 7_258_118_400 * 10**9  # 2200-01-01T00:00:00Z
SETTINGS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
COMPILED: CompiledContract = compile_contract(accept("telemetry").graph)


def _s(text: str) -> str:
    return json.dumps(text)


# ---- Fragments of JSON text, plain and hostile ----

_junk = st.sampled_from(
    [
        "null",
        "true",
        "false",
        "[]",
        "{}",
        "[2.5]",
        "[5.0, 5.0]",
        '{"a": 1}',
        '{"a": 1, "a": 2}',
        "[[[[[[[[1]]]]]]]]",
        '{"x": {"y": {"z": [1, {"w": null}]}}}',
        '"12.5"',
        '"1e3"',
        '"NaN"',
        '""',
        '"\\u0000"',
        '"\\ud800"',
        '"\\u00e9t\\u00e9"',
        '"caf\u00e9"',
        '"tab\\there"',
        '"line\\n"',
        '"quote\\"colon: {["',
        '"back\\\\slash"',
    ]
)
_numbers = st.one_of(
    st.sampled_from(
        [
            "0",
            "-0",
            "-0.0",
            "0.0",
            "1e3",
            "1E3",
            "1E+2",
            "2.5e-3",
            "1e-400",
            "1E+400",
            "-1e400",
            "NaN",
            "Infinity",
            "-Infinity",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "9" * 40,
            "1" + "0" * 330,
            "1" + "0" * 400,
            "0.1000000000000000055511151231257827",
            "179769313486231570000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "000000000000000000000000000000000000000000000000000000000000000000000000",
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(min_value=0.0, max_value=300.0).map(repr),
)
_plain_times = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)).map(
    lambda d: _s(d.isoformat(timespec="microseconds") + "Z")
)
_odd_times = st.sampled_from(
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.123456789Z",
        "2026-01-01T00:00:00.1234567891Z",
        "2026-01-01T00:00:00+14:00",
        "2026-01-01T00:00:00+14:30",
        "2026-01-01T00:00:00-05:00",
        "2026-01-01T00:00:00",
        "2026-01-01 00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:59:60Z",
        "1600-01-01T00:00:00Z",
        "2300-01-01T00:00:00Z",
        "1677-09-21T00:12:43.145224193Z",
        "2262-04-11T23:47:16.854775807Z",
        "-0001-01-01T00:00:00Z",
        "99999-01-01T00:00:00Z",
        "2026-01-01",
        "20260101T000000Z",
        "yesterday",
        "",
    ]
).map(_s)
_sensors = st.one_of(st.sampled_from(URIS).map(_s), st.just(_s("https://example.org/s/9")))
_units = st.sampled_from(UNITS).map(_s)
_words = st.one_of(
    st.sampled_from(["good", "bad", "uncertain", "edge-1", "12"]).map(_s),
    st.text(max_size=8).map(_s),
)

FIELD_TEXT = {
    "sensor": st.one_of(_sensors, _sensors, _sensors, _junk, _numbers),
    "unit": st.one_of(_units, _units, _units, _junk, _numbers),
    "time": st.one_of(_plain_times, _plain_times, _odd_times, _junk, _numbers),
    "value": st.one_of(_numbers, _numbers, _numbers, _junk),
    "quality": st.one_of(_words, _junk),
    "producer": st.one_of(_words, _junk),
}


@st.composite
def hostile_points(draw: st.DrawFn) -> str:
    """One point's JSON text: fields in any order, some missing, some given twice."""
    shape = draw(st.integers(0, 30))
    if shape == 0:
        return draw(st.one_of(_junk, _numbers))  # not an object
    if shape == 1:
        return '{"sensor": ' + draw(_sensors) + ', "colour": "red"}'  # an unknown field
    names = draw(
        st.lists(st.sampled_from(sorted(FIELD_TEXT)), min_size=0, max_size=7).map(
            lambda names: names if names else ["value"]
        )
    )
    members = [f"{_s(name)}: {draw(FIELD_TEXT[name])}" for name in names]
    return "{" + ", ".join(members) + "}"


# numbers a double holds, in any lexical form
_finite = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "-0", "-0.0", "1e3", "1E+2", "2.5E-3", "1e-400", "9" * 40]),
)


@st.composite
def plain_points(draw: st.DrawFn, values: st.SearchStrategy[str] = _numbers) -> str:
    """One point's JSON text as producers mostly send it (``values``: its value's text)."""
    members = {
        "sensor": draw(_sensors),
        "unit": draw(_units),
        "time": draw(_plain_times),
        "value": draw(values),
    }
    if draw(st.booleans()):
        members["quality"] = draw(st.sampled_from(['"good"', '"bad"', "null"]))
    if draw(st.booleans()):
        members["producer"] = draw(st.sampled_from(['"edge-2"', "null"]))
    order = draw(st.permutations(sorted(members)))
    return "{" + ", ".join(f"{_s(k)}: {members[k]}" for k in order) + "}"


@st.composite
def mutated_points(draw: st.DrawFn) -> str:
    """A plain point with one field's text replaced by a hostile one (so that the rest of the
    batch can stay plain, and a single oddity must be seen)."""
    name = draw(st.sampled_from(sorted(FIELD_TEXT)))
    members = {
        "sensor": draw(_sensors),
        "unit": draw(_units),
        "time": draw(_plain_times),
        "value": draw(_finite),
    }
    odd = st.one_of(_odd_times, _odd_times, _junk) if name == "time" else st.one_of(_junk, _numbers)
    members[name] = draw(st.one_of(odd, _words))
    order = draw(st.permutations(sorted(members)))
    return "{" + ", ".join(f"{_s(k)}: {members[k]}" for k in order) + "}"


_mixed = st.one_of(plain_points(_finite), mutated_points(), mutated_points(), hostile_points())


@st.composite
def envelopes(draw: st.DrawFn, points: st.SearchStrategy[str]) -> bytes:
    """A batch's bytes around ``points``, now and then an envelope that is not a batch."""
    body = "[" + ", ".join(draw(st.lists(points, max_size=7))) + "]"
    members = [f'"points": {body}']
    contract = draw(st.sampled_from(['"telemetry@1.0.0"', '"telemetry"', None, "12", '"other@9"']))
    if contract is not None:
        members.append(f'"contract": {contract}')
    producer = draw(
        st.sampled_from(
            [None] * 6
            + ['"edge-1"', "null", "1E+400", '"\\ud800"', '"caf\u00e9"', "[1]", '"a\\u0001"']
        )
    )
    if producer is not None:
        members.append(f'"producer": {producer}')
    extra = draw(st.sampled_from(["none"] * 20 + ["twice", "note"]))
    if extra == "twice":
        members.append('"points": []')  # the batch named twice
    elif extra == "note":
        members.append('"note": "hello"')
    order = draw(st.permutations(members))
    text = "{" + (", " if draw(st.booleans()) else ",").join(order) + "}"
    tail = draw(st.sampled_from(["none"] * 20 + ["bom", "extra", "cut", "byte"]))
    raw = text.encode()
    if tail == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif tail == "extra":
        raw += b" x"
    elif tail == "cut":
        raw = raw[: len(raw) // 2]
    elif tail == "byte":
        raw = raw.replace(b"e", b"\xff", 1)
    return raw


# ---- The outcome of one read, as comparable data ----


def _floats(values: np.ndarray[Any, Any]) -> tuple[list[bool], bytes]:
    nan = np.isnan(values)
    return nan.tolist(), np.where(nan, 0.0, values).tobytes()  # -0.0 is not 0.0 here


def _columns(batch: PointBatch) -> dict[str, Any]:
    arrays = ("sensor", "unit", "time_lexical", "quality", "producer", "defects")
    made: dict[str, Any] = {}
    for name in arrays:
        array = getattr(batch, name)
        assert isinstance(array, pa.Array)
        made[name] = (str(array.type), array.to_pylist())
    made["value"] = _floats(batch.value)
    for name in ("time_ns", "time_us", "sequence", "time_tz"):
        column = getattr(batch, name)
        made[name] = (str(column.dtype), column.tolist())
    made["counts"] = {k: (str(v.dtype), v.tolist()) for k, v in batch.counts.items()}
    made["ok"] = {k: (str(v.dtype), v.tolist()) for k, v in batch.ok.items()}
    return made


def _verdict(batch: PointBatch) -> tuple[list[bool], list[str]]:
    result = COMPILED.check(batch, SENSORS, latest_acceptable_ns=LATEST_NS)
    return result.rejected.tolist(), result.reasons()


def outcome(raw: bytes, *, reference: bool) -> tuple[Any, ...]:
    """What reading ``raw`` gives: its refusal, or its batch and the contract's verdict."""
    try:
        read: JsonBatch = parse_json_batch(
            raw, source="mqtt", max_depth=12, max_points=7, reference=reference
        )
    except TwinKGError as exc:
        return ("refused", type(exc).__name__, exc.code, str(exc))
    columns = _columns(read.points)
    return ("read", read.contract, read.content_hash, read.producer, columns, _verdict(read.points))


def _same(raw: bytes) -> tuple[Any, ...]:
    fast = outcome(raw, reference=False)
    assert fast == outcome(raw, reference=True)
    return fast


# ---- The properties ----


@settings(SETTINGS, max_examples=400)
@given(raw=envelopes(_mixed))
@example(raw=b'{"points": [{"value": 1E+400, "sensor": "s"}]}')
@example(raw=b'{"points": [{"value": 18446744073709551616}], "producer": 1E+400}')
@example(raw=b'{"points": [{"value": 1.5, "value": 2.5}]}')
@example(raw=b'{"points": [{"value": 1.5}], "points": [{"value": 2.5}]}')
@example(raw=b'{"points": [{"time": "2026-01-01T00:00:00Z", "time": "x"}]}')
@example(raw=b'{"points": [{"sensor": "a:b\\"c:", "value": 1}]}')
@example(raw=b'{"points": [[[[[[[[[[[[[[1]]]]]]]]]]]]]]}')
@example(raw=b'{"points": [{}, {}, {}, {}, {}, {}, {}, {}]}')
@example(raw=b'{"points": [{"value": NaN}, {"value": -Infinity}]}')
@example(raw=b'{"points": [{"value": -0.0}, {"value": -0}, {"value": 1e3}]}')
@example(raw=b'{"points": [{"value": 1, "time": "2026-02-30T00:00:00Z", "sensor": "s"}]}')
def test_hostile_batches_read_alike(raw: bytes) -> None:
    _same(raw)


@settings(SETTINGS, max_examples=150)
@given(raw=envelopes(plain_points()))
def test_plain_batches_read_alike(raw: bytes) -> None:
    _same(raw)


@settings(SETTINGS, max_examples=100)
@given(
    points=st.lists(plain_points(_finite), min_size=1, max_size=6),
    producer=st.sampled_from(["", ', "producer": "edge-1"']),
)
def test_plain_batches_take_the_fast_path(points: list[str], producer: str) -> None:
    raw = '{"contract": "telemetry@1.0.0"' + producer + ', "points": [' + ", ".join(points) + "]}"
    assert plain_batch(raw.encode(), contract=None, max_depth=12, max_points=None) is not None
    assert _same(raw.encode())[0] == "read"


def test_a_name_given_twice_is_never_taken_by_the_fast_path() -> None:
    raw = b'{"points": [{"value": 1.5, "sensor": "a", "value": 2.5}]}'
    assert plain_batch(raw, contract=None, max_depth=12, max_points=None) is None
    read = parse_json_batch(raw)
    assert read.points.defects.to_pylist() == ["the point gives value more than once"]


def test_a_large_plain_batch_reads_alike() -> None:
    points = [
        {
            "sensor": URIS[i % 3],
            "unit": UNITS[i % 3],
            "time": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "value": i * 0.5 if i % 7 else i,
        }
        for i in range(25_000)
    ]
    raw = json.dumps({"contract": "telemetry@1.0.0", "producer": "edge", "points": points})
    fast = parse_json_batch(raw.encode(), max_points=100_000)
    reference = parse_json_batch(raw.encode(), max_points=100_000, reference=True)
    assert _columns(fast.points) == _columns(reference.points)
    assert _verdict(fast.points) == _verdict(reference.points)
    assert plain_batch(raw.encode(), contract=None, max_depth=32, max_points=None) is not None


def _reports(raw: bytes, *, reference: bool) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    parse_json_batch(
        raw,
        max_points=100_000,
        reference=reference,
        progress=lambda done, total: seen.append((done, total)),
    )
    return seen


def test_progress_is_reported_as_the_reference_reports_it() -> None:
    point = {"sensor": URIS[0], "unit": UNITS[0], "time": "2026-01-01T00:00:00Z", "value": 1}
    for count in (0, 3, 25_000):
        raw = json.dumps({"points": [point] * count}).encode()
        assert plain_batch(raw, contract=None, max_depth=32, max_points=None) is not None
        assert _reports(raw, reference=False) == _reports(raw, reference=True)


@settings(SETTINGS, max_examples=100)
@given(raw=envelopes(_mixed))
@example(raw=b'{"a": "' + b"x" * (1 << 20) + b'", "b": [[{"c": 1}]]}')
@example(raw=b"[" * 70_000 + b"]" * 70_000)
def test_the_structure_scan_agrees_with_the_depth_scan(raw: bytes) -> None:
    depth, _ = structure(raw)
    assert depth == nesting_depth(raw)
