"""Fixtures shared by the integration tests of the service and its failover drills."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget, seed_skab
from tests.integration.test_cli import run
from twinkg.kg.local_server import free_port


@pytest.fixture
def broker_env(
    neo4j_target: Neo4jTarget, driver: Driver, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """The SKAB testbed seeded, and the environment of a twin at ``tmp_path`` whose own broker
    (``twinkg broker start``) runs on a free port (``TWINKG_MQTT_PORT``); stopped afterwards."""
    seed_skab(driver)
    env = {
        **neo4j_target.env(),
        "TWINKG_HOME": str(tmp_path),
        "TWINKG_MQTT_PORT": str(free_port()),
    }
    assert run("broker", "start", env=env).returncode == 0
    try:
        yield env
    finally:
        run("broker", "stop", env=env)
