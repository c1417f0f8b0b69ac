"""Instants between nanoseconds and datetimes, exactly: the sensors' last readings are compared
with new points in nanoseconds, and a float on the way was 1 µs off for about 2 % of instants,
so a point repeating the last accepted time could pass as later than it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from twinkg.reasoner.aggregates import moment, nanos

_MICROSECONDS = st.integers(min_value=-(2**63) // 1000 + 1, max_value=(2**63 - 1) // 1000)


@given(_MICROSECONDS)
def test_a_microsecond_instant_round_trips_exactly(us: int) -> None:
    ns = us * 1000
    assert nanos(moment(ns)) == ns


@given(_MICROSECONDS, st.integers(min_value=0, max_value=999))
def test_moment_truncates_to_the_microsecond(us: int, below: int) -> None:
    assert moment(us * 1000 + below) == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
        microseconds=us
    )


def test_an_instant_the_float_path_got_wrong() -> None:
    at = datetime(2005, 4, 17, 8, 29, 2, 646319, tzinfo=UTC)
    assert int(at.timestamp() * 1e6) * 1000 != nanos(at)  # the old conversion: 1 µs low
    assert nanos(at) == 1_113_726_542_646_319_000
