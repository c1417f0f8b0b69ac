"""Every way in ingests through ``Twin.ingest`` and reclassifies afterwards: a JSON batch posted
over HTTP, the same batch through ``twinkg ingest``, and a kind of source registered by a test.

The seeded SKAB testbed holds no inferred label until the reasoner runs; the first
reclassification labels the pump ``SinglePointOfFailure`` (it has no standby). So the label
appearing after an ingest, on a freshly seeded graph, shows that the ingest reclassified.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget, seed_skab
from tests.integration.api_world import PUMP, api_world
from tests.integration.test_cli import run
from tests.unit.test_connect_registry import toy_source
from twinkg.api.security import Role
from twinkg.api.settings import Settings
from twinkg.api.twin import Twin
from twinkg.connect import registry
from twinkg.connect.source import SourceRequest

pytestmark = pytest.mark.neo4j

SENSOR = "https://w3id.org/twinkg/plant/skab-testbed/sensor-flow"
UNIT = "http://qudt.org/vocab/unit/L-PER-MIN"
INFERRED = "SinglePointOfFailure"


def _labels(driver: Driver, uri: str) -> set[str]:
    records, _, _ = driver.execute_query(
        "MATCH (n:Resource {uri: $uri}) RETURN labels(n) AS labels", uri=uri
    )
    return set(records[0]["labels"])


def _body(*, minutes: int = 30) -> bytes:
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    points = [
        {
            "sensor": SENSOR,
            "value": 120.0 + i,
            "unit": UNIT,
            "time": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
        }
        for i in range(5)
    ]
    return json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()


def _reasoner_reaches(client: Any, generation: int) -> dict[str, Any]:
    """``GET /ready``'s reasoner once its completed generation reaches ``generation`` (a state
    to wait for; the deadline only stops a broken worker from hanging the suite)."""
    deadline = time.monotonic() + 300
    while True:
        reasoner: dict[str, Any] = client.get("/ready").json()["reasoner"]
        if reasoner["completed"] >= generation or time.monotonic() > deadline:
            return reasoner
        time.sleep(0.05)


def test_an_http_ingest_reclassifies(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path: Path
) -> None:
    with api_world(driver, neo4j_target, tmp_path, ingest=False) as world:
        assert INFERRED not in _labels(driver, PUMP)
        headers = {**world.as_role(Role.ADMIN), "Content-Type": "application/json"}
        body = _body()
        response = world.client.post("/telemetry", content=body, headers=headers)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["accepted"] == 5 and not answer["duplicate"]
        generation = answer["reclassification"]
        assert isinstance(generation, int) and generation >= 1
        reasoner = _reasoner_reaches(world.client, generation)
        assert reasoner["completed"] >= generation, reasoner
        assert reasoner["last_error"] is None and reasoner["requested"] >= generation
        assert INFERRED in _labels(driver, PUMP)
        again = world.client.post("/telemetry", content=body, headers=headers).json()
        assert again["duplicate"] is True and again["reclassification"] is None
        assert world.client.get("/ready").json()["reasoner"]["requested"] == generation


def test_a_burst_of_http_ingests_ends_reclassified_up_to_its_last_batch(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path: Path
) -> None:
    with api_world(driver, neo4j_target, tmp_path, ingest=False) as world:
        headers = {**world.as_role(Role.ADMIN), "Content-Type": "application/json"}
        twin = world.client.app.state.twin  # type: ignore[attr-defined]
        runs = 0
        real = twin._reclassifier._run

        def counted() -> Any:
            nonlocal runs
            runs += 1
            return real()

        twin._reclassifier._run = counted
        generations = []
        for minutes in range(6):  # six different batches, posted back to back
            response = world.client.post(
                "/telemetry", content=_body(minutes=30 + minutes), headers=headers
            )
            assert response.status_code == 200, response.text
            generations.append(response.json()["reclassification"])
        assert generations == sorted(generations) and len(set(generations)) == 6
        reasoner = _reasoner_reaches(world.client, generations[-1])
        assert reasoner["completed"] == generations[-1] and not reasoner["running"]
        assert 1 <= runs <= 6  # never more runs than asks; fewer when asks came during a run
        assert INFERRED in _labels(driver, PUMP)


def test_a_cli_ingest_reclassifies(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path: Path
) -> None:
    seed_skab(driver)
    assert INFERRED not in _labels(driver, PUMP)
    batch = tmp_path / "batch.json"
    batch.write_bytes(_body())
    env = {**neo4j_target.env(), "TWINKG_HOME": str(tmp_path / "home")}
    done = run("ingest", "--json", str(batch), env=env)
    assert done.returncode == 0, done.stderr
    assert "5 accepted" in done.stdout
    assert f"reasoner: P-1 is {INFERRED}" in done.stdout
    assert INFERRED in _labels(driver, PUMP)


def test_a_registered_kind_of_source_goes_the_same_way(driver: Driver, tmp_path: Path) -> None:
    store = seed_skab(driver)
    start = datetime.now(UTC) - timedelta(minutes=30)
    messages = ";".join(
        f"{SENSOR}={120 + i}@{(start + timedelta(seconds=i)).isoformat()}" for i in range(2)
    )
    registry.register("toy", toy_source, "a toy queue (tests)")
    try:
        source = registry.open_source("toy", SourceRequest("q", options={"messages": messages}))
        twin = Twin(Settings(home=tmp_path / "home"), store)
        results = list(twin.ingest(source))  # waits for each batch's reclassification
        twin.close()
    finally:
        registry.unregister("toy")
    assert [r.report.points for r in results] == [1, 1]
    assert all(r.classification is not None and r.classification.consistent for r in results)
    first, second = (r.classification for r in results)
    assert first is not None and second is not None
    assert first.added >= 1 and second.added == 0  # the label stays; nothing new to add
    assert INFERRED in _labels(driver, PUMP)
