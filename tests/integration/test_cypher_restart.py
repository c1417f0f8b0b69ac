"""An untrusted query dies with its connection: when Neo4j goes away mid-query, the call fails at
once instead of being retried, so a restarted server never runs it again (decision 0029).

It runs against a server of its own, since it stops that server. Its driver would retry a
managed transaction for ten minutes; the query runs in an explicit one, which is never retried.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from twinkg.kg import local_server
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import StoreError, TwinKGError

pytestmark = pytest.mark.neo4j
ENDLESS = "UNWIND range(1, 100000) AS x UNWIND range(1, 100000) AS y RETURN count(*) AS n"


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[local_server.LocalServerConfig]:
    config = local_server.LocalServerConfig.throwaway(
        tmp_path / "neo4j", heap="512m", pagecache="64m", tx_memory="256m"
    )
    local_server.start(config, wait_s=240, parent_pid=os.getpid())
    try:
        yield config
    finally:
        local_server.stop(config)


def listed(driver: neo4j.Driver) -> list[str]:
    records, _, _ = driver.execute_query(
        "SHOW TRANSACTIONS YIELD transactionId, metaData "
        "WHERE metaData.twinkg_untrusted IS NOT NULL RETURN transactionId AS id"
    )
    return [r["id"] for r in records]


def test_a_query_is_not_retried_when_its_server_goes_away(
    own_server: local_server.LocalServerConfig,
) -> None:
    auth = ("neo4j", own_server.password)
    with neo4j.GraphDatabase.driver(
        own_server.bolt_uri, auth=auth, max_transaction_retry_time=600
    ) as driver:
        store = GraphStore(driver)
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                store.read_only(ENDLESS, timeout_s=600)
            except TwinKGError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + 60
        while not listed(driver) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listed(driver), "the query never started"
        local_server.stop(own_server)
        worker.join(timeout=120)  # a retried call would still be retrying (for ten minutes)
        assert not worker.is_alive(), "the call is being retried"
        assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
        local_server.start(own_server, wait_s=240, parent_pid=os.getpid())
        assert listed(driver) == []
