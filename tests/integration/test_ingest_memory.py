"""A batch's graph records are bounded by what one Neo4j transaction can hold (decision 0028).

Neo4j keeps a transaction's changes in memory until its commit, and refuses past its transaction
memory limit (``dbms.memory.transaction.total.max``; TWINKG_NEO4J_TX_MEMORY, 2g by default). The
default TWINKG_INGEST_MAX_GRAPH_RECORDS (300,000) was measured to need about 0.83 GiB of it at the
peak. These tests hold the same ratio on a Neo4j of their own, 32 times smaller (64m), where
the sizes involved stay small: a batch at the scaled limit commits; a larger one is refused
before anything is written; and the same larger one, let through, fails in Neo4j and leaves
nothing in the graph or the log.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from twinkg.connect.json import from_json_points
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import local_server
from twinkg.kg.store import GraphStore, open_driver
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import PayloadTooLargeError, StoreError
from twinkg.reasoner.ingest import MAX_GRAPH_RECORDS, IngestOptions, ingest
from twinkg.reasoner.points import PointBatch

pytestmark = pytest.mark.neo4j
SENSOR = "https://w3id.org/twinkg/plant/skab-testbed/sensor-flow"
UNIT = "http://qudt.org/vocab/unit/L-PER-MIN"
SCALE = 32  # 2g / 64m
LIMIT = MAX_GRAPH_RECORDS // SCALE


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphStore]:
    """The SKAB testbed in a Neo4j with 64m of transaction memory."""
    config = local_server.LocalServerConfig.throwaway(
        tmp_path_factory.mktemp("neo4j-64m"), heap="512m", pagecache="64m", tx_memory="64m"
    )
    local_server.start(config, wait_s=240, parent_pid=os.getpid())
    driver = open_driver(config.bolt_uri, "neo4j", config.password)
    try:
        store = GraphStore(driver)
        store.ensure_schema()
        seeding.load(store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
        yield store
    finally:
        driver.close()
        local_server.stop(config)


def _sparse(points: int, *, day: int) -> PointBatch:
    """One reading a minute: each point is a window aggregate of its own (3 records)."""
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
    return from_json_points(
        [
            {
                "sensor": SENSOR,
                "unit": UNIT,
                "value": 120.0,
                "time": (start + timedelta(minutes=i)).isoformat(),
            }
            for i in range(points)
        ]
    )


def _nodes(store: GraphStore) -> int:
    return store.counts().nodes


def test_a_batch_at_the_scaled_limit_commits(small_store: GraphStore, tmp_path: Path) -> None:
    batch = _sparse(LIMIT // 3 - 10, day=0)  # records: 3 per point, plus sensor state and trust
    log = TelemetryLog(tmp_path / "telemetry")
    options = IngestOptions(max_graph_records=LIMIT)
    report = ingest(small_store, log, batch, content_hash="a" * 64, options=options)
    assert report.aggregates == len(batch)
    assert log.window().num_rows == len(batch)


def test_a_larger_batch_is_refused_first_and_would_fail_whole(
    small_store: GraphStore, tmp_path: Path
) -> None:
    batch = _sparse(3 * LIMIT, day=100)  # about three times what the limit lets through
    log = TelemetryLog(tmp_path / "telemetry")
    before = _nodes(small_store)
    with pytest.raises(PayloadTooLargeError):
        ingest(
            small_store,
            log,
            batch,
            content_hash="b" * 64,
            options=IngestOptions(max_graph_records=LIMIT),
        )
    assert _nodes(small_store) == before
    # let through, it exceeds Neo4j's transaction memory and nothing of it stays
    with pytest.raises(StoreError, match="MemoryPoolOutOfMemoryError"):
        ingest(
            small_store,
            log,
            batch,
            content_hash="b" * 64,
            options=IngestOptions(max_graph_records=10 * LIMIT),
        )
    assert _nodes(small_store) == before
    assert log.manifests() == [] and log.pending() == []
    assert [p for p in log.root.rglob("*.*") if p.name != ".lock"] == []
