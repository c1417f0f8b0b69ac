"""``agents.monitor.stale_sensors`` in two branches (scoped runs start at their scope) gives the
rows the single-plan query gave, on generated sensor states.

The reference below is the query's Cypher before the change. Hypothesis sets when each of a
plant's sensors was last observed (or leaves it never observed), and lets decisions have used a
telemetry window of some sensors, before or after that moment; every scope kind is asked: none,
the plant's root, a system, a leaf asset, an IRI that is not in the graph.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neo4j import Driver

from tests.conftest import rows_both_ways, wipe
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import agent_queries as q
from twinkg.kg.store import GraphStore

pytestmark = pytest.mark.neo4j

BEFORE = (
    "MATCH (s:`Sensor`)-[:`MONITORS`]->(a:`Asset`) "
    "WHERE s.lastObservedAt IS NOT NULL AND ($scope IS NULL OR a.uri = $scope OR "
    "EXISTS { (a)-[:`PART_OF`*1..]->(:`Resource` {uri: $scope}) }) "
    "AND s.lastObservedAt < datetime($as_of) - duration({seconds: $stale_s}) "
    "AND NOT EXISTS { MATCH (d:`Decision`)-[:`PROV_USED`]->()-[:`WINDOW_OF`]->(s) "
    "WHERE d.`asOf` >= s.lastObservedAt } "
    "RETURN s.uri AS uri, 'stale_sensor' AS kind, a.uri AS asset, "
    "s.lastObservedAt AS occurred_at ORDER BY occurred_at, uri LIMIT $limit"
)
PREFIX = "https://example.org/stale-sensors/"
AS_OF = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def plant(driver: Driver) -> Iterator[dict[str, list[str]]]:
    """A generated plant of 120 assets; its sensors, and its assets by kind of scope."""
    store = GraphStore(driver)
    wipe(driver)
    seeding.load(store, "generated", plant_records(Plant.GENERATED, assets=120, seed=5))
    rows, _, _ = driver.execute_query(
        "MATCH (a:Asset) WHERE NOT a:Sensor RETURN a.uri AS uri, "
        "EXISTS { (a)<-[:PART_OF]-() } AS parent, EXISTS { (a)-[:PART_OF]->() } AS child"
    )
    sensors, _, _ = driver.execute_query("MATCH (s:Sensor) RETURN s.uri AS uri ORDER BY uri")
    yield {
        "sensors": [r["uri"] for r in sensors],
        "all": sorted(r["uri"] for r in rows),
        "roots": sorted(r["uri"] for r in rows if r["parent"] and not r["child"]),
        "systems": sorted(r["uri"] for r in rows if r["parent"] and r["child"]),
        "leaves": sorted(r["uri"] for r in rows if not r["parent"]),
    }
    wipe(driver)


_STATE = st.fixed_dictionaries(
    {
        "sensor": st.integers(min_value=0, max_value=10_000),
        # the stale bound is 60 minutes; None: never observed
        "minutes_before": st.one_of(st.none(), st.integers(min_value=-30, max_value=300)),
        # a decision used a window of it, this many minutes after it was last observed
        "used_after": st.one_of(st.none(), st.integers(min_value=-60, max_value=60)),
    }
)


def _write(driver: Driver, plant: dict[str, list[str]], states: list[dict[str, Any]]) -> None:
    driver.execute_query("MATCH (n) WHERE n.uri STARTS WITH $p DETACH DELETE n", p=PREFIX)
    driver.execute_query("MATCH (s:Sensor) REMOVE s.lastObservedAt")
    for i, state in enumerate(states):
        sensor = plant["sensors"][state["sensor"] % len(plant["sensors"])]
        if state["minutes_before"] is None:
            continue
        seen = AS_OF - timedelta(minutes=state["minutes_before"])
        driver.execute_query(
            "MATCH (s:Sensor {uri: $sensor}) SET s.lastObservedAt = $seen", sensor=sensor, seen=seen
        )
        if state["used_after"] is not None:
            driver.execute_query(
                "MATCH (s:Sensor {uri: $sensor}) "
                "CREATE (:Resource:Decision {uri: $d, asOf: $as_of})-[:PROV_USED]->"
                "(:Resource {uri: $w})-[:WINDOW_OF]->(s)",
                sensor=sensor,
                d=f"{PREFIX}decision/{i}",
                w=f"{PREFIX}window/{i}",
                as_of=seen + timedelta(minutes=state["used_after"]),
            )


def _rows(store: GraphStore, driver: Driver, scope: str | None) -> tuple[list[str], list[str]]:
    params = {"scope": scope, "as_of": AS_OF.isoformat(), "stale_s": 3600.0, "limit": 10_000}
    return rows_both_ways(store, driver, q.STALE_SENSORS, BEFORE, params)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(states=st.lists(_STATE, min_size=0, max_size=12), pick=st.integers(min_value=0))
def test_both_branches_give_the_single_plans_rows(
    driver: Driver, plant: dict[str, list[str]], states: list[dict[str, Any]], pick: int
) -> None:
    store = GraphStore(driver)
    _write(driver, plant, states)
    scopes: list[str | None] = [None, "https://example.org/not-in-the-graph"]
    for kind in ("roots", "systems", "leaves"):
        if plant[kind]:
            scopes.append(plant[kind][pick % len(plant[kind])])
    monitored, _, _ = driver.execute_query(
        "MATCH (s:Sensor)-[:MONITORS]->(a) WHERE s.lastObservedAt IS NOT NULL "
        "RETURN a.uri AS asset ORDER BY asset LIMIT 2"
    )
    scopes.extend(r["asset"] for r in monitored)  # assets with observed sensors: not empty
    for scope in scopes:
        after, before = _rows(store, driver, scope)
        assert after == before, scope


def test_the_comparison_is_not_of_empty_answers(
    driver: Driver, plant: dict[str, list[str]]
) -> None:
    """One sensor silent for two hours is found in scope and out of it; looked at since by a
    decision, it is not."""
    store = GraphStore(driver)
    _write(driver, plant, [{"sensor": 0, "minutes_before": 120, "used_after": None}])
    (row,) = driver.execute_query(
        "MATCH (s:Sensor {uri: $s})-[:MONITORS]->(a) RETURN a.uri AS asset",
        s=plant["sensors"][0],
    )[0]
    for scope in (None, row["asset"]):
        after, before = _rows(store, driver, scope)
        assert after == before and len(after) == 1 and plant["sensors"][0] in after[0]
    assert (
        _rows(store, driver, plant["leaves"][-1]) == ([], []) or plant["leaves"][-1] == row["asset"]
    )
    _write(driver, plant, [{"sensor": 0, "minutes_before": 120, "used_after": 5}])
    assert _rows(store, driver, None) == ([], [])
