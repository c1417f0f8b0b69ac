"""The ontology and the seed plants in the real Neo4j, checked with the official driver."""

from __future__ import annotations

import pytest
from neo4j import Driver
from rdflib import Graph
from rdflib.compare import isomorphic

from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import PLANTS_DIR, Plant, plant_records
from twinkg.kg.records import GraphRecords, NodeRecord, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.catalog import parse_turtle
from twinkg.ontology.errors import StoreError
from twinkg.ontology.namespaces import plant_namespace
from twinkg.ontology.vocab import TK, RelType

pytestmark = pytest.mark.neo4j


def _seed(store: GraphStore, plant: Plant, **kw: int) -> seeding.SeedSummary:
    return seeding.load(store, plant.value, seeding.with_ontology(plant_records(plant, **kw)))


def test_skab_pump_carries_the_labels_of_all_its_superclasses(
    empty_store: GraphStore, driver: Driver
) -> None:
    _seed(empty_store, Plant.SKAB_TESTBED)
    records, _, _ = driver.execute_query(
        "MATCH (p:CentrifugalPump) RETURN p.uri AS uri, labels(p) AS labels"
    )
    assert len(records) == 1
    assert {
        "CentrifugalPump",
        "Pump",
        "RotatingEquipment",
        "Equipment",
        "Asset",
        "Resource",
    } <= set(records[0]["labels"])
    rotating, _, _ = driver.execute_query("MATCH (a:RotatingEquipment) RETURN count(a) AS n")
    assert rotating[0]["n"] >= 2  # the pump and the motor


def test_class_hierarchy_is_in_the_graph(empty_store: GraphStore, driver: Driver) -> None:
    _seed(empty_store, Plant.SKAB_TESTBED)
    records, _, _ = driver.execute_query(
        "MATCH (c:owl_Class {uri: $cls})-[:RDFS_SUB_CLASS_OF*]->(s:owl_Class) "
        "RETURN collect(s.uri) AS ancestors",
        cls=str(TK.CentrifugalPump),
    )
    ancestors = set(records[0]["ancestors"])
    assert {str(TK.Pump), str(TK.RotatingEquipment), str(TK.Equipment), str(TK.Asset)} <= ancestors
    props, _, _ = driver.execute_query(
        "MATCH (p:owl_ObjectProperty {uri: $p}) RETURN p.rdfs_label AS label", p=str(TK.partOf)
    )
    assert props and props[0]["label"]


def test_uri_is_unique_and_indexed_and_schema_creation_is_idempotent(
    empty_store: GraphStore, driver: Driver
) -> None:
    empty_store.ensure_schema()
    empty_store.ensure_schema()
    records, _, _ = driver.execute_query(
        "SHOW CONSTRAINTS YIELD type, labelsOrTypes, properties, ownedIndex "
        "WHERE labelsOrTypes = ['Resource'] AND properties = ['uri'] RETURN type, ownedIndex"
    )
    assert len(records) == 1 and records[0]["type"] == "UNIQUENESS" and records[0]["ownedIndex"]
    with pytest.raises(Exception, match="already exists"):
        driver.execute_query("CREATE (:Resource {uri: 'urn:x'}), (:Resource {uri: 'urn:x'})")


def test_seeding_twice_changes_nothing(empty_store: GraphStore) -> None:
    first = _seed(empty_store, Plant.SKAB_TESTBED)
    exported = empty_store.export()
    second = _seed(empty_store, Plant.SKAB_TESTBED)
    assert first.after == second.before == second.after
    assert isomorphic(empty_store.export(), exported)


def test_a_reseed_that_changes_nothing_appends_no_change_entry(
    empty_store: GraphStore, driver: Driver
) -> None:
    def changes() -> int:
        records, _, _ = driver.execute_query("MATCH (c:Change) RETURN count(c) AS n")
        return int(records[0]["n"])

    driver.execute_query("MATCH (n) WHERE n:Change OR n:ChangeLog DETACH DELETE n")
    _seed(empty_store, Plant.SKAB_TESTBED)
    assert changes() == 1
    _seed(empty_store, Plant.SKAB_TESTBED)
    assert changes() == 1  # the same plant again: nothing changed, nothing appended
    driver.execute_query(
        "MATCH (p:CentrifugalPump) SET p.tag = 'changed-by-hand'"
    )  # out of band: the seed now restores the tag, which is a change
    _seed(empty_store, Plant.SKAB_TESTBED)
    assert changes() == 2
    records, _, _ = driver.execute_query("MATCH (p:CentrifugalPump) RETURN p.tag AS tag")
    assert records[0]["tag"] == "P-1"


def test_export_is_isomorphic_to_what_was_loaded(empty_store: GraphStore) -> None:
    _seed(empty_store, Plant.SKAB_TESTBED)
    loaded = parse_turtle([PLANTS_DIR / "skab-testbed.ttl"])
    exported = empty_store.export(prefix=plant_namespace("skab-testbed"))
    assert len(exported) == len(loaded) > 100
    assert isomorphic(exported, loaded)


def test_generated_plant_loads_idempotently(empty_store: GraphStore, driver: Driver) -> None:
    first = _seed(empty_store, Plant.GENERATED, assets=2000, seed=7)
    second = _seed(empty_store, Plant.GENERATED, assets=2000, seed=7)
    assert first.after == second.after
    records, _, _ = driver.execute_query(
        "MATCH (a:Asset) WHERE a.uri STARTS WITH $ns RETURN count(a) AS n",
        ns=plant_namespace("generated/7"),
    )
    assert records[0]["n"] == 2000
    pairs, _, _ = driver.execute_query(
        "MATCH (s:Pump)-[:STANDBY_FOR]->(d:Pump) RETURN count(*) AS n"
    )
    assert pairs[0]["n"] > 10


def test_failed_write_rolls_back_whole(empty_store: GraphStore) -> None:
    _seed(empty_store, Plant.SKAB_TESTBED)
    before = empty_store.counts()
    node = NodeRecord("https://w3id.org/twinkg/plant/test/orphan-pump", (str(TK.Pump),), {})
    broken = GraphRecords((node,), (RelRecord(RelType.PART_OF, node.uri, "urn:missing"),))
    with pytest.raises(StoreError, match="do not exist"):
        empty_store.write(broken)
    assert empty_store.counts() == before


def test_export_of_an_empty_prefix_is_empty(empty_store: GraphStore) -> None:
    assert len(empty_store.export(prefix="urn:nothing-here:")) == 0
    assert isinstance(empty_store.export(), Graph)
