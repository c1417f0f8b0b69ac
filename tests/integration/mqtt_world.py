"""A real Mosquitto for the MQTT tests: TwinKG's own broker configuration (TLS with client
certificates, the ACL of each role) on a free loopback port in a temporary folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from neo4j import Driver

from twinkg.connect.mqtt import broker
from twinkg.connect.mqtt.endpoint import MqttEndpoint
from twinkg.connect.mqtt.pki import Credentials
from twinkg.connect.mqtt.topics import Role
from twinkg.kg.local_server import free_port


def local_broker(home: Path) -> Iterator[broker.BrokerConfig]:
    """Start a broker under ``home``, yield its configuration, stop it."""
    if shutil.which("mosquitto") is None:
        if os.environ.get("CI"):
            pytest.fail(f"mosquitto is missing on CI: {broker.INSTALL_HINT}")
        pytest.skip(f"mosquitto is not installed here: {broker.INSTALL_HINT}")
    config = broker.BrokerConfig(home=home, port=free_port())
    broker.start(config)
    try:
        yield config
    finally:
        broker.stop(config)


def endpoint(config: broker.BrokerConfig, name: str = broker.SERVICE_USER) -> MqttEndpoint:
    """How client ``name`` reaches the broker (its certificate issued already)."""
    return MqttEndpoint(config.url, config.client(name), timeout_s=10.0)


def producer(config: broker.BrokerConfig, name: str, site: str) -> MqttEndpoint:
    """A producer of ``site``, issued now."""
    broker.issue(config, name, Role.PRODUCER, site=site)
    return endpoint(config, name)


def home_endpoint(home: Path, port: int, name: str) -> MqttEndpoint:
    """How client ``name`` reaches the broker a ``twinkg broker`` command started under
    ``TWINKG_HOME=home`` on ``port`` (its certificate issued by ``twinkg broker issue``)."""
    pki = home / "broker" / "pki"
    credentials = Credentials(
        pki / "ca.crt", pki / "clients" / f"{name}.crt", pki / "clients" / f"{name}.key"
    )
    return MqttEndpoint(f"mqtts://127.0.0.1:{port}", credentials, timeout_s=10.0)


def messages_stored(driver: Driver, hashes: Sequence[str] | None = None) -> int:
    """Telemetry messages the graph holds as applied (of those with these content hashes): a
    batch of one message counts one, a batch of messages ingested together counts each of them
    (decision 0067). A message stored twice counts twice."""
    rows = driver.execute_query(
        "MATCH (b:IngestBatch) OPTIONAL MATCH (m:IngestMessage)-[:IN_BATCH]->(b) "
        "WITH b, collect(m.contentHash) AS messages "
        "UNWIND CASE size(messages) WHEN 0 THEN [b.contentHash] ELSE messages END AS h "
        "WITH h WHERE $hashes IS NULL OR h IN $hashes RETURN count(h) AS messages",
        hashes=None if hashes is None else list(hashes),
    ).records
    return int(rows[0]["messages"])
