"""Leases on assets (``kg.leases``) and agent workers under them (``api.agent_worker``), on the
real Neo4j: a lease held is not taken but marked; its holder hears the mark and keeps it; an
expired lease is free; two workers with their own stores, checkpoints and threads, sweeping
the same plant at once, decide on every finding exactly once; and two agent threads of one twin
decide on two assets at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget, seed_skab
from twinkg.agents.runner import RunResult
from twinkg.api.agent_worker import AgentWorker
from twinkg.api.reclassification import Reclassify
from twinkg.api.settings import Settings
from twinkg.api.twin import Twin, agents_twin
from twinkg.connect.json import JsonSource
from twinkg.kg import leases
from twinkg.kg.store import GraphStore, open_driver

pytestmark = pytest.mark.neo4j

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
PUMP, MOTOR, LOOP = PLANT + "pump", PLANT + "motor", PLANT + "loop"


def test_a_held_lease_is_marked_not_taken_and_its_holder_hears_the_mark(
    driver: Driver,
) -> None:
    store = seed_skab(driver)
    assert leases.acquire(store, PUMP, "a", ttl_s=300)
    assert leases.acquire(store, PUMP, "a", ttl_s=300)  # the holder may take it again
    assert not leases.acquire(store, PUMP, "b", ttl_s=300)  # held: b leaves a mark
    assert leases.holders(store) == {PUMP: "a"}
    assert leases.release(store, PUMP, "a", ttl_s=300)  # marked: a keeps it, runs again
    assert leases.holders(store) == {PUMP: "a"}
    assert not leases.release(store, PUMP, "b", ttl_s=300)  # not b's to give back
    assert not leases.release(store, PUMP, "a", ttl_s=300)  # no mark now: let go
    assert leases.holders(store) == {}
    assert leases.acquire(store, PUMP, "b", ttl_s=0)  # b's, expiring at once
    assert leases.acquire(store, PUMP, "c", ttl_s=300)  # an expired lease is free
    assert leases.holders(store) == {PUMP: "c"}
    assert leases.parts(store, LOOP) == sorted(leases.parts(store, LOOP))
    assert PUMP in leases.parts(store, LOOP) and leases.parts(store, PUMP) == []
    # leases are coordination, not knowledge: not in the RDF export
    assert "AssetLease" not in store.export().serialize(format="nt")


def _each_finding_used_once(driver: Driver) -> None:
    """Every alarm and anomaly is used by exactly one decision (and there is at least one)."""
    used = driver.execute_query(
        "MATCH (f) WHERE f:Alarm OR f:Anomaly "
        "OPTIONAL MATCH (d:Decision)-[:PROV_USED]->(f) "
        "RETURN f.uri AS finding, count(d) AS decisions"
    ).records
    assert used and all(row["decisions"] == 1 for row in used), [r.data() for r in used]


def raise_alarms(twin: Twin, start: datetime | None = None, *, new_alarms: int = 2) -> None:
    """Envelope alarms on the pump (flow far too high) and the motor (too hot): 20 readings
    a second apart from ``start`` (10 minutes ago by default), raising ``new_alarms`` or more
    (0 when they go on from standing ones)."""
    start = start or datetime.now(UTC) - timedelta(minutes=10)
    points = []
    for i in range(20):
        at = (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        points.append(
            {
                "sensor": PLANT + "sensor-flow",
                "unit": "http://qudt.org/vocab/unit/L-PER-MIN",
                "time": at,
                "value": 210.0,
            }
        )
        points.append(
            {
                "sensor": PLANT + "sensor-temperature",
                "unit": "http://qudt.org/vocab/unit/DEG_C",
                "time": at,
                "value": 130.0,
            }
        )
    body = json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()
    (result,) = twin.ingest(JsonSource("alarms", body=body), reclassify=Reclassify.OFF)
    assert result.report.alarms >= new_alarms


@pytest.fixture
def second_store(neo4j_target: Neo4jTarget) -> Iterator[GraphStore]:
    """A store over its own driver: another worker process would have its own."""
    driver = open_driver(neo4j_target.uri, neo4j_target.user, neo4j_target.password)
    yield GraphStore(driver)
    driver.close()


def test_two_workers_sweeping_at_once_decide_on_each_finding_once(
    driver: Driver, second_store: GraphStore, tmp_path: Path
) -> None:
    store = seed_skab(driver)
    with (
        agents_twin(Settings(home=tmp_path / "one"), store) as one,
        agents_twin(Settings(home=tmp_path / "two"), second_store) as two,
    ):
        raise_alarms(one)
        assert set(one.case_assets()) >= {PUMP, MOTOR}
        workers = [AgentWorker(one, "worker-1"), AgentWorker(two, "worker-2")]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def sweep(worker: AgentWorker) -> None:
            try:
                barrier.wait()
                worker.sweep()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=sweep, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert not errors, errors
        _each_finding_used_once(driver)
        assert one.case_assets() == [] or set(one.case_assets()).isdisjoint({PUMP, MOTOR})
        assert leases.holders(store) == {}  # every lease given back
        total = sum(w.stats.decisions for w in workers)
        assert total >= 2 and all(w.stats.assets + w.stats.busy >= 1 for w in workers)


def test_two_agent_threads_of_one_twin_decide_on_two_assets_side_by_side(
    driver: Driver, tmp_path: Path
) -> None:
    """Decision 0084: the pump's run is held inside the twin until the motor's decision is
    recorded by another thread of the same twin; with one run at a time in a twin, the motor's
    thread would wait for the pump's run and neither would end."""
    store = seed_skab(driver)
    with agents_twin(Settings(home=tmp_path / "twin"), store) as twin:
        raise_alarms(twin)
        agents = twin.agents()
        motor_decided = threading.Event()
        real_run = agents.run

        def run(**kwargs: Any) -> RunResult:
            if kwargs.get("scope") == PUMP:
                assert motor_decided.wait(120), "the motor's run never ran beside the pump's"
            return real_run(**kwargs)

        agents.run = run  # type: ignore[method-assign]
        outcomes: dict[str, int | None] = {}
        errors: list[BaseException] = []

        def decide(worker: AgentWorker, asset: str) -> None:
            try:
                outcomes[asset] = worker.decide_on(asset)
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                if asset == MOTOR:
                    motor_decided.set()

        pump = threading.Thread(target=decide, args=(AgentWorker(twin, "me"), PUMP))
        pump.start()
        motor = threading.Thread(target=decide, args=(AgentWorker(twin, "me/2"), MOTOR))
        motor.start()
        for thread in (pump, motor):
            thread.join(300)
        assert not errors, errors
        assert outcomes[PUMP] and outcomes[MOTOR], outcomes
        _each_finding_used_once(driver)
        assert leases.holders(store) == {}
        # the provenance chain stayed one chain while two threads appended to it
        report = twin.verify()
        assert report.ok and report.records >= 2, report
