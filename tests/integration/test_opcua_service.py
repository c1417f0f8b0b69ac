"""OPC UA as a loop of ``twinkg run`` (issue 15, decision 0063), as an operator starts it: its
own process with ``--opcua URL=MAPPING``, a real asyncua server (the pump loop of
``opcua_world``, Basic256Sha256 SignAndEncrypt), the real Mosquitto and Neo4j.

The server is not up yet when the service starts: the loop counts the failure and tries again.
Once it is, the server's data changes are ingested through the telemetry contract into the log
under the mapping's sensor IRIs; an out-of-envelope flow raises an alarm that the agents hear
as they hear MQTT findings (a work item), and decide on. With ``--opcua-write-back``, an
allowed, recorded setpoint change is written to the server and its result recorded. SIGTERM
ends the loop cleanly: the sessions are closed and the subscription deleted on the server, and
the process exits 0."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asyncua.server.internal_session import InternalSession
from neo4j import Driver

from tests.conftest import Neo4jTarget, seed_skab
from tests.integration.opcua_world import PlantServer
from tests.integration.test_cli import TWINKG, run
from tests.integration.test_opcua import _decide
from twinkg.agents.checkpoint import open_checkpointer
from twinkg.agents.runner import Agents
from twinkg.api.metrics import loops_up, scrape
from twinkg.api.settings import Settings, telemetry_dir
from twinkg.connect.opcua.security import OpcUaCredentials, ensure_credentials
from twinkg.kg import actuation
from twinkg.kg.local_server import free_port
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import ApprovalStaleError

pytestmark = pytest.mark.neo4j

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
PUMP = PLANT + "pump"
FLOW, PRESSURE = PLANT + "sensor-flow", PLANT + "sensor-pressure"
UNIT = "http://qudt.org/vocab/unit/"
QK = "http://qudt.org/vocab/quantitykind/"
TWIN_URI = "urn:twinkg:test:twin"


def _until(check: Callable[[], bool], what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _decisions_on_alarms(driver: Driver) -> list[str]:
    rows = driver.execute_query(
        "MATCH (d:Decision)-[:PROV_USED]->(:Alarm)-[:CONCERNS]->(:Resource {uri: $pump}) "
        "RETURN DISTINCT d.uri AS uri",
        pump=PUMP,
    ).records
    return [row["uri"] for row in rows]


def _on_server(plant: PlantServer) -> tuple[int, int]:
    """The subscriptions the server holds and the activated sessions (of every server in this
    process: asyncua counts them on the class)."""

    async def read() -> tuple[int, int]:
        assert plant.server is not None
        subscriptions = plant.server.iserver.subscription_service.subscriptions
        return len(subscriptions), InternalSession._current_connections

    return plant.call(read())


def _mapping(plant: PlantServer, path: Path) -> Path:
    """Flow and pressure as telemetry; the flow setpoint written back."""
    path.write_text(
        f'version = 1\n\n[[telemetry]]\nnode = "{plant.node_id("Flow")}"\nsensor = "{FLOW}"\n'
        f'unit = "{UNIT}L-PER-MIN"\ndata_type = "Double"\nmin = 0.0\nmax = 250.0\n\n'
        f'[[telemetry]]\nnode = "{plant.node_id("Pressure")}"\nsensor = "{PRESSURE}"\n'
        f'unit = "{UNIT}BAR"\ndata_type = "Double"\n\n'
        f'[[setpoint]]\nnode = "{plant.node_id("FlowSetpoint")}"\naction = "setpoint_change"\n'
        f'asset = "{PUMP}"\nquantity_kind = "{QK}VolumeFlowRate"\ndata_type = "Double"\n'
        "min = 0.0\nmax = 200.0\n"
    )
    return path


def _env(target: Neo4jTarget, home: Path, twin: OpcUaCredentials, server: Path) -> dict[str, str]:
    return {
        **target.env(),
        "TWINKG_HOME": str(home),
        "TWINKG_MQTT_PORT": str(free_port()),
        "TWINKG_OPCUA_CERT_FILE": str(twin.cert_file),
        "TWINKG_OPCUA_KEY_FILE": str(twin.key_file),
        "TWINKG_OPCUA_APPLICATION_URI": TWIN_URI,
        "TWINKG_OPCUA_SERVER_CERT_FILE": str(server),
        "TWINKG_OPCUA_PUBLISHING_INTERVAL_MS": "50",
        "TWINKG_OPCUA_BATCH_MS": "100",
        "TWINKG_LOG_LEVEL": "INFO",  # each write-back logged
    }


def _applied_change(agents: Agents, driver: Driver) -> str:
    """A setpoint change of the pump, approved by a supervisor when it waits (the pump's trust
    is low after the alarm), and applied. The service goes on working beside the test: an
    approval whose graph changed in between is refused (``approval_stale``), and proposed
    again, as an operator would (at most three times)."""
    for _ in range(3):
        try:
            decision = _decide(agents, datetime.now(UTC), "VolumeFlowRate", 80.0, 72.0)
        except ApprovalStaleError as exc:  # refused before the run resumed
            print(f"approval refused: {exc}")
            continue
        record = driver.execute_query(
            "MATCH (d:Decision {uri: $d}) RETURN d.outcome AS outcome, d.reason AS reason",
            d=decision,
        ).records[0]
        if record["outcome"] == "applied":
            return decision
        print(f"{decision}: {record['outcome']} ({record['reason']})")
        assert "approval_stale" in str(record["reason"]), dict(record)
    raise AssertionError("three proposals, each approval stale")


def _written_back(
    store: GraphStore, driver: Driver, log: TelemetryLog, plant: PlantServer, home: Path
) -> None:
    """An allowed, recorded setpoint change reaches the plant by the service's write-back."""
    assert plant.read("FlowSetpoint") == 80.0
    with open_checkpointer(str(home / "checkpoints-test.sqlite")) as saver:
        agents = Agents(store=store, log=log, checkpointer=saver)
        decision = _applied_change(agents, driver)

    def ended() -> bool:  # written, or failed with the reason recorded
        record = actuation.write_record(store, decision)
        return record is not None and record.status != "writing"

    try:
        _until(ended, f"the write-back of {decision}")
    except AssertionError as exc:  # say where it stands
        rows = driver.execute_query(  # every decision (this test's graph) and its effect
            "MATCH (d:Decision) OPTIONAL MATCH (e:Resource {uri: d.uri + '/effect'}) "
            "RETURN properties(d) AS decision, properties(e) AS effect ORDER BY d.uri"
        ).records
        raise AssertionError(
            f"{exc}: {actuation.write_record(store, decision)}; {[dict(r) for r in rows]}"
        ) from None
    record = actuation.write_record(store, decision)
    assert record is not None and record.status == "written", record
    assert plant.read("FlowSetpoint") == 72.0


def test_the_service_ingests_an_opcua_server_and_its_findings_reach_the_agents(
    neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> None:
    store = seed_skab(driver)
    server_creds = ensure_credentials(tmp_path / "pki", "server", "urn:twinkg:test:plant")
    twin_creds = ensure_credentials(tmp_path / "pki", "twin", TWIN_URI)
    plant = PlantServer(server_creds, [twin_creds.cert_file], free_port())  # not started yet
    mapping = _mapping(plant, tmp_path / "plant.toml")
    env = _env(neo4j_target, tmp_path, twin_creds, server_creds.cert_file)
    metrics_port = free_port()
    assert run("broker", "start", env=env).returncode == 0
    service, service_log = None, tmp_path / "service.log"
    try:
        with service_log.open("w") as log_out:  # a file: a pipe nobody reads could fill
            service = subprocess.Popen(
                [TWINKG, "run", "--tick-s", "3600", "--metrics-port", str(metrics_port),
                 "--opcua", f"{plant.url}={mapping}", "--opcua-write-back",
                 "--agent-threads", "2"],
                env=env, stdout=subprocess.PIPE, stderr=log_out, text=True,
            )  # fmt: skip

        def metrics() -> dict[str, float]:
            assert service is not None and service.poll() is None, "the service ended"
            return scrape(metrics_port) or {}

        # the server is not there: the loop counts the failure, stays up and tries again
        failures = "twinkg_service_failures_total{loop=opcua}"
        _until(lambda: metrics().get(failures, 0.0) >= 1, "a failed connection counted")
        assert loops_up(metrics()) == {"agents": True, "agents-2": True, "ingest": True,
                                       "events": True, "opcua": True}  # fmt: skip
        sessions_before = InternalSession._current_connections
        plant.start()
        # one session subscribes, the other writes back
        _until(lambda: _on_server(plant) == (1, sessions_before + 2), "the service connected")
        assert _decisions_on_alarms(driver) == []
        plant.write("Pressure", 1.8)
        plant.write("Flow", 210.0)  # inside the mapping's range, far above the pump's envelope
        ingested = "twinkg_points_ingested_total{way=opcua}"
        _until(lambda: metrics().get(ingested, 0.0) >= 2, "the data changes ingested")
        _until(lambda: bool(_decisions_on_alarms(driver)), "a decision on the flow's alarm")
        log = TelemetryLog(telemetry_dir(Settings(home=tmp_path)))
        flow = [row["value"] for row in log.window(sensors=[FLOW]).to_pylist()]
        pressure = [row["value"] for row in log.window(sensors=[PRESSURE]).to_pylist()]
        assert flow[-1] == 210.0 and pressure[-1] == 1.8, (flow, pressure)
        assert metrics().get("twinkg_points_quarantined_total{way=opcua}", 0.0) == 0.0
        _written_back(store, driver, log, plant, tmp_path)

        service.send_signal(signal.SIGTERM)
        stdout, _ = service.communicate(timeout=120)
        stderr = service_log.read_text(errors="replace")
        assert service.returncode == 0, stderr
        assert "did not finish cleanly" not in stdout, stdout
        assert "opcua: 1 server(s), " in stdout and " 0 quarantined" in stdout, stdout
        assert "1 actions written back" in stdout, stdout
        assert "agents, agents-2, ingest, events, opcua running" in stderr
        # the sessions were closed and the subscription deleted, not left to time out
        assert _on_server(plant) == (0, sessions_before)
    finally:
        if service is not None and service.poll() is None:
            service.kill()
            service.communicate()
        if service_log.exists():  # shown when the test failed
            print(f"the service's log:\n{service_log.read_text(errors='replace')[-8000:]}")
        run("broker", "stop", env=env)
        plant.close()
