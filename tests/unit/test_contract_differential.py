"""The compiled telemetry contract equals its pySHACL reference on adversarial records.

Issue 13 measured 384 of 2,424 hostile records with different constraint sets, 141 with a
different verdict and 97 crashes. The classes it found are generated here, each field hostile in
its own way and several at once: duplicate and several values, lenient lexical forms of a time
(space separator, basic format, no seconds, ``+0530``, no zone), years 0001 / 1500 / 2300 / 9999
/ 10000 / negative, leap seconds, 29 February of a common year, finer than a nanosecond, trailing
newlines, spaces and non-ASCII text in identifiers, 0, -0.0, ±1e308, ±10^400, NaN and ±Infinity
as numbers and as strings, booleans and strings for numbers, unknown sensors, sensors with a
minimum only, a maximum only, both or neither, sequences that int64 cannot hold. For EVERY record
of every batch: the same accept/reject verdict and the same set of violated constraints (source
shape, constraint component, source constraint) from the compiled checks and from pySHACL on the
RDF form, and no exception on either path (decision 0037).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rdflib import Graph, URIRef

import twinkg.shapes as shapes_package
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.reasoner.compiled import CompiledContract, SensorTable, compile_contract
from twinkg.reasoner.points import from_records
from twinkg.reasoner.telemetry_rdf import points_graph
from twinkg.reasoner.validation import validate

Key = tuple[str, str, str | None]
CONTRACT = Path(shapes_package.__file__).parent / "contracts" / "telemetry" / "1.0.0.ttl"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LAST = datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000 + 999


SENSOR = f"{INGEST_BASE}test/differential/sensor"
UNIT = "http://qudt.org/vocab/unit/DEG_C"
OTHER_UNIT = "http://qudt.org/vocab/unit/BAR"
NAN = math.nan
# Both bounds, a minimum only, a maximum only, neither; with and without a last reading.
BOUNDS = [(0.0, 100.0), (0.0, NAN), (NAN, 100.0), (NAN, NAN), (-5.0, 5.0)]
SENSORS = SensorTable(
    uris=pa.array([f"{SENSOR}/{i}" for i in range(len(BOUNDS))], pa.string()),
    physical_min=np.array([lo for lo, _ in BOUNDS]),
    physical_max=np.array([hi for _, hi in BOUNDS]),
    units=pa.array([UNIT, UNIT, UNIT, OTHER_UNIT, UNIT], pa.string()),
    last_ns=np.array([_ns(LAST)] * 3 + [0, _ns(LAST)], np.int64),
    has_last=np.array([True, True, True, False, True]),
)
URIS: list[str] = SENSORS.uris.to_pylist()
LATEST_NS = _ns(LATEST)
PROFILE = settings(
    derandomize=True,  # the same records on every run, on every machine
    max_examples=700,
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


# ---- Hostile fields ----

sensors: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(URIS),
    st.sampled_from(URIS).map(lambda u: [u, u]),
    st.sampled_from(URIS).map(lambda u: [u]),
    st.sampled_from(URIS).flatmap(lambda u: st.sampled_from([u + "\n", u + " ", u + "é", " " + u])),
    st.sampled_from([f"{SENSOR}/unknown", "", "5", 5, True, None, {}, [URIS[0], URIS[1]]]),
)
values: st.SearchStrategy[Any] = st.one_of(
    st.floats(-200, 200),
    st.integers(-200, 200),
    st.sampled_from(
        [
            0,
            0.0,
            -0.0,
            1e308,
            -1e308,
            5e-324,
            10**400,
            -(10**400),
            2**63,
            NAN,
            math.inf,
            -math.inf,
            "NaN",
            "Infinity",
            "12.5",
            "",
            True,
            False,
            None,
            [5.0, 5.0],
            [5.0, 6.0],
            [2.5],
            [],
            {},
            [NAN, NAN],
        ]
    ),
)
units = st.sampled_from(
    [UNIT, UNIT, OTHER_UNIT, UNIT + "\n", [UNIT, UNIT], [UNIT], 7, None, "", UNIT.upper()]
)


@st.composite
def recent_times(draw: st.DrawFn) -> str:
    """A strict zoned time after the sensors' last reading (often close to it)."""
    moment = draw(
        st.one_of(
            st.datetimes(datetime(2026, 1, 1), datetime(2199, 12, 1)),
            st.datetimes(datetime(2025, 12, 31, 23, 59), datetime(2026, 1, 1, 0, 1)),
        )
    )
    digits = draw(st.sampled_from(["", "5", "123456", "1234567", "123456789", "0000001"]))
    zone = draw(st.sampled_from(["Z", "+00:00", "-00:00", "+05:30", "-14:00", "+14:00"]))
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + zone


_ODD_TIMES = [
    "2026-03-01 12:30:00Z",
    "20260301T123000Z",
    "2026-03-01T12:30Z",
    "2026-03-01T12:30:00+0530",
    "2026-03-01T12:30:00",
    "2026-03-01T12:30:00z",
    "2026-03-01T12:30:00Z\n",
    "2026-03-01T12:30:00Z ",
    " 2026-03-01T12:30:00Z",
    "2026-03-01T12:30:00.5+05:30\n",
    "0001-01-01T00:00:00Z",
    "1500-06-01T00:00:00Z",
    "1677-09-21T00:12:43.145224192Z",
    "1677-09-21T00:12:43.145224193Z",
    "2262-04-11T23:47:16.854775806Z",
    "2262-04-11T23:47:16.854775807Z",
    "2300-01-01T00:00:00Z",
    "2400-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59Z",
    "10000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "2026-12-31T23:59:60Z",
    "2027-02-29T00:00:00Z",
    "2028-02-29T00:00:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T12:30:00+14:30",
    "2026-03-01T12:30:00.1234567891Z",
    "2026-03-01T12:30:00,5Z",
    "2026-03-01",
    "2025-12-31T23:59:59.999999Z",
    "2025-12-31T23:59:59.9999999Z",
    "2199-12-31T23:59:59Z",
    "2200-01-01T00:00:00.0000009Z",
    "2200-01-01T00:00:00.000001Z",
    "",
    "now",
]
times: st.SearchStrategy[Any] = st.one_of(
    recent_times(),
    st.sampled_from(_ODD_TIMES),
    recent_times().map(lambda t: [t, t]),
    recent_times().map(lambda t: [t]),
    st.sampled_from([20260301, None, True, {}, 1.5]),
)
sequences = st.one_of(
    st.integers(0, 8), st.sampled_from([-1, 2**63, 2**70, True, "3", 2.0, [1, 1], None])
)
qualities = st.sampled_from(
    [None, "good", "bad", "uncertain", "excellent", "good\n", "Good", 5, ["good", "good"], ""]
)
producers = st.sampled_from(
    [None, "edge-1", "edge-1\n", "edge 1", "x" * 64, "x" * 65, "édge", "", 7, ["a", "a"], "e\x00"]
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A record hostile in any number of its fields (often none, so valid points abound)."""
    hostile = draw(st.frozensets(st.sampled_from(["s", "v", "u", "t", "q", "p", "i"]), max_size=3))
    index = draw(st.integers(0, len(URIS) - 1))
    lo, hi = BOUNDS[index]
    lo, hi = (-50.0 if math.isnan(lo) else lo), (150.0 if math.isnan(hi) else hi)
    record: dict[str, Any] = {
        "sensor": draw(sensors) if "s" in hostile else URIS[index],
        "value": draw(values) if "v" in hostile else draw(st.floats(lo, hi)),
        "unit": draw(units) if "u" in hostile else SENSORS.units[index].as_py(),
        "time": draw(times) if "t" in hostile else draw(recent_times()),
        "sequence": draw(sequences) if "i" in hostile else None,
        "quality": draw(qualities) if "q" in hostile else None,
        "producer": draw(producers) if "p" in hostile else None,
        "batch": True,
    }
    return {k: v for k, v in record.items() if v is not None}


@st.composite
def batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1 to 6 records; positions as sequences unless a record brings its own."""
    made = draw(st.lists(records(), min_size=1, max_size=6))
    for i, record in enumerate(made):
        record.setdefault("sequence", i)
    return made


# ---- The two paths ----


def _compiled(compiled: CompiledContract, batch: list[dict[str, Any]]) -> list[set[Key]]:
    result = compiled.check(from_records(batch), SENSORS, latest_acceptable_ns=LATEST_NS)
    sets = [
        {c.key for c, hit in zip(result.constraints, row, strict=True) if hit}
        for row in result.failures
    ]
    # a defect never rejects on its own: each shows in a constraint pySHACL sees too
    assert result.rejected.tolist() == [bool(s) for s in sets]
    assert len(result.reasons()) == sum(bool(s) for s in sets)
    return sets


def _oracle(shapes: Graph, batch: list[dict[str, Any]]) -> list[set[Key]]:
    iri = URIRef(f"{INGEST_BASE}test/differential/batch")
    graph, iris = points_graph(batch, SENSORS, batch=iri, latest_acceptable_ns=LATEST_NS)
    found: dict[str, set[Key]] = defaultdict(set)
    for v in validate(graph, shapes).violations:
        found[v.focus_node].add((v.source_shape, v.component, v.source_constraint))
    return [found.get(str(i), set()) for i in iris]


def _agree(shapes: Graph, compiled: CompiledContract, batch: list[dict[str, Any]]) -> None:
    expected, actual = _oracle(shapes, batch), _compiled(compiled, batch)
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        assert bool(a) == bool(e), ("verdict", i, batch[i], sorted(a), sorted(e))
        assert a == e, ("constraints", i, batch[i], sorted(a), sorted(e))


def _point(**changes: Any) -> dict[str, Any]:
    base = {
        "sensor": URIS[0],
        "value": 5.0,
        "unit": UNIT,
        "time": "2027-01-01T00:00:00Z",
        "sequence": 0,
        "batch": True,
    }
    return {**base, **changes}


@PROFILE
@given(batch=batches())
@example(batch=[_point(value=[5.0, 5.0])])
@example(batch=[_point(time="2026-03-01 12:30:00Z"), _point(time="20260301T123000Z", sequence=1)])
@example(batch=[_point(time="2026-03-01T12:30Z"), _point(time="2026-03-01T12:30:00+0530")])
@example(batch=[_point(producer="edge-1\n"), _point(quality="good\n", sequence=1)])
@example(batch=[_point(sensor=URIS[1], value=-1.0), _point(sensor=URIS[2], value=101.0)])
@example(batch=[_point(time="1500-01-01T00:00:00Z"), _point(time="2300-01-01T00:00:00Z")])
@example(batch=[_point(value=10**400), _point(value=[1.0, 2.0], sequence=1)])
@example(
    batch=[
        _point(sensor=URIS[3], time="1400-01-01T00:00:00Z"),
        _point(sensor=URIS[3], time="1500-01-01T00:00:00Z", sequence=1),
    ]
)
@example(
    batch=[
        _point(time="2027-01-01T00:00:00.0000001Z"),
        _point(time="2027-01-01T00:00:00.0000002Z", sequence=1),
    ]
)
def test_the_compiled_checks_equal_pyshacl_on_every_record(
    shapes: Graph, compiled: CompiledContract, batch: list[dict[str, Any]]
) -> None:
    _agree(shapes, compiled, batch)


def test_each_class_of_the_issue_is_refused_by_both_for_its_own_reason(
    shapes: Graph, compiled: CompiledContract
) -> None:
    """What the semantics decided (decision 0037), one class at a time, with a valid point
    beside each bad one that both paths accept."""
    cases = {
        "duplicates": _point(value=[5.0, 5.0]),
        "several values": _point(value=[5.0, 6.0]),
        "space separator": _point(time="2026-03-01 12:30:00Z"),
        "basic format": _point(time="20260301T123000Z"),
        "no seconds": _point(time="2026-03-01T12:30Z"),
        "offset without colon": _point(time="2026-03-01T12:30:00+0530"),
        "trailing newline": _point(producer="edge-1\n"),
        "year 1500": _point(time="1500-01-01T00:00:00Z"),
        "year 2300": _point(time="2300-01-01T00:00:00Z"),
        "10^400": _point(value=10**400),
        "NaN": _point(value=NAN),
        "below a minimum-only sensor": _point(sensor=URIS[1], value=-1.0),
    }
    valid = _point(time="2027-06-01T00:00:00Z", sequence=0)
    for name, bad in cases.items():
        # after the valid point: a time in the far future shadows the later points of its
        # sensor in the batch (monotonicity, as the SHACL says; decision 0013)
        batch = [valid, {**bad, "sequence": 1}]
        _agree(shapes, compiled, batch)
        result = compiled.check(from_records(batch), SENSORS, latest_acceptable_ns=LATEST_NS)
        assert result.rejected.tolist() == [False, True], name
    above = [_point(sensor=URIS[1], value=1e308), _point(sensor=URIS[2], value=-1e308)]
    result = compiled.check(from_records(above), SENSORS, latest_acceptable_ns=LATEST_NS)
    assert result.rejected.tolist() == [False, False]  # a missing bound is an infinite one
    _agree(shapes, compiled, above)
