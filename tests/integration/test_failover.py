"""Failover drills on the real Mosquitto and Neo4j: a stream of telemetry batches while the
ingest worker is killed outright (SIGKILL, no chance to acknowledge or clean up) and started
again, and while the broker is killed outright and started again. Afterwards every point sent
is in the log exactly once (accepted + quarantined = sent), no batch is stored twice, and the
time to recover is printed.

What a broker killed outright loses: Mosquitto saves its state every 5 s
(``autosave_interval``), so messages it acknowledged to a producer but had not yet delivered
or saved when it was killed are gone (a drill that killed it 1 s after twenty such messages lost
all twenty). The broker drill kills it once those were delivered: it shows the producer and the
worker reconnecting and the stream going on with nothing lost or doubled. Closing that window
needs the producer to keep each batch until the twin has stored it (the edge runtime's
store-and-forward, issue 15), not a faster broker save."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from neo4j import Driver, GraphDatabase

from tests.conftest import seed_skab
from tests.integration.mqtt_world import home_endpoint, messages_stored
from tests.integration.test_cli import TWINKG, run
from twinkg.connect.mqtt import broker
from twinkg.connect.mqtt.client import connect, publish
from twinkg.kg import local_server
from twinkg.kg.crash_points import ENV, CrashPoint
from twinkg.kg.local_server import free_port
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import ServerError

pytestmark = pytest.mark.neo4j

SENSOR = "https://w3id.org/twinkg/plant/skab-testbed/sensor-flow"
UNIT = "http://qudt.org/vocab/unit/L-PER-MIN"
BATCHES, POINTS = 40, 25


def _bodies(start: datetime | None = None) -> list[bytes]:
    """The stream: BATCHES batches of POINTS readings a second apart from ``start`` (two hours
    ago by default)."""
    start = start or datetime.now(UTC) - timedelta(hours=2)
    bodies = []
    for b in range(BATCHES):
        points = [
            {
                "sensor": SENSOR,
                "unit": UNIT,
                "value": 100.0 + (i % 7),
                "time": (start + timedelta(seconds=b * POINTS + i))
                .isoformat()
                .replace("+00:00", "Z"),
            }
            for i in range(POINTS)
        ]
        bodies.append(json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode())
    return bodies


def _log(home: Path) -> tuple[int, int]:
    """Points accepted and points quarantined in the telemetry log."""
    manifests = TelemetryLog(home / "telemetry").manifests()
    return sum(m.accepted for m in manifests), sum(m.rejected for m in manifests)


def _wait_for(home: Path, messages: int, deadline_s: float = 240.0) -> float:
    """Seconds until the log holds the points of ``messages`` messages (fails past the
    deadline). Messages that wait are ingested together (decision 0067), so the log's batches
    are no count of them; their points are."""
    started = time.monotonic()
    while sum(_log(home)) < messages * POINTS:
        assert time.monotonic() - started < deadline_s, f"log stuck at {_log(home)}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_worker_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    broker_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    env = broker_env
    port = int(env["TWINKG_MQTT_PORT"])
    worker = None
    try:
        assert run("broker", "issue", "gw", "--site", "SKT", env=env).returncode == 0
        gateway = connect(home_endpoint(tmp_path, port, "gw"), "gw")
        bodies = _bodies()
        worker = subprocess.Popen([TWINKG, "connect", "mqtt", "--quiet"], env=env)
        for body in bodies[:20]:
            publish(gateway, "twinkg/v1/SKT/tele/loop/gw", body, timeout_s=10)
        _wait_for(tmp_path, 5)
        worker.send_signal(signal.SIGKILL)  # mid-stream: messages taken but not acknowledged
        worker.wait()
        for body in bodies[20:]:  # the stream goes on while no worker runs
            publish(gateway, "twinkg/v1/SKT/tele/loop/gw", body, timeout_s=10)
        gateway.disconnect()
        worker = subprocess.Popen([TWINKG, "connect", "mqtt", "--quiet"], env=env)
        recovery_s = _wait_for(tmp_path, BATCHES)
        print(f"worker killed: all {BATCHES} batches stored {recovery_s:.2f} s after the restart")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
    accepted, quarantined = _log(tmp_path)
    # the message cut off by the kill is stored once, not twice: a second copy would add points
    assert accepted + quarantined == BATCHES * POINTS and quarantined == 0
    assert messages_stored(driver) == BATCHES


GROUP = 8  # the messages that wait for the armed worker: TWINKG_MQTT_GROUP_MAX's default


@pytest.mark.parametrize(
    "point", [CrashPoint.IN_TRANSACTION, CrashPoint.COMMITTED, CrashPoint.MANIFESTED]
)
def test_a_worker_killed_at_a_step_of_a_group_stores_each_message_once(
    broker_env: dict[str, str], driver: Driver, tmp_path: Path, point: CrashPoint
) -> None:
    """Messages that wait for a worker are ingested together (decision 0067), all or nothing
    (decision 0028). A worker killed (SIGKILL) at a step of that group's ingest, before its
    commit, just after it or with the log's manifest written but its journal not cleared: the
    next worker recovers the log on opening the store and gets the unacknowledged messages
    again; each message's points are then stored once, in the graph and the log alike."""
    env = broker_env
    port = int(env["TWINKG_MQTT_PORT"])
    topic = "twinkg/v1/SKT/tele/loop/gw"
    worker = None
    try:
        assert run("broker", "issue", "gw", "--site", "SKT", env=env).returncode == 0
        gateway = connect(home_endpoint(tmp_path, port, "gw"), "gw")
        bodies = _bodies()[: GROUP + 2]
        # the worker's session: the first message stored shows it subscribed
        worker = subprocess.Popen([TWINKG, "connect", "mqtt", "--quiet"], env=env)
        publish(gateway, topic, bodies[0], timeout_s=10)
        _wait_for(tmp_path, 1)
        worker.send_signal(signal.SIGTERM)  # stops; its session keeps what comes meanwhile
        assert worker.wait(timeout=120) == 0
        for body in bodies[1:-1]:
            publish(gateway, topic, body, timeout_s=10)
        armed = subprocess.run(
            [TWINKG, "connect", "mqtt", "--quiet"],
            env={**env, ENV: point.value},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert armed.returncode == -signal.SIGKILL, armed.stderr
        worker = subprocess.Popen([TWINKG, "connect", "mqtt", "--quiet"], env=env)
        # the log may show the cut-off group already (killed after its manifest): the last
        # message, sent now, comes after every message before it on this topic
        publish(gateway, topic, bodies[-1], timeout_s=10)
        gateway.disconnect()
        _wait_for(tmp_path, len(bodies))
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
    accepted, quarantined = _log(tmp_path)
    assert (accepted, quarantined) == (len(bodies) * POINTS, 0)
    assert messages_stored(driver) == len(bodies)
    graph = driver.execute_query(
        "MATCH (b:IngestBatch) RETURN sum(b.acceptedCount) AS accepted"
    ).records[0]["accepted"]
    assert graph == accepted  # the graph and the log agree
    journal = tmp_path / "telemetry" / "journal"
    assert not journal.exists() or list(journal.glob("*.json")) == []  # recovery finished


def _publish_through(
    gateway: paho.Client, topic: str, body: bytes, *, deadline_s: float = 120
) -> None:
    """Publish until the broker acknowledges (it may be away: the producer retries, as a
    gateway's store-and-forward does)."""
    started = time.monotonic()
    while True:
        try:
            publish(gateway, topic, body, timeout_s=5)
            return
        except ServerError:
            assert time.monotonic() - started < deadline_s, "the broker did not come back"
            time.sleep(0.2)


def test_a_broker_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    broker_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    env = broker_env
    port = int(env["TWINKG_MQTT_PORT"])
    config = broker.BrokerConfig(home=tmp_path / "broker", port=port)
    worker = None
    try:
        assert run("broker", "issue", "gw", "--site", "SKT", env=env).returncode == 0
        gateway = connect(home_endpoint(tmp_path, port, "gw"), "gw")
        bodies = _bodies()
        worker = subprocess.Popen([TWINKG, "connect", "mqtt", "--quiet"], env=env)
        for body in bodies[:20]:
            _publish_through(gateway, "twinkg/v1/SKT/tele/loop/gw", body)
        _wait_for(tmp_path, 20)  # delivered and stored (see the module docstring for why)
        broker.stop(config, kill=True)  # SIGKILL: no chance to save its state
        killed = time.monotonic()
        broker.start(config)
        for body in bodies[20:]:
            _publish_through(gateway, "twinkg/v1/SKT/tele/loop/gw", body)
        gateway.disconnect()
        _wait_for(tmp_path, BATCHES)
        print(
            f"broker killed: all {BATCHES} batches stored {time.monotonic() - killed:.2f} s later"
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
    accepted, quarantined = _log(tmp_path)
    assert accepted + quarantined == BATCHES * POINTS
    assert messages_stored(driver) == BATCHES


def _stream_with_alarms() -> list[bytes]:
    """The drill's batches; batches 10 to 12 carry a flow far above the pump's envelope (max
    140 L/min), so the agents have an alarm to decide on while Neo4j goes away. The stream
    ends a few minutes ago: the agents look at the last hour's findings."""
    bodies = _bodies(datetime.now(UTC) - timedelta(seconds=BATCHES * POINTS + 300))
    for b in (10, 11, 12):
        batch = json.loads(bodies[b])
        for point in batch["points"]:
            point["value"] = 210.0
        bodies[b] = json.dumps(batch).encode()
    return bodies


def _decided(driver: Driver) -> bool:
    """Whether a decision used one of the alarms."""
    return bool(
        driver.execute_query(
            "MATCH (d:Decision)-[:PROV_USED]->(:Alarm) RETURN count(d) > 0 AS any"
        ).records[0]["any"]
    )


def _kill(server: local_server.LocalServerConfig) -> float:
    """SIGKILL the server (no clean shutdown); when."""
    pid = local_server.status(server).pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def _restart(server: local_server.LocalServerConfig, killed: float) -> float:
    """Start the killed server again on its store and port; when it was up."""
    while local_server.status(server).running or not local_server.port_free(
        server.address, server.port
    ):  # the kernel closes its listening socket a moment after the process is gone
        assert time.monotonic() - killed < 120, "the killed Neo4j did not exit"
        time.sleep(0.1)
    local_server.start(server, wait_s=240, parent_pid=os.getpid())
    return time.monotonic()


def _await_decision(driver: Driver, service: subprocess.Popen[str]) -> None:
    """Until the alarms' decision (cut off by the kill or not) is made; the service's log if not."""
    deadline = time.monotonic() + 240
    while not _decided(driver):
        if time.monotonic() > deadline:
            service.terminate()
            _, stderr = service.communicate(timeout=300)
            pytest.fail(f"the agents decided nothing on the alarms: {stderr[-4000:]}")
        time.sleep(0.2)


def test_neo4j_killed_mid_stream_loses_nothing_and_applies_nothing_twice(
    tmp_path: Path,
) -> None:
    """Neo4j SIGKILLed while `twinkg run` ingests a stream and its agents decide, then started
    again on the same store: the service survives, the broker holds what came meanwhile, and
    afterwards every point is in the log once, every batch once in the graph, no action was
    applied twice, and both hash chains (the decisions' and the audit log's) verify."""
    server = local_server.LocalServerConfig.throwaway(
        tmp_path / "neo4j", heap="512m", pagecache="128m", tx_memory="512m"
    )
    local_server.start(server, wait_s=240, parent_pid=os.getpid())
    home = tmp_path / "home"
    port = free_port()
    env = {
        **os.environ,
        "TWINKG_NEO4J_URI": server.bolt_uri,
        "TWINKG_NEO4J_USER": "neo4j",
        "TWINKG_NEO4J_PASSWORD": server.password,
        "TWINKG_HOME": str(home),
        "TWINKG_MQTT_PORT": str(port),
    }
    service = None
    with GraphDatabase.driver(server.bolt_uri, auth=("neo4j", server.password)) as driver:
        try:
            seed_skab(driver)
            assert run("broker", "start", env=env).returncode == 0
            assert run("broker", "issue", "gw", "--site", "SKT", env=env).returncode == 0
            gateway = connect(home_endpoint(home, port, "gw"), "gw")
            bodies = _stream_with_alarms()
            service = subprocess.Popen(
                [TWINKG, "run", "--tick-s", "3600"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for body in bodies[:20]:
                publish(gateway, "twinkg/v1/SKT/tele/loop/gw", body, timeout_s=10)
            _wait_for(home, 12)  # the alarms are in: the agents are at work on them
            killed = _kill(server)
            for body in bodies[20:]:  # the stream goes on while the graph is away
                publish(gateway, "twinkg/v1/SKT/tele/loop/gw", body, timeout_s=10)
            gateway.disconnect()
            restarted = _restart(server, killed)
            _wait_for(home, BATCHES)
            print(
                f"Neo4j killed: up again after {restarted - killed:.2f} s; all {BATCHES} "
                f"batches stored {time.monotonic() - restarted:.2f} s after that"
            )
            _await_decision(driver, service)
            service.send_signal(signal.SIGTERM)
            stdout, stderr = service.communicate(timeout=300)
            assert service.returncode == 0, stderr[-3000:]
            assert "did not finish cleanly" not in stdout
        finally:
            if service is not None and service.poll() is None:
                service.kill()
            run("broker", "stop", env=env)
        accepted, quarantined = _log(home)
        assert accepted + quarantined == BATCHES * POINTS
        assert messages_stored(driver) == BATCHES
        twice = driver.execute_query(
            "MATCH (a:ProposedAction), (d:Decision {outcome: 'applied'}) "
            "WHERE (a)-[:PROV_WAS_GENERATED_BY]->(d) OR (d)-[:PROV_USED]->(a) "
            "WITH a, count(d) AS n WHERE n > 1 RETURN count(a) AS n"
        ).records[0]["n"]
        assert twice == 0
        for command in (("verify",), ("audit", "verify")):
            checked = run(*command, env=env)
            assert checked.returncode == 0, checked.stdout + checked.stderr
        local_server.stop(server)
