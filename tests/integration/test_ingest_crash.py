"""A crash at any step of an ingest loses nothing: the batch ends whole in the graph and the log,
or in neither (decision 0028).

Each case runs a real ``twinkg ingest`` against the suite's Neo4j in a subprocess that kills
itself (SIGKILL) at one named step (``kg.crash_points``), then starts a fresh CLI process, which
recovers on opening the store, and checks both stores; then it sends the same batch again. The
API recovers at start the same way.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from neo4j import Driver
from pydantic import SecretStr

from tests.conftest import Neo4jTarget
from tests.integration.api_world import make_keys
from tests.integration.test_cli import run
from twinkg.api.app import create_app
from twinkg.api.cli.common import telemetry_log
from twinkg.api.security import Role
from twinkg.api.settings import Settings
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import telemetry_state
from twinkg.kg.crash_points import ENV, CrashPoint
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.reasoner.ingest_recovery import batch_iri, recover

pytestmark = pytest.mark.neo4j
FIT_ROWS = 100
BEFORE_COMMIT = (CrashPoint.STAGED, CrashPoint.JOURNALED, CrashPoint.IN_TRANSACTION)


@pytest.fixture
def home(empty_store: GraphStore, tmp_path: Path) -> Path:
    seeding.load(empty_store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
    return tmp_path / "home"


def _body(store: GraphStore, path: Path) -> str:
    """A JSON batch: every SKAB sensor for 200 s (enough to fit the detectors), and two bad
    points for the quarantine. Its content hash."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    points: list[dict[str, object]] = []
    for row in telemetry_state.sensors(store):
        low = row.physical_min if row.physical_min is not None else 0.0
        high = row.physical_max if row.physical_max is not None else low + 10.0
        for second in range(200):
            value = low + (high - low) * (0.4 + 0.01 * (second % 7))
            moment = (start + timedelta(seconds=second)).isoformat()
            points.append({"sensor": row.uri, "unit": row.unit, "time": moment, "value": value})
    points.append({**points[0], "value": float("nan")})
    points.append({**points[1], "sensor": f"{points[1]['sensor']}-unknown"})
    raw = json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()
    path.write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def _state(driver: Driver, home: Path, digest: str) -> tuple[bool, bool]:
    """Whether the graph and the log hold the batch; when both do, that they agree."""
    records, _, _ = driver.execute_query(
        "MATCH (b:IngestBatch {contentHash: $hash}) "
        "RETURN b.acceptedCount AS accepted, b.rejectedCount AS rejected",
        hash=digest,
    )
    log = TelemetryLog(home / "telemetry")
    manifests = [m for m in log.manifests() if m.batch_id == digest[:32]]
    if records and manifests:
        accepted, rejected = records[0]["accepted"], records[0]["rejected"]
        assert (manifests[0].accepted, manifests[0].rejected) == (accepted, rejected)
        assert log.window().num_rows == accepted
        assert log.quarantined().num_rows == rejected
        assert log.issues == []
    return bool(records), bool(manifests)


def _leftovers(home: Path) -> list[Path]:
    """Temporary files and pending entries anywhere under the home."""
    journal = home / "telemetry" / "journal"
    pending = list(journal.glob("*.json")) if journal.exists() else []
    return [*home.rglob("*.tmp"), *pending]


@pytest.mark.parametrize("point", list(CrashPoint))
def test_a_crash_at_any_step_leaves_the_batch_whole_or_absent(
    home: Path, neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path, point: CrashPoint
) -> None:
    env = {**neo4j_target.env(), "TWINKG_HOME": str(home)}
    body = tmp_path / "batch.json"
    digest = _body(GraphStore(driver), body)
    ingest = ("ingest", "--json", str(body), "--fit-rows", str(FIT_ROWS), "--no-classify")

    crashed = run(*ingest, env={**env, ENV: point.value})
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr

    recovered = run("db", "status", env=env)  # a fresh process: recovers on opening the store
    assert recovered.returncode == 0, recovered.stderr
    committed = point not in BEFORE_COMMIT
    assert _state(driver, home, digest) == (committed, committed)
    assert _leftovers(home) == []
    detectors = sorted((home / "detectors").glob("*.npz"))
    assert bool(detectors) == committed  # fitted on the batch: kept with it or not at all

    again = run(*ingest, env=env)
    assert again.returncode == 0, again.stderr
    assert ("ingested before" in again.stdout) == committed, again.stdout
    assert _state(driver, home, digest) == (True, True)
    assert _leftovers(home) == []
    assert sorted((home / "detectors").glob("*.npz"))


def test_recovery_waits_for_a_transaction_still_writing_the_batch(
    empty_store: GraphStore, driver: Driver
) -> None:
    """The writer died with its commit under way: the decision is the commit's outcome,
    not what a read sees before the commit ends."""
    empty_store.ensure_schema()  # the uri constraint: what makes the MERGE wait
    iri, digest = batch_iri("d" * 32), "d" * 64
    for outcome in ("rollback", "commit"):
        answers: list[bool] = []
        with driver.session() as session:
            tx = session.begin_transaction()
            tx.run(
                "CREATE (:Resource:IngestBatch {uri: $uri, contentHash: $hash})",
                uri=iri,
                hash=digest,
            ).consume()
            asking = threading.Thread(target=_ask, args=(empty_store, iri, digest, answers))
            asking.start()
            _wait_until_blocked(driver)
            assert answers == []  # still waiting for the writer's outcome
            tx.commit() if outcome == "commit" else tx.rollback()
        asking.join(timeout=120)
        assert answers == [outcome == "commit"]


def _ask(store: GraphStore, iri: str, digest: str, answers: list[bool]) -> None:
    answers.append(telemetry_state.batch_decision(store, iri, digest))


def _wait_until_blocked(driver: Driver) -> None:
    """Until some transaction waits for a lock (its status says "Blocked by")."""
    for _ in range(6000):  # a bound for a broken run, not a duration the test relies on
        records, _, _ = driver.execute_query("SHOW TRANSACTIONS YIELD status RETURN status")
        if any(str(r["status"]).startswith("Blocked") for r in records):
            return
        threading.Event().wait(0.01)
    pytest.fail("no transaction ever waited for the batch's lock")


def test_recovery_leaves_a_running_ingest_alone(home: Path, driver: Driver) -> None:
    """Pending entries are resolved only under the writer lock: a running ingest's are left."""
    log = TelemetryLog(home / "telemetry")
    log.root.mkdir(parents=True)
    with log.writer():
        report = recover(GraphStore(driver), log)
    assert report.busy and not report.changed


def test_the_api_completes_a_batch_cut_short_before_it_serves(
    home: Path, neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> None:
    """The reported case: the process dies right after Neo4j committed. The API's start
    completes the log side; the same body re-sent is a duplicate, with its points in the log."""
    env = {**neo4j_target.env(), "TWINKG_HOME": str(home)}
    body = tmp_path / "batch.json"
    digest = _body(GraphStore(driver), body)
    crashed = run("ingest", "--json", str(body), env={**env, ENV: CrashPoint.COMMITTED.value})
    assert crashed.returncode == -signal.SIGKILL
    assert _state(driver, home, digest) == (True, False)  # the reported state, before recovery

    settings = Settings(home=home)
    keys = make_keys(settings)
    with TestClient(create_app(settings, store=GraphStore(driver))) as client:
        assert _state(driver, home, digest) == (True, True)
        assert _leftovers(home) == []
        again = client.post(
            "/telemetry",
            content=body.read_bytes(),
            headers={"Content-Type": "application/json", "X-API-Key": keys[Role.PRODUCER]},
        )
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert TelemetryLog(home / "telemetry").window().num_rows == 200 * 8


def test_a_cli_read_of_the_log_recovers_first(
    home: Path, neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> None:
    env = {**neo4j_target.env(), "TWINKG_HOME": str(home)}
    body = tmp_path / "batch.json"
    digest = _body(GraphStore(driver), body)
    crashed = run("ingest", "--json", str(body), env={**env, ENV: CrashPoint.RENAMED.value})
    assert crashed.returncode == -signal.SIGKILL
    settings = Settings(
        home=home,
        neo4j_uri=neo4j_target.uri,
        neo4j_user=neo4j_target.user,
        neo4j_password=SecretStr(neo4j_target.password),
    )
    assert telemetry_log(settings).window().num_rows == 200 * 8
    assert _state(driver, home, digest) == (True, True)
