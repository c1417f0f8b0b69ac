"""Generated telemetry: valid points and every way of breaking the telemetry contract.

Used by the differential test (compiled checks against pySHACL) and by the benchmarks. The
generator is deterministic for a seed. Each flawed record is broken in exactly one way
(:class:`Flaw`); a flawed timestamp or sequence can, as in real life, also put later points of
the same sensor out of order.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.ontology.vocab import UNIT
from twinkg.reasoner.compiled import SensorTable

START = datetime(2026, 1, 1, tzinfo=UTC)
_UNITS = (UNIT.G, UNIT.A, UNIT.BAR, UNIT.DEG_C, UNIT.V, UNIT["L-PER-MIN"])


class Flaw(enum.Enum):
    """One way a point breaks the telemetry contract."""

    NO_SENSOR = "no_sensor"
    UNKNOWN_SENSOR = "unknown_sensor"
    NO_VALUE = "no_value"
    TEXT_VALUE = "text_value"
    NAN_VALUE = "nan_value"
    INFINITE_VALUE = "infinite_value"
    ABOVE_RANGE = "above_range"
    BELOW_RANGE = "below_range"
    TWO_VALUES = "two_values"
    NO_UNIT = "no_unit"
    WRONG_UNIT = "wrong_unit"
    NO_TIME = "no_time"
    GARBAGE_TIME = "garbage_time"
    IMPOSSIBLE_TIME = "impossible_time"
    NAIVE_TIME = "naive_time"
    FUTURE_TIME = "future_time"
    BEFORE_LAST = "before_last"
    REPEATED_TIME = "repeated_time"
    OUT_OF_ORDER = "out_of_order"
    BAD_QUALITY = "bad_quality"
    NUMERIC_QUALITY = "numeric_quality"
    BAD_PRODUCER = "bad_producer"
    LONG_PRODUCER = "long_producer"
    NEGATIVE_SEQUENCE = "negative_sequence"
    TEXT_SEQUENCE = "text_sequence"
    NO_BATCH = "no_batch"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Generated point records, the sensor table they refer to, and the batch's time limit."""

    records: list[dict[str, Any]]
    sensors: SensorTable
    latest_acceptable_ns: int
    flaws: list[Flaw | None]


def sensor_table(count: int) -> SensorTable:
    """``count`` sensors with ranges [0, 100·(i+1)], units in turn, last reading before START."""
    uris = [f"{INGEST_BASE}test/sensor/{i}" for i in range(count)]
    last = int((START - timedelta(seconds=1)).timestamp()) * 10**9
    return SensorTable(
        uris=pa.array(uris, pa.string()),
        physical_min=np.zeros(count),
        physical_max=np.array([100.0 * (i + 1) for i in range(count)]),
        units=pa.array([str(_UNITS[i % len(_UNITS)]) for i in range(count)], pa.string()),
        last_ns=np.full(count, last, np.int64),
        has_last=np.ones(count, np.bool_),
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generate(n: int, *, sensors: int = 8, invalid_share: float = 0.0, seed: int = 0) -> Telemetry:
    """``n`` records over ``sensors`` sensors; about ``invalid_share`` of them get one flaw."""
    rng = random.Random(seed)
    table = sensor_table(sensors)
    uris = table.uris.to_pylist()
    records: list[dict[str, Any]] = []
    for i in range(n):
        s = i % sensors
        records.append(
            {
                "sensor": uris[s],
                "value": round(rng.uniform(0.0, 100.0 * (s + 1)), 6),
                "unit": str(_UNITS[s % len(_UNITS)]),
                "time": _iso(START + timedelta(seconds=i // sensors, milliseconds=s)),
                "sequence": i,
                "quality": rng.choice(("good", "good", "uncertain", "bad")),
                "producer": "plc-7",
                "batch": True,
            }
        )
    flaws: list[Flaw | None] = [None] * n
    end = START + timedelta(seconds=n // sensors + 1)
    latest = int((end + timedelta(minutes=5)).timestamp()) * 10**9
    for i in range(n):
        if rng.random() < invalid_share:
            flaw = rng.choice(list(Flaw))
            if flaw in (Flaw.REPEATED_TIME, Flaw.OUT_OF_ORDER) and i < sensors:
                continue
            if flaw is Flaw.FUTURE_TIME and i < n - sensors:
                continue  # a future stamp shadows every later point of its sensor: keep it last
            if flaw is Flaw.NEGATIVE_SEQUENCE and i >= sensors:
                continue  # position -1 precedes every point: it would shadow the earlier ones
            break_record(records, i, flaw, sensors=sensors, end=end, rng=rng)
            flaws[i] = flaw
    return Telemetry(records, table, latest, flaws)


def break_record(  # noqa: PLR0912 - one branch per flaw reads best
    records: list[dict[str, Any]],
    i: int,
    flaw: Flaw,
    *,
    sensors: int,
    end: datetime,
    rng: random.Random,
) -> None:
    """Give record ``i`` the ``flaw`` (``end``: the end of the generated time span)."""
    record = records[i]
    s = i % sensors
    if flaw is Flaw.NO_SENSOR:
        del record["sensor"]
    elif flaw is Flaw.UNKNOWN_SENSOR:
        record["sensor"] = f"{INGEST_BASE}test/sensor/unknown-{i}"
    elif flaw is Flaw.NO_VALUE:
        del record["value"]
    elif flaw is Flaw.TEXT_VALUE:
        record["value"] = "twelve"
    elif flaw is Flaw.NAN_VALUE:
        record["value"] = float("nan")
    elif flaw is Flaw.INFINITE_VALUE:
        record["value"] = rng.choice((float("inf"), float("-inf")))
    elif flaw is Flaw.ABOVE_RANGE:
        record["value"] = 100.0 * (s + 1) + 0.5
    elif flaw is Flaw.BELOW_RANGE:
        record["value"] = -0.001
    elif flaw is Flaw.TWO_VALUES:
        record["value"] = [record["value"], 1.25]
    elif flaw is Flaw.NO_UNIT:
        del record["unit"]
    elif flaw is Flaw.WRONG_UNIT:
        record["unit"] = str(_UNITS[(s + 1) % len(_UNITS)])
    elif flaw is Flaw.NO_TIME:
        del record["time"]
    elif flaw is Flaw.GARBAGE_TIME:
        record["time"] = "yesterday at noon"
    elif flaw is Flaw.IMPOSSIBLE_TIME:
        record["time"] = "2026-13-45T25:00:00Z"
    elif flaw is Flaw.NAIVE_TIME:
        record["time"] = record["time"].removesuffix("Z")
    elif flaw is Flaw.FUTURE_TIME:
        record["time"] = _iso(end + timedelta(days=1))
    elif flaw is Flaw.BEFORE_LAST:
        record["time"] = _iso(START - timedelta(hours=1))
    elif flaw is Flaw.REPEATED_TIME:
        record["time"] = _iso(START + timedelta(seconds=(i - sensors) // sensors, milliseconds=s))
    elif flaw is Flaw.OUT_OF_ORDER:
        record["time"] = _iso(START + timedelta(milliseconds=s) - timedelta(microseconds=1))
    else:
        _break_metadata(record, flaw)


def _break_metadata(record: dict[str, Any], flaw: Flaw) -> None:
    if flaw is Flaw.BAD_QUALITY:
        record["quality"] = "great"
    elif flaw is Flaw.NUMERIC_QUALITY:
        record["quality"] = 192
    elif flaw is Flaw.BAD_PRODUCER:
        record["producer"] = "plc 7!"
    elif flaw is Flaw.LONG_PRODUCER:
        record["producer"] = "p" * 65
    elif flaw is Flaw.NEGATIVE_SEQUENCE:
        record["sequence"] = -1
    elif flaw is Flaw.TEXT_SEQUENCE:
        record["sequence"] = "first"
    elif flaw is Flaw.NO_BATCH:
        del record["batch"]
