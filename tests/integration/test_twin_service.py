"""``twinkg run`` as an operator starts it: its own process (and, with ``--workers 2``, a
second agent worker process), the real Mosquitto and Neo4j. Telemetry published over MQTT
raises an envelope alarm; the service ingests it and hands the pump to the agent workers as a
work item (shared subscription); one decides under the pump's lease, and the decision comes
back as an MQTT event, without any command after the start. SIGTERM stops every process
cleanly (exit 0, a summary line) and no lease is left held."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget, seed_skab
from tests.integration.mqtt_world import home_endpoint
from tests.integration.test_cli import TWINKG, run
from tests.integration.test_leases import raise_alarms
from twinkg.api.settings import Settings
from twinkg.api.twin import agents_twin
from twinkg.connect.mqtt.client import Subscriber, connect, publish
from twinkg.kg.local_server import free_port

pytestmark = pytest.mark.neo4j

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
UNIT = "http://qudt.org/vocab/unit/L-PER-MIN"


def _terminated(service: subprocess.Popen[str], *, timeout_s: float = 180) -> tuple[str, str]:
    """SIGTERM ``service`` and collect its output. A service that has not exited within
    ``timeout_s`` (a graceful stop takes seconds) is asked for every thread's stack
    (``twinkg run`` dumps them on SIGUSR1, and so do its worker processes) and the test fails
    with them, so a hang in CI is diagnosable."""
    service.send_signal(signal.SIGTERM)
    try:
        return service.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        children = Path(f"/proc/{service.pid}/task/{service.pid}/children")
        with contextlib.suppress(OSError):
            for pid in [service.pid, *map(int, children.read_text().split())]:
                os.kill(pid, signal.SIGUSR1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.communicate(timeout=10)  # the dumps arrive on the shared stderr pipe
        service.kill()
        stdout, stderr = service.communicate()
        pytest.fail(f"the service did not stop within {timeout_s} s:\n{stdout}\n{stderr}")


def _decisions_on_alarms(driver: Driver) -> list[str]:
    rows = driver.execute_query(
        "MATCH (d:Decision)-[:PROV_USED]->(:Alarm) RETURN DISTINCT d.uri AS uri"
    ).records
    return [row["uri"] for row in rows]


@pytest.mark.parametrize("workers", [1, 2])
def test_telemetry_in_wakes_the_agents_and_their_decision_goes_out_as_an_event(
    broker_env: dict[str, str], driver: Driver, tmp_path: Path, workers: int
) -> None:
    env = broker_env
    port = int(env["TWINKG_MQTT_PORT"])
    service = None
    try:
        for name, role, site in (("gw", "producer", ["--site", "SKT"]), ("dash", "observer", [])):
            assert run("broker", "issue", name, "--role", role, *site, env=env).returncode == 0
        metrics_port = free_port()
        observer = Subscriber(
            home_endpoint(tmp_path, port, "dash"), ["twinkg/v1/+/evt/#"], client_id="dash"
        )
        service = subprocess.Popen(
            [
                TWINKG,
                "run",
                "--tick-s",
                "3600",
                "--workers",
                str(workers),
                "--metrics-port",
                str(metrics_port),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert _decisions_on_alarms(driver) == []
        start = datetime.now(UTC) - timedelta(minutes=5)
        points = [  # the flow far above the pump's envelope (max 140 L/min)
            {
                "sensor": PLANT + "sensor-flow",
                "unit": UNIT,
                "value": 210.0,
                "time": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            }
            for i in range(30)
        ]
        gateway = connect(home_endpoint(tmp_path, port, "gw"), "gw")
        body = json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()
        publish(gateway, "twinkg/v1/SKT/tele/loop/gw", body, timeout_s=10)
        gateway.disconnect()
        events: list[dict[str, object]] = []
        for message in observer.messages(idle_s=180):  # ends when none came for 3 minutes
            events.append(json.loads(message.payload))
            observer.ack(message)
            decided = _decisions_on_alarms(driver)
            findings = [e for e in events if e["kind"] == "finding"]
            if decided and findings and {e.get("decision") for e in events} >= set(decided):
                break
        observer.close(end_session=True)
        decided = _decisions_on_alarms(driver)
        assert decided, f"no decision on the alarm; events: {events}"
        about = [e for e in events if e.get("decision") in decided]
        assert about and all(e["asset"] == PLANT + "pump" for e in about)
        assert {e["kind"] for e in about} >= {"decision"}
        # the alarm the telemetry raised went out as a finding event too
        alarms = [e for e in events if e["kind"] == "finding" and e["type"] == "alarm"]
        assert alarms and all(e["asset"] == PLANT + "pump" for e in alarms), events
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
        for loop in ("agents", "ingest", "events"):
            assert f'twinkg_service_loop_up{{loop="{loop}"}} 1.0' in scraped
        assert 'twinkg_points_ingested_total{way="mqtt"} 30.0' in scraped
        service.send_signal(signal.SIGUSR1)  # every thread's stack, and the service goes on
        stdout, stderr = _terminated(service)
        assert service.returncode == 0, stderr
        assert "most recent call first" in stderr and "api/cli/run.py" in stderr, stderr
        assert "stopped: 1 messages" in stdout and "events published" in stdout, (stdout, stderr)
        assert f"{workers} agent worker(s)" in stderr
        assert "did not finish cleanly" not in stdout  # every worker process exited 0
        assert (
            driver.execute_query(
                "MATCH (l:AssetLease) WHERE l.holder IS NOT NULL RETURN count(l) AS n"
            ).records[0]["n"]
            == 0
        )
    finally:
        if service is not None and service.poll() is None:
            service.kill()
            service.communicate()


def test_a_service_stopped_while_its_workers_start_stops_them_cleanly(
    broker_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    """SIGTERM as soon as ``twinkg run --workers 2`` has started its agent-only child: the child
    is still importing, and the signal's default action would kill it (exit -15, "did not finish
    cleanly"). The parent waits until the child handles SIGTERM, then stops it gracefully."""
    env = broker_env
    service = None
    try:
        service = subprocess.Popen(
            [TWINKG, "run", "--tick-s", "3600", "--workers", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert service.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        stream = service.stderr

        def read() -> None:
            for line in stream:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        seen: list[str] = []
        while not any("agent worker(s)" in line for line in seen):  # the child just spawned
            seen.append(lines.get(timeout=300))
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=300) == 0, "".join(seen)
        assert service.stdout is not None
        stdout = service.stdout.read()
        while not lines.empty():
            seen.append(lines.get_nowait())
        stderr = "".join(seen)
        assert stdout.startswith("stopped:") and "did not finish cleanly" not in stdout, (
            stdout,
            stderr,
        )
    finally:
        if service is not None and service.poll() is None:
            service.kill()
            service.communicate()


def test_without_a_broker_the_agents_sweep_on_the_timer_in_the_background(
    neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> None:
    store = seed_skab(driver)
    with agents_twin(Settings(home=tmp_path), store) as twin:
        raise_alarms(twin)  # findings already in the graph when the service starts
    env = {
        **neo4j_target.env(),
        "TWINKG_HOME": str(tmp_path),
        "TWINKG_SERVICE_METRICS_PORT": str(free_port()),
    }
    refused = run("run", "--no-mqtt", "--workers", "2", env=env)
    assert refused.returncode == 2 and "it needs --mqtt" in refused.stderr
    threads = run("run", "--no-mqtt", "--agent-threads", "2", env=env)  # no work items to share
    assert threads.returncode == 2 and "(or --agent-threads 1)" in threads.stderr
    absent = run("service", "status", env=env)
    assert absent.returncode != 0 and "not running" in absent.stderr
    started = run("service", "start", "--no-mqtt", "--tick-s", "0.5", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr  # ready: every loop up
        decided: list[str] = []
        deadline = time.monotonic() + 300  # wait on the graph's state, not on a duration
        while time.monotonic() < deadline and len(decided) < 2:
            decided = _decisions_on_alarms(driver)
            time.sleep(0.1)
        assert len(decided) >= 2, "the sweep decided on neither alarm"
        status = run("service", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert "agents   up" in status.stdout and "decisions: " in status.stdout
    finally:
        stopped = run("service", "stop", env=env)
    assert stopped.returncode == 0 and "service stopped" in stopped.stdout
    log = (tmp_path / "service" / "service.log").read_text()
    assert "agent passes" in log and "did not finish cleanly" not in log
    assert run("service", "status", env=env).returncode != 0
