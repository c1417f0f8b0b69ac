"""The look-ups every ingest makes are served by an index: their cost does not grow with the
batches stored."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j import Driver

from twinkg.kg import telemetry_state
from twinkg.kg.store import GraphStore

pytestmark = pytest.mark.neo4j


def _db_hits(plan: Any) -> int:
    return int(plan.get("dbHits", 0)) + sum(_db_hits(child) for child in plan.get("children", []))


def _operators(plan: Any) -> set[str]:
    found = {str(plan["operatorType"]).split("@")[0]}
    for child in plan.get("children", []):
        found |= _operators(child)
    return found


def _profile_by_hash(driver: Driver, digest: str) -> tuple[int, set[str]]:
    with driver.session() as session:
        summary = session.run(
            "PROFILE " + telemetry_state.BATCH_BY_HASH.cypher, hashes=[digest]
        ).consume()
    assert summary.profile is not None
    return _db_hits(summary.profile), _operators(summary.profile)


def test_the_duplicate_check_reads_an_index_not_every_batch(
    empty_store: GraphStore, driver: Driver
) -> None:
    driver.execute_query("DROP INDEX ingest_batch_hash IF EXISTS")  # kept by the wipe
    driver.execute_query("DROP INDEX ingest_message_hash IF EXISTS")
    empty_store.ensure_schema()
    empty_store.ensure_schema()  # idempotent
    driver.execute_query("CALL db.awaitIndexes(120)")
    few: list[int] = []
    for first, stored in ((0, 10), (10, 2_000)):
        driver.execute_query(
            "UNWIND range($first, $n - 1) AS i "
            "CREATE (b:Resource:IngestBatch {uri: 'urn:test:batch:' + toString(i), "
            "contentHash: 'h' + toString(i)}) "
            "CREATE (:Resource:IngestMessage {uri: 'urn:test:message:' + toString(i), "
            "contentHash: 'm' + toString(i)})-[:IN_BATCH]->(b)",
            first=first,
            n=stored,
        )
        for digest in (f"h{stored // 2}", f"m{stored // 2}"):  # a batch's, a message's
            hits, operators = _profile_by_hash(driver, digest)
            assert "NodeIndexSeek" in operators, operators
            assert "NodeByLabelScan" not in operators, operators
            few.append(hits)
    # the same handful of reads for 10 or 2,000 batches (and as many messages)
    assert few[:2] == few[2:] and max(few) <= 12, few
