"""TwinKG's named reads run with their cached plans kept (decision 0071): the same answers as
the bare Cypher, commands (``SHOW TRANSACTIONS``) included."""

from __future__ import annotations

from typing import Any

import pytest
from neo4j import Driver

from twinkg.kg.queries import NamedQuery
from twinkg.kg.store import KEEP_PLAN, GraphStore
from twinkg.kg.telemetry_state import TRANSACTION_MEMORY

pytestmark = pytest.mark.neo4j
BASE = "https://w3id.org/twinkg/test/plans/"
BY_PREFIX = NamedQuery(
    "test.by_prefix",
    "MATCH (n:Resource) WHERE n.uri STARTS WITH $prefix AND n.rank >= $least "
    "RETURN n.uri AS uri, n.rank AS rank ORDER BY rank DESC, uri",
)


def test_a_named_read_answers_as_its_bare_cypher(empty_store: GraphStore, driver: Driver) -> None:
    driver.execute_query(
        "UNWIND range(1, 40) AS i CREATE (:Resource {uri: $base + toString(i), rank: i % 7})",
        base=BASE,
    )
    params = {"prefix": BASE, "least": 3}
    bare, _, _ = driver.execute_query(BY_PREFIX.cypher, params)
    kept, _, _ = driver.execute_query(KEEP_PLAN + BY_PREFIX.cypher, params)  # Neo4j parses it
    rows = empty_store.read(BY_PREFIX, **params)
    assert rows == [r.data() for r in bare] == [r.data() for r in kept]
    assert len(rows) == sum(1 for i in range(1, 41) if i % 7 >= 3)


def test_a_command_takes_the_option_and_still_leaves_itself_out(
    empty_store: GraphStore, driver: Driver
) -> None:
    listed, _, _ = driver.execute_query(
        KEEP_PLAN + "SHOW TRANSACTIONS YIELD currentQuery RETURN collect(currentQuery) AS q"
    )
    assert any(q.startswith(KEEP_PLAN) for q in listed[0]["q"])  # it lists itself, as sent
    (row,) = empty_store.read(TRANSACTION_MEMORY)  # which it must leave out of its sum
    assert row["bytes"] == 0  # nothing else is open on an empty store


RANKS = NamedQuery(
    "test.ranks",
    "MATCH (n:Resource) WHERE n.uri STARTS WITH $prefix "
    "RETURN n.rank AS rank, count(*) AS n, datetime('2026-01-02T03:04:05Z') AS at ORDER BY rank",
)
RANKS_PLAIN = NamedQuery(RANKS.name + ".plain", RANKS.cypher, plain=True)


def test_reads_together_answer_as_each_read_alone(empty_store: GraphStore, driver: Driver) -> None:
    driver.execute_query(
        "UNWIND range(1, 40) AS i CREATE (:Resource {uri: $base + toString(i), rank: i % 7})",
        base=BASE,
    )
    statements: list[tuple[NamedQuery, dict[str, Any]]] = [
        (BY_PREFIX, {"prefix": BASE, "least": 3}),
        (RANKS, {"prefix": BASE}),
        (RANKS_PLAIN, {"prefix": BASE}),
        (BY_PREFIX, {"prefix": BASE + "none", "least": 0}),
        (BY_PREFIX, {"prefix": BASE, "least": 6}),
    ]
    together = empty_store.read_all(statements)
    alone = [empty_store.read(query, **params) for query, params in statements]
    assert together == alone
    assert [len(rows) for rows in together] == [23, 7, 7, 0, 5]
    assert isinstance(together[1][0]["at"], str)  # driver values made plain, as read does
    assert not isinstance(together[2][0]["at"], str)  # a plain query's values as they come
    assert empty_store.read_all([]) == []
