"""Messages ingested together as one batch (decision 0067) accept and quarantine exactly what
ingesting them one at a time does, and each is recognised as a repeat on its own.

Differential and hostile: Hypothesis makes groups of JSON batches with points that go back in
time across messages, repeat, break the physical range, name unknown sensors or units, lie in
the far future, and whole messages sent twice. Each example is ingested one message at a time
into a freshly seeded graph, then as one group into another: per message, the points accepted
and quarantined, the points in the log and the quarantine's reasons must be the same.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from neo4j import Driver

from tests.conftest import seed_skab
from twinkg.api.reclassification import Reclassify
from twinkg.api.settings import Settings
from twinkg.api.twin import Twin
from twinkg.connect.json import JsonSource
from twinkg.connect.source import Batch
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.reasoner.ingest import message_iri

pytestmark = pytest.mark.neo4j

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
FLOW, PRESSURE, NOWHERE = (PLANT + s for s in ("sensor-flow", "sensor-pressure", "sensor-none"))
SENSORS = {  # two of the testbed's sensors with their units, and one the graph does not know
    FLOW: "http://qudt.org/vocab/unit/L-PER-MIN",
    PRESSURE: "http://qudt.org/vocab/unit/BAR",
    NOWHERE: "http://qudt.org/vocab/unit/BAR",
}
BASE = (datetime.now(UTC) - timedelta(hours=6)).replace(microsecond=0)

_point = st.fixed_dictionaries(
    {
        "sensor": st.sampled_from([FLOW, FLOW, PRESSURE, NOWHERE]),
        # a few seconds wide, so messages overlap and go back in time; now and then the future
        "second": st.one_of(st.integers(0, 40), st.integers(0, 40), st.just(10**9)),
        "nanos": st.sampled_from([0, 1, 999, 500_000]),  # below the microsecond the graph keeps
        "value": st.one_of(
            st.floats(0.0, 9.0, allow_nan=False), st.sampled_from([-1.0, 1e6, 260.5])
        ),
        "unit": st.sampled_from(["given", "given", "given", "wrong"]),
    }
)
_message = st.lists(_point, min_size=1, max_size=8)
# new messages, then which of them come again (a repeat within the group), and where
_group = st.tuples(
    st.lists(_message, min_size=2, max_size=5),
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 9)), max_size=2),
)
# one message goes back in time on a sensor the one before it moved forward: alone, the later
# message's point is stale; the third repeats the first
_BACK_IN_TIME = (
    [
        [
            {"sensor": FLOW, "second": 10, "nanos": 0, "value": 5.0, "unit": "given"},
            {"sensor": FLOW, "second": 20, "nanos": 0, "value": 5.5, "unit": "given"},
        ],
        [
            {"sensor": FLOW, "second": 15, "nanos": 0, "value": 6.0, "unit": "given"},
            {"sensor": FLOW, "second": 20, "nanos": 1, "value": 6.5, "unit": "given"},
            {"sensor": FLOW, "second": 25, "nanos": 0, "value": 7.0, "unit": "given"},
        ],
    ],
    [(0, 9)],
)


def _stamp(second: int, nanos: int) -> str:
    if second >= 10**9:
        return "2999-01-01T00:00:00Z"
    moment = BASE + timedelta(seconds=second)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _body(points: list[dict[str, object]]) -> bytes:
    out = []
    for p in points:
        sensor = str(p["sensor"])
        unit = SENSORS[sensor] if p["unit"] == "given" else "http://qudt.org/vocab/unit/DEG_C"
        stamp = _stamp(int(str(p["second"])), int(str(p["nanos"])))
        out.append({"sensor": sensor, "unit": unit, "time": stamp, "value": p["value"]})
    return json.dumps({"contract": "telemetry@1.0.0", "points": out}).encode()


def _bodies(group: tuple[list[list[dict[str, object]]], list[tuple[int, int]]]) -> list[bytes]:
    """The new messages, with the repeats put in where they say (after their original)."""
    messages, repeats = group
    bodies = [_body(m) for m in messages]
    for which, where in repeats:
        original = which % len(messages)
        bodies.insert(original + 1 + where % (len(bodies) - original), bodies[original])
    return bodies


def _read(twin: Twin, bodies: list[bytes]) -> list[Batch]:
    return [
        twin.read_batches(JsonSource(f"mqtt:skab/loop/gw{i}", body=b))[0]
        for i, b in enumerate(bodies)
    ]


def _log(home: Path) -> tuple[Counter[tuple[str, int, float]], Counter[tuple[str, str, str]]]:
    log = TelemetryLog(home / "telemetry")
    points = log.window()
    accepted = Counter(
        zip(
            points["sensor"].to_pylist(),
            points["time"].cast("int64").to_pylist(),
            points["value"].to_pylist(),
            strict=True,
        )
    )
    held = log.quarantined()
    quarantined = Counter(
        zip(
            held["sensor"].to_pylist(),
            held["time"].to_pylist(),
            held["reason"].to_pylist(),
            strict=True,
        )
    )
    return accepted, quarantined


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(group=_group)
@example(group=_BACK_IN_TIME)
def test_a_group_accepts_and_quarantines_what_its_messages_would_one_at_a_time(
    driver: Driver,
    tmp_path_factory: pytest.TempPathFactory,
    group: tuple[list[list[dict[str, object]]], list[tuple[int, int]]],
) -> None:
    bodies = _bodies(group)

    alone_home = tmp_path_factory.mktemp("alone")
    twin = Twin(Settings(home=alone_home), seed_skab(driver))
    try:
        one_by_one = []
        for batch in _read(twin, bodies):
            member = twin.ingest_batches([batch], reclassify=Reclassify.OFF).report.members[0]
            one_by_one.append((member.duplicate, member.accepted, member.rejected))
    finally:
        twin.close()

    group_home = tmp_path_factory.mktemp("group")
    twin = Twin(Settings(home=group_home), seed_skab(driver))
    try:
        report = twin.ingest_batches(_read(twin, bodies), reclassify=Reclassify.OFF).report
        together = [(m.duplicate, m.accepted, m.rejected) for m in report.members]
        # every message on its own again, now that the group holds it: a repeat each time
        again = [
            twin.ingest_batches([b], reclassify=Reclassify.OFF).report.members[0]
            for b in _read(twin, bodies)
        ]
    finally:
        twin.close()

    assert together == one_by_one
    assert _log(group_home) == _log(alone_home)
    assert all(m.duplicate for m in again)
    assert {m.batch_iri for m in again} == {report.batch_iri}
    if len(set(bodies)) > 1:  # several new messages: one batch, each message recorded in it
        rows, _, _ = driver.execute_query(
            "MATCH (m:IngestMessage)-[:IN_BATCH]->(b:IngestBatch {uri: $batch}) "
            "RETURN m.uri AS uri ORDER BY uri",
            batch=report.batch_iri,
        )
        expected = sorted({message_iri(m.content_hash) for m in report.members})
        assert [r["uri"] for r in rows] == expected
