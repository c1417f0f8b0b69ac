"""The ways in agree because they share one :class:`~api.twin.Twin`: the ``twinkg`` command and
the HTTP API, over the same Neo4j and home, give the same chain verification, the same lineage
and the same asset context (decision 0031)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from neo4j import Driver
from rdflib import Graph
from rdflib.compare import isomorphic

from tests.conftest import Neo4jTarget
from tests.integration.api_world import (
    DATA,
    PUMP,
    UNSAFE_PROPOSAL,
    ApiWorld,
    api_world,
)
from tests.integration.test_cli import run
from twinkg.api.security import Role

pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def world(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWorld]:
    if not DATA.exists():
        pytest.skip(f"SKAB data not found at {DATA}: the scenario replays it")
    with api_world(driver, neo4j_target, tmp_path_factory.mktemp("agree"), ingest=True) as w:
        yield w


@pytest.fixture(scope="module")
def decision(world: ApiWorld) -> str:
    """A decision recorded over HTTP: a setpoint far above the envelope, refused."""
    response = world.client.post(
        "/actions",
        json=UNSAFE_PROPOSAL,
        headers=world.as_role(Role.AGENT),
    )
    assert response.status_code == 200, response.text
    run_id, step = response.json()["steps"][-1]["decision"].rsplit("/", 2)[-2:]
    return f"{run_id}/{step}"


def _cli(world: ApiWorld, target: Neo4jTarget, *args: str) -> subprocess.CompletedProcess[str]:
    done = run(*args, env={**target.env(), "TWINKG_HOME": str(world.home)})
    assert done.returncode == 0, done.stderr
    return done


def test_the_cli_and_http_verify_the_chain_alike(
    world: ApiWorld, neo4j_target: Neo4jTarget, decision: str
) -> None:
    http = world.client.get("/provenance/verify", headers=world.as_role(Role.COMPLIANCE)).json()
    assert http["ok"] is True and http["records"] >= 1
    cli = _cli(world, neo4j_target, "verify")
    assert cli.stdout.strip() == f"ok: {http['records']} records, head {http['head_hash']}"
    # from the head as trusted: nothing after it to check, in either
    head = http["head_hash"]
    since = world.client.get(
        "/provenance/verify", params={"since": head}, headers=world.as_role(Role.COMPLIANCE)
    ).json()
    assert since["ok"] is True and since["checked"] == 0
    assert since["since_index"] == http["records"]
    cli_since = _cli(world, neo4j_target, "verify", "--since", head)
    assert cli_since.stdout.strip() == (
        f"ok: {http['records']} records (0 checked after the trusted head, "
        f"#{http['records']}), head {head}"
    )


def test_the_cli_and_http_give_the_same_lineage(
    world: ApiWorld, neo4j_target: Neo4jTarget, decision: str
) -> None:
    compliance = world.as_role(Role.COMPLIANCE)
    url = f"/decisions/{decision}/lineage"
    turtle = world.client.get(url, headers={**compliance, "Accept": "text/turtle"})
    assert turtle.status_code == 200, turtle.text
    cli = _cli(world, neo4j_target, "lineage", decision, "--format", "turtle")
    over_http = Graph().parse(data=turtle.text, format="turtle")
    assert len(over_http) > 0
    assert isomorphic(over_http, Graph().parse(data=cli.stdout, format="turtle"))
    summary = world.client.get(url, headers=compliance).json()
    text = _cli(world, neo4j_target, "lineage", decision).stdout
    assert summary["prov_valid"] is True and summary["triples"] == len(over_http)
    assert f"PROV-O: valid ({summary['triples']} triples)" in text
    assert f"decision {summary['decision']}  (#" in text


def test_the_cli_and_http_give_the_same_asset_context(
    world: ApiWorld, neo4j_target: Neo4jTarget
) -> None:
    http = world.client.get(
        "/assets/context", params={"iri": PUMP, "events": 5}, headers=world.as_role(Role.VIEWER)
    )
    assert http.status_code == 200, http.text
    cli = _cli(world, neo4j_target, "context", PUMP, "--events", "5", "--json")
    assert json.loads(cli.stdout) == http.json()
    assert http.json()["sensors"] and http.json()["policies"]["envelopes"]
