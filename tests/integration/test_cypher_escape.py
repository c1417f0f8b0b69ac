"""The escape corpus against the real Neo4j: every write, escape or unbounded attempt is refused
with its code and leaves the graph, its schema and its users exactly as they were; every allowed
query runs. A query past its deadline is terminated and gone from the server; answers are cut at
a row and a byte cap."""

from __future__ import annotations

import hashlib
import json
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import neo4j
import pytest
from neo4j import Driver

from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import cypher_guard
from twinkg.kg import store as store_module
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import QueryRejectedError, QueryTimeoutError, QueryUnboundedError

pytestmark = pytest.mark.neo4j

CORPUS = json.loads(
    (Path(__file__).parents[1] / "escape_corpus" / "cypher.json").read_text(encoding="utf-8")
)
REJECTED: list[dict[str, Any]] = CORPUS["rejected"]
ALLOWED: list[dict[str, Any]] = CORPUS["allowed"]


@pytest.fixture(scope="module")
def store(driver: Driver) -> Iterator[GraphStore]:
    """The SKAB test bed seeded into an otherwise empty database."""
    with driver.session() as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS").consume()
    seeded = GraphStore(driver)
    seeding.load(
        seeded,
        Plant.SKAB_TESTBED.value,
        seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)),
    )
    yield seeded


def fingerprint(driver: Driver) -> dict[str, Any]:
    """Everything a write could change: counts, a digest of every node and relationship with its
    labels or type and properties, the label/type/key tokens, the schema, and the users."""
    nodes, _, _ = driver.execute_query(
        "MATCH (n) RETURN elementId(n) AS id, labels(n) AS labels, properties(n) AS props"
    )
    rels, _, _ = driver.execute_query(
        "MATCH (a)-[r]->(b) RETURN elementId(a) AS a, type(r) AS t, elementId(b) AS b, "
        "properties(r) AS props"
    )
    tokens, _, _ = driver.execute_query(
        "CALL () { CALL db.labels() YIELD label RETURN collect(label) AS labels } "
        "CALL () { CALL db.relationshipTypes() YIELD relationshipType AS t "
        "RETURN collect(t) AS types } "
        "CALL () { CALL db.propertyKeys() YIELD propertyKey RETURN collect(propertyKey) AS keys } "
        "RETURN labels, types, keys"
    )
    indexes, _, _ = driver.execute_query("SHOW INDEXES YIELD name RETURN name")
    constraints, _, _ = driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN name")
    users, _, _ = driver.execute_query("SHOW USERS YIELD user RETURN user", database_="system")
    digest = hashlib.sha256()
    for row in sorted(json.dumps(r.data(), sort_keys=True, default=str) for r in [*nodes, *rels]):
        digest.update(row.encode())
    return {
        "nodes": len(nodes),
        "relationships": len(rels),
        "property_keys_in_use": sum(len(r["props"]) for r in [*nodes, *rels]),
        "digest": digest.hexdigest(),
        "tokens": {k: sorted(v) for k, v in tokens[0].data().items()},
        "indexes": sorted(r["name"] for r in indexes),
        "constraints": sorted(r["name"] for r in constraints),
        "users": sorted(r["user"] for r in users),
    }


def test_the_corpus_is_big_enough_and_names_are_unique() -> None:
    names = [case["name"] for case in REJECTED + ALLOWED]
    assert len(REJECTED) >= 40 and len(ALLOWED) >= 10
    assert len(names) == len(set(names))
    assert {case["code"] for case in REJECTED} == {
        "query_rejected",
        "query_timeout",
        "query_unbounded",
    }


@pytest.mark.parametrize("case", REJECTED, ids=[c["name"] for c in REJECTED])
def test_attempt_is_refused_and_the_graph_is_unchanged(
    store: GraphStore, driver: Driver, case: dict[str, Any]
) -> None:
    before = fingerprint(driver)
    assert before["nodes"] > 300 and before["relationships"] > 400  # the plant is there
    expected = {"query_timeout": QueryTimeoutError, "query_unbounded": QueryUnboundedError}.get(
        case["code"], QueryRejectedError
    )
    with pytest.raises(expected) as refused:
        store.read_only(case["query"], case.get("params"), timeout_s=case.get("timeout_s", 10.0))
    assert refused.value.code == case["code"]
    message = str(refused.value)
    assert message and "\n" not in message
    assert fingerprint(driver) == before


@pytest.mark.parametrize("case", REJECTED, ids=[c["name"] for c in REJECTED])
def test_each_layer_refuses_what_the_corpus_says_on_its_own(
    store: GraphStore, driver: Driver, case: dict[str, Any]
) -> None:
    refused_by: list[str] = []
    try:
        cypher_guard.check_text(case["query"], params=case.get("params"))
    except QueryRejectedError:
        refused_by.append("text")
    try:  # the plan layer alone: Neo4j's EXPLAIN in a read session, then check_plan
        with driver.session(default_access_mode=neo4j.READ_ACCESS) as session:
            summary = session.run("EXPLAIN\n" + case["query"], case.get("params", {})).consume()
        cypher_guard.check_plan(summary.query_type, summary.plan)
    except (neo4j.exceptions.Neo4jError, QueryRejectedError):
        refused_by.append("plan")
    assert refused_by == case["layers"]


@pytest.mark.parametrize("case", ALLOWED, ids=[c["name"] for c in ALLOWED])
def test_allowed_query_runs_and_returns_its_rows(
    store: GraphStore, driver: Driver, case: dict[str, Any]
) -> None:
    before = fingerprint(driver)
    result = store.read_only(
        case["query"], case.get("params"), timeout_s=10.0, row_cap=case.get("row_cap", 1000)
    )
    assert len(result.rows) == case["rows"]
    assert result.truncated is case.get("truncated", False)
    assert fingerprint(driver) == before


def test_a_parameter_is_a_value_never_cypher(store: GraphStore) -> None:
    attack = "x'}) DETACH DELETE n //"
    result = store.read_only("RETURN $x AS x, size($x) AS n", {"x": attack})
    assert result.rows == ((attack, len(attack)),)


def test_non_json_parameters_are_refused_before_neo4j_sees_the_query(
    store: GraphStore, driver: Driver
) -> None:
    before = fingerprint(driver)
    for bad in ({"x": datetime(2024, 1, 1)}, {"x": b"bytes"}, {"x": {1, 2}}, {"x": [("t",)]}):
        with pytest.raises(QueryRejectedError, match="only JSON-like values"):
            store.read_only("RETURN $x AS x", bad)
    with pytest.raises(QueryRejectedError, match="key that is no string"):
        store.read_only("RETURN $x AS x", {"x": {1: "a"}})
    assert fingerprint(driver) == before


def test_a_query_over_the_size_limit_is_refused(store: GraphStore) -> None:
    long = "RETURN 1 AS x" + " " * cypher_guard.MAX_QUERY_CHARS
    with pytest.raises(QueryRejectedError, match="at most 100000"):
        store.read_only(long)
    with pytest.raises(QueryRejectedError, match="at most 20"):
        store.read_only("MATCH (n) RETURN count(n) AS n", max_chars=20)
    assert store.read_only("RETURN 1 AS x", max_chars=20).rows == ((1,),)


def test_the_row_cap_keeps_the_first_rows_and_says_it_cut(store: GraphStore) -> None:
    full = store.read_only("UNWIND range(1, 5) AS x RETURN x", row_cap=5)
    cut = store.read_only("UNWIND range(1, 5) AS x RETURN x", row_cap=4)
    assert (full.rows, full.truncated) == (((1,), (2,), (3,), (4,), (5,)), False)
    assert (cut.rows, cut.truncated) == (((1,), (2,), (3,), (4,)), True)


def untrusted_transactions(driver: Driver) -> list[dict[str, Any]]:
    """The untrusted queries Neo4j lists right now (tagged by kg.cypher_run)."""
    records, _, _ = driver.execute_query(
        "SHOW TRANSACTIONS YIELD transactionId, metaData, currentQuery "
        "WHERE metaData.twinkg_untrusted IS NOT NULL RETURN transactionId, currentQuery"
    )
    return [r.data() for r in records]


def test_a_query_past_its_deadline_is_terminated_and_gone_from_the_server(
    store: GraphStore, driver: Driver
) -> None:
    endless = "UNWIND range(1, 100000) AS x UNWIND range(1, 100000) AS y RETURN count(*) AS n"
    with pytest.raises(QueryTimeoutError, match="Neo4j has ended it") as stopped:
        store.read_only(endless, timeout_s=0.5)
    assert stopped.value.code == "query_timeout"
    deadline = time.monotonic() + 30  # bounded: read_only already waited for this state
    while untrusted_transactions(driver) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert untrusted_transactions(driver) == []


def test_rows_arriving_past_the_deadline_are_stopped_too(store: GraphStore, driver: Driver) -> None:
    streaming = "UNWIND range(1, 100000) AS x UNWIND range(1, 100000) AS y RETURN x, y"
    with pytest.raises(QueryTimeoutError):
        store.read_only(streaming, timeout_s=0.5, row_cap=10**9, byte_cap=10**12)
    assert untrusted_transactions(driver) == []


def test_the_byte_cap_cuts_many_rows(store: GraphStore) -> None:
    result = store.read_only("UNWIND range(1, 5000) AS x RETURN x", byte_cap=1000)
    assert result.truncated and 0 < len(result.rows) < 5000
    assert len(json.dumps([list(r) for r in result.rows], separators=(",", ":"))) <= 1000
    assert result.rows[0] == (1,)


def test_a_big_single_row_is_cut_at_the_byte_cap_without_growing_the_process(
    store: GraphStore,
) -> None:
    tracemalloc.start()
    try:
        result = store.read_only("RETURN range(1, 100000) AS xs", byte_cap=64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.rows, result.truncated) == ((), True)
    assert peak < 64 * 1024 * 1024  # the largest row the row-cost rule lets through, pulled once
    with pytest.raises(QueryUnboundedError, match="at most 100000"):
        store.read_only("RETURN range(1, 10000000) AS xs")


def test_an_answer_within_the_caps_is_whole(store: GraphStore) -> None:
    result = store.read_only("RETURN range(1, 100000) AS xs")
    assert not result.truncated and len(result.rows[0][0]) == 100_000


@pytest.mark.usefixtures("store")  # the SKAB plant, seeded
def test_a_passed_plan_is_kept_per_text_and_a_refused_one_is_judged_again(
    driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision 0080: the plan layer's verdict is kept for a text (and its parameter names)
    that passed; the text layer still runs on every request, and whatever the plan layer
    refused is planned and refused again, with the same message, each time."""
    judged: list[str | None] = []
    check_plan = cypher_guard.check_plan

    def counted(query_type: str | None, plan: Any) -> None:
        judged.append(query_type)
        check_plan(query_type, plan)

    monkeypatch.setattr(cypher_guard, "check_plan", counted)
    fresh = GraphStore(driver)  # its own memory of passed plans
    text = "MATCH (n:Resource) WHERE n.uri STARTS WITH $p RETURN count(n) AS n"
    first = fresh.read_only(text, {"p": "https://w3id.org/twinkg/"})
    again = fresh.read_only(text, {"p": "https://w3id.org/twinkg/"})
    assert first.rows == again.rows and first.rows[0][0] > 300 and judged == ["r"]
    fresh.read_only(text, {"p": "x", "unused": 1})  # other parameter names: planned again
    assert judged == ["r", "r"]
    refusals = []
    for _ in range(2):
        with pytest.raises(QueryRejectedError) as garbage:
            fresh.read_only("MATC (n) RETURN n")
        with pytest.raises(QueryRejectedError) as missing:
            fresh.read_only(text)  # $p is not given: it plans (a read) and then fails to run
        with pytest.raises(QueryRejectedError, match="write"):
            fresh.read_only("CREATE (n:Resource {uri: 'x'})")  # the text layer, every time
        refusals.append((str(garbage.value), str(missing.value)))
    assert refusals[0] == refusals[1]
    assert refusals[0][0].startswith("invalid Cypher") and "Expected parameter" in refusals[0][1]
    assert judged == ["r", "r", "r"]  # the garbage was refused twice, never kept
    long_text = text + " " * store_module.PASSED_PLAN_CHARS
    for _ in range(2):
        fresh.read_only(long_text, {"p": "x"})
    assert judged == ["r"] * 5  # past the length bound: planned every time
