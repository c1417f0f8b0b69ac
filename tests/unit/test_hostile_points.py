"""Hostile telemetry points are judged one by one (Hypothesis, derandomised).

Batches are written as raw JSON text so that anything a producer can send is sent: numbers of
hundreds of digits, ``NaN``/``Infinity`` tokens, every JSON type where another belongs, a
one-element list for a scalar, names given twice, points that are not objects, times outside
what int64 nanoseconds hold, impossible dates and forms only Python reads. For every batch:

* reading it raises nothing (only an envelope that is not a batch may refuse it, and these are
  batches);
* every point is accepted or quarantined with a non-empty reason, and the accepted points are
  exactly the valid ones of an independent model of the contract written here, by construction;
* accepted times are the exact instants written, to the nanosecond;
* the compiled checks give pySHACL's verdict (its oracle), constraint by constraint, for every
  point, the ones the parser found something wrong with included (decision 0037).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rdflib import SH, XSD, Graph, Literal, URIRef

import twinkg.shapes as shapes_package
from twinkg.connect.json import json_records, parse_json_batch
from twinkg.connect.json_body import JsonText, nesting_depth, read_json
from twinkg.graph_seed.telemetry import sensor_table
from twinkg.ontology.errors import InvalidInputError, JsonTooDeepError, PayloadTooLargeError
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.reasoner.compiled import CompiledContract, compile_contract
from twinkg.reasoner.points import from_records
from twinkg.reasoner.telemetry_rdf import points_graph
from twinkg.reasoner.timestamps import FIRST_NS, LAST_NS, NS_AFTER, NS_BEFORE, read_datetime
from twinkg.reasoner.validation import validate

CONTRACT_NS = "https://w3id.org/twinkg/shapes/contracts/telemetry#"
CONTRACT = Path(shapes_package.__file__).parent / "contracts" / "telemetry" / "1.0.0.ttl"
SENSORS = sensor_table(3)  # ranges [0, 100], [0, 200], [0, 300]; last reading 2025-12-31T23:59:59Z
URIS: list[str] = SENSORS.uris.to_pylist()
UNITS: list[str] = SENSORS.units.to_pylist()
LAST = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # the batch's latest acceptable time
LATEST_NS = (LATEST - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN, MAX = datetime(1678, 1, 2), datetime(2261, 12, 30)  # inside the range in every zone
_ZONED = re.compile(r"(Z|[+-][0-9]{2}:[0-9]{2})$")
SETTINGS = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture(scope="module")
def shapes() -> Graph:
    return Graph().parse(CONTRACT)


@pytest.fixture(scope="module")
def compiled(shapes: Graph) -> CompiledContract:
    return compile_contract(shapes)


# ---- What each generated field is, by construction ----


@dataclass(frozen=True)
class Time:
    """A time field: its JSON text and, when it is a valid time TwinKG keeps, the exact ns."""

    fragment: str | None  # None: the field is left out
    ns: int | None = None


@dataclass(frozen=True)
class Value:
    """A value field: its JSON text and the double it denotes (None: not a number)."""

    fragment: str | None
    number: float | None = None


@dataclass
class Point:
    """One generated point: its fields' JSON texts and what the model needs to judge it."""

    sensor: str | None  # JSON text
    sensor_iri: str | None  # the known sensor it names, if any
    unit_ok: bool
    unit: str | None
    value: Value
    time: Time
    extra: dict[str, str] = field(default_factory=dict)  # quality / producer JSON texts
    extra_ok: bool = True
    repeated: str | None = None  # a name given a second time (with this JSON text)
    not_object: str | None = None  # the point is this JSON text instead

    def text(self) -> str:
        if self.not_object is not None:
            return self.not_object
        pairs = [
            (k, v)
            for k, v in (
                ("sensor", self.sensor),
                ("unit", self.unit),
                ("value", self.value.fragment),
                ("time", self.time.fragment),
                *self.extra.items(),
            )
            if v is not None
        ]
        if self.repeated is not None:  # the value is given twice (or more)
            pairs[:0] = [("value", self.repeated)] * (1 if self.value.fragment else 2)
        return "{" + ", ".join(f'"{k}": {v}' for k, v in pairs) + "}"


def _iso(moment: datetime, digits: str, zone: str) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + zone


def _ns(moment: datetime, digits: str) -> int:
    """The instant of an aware ``moment`` plus a fraction of up to nine digits, in ns."""
    micros = (moment.replace(microsecond=0) - EPOCH) // timedelta(microseconds=1)
    return micros * 1000 + int(digits.ljust(9, "0")[:9] or 0)


_ZONES = ["Z", "+00:00", "-00:00", "+05:30", "-14:00", "+14:00", "-03:45"]


def _offset(zone: str) -> timezone:
    if zone == "Z":
        return UTC
    sign = 1 if zone[0] == "+" else -1
    return timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))


@st.composite
def valid_times(draw: st.DrawFn, *, recent: bool) -> Time:
    """A strict, zoned xsd:dateTime inside the int64 nanosecond range; ``recent``: after the
    sensors' last reading and before the batch's latest acceptable time."""
    low, high = (datetime(2026, 1, 2), datetime(2199, 12, 30)) if recent else (MIN, MAX)
    moment = draw(st.datetimes(min_value=low, max_value=high))
    digits = draw(st.text("0123456789", max_size=6))  # rdflib reads microseconds
    zone = draw(st.sampled_from(_ZONES))
    text = _iso(moment, digits, zone)
    return Time(json.dumps(text), _ns(moment.replace(tzinfo=_offset(zone)), digits))


@st.composite
def far_times(draw: st.DrawFn) -> Time:
    """Valid xsd:dateTime forms (Python reads them too) that int64 nanoseconds cannot hold."""
    year = draw(st.one_of(st.integers(1, 1676), st.integers(2263, 9999)))
    moment = datetime(year, draw(st.integers(1, 12)), draw(st.integers(1, 28)))
    return Time(json.dumps(moment.strftime("%Y-%m-%dT%H:%M:%S").zfill(19) + "Z"))


_BAD_TIMES = [
    '"0000-01-01T00:00:00Z"',
    '"-0044-03-15T12:00:00Z"',
    '"10000-01-01T00:00:00Z"',
    '"2020-01-01T24:00:00Z"',
    '"2020-02-30T00:00:00Z"',
    '"2021-02-29T00:00:00Z"',
    '"2020-13-01T00:00:00Z"',
    '"2020-01-01T23:59:60Z"',
    '"2020-01-01T00:00:00+25:00"',
    '"2027-01-01T00:00:00+14:30"',
    '"2027-06-01 12:00:00Z"',
    '"2027-06-01T12Z"',
    '"2027-06-01T12:00:00+05"',
    '"2027-06-01T12:00:00,5Z"',
    '"20270601T120000Z"',
    '"2027-06-01"',
    '"2027-06-01T12:00:00"',
    '"2262-04-11T23:47:16.854775807Z"',
    '"1677-09-21T00:12:43.145224192Z"',
    '"2027-01-01T00:00:00.1234567891Z"',
    "20270101",
    "null",
    "true",
    '["2027-06-01T12:00:00Z"]',
    "{}",
]

good_times = valid_times(recent=True)
bad_times = st.one_of(
    valid_times(recent=False),
    far_times(),
    st.sampled_from([Time(t) for t in _BAD_TIMES]),
    st.text(max_size=24).filter(lambda t: not t.endswith("\n")).map(lambda t: Time(json.dumps(t))),
    st.just(Time(None)),
)


good_values = st.one_of(
    st.floats(0, 100).map(lambda v: Value(json.dumps(v), v)),
    st.integers(0, 100).map(lambda v: Value(str(v), float(v))),
)
bad_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: Value(json.dumps(v), v)),
    st.integers(-10, 400).map(lambda v: Value(str(v), float(v))),
    st.sampled_from(
        [
            Value("1" + "0" * 400),
            Value("-1" + "0" * 400),
            Value("1e400"),
            Value("-1e400"),
            Value("1e-400", 0.0),
            Value("-0", 0.0),
            Value("NaN", float("nan")),
            Value("Infinity", float("inf")),
            Value("-Infinity", float("-inf")),
            Value('"12.5"'),
            Value("null"),
            Value("true"),
            Value("[2.5]"),
            Value("{}"),
            Value("[[[1]]]"),
            Value('{"v": 1}'),
            Value(None),
        ]
    ),
)
_HOSTILE = ("sensor", "unit", "value", "time", "quality", "producer", "shape")


@st.composite
def points(draw: st.DrawFn) -> Point:
    """One point, hostile in up to two of its fields or in its shape, valid otherwise."""
    bad = draw(st.frozensets(st.sampled_from(_HOSTILE), max_size=2))
    index = draw(st.integers(0, len(URIS) - 1))
    kind = draw(st.sampled_from(["unknown", "number", "list", "none"])) if "sensor" in bad else ""
    sensor, sensor_iri = {
        "": (json.dumps(URIS[index]), URIS[index]),
        "unknown": ('"https://example.org/sensor/unknown"', None),
        "number": ("5", None),
        "list": (json.dumps([URIS[index]]), None),
        "none": (draw(st.sampled_from([None, "null"])), None),
    }[kind]
    unit_kind = draw(st.sampled_from(["wrong", "number", "list", "none"])) if "unit" in bad else ""
    unit = {
        "": json.dumps(UNITS[index]),
        "wrong": json.dumps(UNITS[(index + 1) % len(UNITS)]),
        "number": "7",
        "list": json.dumps([UNITS[index]]),
        "none": None,
    }[unit_kind]
    quality = draw(
        st.sampled_from(['"excellent"', "5", '["good"]'])
        if "quality" in bad
        else st.sampled_from([None, '"good"', '"bad"'])
    )
    producer = draw(
        st.sampled_from(['"bad producer!"', '"' + "x" * 65 + '"', "7"])
        if "producer" in bad
        else st.sampled_from([None, '"edge-1"'])
    )
    extra = {k: v for k, v in (("quality", quality), ("producer", producer)) if v is not None}
    point = Point(
        sensor,
        sensor_iri,
        unit_kind == "",
        unit,
        draw(bad_values if "value" in bad else good_values),
        draw(bad_times if "time" in bad else good_times),
        extra,
        not {"quality", "producer"} & bad,
    )
    if "shape" in bad and draw(st.booleans()):
        point.repeated = draw(st.sampled_from(["1.5", "[2.5]", '"x"']))
    elif "shape" in bad:
        point.not_object = draw(st.sampled_from(["5", "null", "[]", '"x"', "true", "[{}]"]))
    return point


def _body(batch: list[Point]) -> bytes:
    return (
        '{"contract": "telemetry@1.0.0", "points": [' + ", ".join(p.text() for p in batch) + "]}"
    ).encode()


def _instant(fragment: str | None) -> datetime | None:
    """What the contract's oracle compares: rdflib's reading of a zoned, well-typed time."""
    if fragment is None or not fragment.startswith('"'):
        return None
    text = json.loads(fragment)
    literal = Literal(text, datatype=XSD.dateTime)
    if literal.ill_typed or not _ZONED.search(text):
        return None
    moment = literal.value
    return moment if isinstance(moment, datetime) else None


def _valid(batch: list[Point]) -> list[bool]:
    """The model: which points the contract and TwinKG's representability rules accept."""
    verdicts = []
    seen: dict[str, list[datetime]] = defaultdict(list)  # earlier zoned times per sensor text
    for p in batch:
        if p.not_object is not None:
            verdicts.append(False)
            continue
        instant = _instant(p.time.fragment)
        lexical = json.loads(p.sensor) if p.sensor not in (None, "null") else None
        key = lexical if isinstance(lexical, str) else None
        ok = (
            p.repeated is None
            and p.sensor_iri is not None
            and p.unit_ok
            and p.extra_ok
            and p.time.ns is not None
            and instant is not None
            and instant <= LATEST
            and instant > LAST
        )
        if ok and p.value.number is not None:
            hi = float(SENSORS.physical_max[URIS.index(str(p.sensor_iri))])
            ok = 0.0 <= p.value.number <= hi
        else:
            ok = False
        if key is not None and instant is not None and any(t >= instant for t in seen[key]):
            ok = False
        if key is not None and instant is not None:
            seen[key].append(instant)
        verdicts.append(ok)
    return verdicts


batches = st.lists(points(), min_size=1, max_size=6)


def _point_with(value: Value) -> Point:
    """A point valid but for (perhaps) its value, in 2027."""
    moment = datetime(2027, 1, 1, tzinfo=UTC)
    time = Time(json.dumps("2027-01-01T00:00:00Z"), _ns(moment, ""))
    return Point(json.dumps(URIS[0]), URIS[0], True, json.dumps(UNITS[0]), value, time)


# ---- Properties ----


@SETTINGS
@given(batch=batches)
@example(batch=[_point_with(Value("[2.5]")), _point_with(Value("2.5", 2.5))])
def test_every_point_is_judged_alone(compiled: CompiledContract, batch: list[Point]) -> None:
    parsed = parse_json_batch(_body(batch))
    result = compiled.check(parsed.points, SENSORS, latest_acceptable_ns=LATEST_NS)
    rejected = result.rejected
    reasons = result.reasons()
    assert len(reasons) == int(rejected.sum())
    assert all(reason.strip() for reason in reasons)
    assert (~rejected).tolist() == _valid(batch), reasons
    for i in np.flatnonzero(~rejected):
        assert int(parsed.points.time_ns[i]) == batch[i].time.ns
        assert parsed.points.value[i] == batch[i].value.number


def _oracle(shapes: Graph, records: list[dict[str, Any]]) -> list[set[tuple[str, str, str | None]]]:
    iri = URIRef(f"{INGEST_BASE}test/batch")
    graph, iris = points_graph(records, SENSORS, batch=iri, latest_acceptable_ns=LATEST_NS)
    found: dict[str, set[tuple[str, str, str | None]]] = defaultdict(set)
    for v in validate(graph, shapes).violations:
        found[v.focus_node].add((v.source_shape, v.component, v.source_constraint))
    return [found.get(str(i), set()) for i in iris]


@settings(SETTINGS, max_examples=100)
@given(batch=batches)
def test_pyshacl_agrees_on_every_point(
    shapes: Graph, compiled: CompiledContract, batch: list[Point]
) -> None:
    document = read_json(_body(batch), max_depth=32, source="test")
    records, defects = json_records(document["points"])
    points_ = from_records(records, defects=defects)
    result = compiled.check(points_, SENSORS, latest_acceptable_ns=LATEST_NS)
    expected = _oracle(shapes, records)
    for i, row in enumerate(result.failures):
        actual = {c.key for c, hit in zip(result.constraints, row, strict=True) if hit}
        assert actual == expected[i], (i, batch[i].text(), sorted(actual), sorted(expected[i]))
        # every defect the parser finds shows in a constraint both paths see (decision 0037)
        assert bool(result.rejected[i]) == bool(expected[i]), (i, batch[i].text())


@SETTINGS
@given(
    moment=st.datetimes(min_value=MIN, max_value=MAX),
    digits=st.text("0123456789", max_size=9),
    zone=st.sampled_from(_ZONES),
)
def test_times_round_trip_to_the_nanosecond(moment: datetime, digits: str, zone: str) -> None:
    text = _iso(moment, digits, zone)
    reading = read_datetime(text)
    expected = _ns(moment.replace(tzinfo=_offset(zone)), digits)
    assert (reading.well_typed, reading.zoned, reading.ns, reading.defect) == (
        True,
        True,
        expected,
        None,
    )
    utc = (moment.replace(tzinfo=_offset(zone)) - _offset(zone).utcoffset(None)).replace(
        tzinfo=None
    )
    back = np.datetime_as_string(np.datetime64(reading.ns, "ns"), unit="ns")
    assert back == utc.strftime("%Y-%m-%dT%H:%M:%S") + "." + digits.ljust(9, "0")


@pytest.mark.parametrize(
    ("text", "ns", "why"),
    [
        ("1677-09-21T00:12:43.145224193Z", FIRST_NS, None),
        ("2262-04-11T23:47:16.854775806Z", LAST_NS, None),
        ("1677-09-21T00:12:43.145224192Z", NS_BEFORE, "before 1677-09-21T00:12:43.145224193Z"),
        ("2262-04-11T23:47:16.854775807Z", None, "after 2262-04-11T23:47:16.854775806Z"),
        ("2262-04-12T01:00:00+02:00", None, None),
        ("0001-01-01T00:00:00Z", NS_BEFORE, "before"),
        ("2300-01-01T00:00:00Z", NS_AFTER, "after"),
        ("0000-01-01T00:00:00Z", 0, "before"),
        ("-0044-03-15T12:00:00Z", 0, "before"),
        ("2020-01-01T24:00:00Z", 0, "24:00:00"),
        ("2020-01-01T00:00:00.1234567891Z", None, "finer than a nanosecond"),
    ],
)
def test_the_edges_of_the_range(text: str, ns: int | None, why: str | None) -> None:
    reading = read_datetime(text)
    if ns is not None:
        assert reading.ns == ns
    if why is None:
        assert reading.defect is None
    else:
        assert reading.defect is not None and why in reading.defect


# ---- The envelope and the JSON reader ----

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.sampled_from('[]{}"\\ab:,\n\u00e9\U0001f600'), max_size=12),
)
_documents = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=25,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@SETTINGS
@given(document=_documents, ascii_only=st.booleans())
def test_the_depth_scan_counts_only_brackets_outside_strings(
    document: Any, ascii_only: bool
) -> None:
    raw = json.dumps(document, ensure_ascii=ascii_only).encode()
    assert nesting_depth(raw) == _depth(document)


@SETTINGS
@given(raw=st.one_of(st.binary(max_size=200), _documents.map(lambda d: json.dumps(d).encode())))
@example(raw=b"[" * 100_000 + b"]" * 100_000)
@example(raw=b'{"a":' * 5000 + b"1" + b"}" * 5000)
@example(raw=b'["\\"' + b"[" * 5000)
def test_any_bytes_read_or_refuse_in_one_line(raw: bytes) -> None:
    try:
        read_json(raw, max_depth=32, source="body")
    except InvalidInputError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_input"),
        (b"\xff\xfe\x00\x00garbage", "invalid_input"),
        (b"", "invalid_input"),
        (b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "json_too_deep"),
        (b'{"points": [' + b"[" * 40 + b"]" * 40 + b"]}", "json_too_deep"),
        (b"[]", "invalid_input"),
        (b'{"points": 5}', "invalid_input"),
        (b'{"contract": "telemetry@1.0.0", "points": [], "points": [1]}', "invalid_input"),
        (b'{"points": [], "colour": 1}', "invalid_input"),
        (b'{"points": [], "producer": "\\ud800"}', "invalid_input"),
        (b'{"points": [], "contract": 5}', "invalid_input"),
        (b'{"points": [{"sensor": "x", "\\ud800": 1}]}', "invalid_input"),
    ],
)
def test_only_an_envelope_that_is_not_a_batch_is_refused(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_json_batch(raw)
    assert caught.value.code == code
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    message.encode("utf-8")  # printable on any terminal and in a JSON answer
    if code == "json_too_deep":
        assert isinstance(caught.value, JsonTooDeepError)


def test_what_would_be_copied_to_every_point_is_bounded_first() -> None:
    # the ingest's own rule (``check_batch_size``), applied before any point is converted
    with pytest.raises(PayloadTooLargeError, match=r"3 points exceed the 2 .*MAX_POINTS"):
        parse_json_batch(b'{"points": [1, 2, 3]}', max_points=2)
    long = json.dumps({"points": [{}], "producer": "p" * 1001}).encode()
    with pytest.raises(InvalidInputError, match="producer is longer than 1000 characters"):
        parse_json_batch(long)


def test_a_bom_is_ignored_and_a_legitimate_batch_is_not_too_deep() -> None:
    body = {"points": [{"sensor": URIS[0], "value": [[1]], "unit": UNITS[0], "time": "x"}]}
    parsed = parse_json_batch(b"\xef\xbb\xbf" + json.dumps(body).encode())
    assert len(parsed.points) == 1 and parsed.points.defects.to_pylist()[0] is not None


def test_numbers_no_double_holds_are_kept_as_text() -> None:
    document = read_json(
        b"[1e400, -1e400, 1" + b"0" * 400 + b", 1e-400, NaN, 12]", max_depth=4, source="t"
    )
    assert [type(v) for v in document] == [JsonText, JsonText, JsonText, float, float, int]
    assert document[2].size == 401 and len(document[2]) < 300


def test_a_lone_surrogate_is_escaped_and_quarantined(compiled: CompiledContract) -> None:
    point = {"sensor": URIS[0], "unit": UNITS[0], "time": "2027-01-01T00:00:00Z", "value": 1.0}
    body = json.dumps({"points": [point, {**point, "producer": "edge\ud800"}]}).encode()
    parsed = parse_json_batch(body)
    assert parsed.points.producer.to_pylist()[1] == "edge\\ud800"
    result = compiled.check(parsed.points, SENSORS, latest_acceptable_ns=LATEST_NS)
    assert result.rejected.tolist() == [False, True]
    assert "not valid Unicode" in result.reasons()[0]


def test_a_final_newline_is_judged_alike_by_both_regex_engines(
    shapes: Graph, compiled: CompiledContract
) -> None:
    """Python's ``$`` (pySHACL's sh:pattern) matches before a final newline, RE2's does not:
    control characters are escaped before either path sees the text, so both refuse it."""
    records = [
        {
            "sensor": URIS[0],
            "value": 1.0,
            "unit": UNITS[0],
            "time": "2027-01-01T00:00:00Z",
            "producer": "edge-1\n",
            "sequence": 0,
            "batch": True,
        }
    ]
    result = compiled.check(from_records(records), SENSORS, latest_acceptable_ns=LATEST_NS)
    assert result.rejected.tolist() == [True]
    assert "1 to 64 letters" in result.reasons()[0]
    assert "control character" in result.reasons()[0]
    pattern = (f"{CONTRACT_NS}producer", str(SH.PatternConstraintComponent), None)
    assert _oracle(shapes, records) == [{pattern}]
