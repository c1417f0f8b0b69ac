"""Shared fixtures: a real Neo4j for the integration tests.

The suite starts its own throwaway Neo4j (the project's launcher, on a free loopback port, data in
a temporary folder, stopped at the end and tied to this process so it never outlives it). To run
against another server instead set TWINKG_TEST_NEO4J_URI (plus _USER and _PASSWORD): the tests
WIPE that database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from neo4j import Driver, GraphDatabase

from twinkg.kg import local_server
from twinkg.kg.queries import NamedQuery
from twinkg.kg.store import GraphStore

REPO = Path(__file__).resolve().parents[1]
MAX_WORKERS = 4  # each worker starts its own Neo4j (about 1.5 GiB): more cores, still 4

# No property test depends on the machine's speed: the suite runs in several processes on two
# cores, so Hypothesis's per-example deadline and its "generation too slow" check are off.
hypothesis_settings.register_profile(
    "twinkg", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("twinkg")


# The files that take longest, slowest first: seconds of setup, calls and teardown together,
# measured with --durations=0 on the 2-core machine (2026-12-07). xdist hands whole files
# (--dist loadfile) to the workers in collection order (--no-loadscope-reorder), so these start
# first and the many short files fill in at the end. With xdist's own order, by the number of
# tests a file holds, the long files of one or two tests came last and one worker ran them
# alone for minutes. A file left out of this list keeps its place after them.
SLOW_FILES = (
    "tests/integration/test_cli.py",  # 282 s: `db start` twice, with a taken port
    "tests/integration/test_failover.py",  # 211 s: Neo4j, a broker and workers killed
    "tests/integration/test_readme.py",  # 155 s
    "tests/integration/test_agents_cli.py",  # 142 s
    "tests/integration/test_ingest.py",  # 124 s
    "tests/unit/test_inference.py",  # 117 s
    "tests/integration/test_packaging.py",  # 97 s: the wheel in a fresh environment
    "tests/integration/test_round_trip.py",  # 95 s
    "tests/integration/test_agents.py",  # 91 s
    "tests/integration/test_cypher_escape.py",  # 80 s
    "tests/integration/test_service_load.py",  # 80 s: 60 s of mixed load
    "tests/integration/test_cypher_restart.py",  # 77 s
    "tests/integration/test_twin_service.py",  # 72 s
    "tests/integration/test_sim_interfaces.py",  # 67 s
    "tests/integration/test_mqtt.py",  # 67 s
    "tests/integration/test_projection.py",  # 66 s
    "tests/integration/test_ingest_crash.py",  # 61 s
    "tests/unit/test_safety_cases.py",  # 59 s
    "tests/integration/test_api_fuzz.py",  # 57 s
    "tests/integration/test_api_roles.py",  # 57 s
    "tests/integration/test_hostile_telemetry.py",  # 56 s
    "tests/integration/test_ingest_memory.py",  # 55 s
    "tests/browser/test_console.py",  # 46 s
    "tests/integration/test_hostile_http.py",  # 45 s
    "tests/integration/test_reclassify_bare.py",  # 45 s
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of :data:`SLOW_FILES` first, slowest first; every file's tests in their own
    order, and the other files in theirs (a stable sort)."""
    del config
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(SLOW_FILES)))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (the default, pyproject.toml): one worker per core, at most MAX_WORKERS; one
    alone against a server of your own (``TWINKG_TEST_NEO4J_URI``), which workers cannot share:
    each wipes the one database Neo4j Community has."""
    if os.environ.get("TWINKG_TEST_NEO4J_URI"):
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


@dataclass(frozen=True)
class Neo4jTarget:
    """Where the test Neo4j listens, and how to log in."""

    uri: str
    user: str
    password: str

    def env(self) -> dict[str, str]:
        """Environment that points the ``twinkg`` CLI at this server."""
        return {
            **os.environ,
            "TWINKG_NEO4J_URI": self.uri,
            "TWINKG_NEO4J_USER": self.user,
            "TWINKG_NEO4J_PASSWORD": self.password,
        }


@pytest.fixture(scope="session", autouse=True)
def twinkg_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each test process keeps TwinKG's local state (``TWINKG_HOME``: telemetry logs, agent
    checkpoints, the audit log) in a folder of its own, never in the checkout's ``var/``: the suite
    runs in several processes at once, and a developer's ``var/`` may hold the demo. Tests that
    need a home of their own still set ``TWINKG_HOME`` themselves."""
    home = tmp_path_factory.mktemp("twinkg-home")
    before = os.environ.get("TWINKG_HOME")
    os.environ["TWINKG_HOME"] = str(home)
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop("TWINKG_HOME", None)
        else:
            os.environ["TWINKG_HOME"] = before


@pytest.fixture(scope="session")
def neo4j_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jTarget]:
    """A running Neo4j for the whole session."""
    uri = os.environ.get("TWINKG_TEST_NEO4J_URI")
    if uri:
        yield Neo4jTarget(
            uri,
            os.environ.get("TWINKG_TEST_NEO4J_USER", "neo4j"),
            os.environ.get("TWINKG_TEST_NEO4J_PASSWORD", ""),
        )
        return
    config = local_server.LocalServerConfig.throwaway(
        tmp_path_factory.mktemp("neo4j"), heap="1g", pagecache="256m", tx_memory="1g"
    )
    local_server.start(config, wait_s=240, parent_pid=os.getpid())
    try:
        yield Neo4jTarget(config.bolt_uri, "neo4j", config.password)
    finally:
        local_server.stop(config)


@pytest.fixture(scope="session")
def driver(neo4j_target: Neo4jTarget) -> Iterator[Driver]:
    """The official driver, as an independent client would use it."""
    with GraphDatabase.driver(
        neo4j_target.uri, auth=(neo4j_target.user, neo4j_target.password)
    ) as drv:
        yield drv


def forget_decisions(driver: Driver) -> None:
    """Remove every decision record and the chain head (tests that tamper leave none behind)."""
    with driver.session() as session:
        session.run(
            "MATCH (n:Resource) WHERE n.uri STARTS WITH 'https://w3id.org/twinkg/decision/' "
            "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()


def wipe(driver: Driver) -> None:
    """Delete every node and relationship (the suite's Neo4j is shared; constraints are kept)."""
    with driver.session() as session:
        session.run(
            "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()


def rows_both_ways(
    store: GraphStore, driver: Driver, query: NamedQuery, reference: str, params: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """The rows of a named read and of its reference Cypher (run bare through the driver), as
    ``GraphStore.read`` gives them (times as ISO text), each sorted as a multiset: rows tied on
    the sort key may come in either order."""
    after = store.read(query, **params)
    before, _, _ = driver.execute_query(reference, params)
    plain = [
        {k: getattr(v, "iso_format", lambda v=v: v)() for k, v in r.data().items()} for r in before
    ]
    return sorted(repr(sorted(r.items())) for r in after), sorted(
        repr(sorted(r.items())) for r in plain
    )


def seed_skab(driver: Driver, store: GraphStore | None = None) -> GraphStore:
    """Wipe the database, then seed the ontology and the SKAB testbed through ``store`` (a plain
    store over ``driver`` by default)."""
    from twinkg.graph_seed import seeding  # noqa: PLC0415 - only the tests that seed load it
    from twinkg.graph_seed.registry import Plant, plant_records  # noqa: PLC0415

    wipe(driver)
    store = store or GraphStore(driver)
    store.ensure_schema()
    seeding.load(store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
    return store


@pytest.fixture
def empty_store(driver: Driver) -> GraphStore:
    """A store over an empty database (constraints are kept)."""
    wipe(driver)
    return GraphStore(driver)
