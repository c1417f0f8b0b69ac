"""Times read in bulk (``read_plain_utc``) say what ``read_datetime`` says of each, or nothing.

Differential and hostile: Hypothesis mixes plain UTC times (years 1600 to 2400, none to nine
digits of fraction) with near misses: the 29th of February of a common year, 24:00:00, a leap
second, an offset, lowercase ``z``, a space for the ``T``, a trailing newline, digits from
another script, a year 0000. Whenever the bulk reader answers, every string must be one that
``read_datetime`` reads as well-typed, zoned and kept, with the same nanoseconds and
microseconds; and an all-plain batch inside the range must be answered (the fast case is taken).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pyarrow as pa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from twinkg.connect.json_columns import plain_batch
from twinkg.reasoner.timestamps import read_datetime, read_plain_utc

_PLAIN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")
_INSIDE = (
    int(datetime(1678, 1, 1, tzinfo=UTC).timestamp()) * 10**9,
    int(datetime(2262, 1, 1, tzinfo=UTC).timestamp()) * 10**9,
)
_NEAR_MISSES = [
    "2025-02-29T00:00:00Z",
    "2024-12-31T24:00:00Z",
    "2016-12-31T23:59:60Z",
    "2026-12-06T10:00:00+00:00",
    "2026-12-06T10:00:00z",
    "2026-12-06 10:00:00Z",
    "2026-12-06T10:00:00Z\n",
    "２026-12-06T10:00:00Z",
    "0000-01-01T00:00:00Z",
    "2026-12-06T10:00:00.1234567Z",
    "2026-13-06T10:00:00Z",
    "2026-12-06T10:00:00",
    "",
]


@st.composite
def _plain(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(min_value=datetime(1600, 1, 1), max_value=datetime(2400, 12, 31, 23, 59))
    )
    digits = draw(st.integers(0, 9))
    frac = (
        "" if digits == 0 else "." + draw(st.text("0123456789", min_size=digits, max_size=digits))
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


_times = st.lists(st.one_of(_plain(), _plain(), st.sampled_from(_NEAR_MISSES)), min_size=1)


@example(texts=["2026-12-06T10:00:00Z", "2026-12-06T10:00:00.5Z", "1970-01-01T00:00:00.000001Z"])
@example(texts=["1677-09-21T00:12:44Z", "2262-04-11T23:47:16Z"])
@example(texts=["1677-09-21T00:12:43Z"])  # one second before the first representable one
@settings(max_examples=400, deadline=None)
@given(texts=_times)
def test_times_read_in_bulk_are_read_as_one_at_a_time(texts: list[str]) -> None:
    bulk = read_plain_utc(pa.array(texts, type=pa.string()))
    one_by_one = [read_datetime(t) for t in texts]
    if bulk is None:  # then some string is not plain, not a real time, or outside the range
        assert not all(
            _PLAIN.fullmatch(t) and r.kept and _INSIDE[0] <= r.ns < _INSIDE[1]
            for t, r in zip(texts, one_by_one, strict=True)
        ), f"plain times inside the range not read in bulk: {texts}"
        return
    ns, us = bulk
    for k, (text, reading) in enumerate(zip(texts, one_by_one, strict=True)):
        assert reading.kept and reading.zoned and reading.defect is None, text
        assert (int(ns[k]), int(us[k])) == (reading.ns, reading.us), text


def test_a_plain_batch_takes_the_bulk_read_and_keeps_its_instants() -> None:
    """The fast path's columns: plain times read in bulk, the same as the reference path's."""
    times = ["2026-12-06T10:00:00.25Z", "2026-12-06T10:00:01Z", "2026-12-06T10:00:00.25Z"]
    points = [
        {
            "sensor": f"https://w3id.org/twinkg/test/s{k % 2}",
            "value": float(k),
            "unit": "u",
            "time": t,
        }
        for k, t in enumerate(times)
    ]
    raw = json.dumps({"points": points}).encode()
    fast = plain_batch(raw, contract=None, max_depth=64, max_points=None)
    assert fast is not None
    batch = fast[0]
    expected = [read_datetime(t) for t in times]
    assert list(batch.time_ns) == [r.ns for r in expected]
    assert list(batch.time_us) == [r.us for r in expected]
    assert all(batch.time_tz) and all(batch.ok["time"])
