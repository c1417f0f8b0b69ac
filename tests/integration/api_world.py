"""A running TwinKG API over the real Neo4j for the API tests: the SKAB testbed seeded, the
cavitation run ingested, one API key per role, in-process (TestClient) and on a real port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from neo4j import Driver

from tests.conftest import REPO, Neo4jTarget, seed_skab
from tests.integration.test_cli import run
from twinkg.api.app import create_app
from twinkg.api.security import KeyStore, Role
from twinkg.api.settings import Settings
from twinkg.kg.store import GraphStore

DATA = REPO.parent / "shared" / "data" / "skab" / "data" / "other" / "13.csv"
PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
PUMP, MOTOR = PLANT + "pump", PLANT + "motor"
IVANOVA, PETROV = PLANT + "person-ivanova", PLANT + "person-petrov"
FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"
AS_OF = "2020-02-08T19:06:30+00:00"
UNSAFE_PROPOSAL = {  # a flow setpoint far above the pump's envelope: the guard refuses it
    "kind": "setpoint_change",
    "target": PUMP,
    "confidence": 0.95,
    "quantity_kind": FLOW,
    "current_setpoint": 80.0,
    "proposed_setpoint": 500.0,
    "ramp_s": 60.0,
    "as_of": AS_OF,
}
# The person each role's key approves as (operators and supervisors need one).
PEOPLE = {Role.OPERATOR: PETROV, Role.SUPERVISOR: IVANOVA, Role.ADMIN: IVANOVA}


@dataclass
class ApiWorld:
    """The app, a client, the store, one key per role, and the home folder."""

    app: FastAPI
    client: TestClient
    store: GraphStore
    driver: Driver
    keys: dict[Role, str]
    home: Path
    settings: Settings

    def as_role(self, role: Role) -> dict[str, str]:
        """Headers that authenticate as ``role``."""
        return {"X-API-Key": self.keys[role]}

    def counts(self) -> tuple[int, int, int]:
        """Nodes, relationships and the sum of property counts: a fingerprint of the graph,
        taken once the reclassification every accepted batch asked for has written."""
        self.app.state.twin.settle_reclassification()
        records, _, _ = self.driver.execute_query(
            "MATCH (n) OPTIONAL MATCH (n)-[r]->() "
            "RETURN count(DISTINCT n) AS n, count(r) AS r, sum(size(keys(n))) AS p"
        )
        row = records[0]
        return int(row["n"]), int(row["r"]), int(row["p"] or 0)


def seed_and_ingest(driver: Driver, target: Neo4jTarget, home: Path, *, ingest: bool) -> GraphStore:
    """Wipe the database, seed the SKAB testbed and (optionally) ingest the cavitation run."""
    store = seed_skab(driver)
    if ingest:
        env = {**target.env(), "TWINKG_HOME": str(home)}
        done = run("ingest", "--skab", str(DATA), "--no-classify", env=env)
        assert done.returncode == 0, done.stderr
    return store


def make_keys(settings: Settings) -> dict[Role, str]:
    """One API key per role."""
    store = KeyStore(settings.home / "api-keys.json")
    keys: dict[Role, str] = {}
    for role in Role:
        _, key = store.create(name=f"test {role.value}", roles=[role], person=PEOPLE.get(role))
        keys[role] = key
    return keys


@contextmanager
def api_world(
    driver: Driver, target: Neo4jTarget, home: Path, *, ingest: bool, **settings_: Any
) -> Iterator[ApiWorld]:
    """Seed, make keys, open the app (its lifespan runs) and yield the world; ``settings_``
    are further settings of the app."""
    store = seed_and_ingest(driver, target, home, ingest=ingest)
    settings = Settings(home=home, projection_poll_s=0.1, query_timeout_s=5.0, **settings_)
    keys = make_keys(settings)
    app = create_app(settings, store=store)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield ApiWorld(app, client, store, driver, keys, home, settings)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a real loopback port; yields its base URL."""
    with uvicorn_serving(app) as (url, _):
        yield url


@contextmanager
def uvicorn_serving(
    app: FastAPI, *, lifespan: Literal["auto", "on", "off"] = "auto"
) -> Iterator[tuple[str, uvicorn.Server]]:
    """Serve ``app`` with uvicorn on a real loopback port; yields its base URL and the server
    (whose ``server_state`` shows the requests it is serving). ``lifespan="off"`` serves an
    app whose lifespan a :class:`TestClient` already runs."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)
