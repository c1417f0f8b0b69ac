"""The plant graph over HTTP (``GET /assets/graph``) against the real Neo4j: the SKAB testbed and
a generated plant side by side, every node and edge checked against the graph read directly with
Cypher; trust, findings and inferred classes once telemetry is in; areas, the limit and its
truncation, and the refusals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget
from tests.integration.api_world import DATA, MOTOR, PLANT, PUMP, ApiWorld, api_world
from tests.integration.test_cli import run
from twinkg.api.security import Role
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.ontology.namespaces import plant_namespace

pytestmark = pytest.mark.neo4j
SEED = 11
GENERATED = plant_namespace(f"generated/{SEED}")
LOOP = PLANT + "loop"


@pytest.fixture(scope="module")
def world(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWorld]:
    with api_world(driver, neo4j_target, tmp_path_factory.mktemp("plant-graph"), ingest=False) as w:
        records = plant_records(Plant.GENERATED, assets=600, seed=SEED)
        seeding.load(w.store, Plant.GENERATED.value, seeding.with_ontology(records))
        yield w


def graph(world: ApiWorld, **params: Any) -> dict[str, Any]:
    """``GET /assets/graph`` as a viewer; the body of its 200."""
    response = world.client.get("/assets/graph", params=params, headers=world.as_role(Role.VIEWER))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    iris = [n["iri"] for n in body["nodes"]]
    assert len(iris) == len(set(iris)), "each node once"
    assert all(e["source"] in iris and e["target"] in iris for e in body["edges"])
    assert body["assets"] == sum(n["kind"] == "asset" for n in body["nodes"])
    assert body["sensors"] == sum(n["kind"] == "sensor" for n in body["nodes"])
    return body


def column(driver: Driver, cypher: str, **params: Any) -> list[Any]:
    """The first column of a Cypher query's rows."""
    records, _, _ = driver.execute_query(cypher, **params)
    return [record[0] for record in records]


def asset_iris(body: dict[str, Any]) -> list[str]:
    """The IRIs of the asset nodes, in the order given."""
    return [n["iri"] for n in body["nodes"] if n["kind"] == "asset"]


_EQUIPMENT = "MATCH (a:Resource:Asset) WHERE NOT a:Sensor"
_UNDER = "MATCH (a:Resource:Asset)-[:PART_OF*0..]->(:Resource {uri: $root}) WHERE NOT a:Sensor"


def test_the_whole_plant_with_its_flows_drivers_and_sensors(world: ApiWorld) -> None:
    body = graph(world, limit=5000)
    driver = world.driver
    assert body["truncated"] is False
    assert sorted(asset_iris(body)) == column(driver, f"{_EQUIPMENT} RETURN a.uri ORDER BY a.uri")
    assert asset_iris(body) == sorted(asset_iris(body)), "assets in IRI order"
    monitored = "(s:Resource:Sensor)-[:MONITORS]->(a:Resource:Asset) WHERE NOT a:Sensor"
    sensors = column(driver, f"MATCH {monitored} RETURN DISTINCT s.uri ORDER BY s.uri")
    assert sorted(n["iri"] for n in body["nodes"] if n["kind"] == "sensor") == sensors
    flows = "(a:Resource:Asset)-[:{}]->(b:Resource:Asset) WHERE NOT a:Sensor AND NOT b:Sensor"
    expected = {
        "feeds": column(driver, f"MATCH {flows.format('FEEDS')} RETURN count(*)")[0],
        "drives": column(driver, f"MATCH {flows.format('DRIVES')} RETURN count(*)")[0],
        "monitors": column(driver, f"MATCH {monitored} RETURN count(*)")[0],
    }
    assert Counter(e["kind"] for e in body["edges"]) == expected
    assert min(expected.values()) > 10, "the generated plant has flows, drivers and sensors"
    # The SKAB testbed: the pump in its loop, fed through the inlet valve, driven by the motor.
    nodes = {n["iri"]: n for n in body["nodes"]}
    pump = nodes[PUMP]
    assert (pump["tag"], pump["kind"], pump["criticality"], pump["status"]) == (
        "P-1",
        "asset",
        "A",
        "running",
    )
    assert pump["parent"] == LOOP and pump["trust"] is None
    findings = "MATCH (f:Resource)-[:CONCERNS]->(:Resource {uri: $p}) WHERE (f:Alarm OR f:Anomaly) "
    assert (
        pump["open_findings"]
        == column(driver, f"{findings} AND f.status = 'open' RETURN count(f)", p=PUMP)[0]
    )
    assert "https://w3id.org/twinkg/ontology#CentrifugalPump" in pump["classes"]
    edges = body["edges"]
    assert {"source": MOTOR, "target": PUMP, "kind": "drives"} in edges
    assert {"source": PLANT + "valve-inlet", "target": PUMP, "kind": "feeds"} in edges
    assert {"source": PUMP, "target": PLANT + "valve-outlet", "kind": "feeds"} in edges
    on_pump = {e["source"] for e in edges if e["target"] == PUMP and e["kind"] == "monitors"}
    assert (
        {nodes[s]["tag"] for s in on_pump}
        == set(
            column(
                driver, "MATCH (s:Sensor)-[:MONITORS]->(:Resource {uri: $p}) RETURN s.tag", p=PUMP
            )
        )
        == {"VT-1", "VT-2", "PT-4", "FT-8"}
    )
    assert all(nodes[s]["kind"] == "sensor" and nodes[s]["parent"] == LOOP for s in on_pump)


def test_trust_findings_and_inferred_classes_appear_once_telemetry_is_in(
    world: ApiWorld, neo4j_target: Neo4jTarget
) -> None:
    if not DATA.exists():
        pytest.skip(f"SKAB data not found at {DATA}: trust comes from replaying it")
    driver = world.driver
    if column(driver, "MATCH (t:TrustScore) RETURN count(t)")[0] == 0:
        before = graph(world, area="L-1")
        sensors = [n for n in before["nodes"] if n["kind"] == "sensor"]
        assert len(sensors) == 8 and all(n["trust"] is None for n in sensors)
    # The cavitation run: trust scores, anomalies and an alarm, then the reasoner.
    env = {**neo4j_target.env(), "TWINKG_HOME": str(world.home)}
    done = run("ingest", "--skab", str(DATA), env=env)
    assert done.returncode == 0, done.stderr
    after = graph(world, area="L-1")
    latest = dict(
        column(
            driver,
            "MATCH (s:Sensor)-[:MONITORS]->(:Resource)-[:PART_OF*0..]->(:Resource {uri: $loop}) "
            "CALL (s) { MATCH (t:TrustScore)-[:SCORE_OF]->(s) "
            "RETURN t.confidence AS c ORDER BY t.asOf DESC, t.uri LIMIT 1 } "
            "RETURN DISTINCT [s.uri, c]",
            loop=LOOP,
        )
    )
    shown = {n["iri"]: n["trust"] for n in after["nodes"] if n["kind"] == "sensor"}
    assert len(shown) == 8 and shown.keys() == latest.keys()
    for sensor, trust in shown.items():
        assert trust == pytest.approx(latest[sensor]), sensor
        assert trust is None or 0.0 <= trust <= 1.0
    assert any(trust is not None for trust in shown.values())
    nodes = {n["iri"]: n for n in after["nodes"]}
    findings = column(
        driver,
        "MATCH (f:Resource)-[:CONCERNS]->(:Resource {uri: $p}) "
        "WHERE (f:Alarm OR f:Anomaly) AND f.status = 'open' RETURN count(f)",
        p=PUMP,
    )[0]
    assert nodes[PUMP]["open_findings"] == findings > 0
    for iri in (PUMP, MOTOR, LOOP):
        inferred = column(driver, "MATCH (a {uri: $a}) RETURN a.inferredType", a=iri)[0] or []
        assert nodes[iri]["inferred"] == inferred, iri
        assert set(inferred) <= set(nodes[iri]["classes"])
    assert nodes[PUMP]["inferred"], "the reasoner classified the pump"


def test_an_area_holds_only_itself_and_its_parts(world: ApiWorld) -> None:
    driver = world.driver
    loop = graph(world, area="L-1")
    assert set(asset_iris(loop)) == {
        LOOP,
        PLANT + "tank",
        PLANT + "valve-inlet",
        PLANT + "pump",
        PLANT + "valve-outlet",
        PLANT + "motor",
    }
    for ref, root in (
        (PLANT + "lab", PLANT + "lab"),
        ("S1-A1", GENERATED + "site-1/area-1"),
        (GENERATED + "site-1", GENERATED + "site-1"),
    ):
        body = graph(world, area=ref, limit=5000)
        expected = column(driver, f"{_UNDER} RETURN DISTINCT a.uri ORDER BY a.uri", root=root)
        assert asset_iris(body) == expected, ref
        assert body["truncated"] is False
        sensors = column(
            driver,
            f"{_UNDER} MATCH (s:Sensor)-[:MONITORS]->(a) RETURN DISTINCT s.uri ORDER BY s.uri",
            root=root,
        )
        assert sorted(n["iri"] for n in body["nodes"] if n["kind"] == "sensor") == sensors, ref
        assert sensors, ref
    # An area of the generated plant holds no SKAB asset, and the other way round.
    area = graph(world, area="S1-A1", limit=5000)
    assert all(iri.startswith(GENERATED) for iri in asset_iris(area))
    assert all(iri.startswith(PLANT) for iri in asset_iris(loop))


def test_the_limit_cuts_in_iri_order_and_says_so(world: ApiWorld) -> None:
    driver = world.driver
    everything = column(driver, f"{_EQUIPMENT} RETURN a.uri ORDER BY a.uri")
    total = len(everything)
    assert total > 100
    cut = graph(world, limit=25)
    assert cut["truncated"] is True and cut["assets"] == 25
    assert asset_iris(cut) == everything[:25]
    assert graph(world, limit=total - 1)["truncated"] is True
    whole = graph(world, limit=total)
    assert whole["truncated"] is False and whole["assets"] == total
    site = GENERATED + "site-1"
    under = column(driver, f"{_UNDER} RETURN DISTINCT a.uri ORDER BY a.uri", root=site)
    part = graph(world, area="S1", limit=10)
    assert part["truncated"] is True and asset_iris(part) == under[:10]
    exact = graph(world, area="S1", limit=len(under))
    assert exact["truncated"] is False and asset_iris(exact) == under
    bare = graph(world, area="L-1", sensors="false")
    assert bare["sensors"] == 0 and all(n["kind"] == "asset" for n in bare["nodes"])
    assert Counter(e["kind"] for e in bare["edges"]) == {"feeds": 4, "drives": 1}


def _error(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert response.headers["X-TwinKG-Error-Code"] == body["error"]["code"]
    return str(body["error"]["code"])


def test_an_unknown_area_a_bad_limit_and_no_credentials_are_refused(world: ApiWorld) -> None:
    viewer = world.as_role(Role.VIEWER)
    for area in ("no-such-area", "https://example.org/nothing"):
        missing = world.client.get("/assets/graph", params={"area": area}, headers=viewer)
        assert missing.status_code == 404 and _error(missing) == "not_found"
        assert area in missing.json()["error"]["message"]
    for limit in ("0", "5001", "many"):
        bad = world.client.get("/assets/graph", params={"limit": limit}, headers=viewer)
        assert bad.status_code == 422 and _error(bad) == "invalid_request", limit
    anonymous = world.client.get("/assets/graph")
    assert anonymous.status_code == 401 and _error(anonymous) == "auth_required"
