"""The MQTT commands as an operator runs them: ``twinkg broker start|status|issue|stop``,
``twinkg connect mqtt`` and ``twinkg connect refused``, each its own process, against a real
Mosquitto and the real Neo4j. Telemetry published right after ``broker start``, before any
worker ran, is held for the default worker and ingested when it runs; a bad message is refused
with its reason and listed; a misuse is one line and a non-zero exit."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget, seed_skab
from tests.integration.mqtt_world import home_endpoint
from tests.integration.test_cli import run
from twinkg.connect.mqtt.client import connect, publish
from twinkg.connect.mqtt.pki import common_name
from twinkg.kg.local_server import free_port

pytestmark = pytest.mark.neo4j

SENSOR = "https://w3id.org/twinkg/plant/skab-testbed/sensor-flow"
UNIT = "http://qudt.org/vocab/unit/L-PER-MIN"


def test_an_operator_runs_the_broker_and_a_worker_from_the_command_line(
    neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (make setup installs it as root)")
    seed_skab(driver)
    port = free_port()
    env = {**neo4j_target.env(), "TWINKG_HOME": str(tmp_path), "TWINKG_MQTT_PORT": str(port)}
    try:
        started = run("broker", "start", env=env)
        assert started.returncode == 0, started.stderr
        assert f"mqtts://127.0.0.1:{port}" in started.stdout
        assert "held for the ingest worker twinkg-ingest-1" in started.stdout
        assert run("broker", "status", env=env).returncode == 0
        no_site = run("broker", "issue", "gw", "--role", "producer", env=env)
        assert no_site.returncode == 2 and no_site.stderr.startswith("error[config_invalid]")
        assert len(no_site.stderr.strip().splitlines()) == 1
        issued = run("broker", "issue", "gw", "--role", "producer", "--site", "SKT", env=env)
        assert issued.returncode == 0, issued.stderr
        pki = tmp_path / "broker" / "pki"
        assert common_name(pki / "clients" / "gw.crt") == "gw"
        assert (pki / "clients" / "gw.key").stat().st_mode & 0o077 == 0  # owner only

        gateway = connect(home_endpoint(tmp_path, port, "gw"), "gw")
        start = datetime.now(UTC) - timedelta(hours=1)
        points = [
            {
                "sensor": SENSOR,
                "unit": UNIT,
                "value": 100.0 + i,
                "time": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            }
            for i in range(20)
        ]
        body = json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()
        publish(gateway, "twinkg/v1/SKT/tele/loop/gw", body, timeout_s=10)
        publish(gateway, "twinkg/v1/SKT/tele/loop/gw", b"[1, 2", timeout_s=10)
        gateway.disconnect()

        # two messages wait; --idle-s is only a deadline should one never come
        worker = run("connect", "mqtt", "--max-messages", "2", "--idle-s", "60", env=env)
        assert worker.returncode == 0, worker.stderr
        assert "applied, 20 accepted, 0 quarantined" in worker.stdout
        assert "refused [invalid_input]" in worker.stdout and "is not JSON" in worker.stdout
        assert "2 messages: 1 applied, 0 duplicates, 1 refused" in worker.stdout
        refused = run("connect", "refused", "--json", env=env)
        letters = [json.loads(line) for line in refused.stdout.splitlines()]
        assert [(x["code"], x["size"]) for x in letters] == [("invalid_input", 5)]
    finally:
        stopped = run("broker", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert run("broker", "status", env=env).returncode == 3


def test_broker_commands_refuse_when_another_broker_is_configured(
    neo4j_target: Neo4jTarget, tmp_path: Path
) -> None:
    env = {**neo4j_target.env(), "TWINKG_HOME": str(tmp_path), "TWINKG_MQTT_URL": "mqtts://h:1"}
    done = run("broker", "start", env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error[config_invalid]: TWINKG_MQTT_URL is set, so TwinKG uses that broker and runs none"
    )
    assert not (tmp_path / "broker").exists()
