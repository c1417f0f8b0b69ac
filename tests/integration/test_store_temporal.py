"""Temporal properties keep their Neo4j type and instant however they travel to the server."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import neo4j.time
import pytest
from neo4j import Driver

from twinkg.kg.records import GraphRecords, NodeRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.vocab import TK, PropKey

pytestmark = pytest.mark.neo4j
URI = "https://w3id.org/twinkg/ingest/test/temporal"


def test_dates_and_datetimes_round_trip(empty_store: GraphStore, driver: Driver) -> None:
    aware = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 3, 1, 12, 30, 15)
    zoned = datetime(2026, 3, 1, 12, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    node = NodeRecord(
        URI,
        (str(TK.WindowAggregate),),
        {
            PropKey.WINDOW_START: aware,
            PropKey.WINDOW_END: naive,
            PropKey.OCCURRED_AT: zoned,
            PropKey.VALID_FROM: [
                datetime(2026, 1, 1, tzinfo=UTC),
                datetime(2026, 1, 2, tzinfo=UTC),
            ],
            PropKey.EXPIRES_AT: date(2026, 5, 1),
        },
    )
    for _ in range(2):  # created, then merged
        empty_store.write(GraphRecords((node,), ()))
    records, _, _ = driver.execute_query(
        "MATCH (n {uri: $u}) RETURN n.windowStart AS a, n.windowEnd AS b, n.occurredAt AS c, "
        "n.validFrom AS d, n.expiresAt AS e",
        u=URI,
    )
    row = records[0]
    assert row["a"].to_native() == aware and row["a"].utcoffset() == timedelta(hours=2)
    assert isinstance(row["b"], neo4j.time.DateTime) and row["b"].tzinfo is None
    assert row["b"].to_native() == naive
    # a named zone is kept as its offset at that instant (all an xsd:dateTime can say)
    assert row["c"].to_native() == zoned and row["c"].utcoffset() == timedelta(hours=3)
    assert [d.to_native() for d in row["d"]] == [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 2, tzinfo=UTC),
    ]
    assert row["e"] == neo4j.time.Date(2026, 5, 1)
