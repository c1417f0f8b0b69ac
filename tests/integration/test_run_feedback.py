"""Run feedback into the graph (``kg.run_feedback``, decision 0054), on the real Neo4j: the
seeded Net3 plant's pump statuses follow whether the pumps run, a standby keeps its status when
idle, assets the graph lacks are skipped, only changes are written, and the change log carries
them to the SPARQL projection."""

from __future__ import annotations

import json

from neo4j import Driver

from twinkg.graph_seed import seeding
from twinkg.graph_seed.epanet import epanet_records
from twinkg.kg.projection import Projection
from twinkg.kg.run_feedback import apply_run_feedback
from twinkg.kg.store import GraphStore
from twinkg.ontology.vocab import TK

BASE = "https://example.org/feedback/"
P10, P335 = BASE + "pump-10", BASE + "pump-335"


def _status(driver: Driver, uri: str) -> str | None:
    rows, _, _ = driver.execute_query(
        "MATCH (a:Resource {uri: $uri}) RETURN a.operationalStatus AS s", uri=uri
    )
    return rows[0]["s"] if rows else None


def _seeded(store: GraphStore) -> GraphStore:
    seeding.load(store, "epanet-net3", seeding.with_ontology(epanet_records("Net3", BASE)))
    return store


def test_statuses_follow_the_run_feedback(driver: Driver, empty_store: GraphStore) -> None:
    store = _seeded(empty_store)
    assert _status(driver, P10) == "running" and _status(driver, P335) == "running"
    changed = apply_run_feedback(store, {P10: False, P335: True, BASE + "pump-nowhere": True})
    assert changed == {P10: "stopped"}  # 335 already ran; an unknown asset is skipped
    assert _status(driver, P10) == "stopped" and _status(driver, P335) == "running"
    assert _status(driver, BASE + "pump-nowhere") is None  # nothing created
    assert apply_run_feedback(store, {P10: False, P335: True}) == {}  # nothing changed
    assert apply_run_feedback(store, {}) == {}
    assert apply_run_feedback(store, {P10: True}) == {P10: "running"}


def test_an_idle_standby_or_unavailable_asset_keeps_its_status(
    driver: Driver, empty_store: GraphStore
) -> None:
    store = _seeded(empty_store)
    driver.execute_query(
        "MATCH (a:Resource {uri: $a}) SET a.operationalStatus = 'standby' "
        "WITH 1 AS one MATCH (b:Resource {uri: $b}) SET b.operationalStatus = 'unavailable'",
        a=P10,
        b=P335,
    )
    assert apply_run_feedback(store, {P10: False, P335: False}) == {}
    assert (_status(driver, P10), _status(driver, P335)) == ("standby", "unavailable")
    assert apply_run_feedback(store, {P10: True}) == {P10: "running"}  # a standby that runs


def test_the_projection_sees_the_new_status(driver: Driver, empty_store: GraphStore) -> None:
    store = _seeded(empty_store)
    projection = Projection(store)
    try:
        projection.rebuild()
        apply_run_feedback(store, {P10: False})
        projection.catch_up()
        query = f"SELECT ?s WHERE {{ <{P10}> <{TK.operationalStatus}> ?s }}"
        rows = json.loads(projection.query(query, row_cap=10).body)["results"]["bindings"]
    finally:
        projection.close()
    assert [row["s"]["value"] for row in rows] == ["stopped"]
