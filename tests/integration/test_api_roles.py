"""The whole role × endpoint matrix: every route, every role, against the real app and Neo4j.

A role without the route's permission gets 403 ``forbidden``; a role with it gets past
authorisation (whatever the operation then answers: 200, 404 for an unknown decision, …); no
credentials get 401 everywhere but the public probes and docs. A test also checks that the matrix
names every route the app serves, so a new route cannot skip it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget
from tests.integration.api_world import PUMP, ApiWorld, api_world
from twinkg.api.security import GRANTS, KeyStore, Permission, Role
from twinkg.api.settings import api_keys_path

pytestmark = pytest.mark.neo4j
NOBODY = "https://example.org/no-such-asset"


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # the route's template
    url: str  # what is called
    permission: Permission
    kwargs: dict[str, Any] = field(default_factory=dict)


MATRIX = (
    Call("GET", "/assets", "/assets", Permission.READ),
    Call("GET", "/metrics", "/metrics", Permission.READ),
    Call("GET", "/assets/context", f"/assets/context?iri={PUMP}", Permission.READ),
    Call("GET", "/assets/graph", "/assets/graph?area=L-1", Permission.READ),
    Call(
        "POST",
        "/telemetry",
        "/telemetry",
        Permission.INGEST,
        {"content": b'{"points": "not a list"}', "headers": {"Content-Type": "application/json"}},
    ),
    Call(
        "POST",
        "/contracts/{name}/validate",
        "/contracts/asset/validate",
        Permission.VALIDATE,
        {"content": b"", "headers": {"Content-Type": "text/turtle"}},
    ),
    Call("POST", "/cypher", "/cypher", Permission.QUERY, {"json": {"query": "RETURN 1 AS one"}}),
    Call("GET", "/sparql", "/sparql?query=ASK%7B%7D", Permission.QUERY),
    Call(
        "POST",
        "/sparql",
        "/sparql",
        Permission.QUERY,
        {"content": b"ASK {}", "headers": {"Content-Type": "application/sparql-query"}},
    ),
    Call(
        "POST", "/agents/jobs", "/agents/jobs", Permission.RUN_AGENTS, {"json": {"scope": NOBODY}}
    ),
    Call("GET", "/agents/jobs/{job_id}", "/agents/jobs/nojob", Permission.READ),
    Call("GET", "/agents/jobs/{job_id}/events", "/agents/jobs/nojob/events", Permission.READ),
    # An unknown kind: a stream would never end, a refusal after the permission check does.
    Call("GET", "/events", "/events?kind=nonsense", Permission.READ),
    Call(
        "POST",
        "/sim/runs",
        "/sim/runs",
        Permission.RUN_AGENTS,
        {"json": {"scenario": "no-such", "policy": "reactive"}},
    ),
    Call("GET", "/sim/runs", "/sim/runs", Permission.READ),
    Call("GET", "/sim/runs/{job_id}", "/sim/runs/nojob", Permission.READ),
    Call("POST", "/actions", "/actions", Permission.PROPOSE, {"json": {"kind": "nonsense"}}),
    Call("GET", "/approvals", "/approvals", Permission.READ),
    Call("GET", "/me", "/me", Permission.READ),
    Call(
        "POST",
        "/decisions/{run_id}/{step}/approve",
        "/decisions/none/1/approve",
        Permission.APPROVE,
    ),
    Call(
        "POST", "/decisions/{run_id}/{step}/reject", "/decisions/none/1/reject", Permission.APPROVE
    ),
    Call(
        "POST",
        "/decisions/{run_id}/{step}/edit",
        "/decisions/none/1/edit",
        Permission.APPROVE,
        {"json": {"edits": {"ramp_s": 120.0}}},
    ),
    Call("GET", "/decisions", "/decisions", Permission.READ),
    Call("GET", "/decisions/{run_id}/{step}", "/decisions/none/1", Permission.READ),
    Call(
        "GET", "/decisions/{run_id}/{step}/lineage", "/decisions/none/1/lineage", Permission.AUDIT
    ),
    Call("POST", "/decisions/{run_id}/{step}/replay", "/decisions/none/1/replay", Permission.AUDIT),
    Call("GET", "/provenance/verify", "/provenance/verify", Permission.AUDIT),
    Call("GET", "/audit", "/audit", Permission.AUDIT),
    Call("GET", "/audit/verify", "/audit/verify", Permission.AUDIT),
)
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/auth/oidc"),  # a sign-in starts before any credential (test_oidc.py)
    ("POST", "/auth/oidc/token"),
}


@pytest.fixture(scope="module")
def world(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWorld]:
    with api_world(driver, neo4j_target, tmp_path_factory.mktemp("roles"), ingest=False) as w:
        yield w


def test_the_matrix_names_every_route(world: ApiWorld) -> None:
    # The OpenAPI document lists every route the app serves (routers are included lazily, so
    # app.routes does not show them one by one).
    served = {
        (method.upper(), path)
        for path, operations in world.app.openapi()["paths"].items()
        for method in operations
    }
    named = {(c.method, c.path) for c in MATRIX} | PUBLIC
    assert served == named


@pytest.mark.parametrize("call", MATRIX, ids=lambda c: f"{c.method} {c.path}")
def test_every_role_against_every_route(world: ApiWorld, call: Call) -> None:
    for role in Role:
        response = world.client.request(
            call.method,
            call.url,
            **{**call.kwargs, "headers": {**call.kwargs.get("headers", {}), **world.as_role(role)}},
        )
        if call.permission in GRANTS[role]:
            assert response.status_code not in (401, 403), (role, response.text)
            assert response.status_code < 500, (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert response.json()["error"]["code"] == "forbidden"
            assert response.headers["X-TwinKG-Error-Code"] == "forbidden"


@pytest.mark.parametrize("call", MATRIX, ids=lambda c: f"{c.method} {c.path}")
def test_no_credentials_no_entry(world: ApiWorld, call: Call) -> None:
    response = world.client.request(call.method, call.url, **call.kwargs)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "auth_required"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_probes_and_docs_are_public(world: ApiWorld) -> None:
    for path in ("/health", "/ready", "/docs", "/openapi.json"):
        assert world.client.get(path).status_code == 200, path
    ready = world.client.get("/ready").json()
    assert ready["ready"] is True and ready["neo4j"] == "ok"
    assert ready["projection"]["pending"] >= 0


@pytest.mark.parametrize("authorization", ["garbage", "", "Bearer", "Bearer not.a.jwt"])
def test_a_valid_key_with_another_credential_is_refused_as_ambiguous(
    world: ApiWorld, authorization: str
) -> None:
    key = world.keys[Role.ADMIN]
    response = world.client.get(
        "/assets", headers={"X-API-Key": key, "Authorization": authorization}
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "auth_ambiguous"
    assert response.headers["X-TwinKG-Error-Code"] == "auth_ambiguous"
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_a_credential_header_sent_twice_is_refused(world: ApiWorld) -> None:
    key = world.keys[Role.ADMIN]
    response = world.client.get("/assets", headers=[("X-API-Key", key), ("X-API-Key", key)])
    assert response.status_code == 401 and response.json()["error"]["code"] == "auth_ambiguous"
    empty = world.client.get("/assets", headers={"X-API-Key": ""})
    assert empty.status_code == 401 and empty.json()["error"]["code"] == "auth_invalid"


def test_a_forged_or_revoked_key_is_refused(world: ApiWorld) -> None:
    good = world.keys[Role.VIEWER]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    response = world.client.get("/assets", headers={"X-API-Key": forged})
    assert response.status_code == 401 and response.json()["error"]["code"] == "auth_invalid"
    response = world.client.get("/assets", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "auth_invalid"


PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"


def _post(world: ApiWorld, key: str, points: list[dict[str, Any]]) -> httpx2.Response:
    body = json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    return world.client.post("/telemetry", content=body, headers=headers)


def test_a_key_bound_to_a_site_posts_only_that_sites_sensors(world: ApiWorld) -> None:
    """Decision 0085: a producer's key made with ``--site`` may name only that site's sensors;
    a batch naming another site's sensor, or one on no site, is refused whole (403
    ``site_mismatch``, nothing written); an unknown sensor is the contract's to quarantine; a
    key with no site is bound to none."""
    keys = KeyStore(api_keys_path(world.settings))  # the app reads the file again on change
    _, skt = keys.create(name="gw-skt", roles=[Role.PRODUCER], sites=["SKT"])
    _, other = keys.create(name="gw-other", roles=[Role.PRODUCER], sites=["OTHER", "THIRD"])
    stray = "https://example.org/nowhere/sensor-stray"  # in the graph, on no site
    world.driver.execute_query("CREATE (:Resource:Sensor {uri: $u})", u=stray)
    start = datetime.now(UTC) - timedelta(minutes=30)

    def points(sensors: list[str], minute: int) -> list[dict[str, Any]]:
        at = start + timedelta(minutes=minute)
        return [
            {
                "sensor": sensor,
                "unit": "http://qudt.org/vocab/unit/DEG_C",
                "time": (at + timedelta(seconds=k)).isoformat(),
                "value": 40.0 + k,
            }
            for k, sensor in enumerate(sensors)
        ]

    temperature = PLANT + "sensor-temperature"
    try:
        before = world.counts()
        refused = _post(world, other, points([temperature, temperature], 0))
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "site_mismatch"
        assert "'gw-other' (bound to site OTHER, THIRD)" in error["message"]
        assert f"{temperature} (site 'SKT')" in error["message"]
        lone = _post(world, skt, points([temperature, stray], 1))  # one of SKT's, one of none
        assert lone.status_code == 403 and f"{stray} (no site)" in lone.json()["error"]["message"]
        assert world.counts() == before  # nothing of either was written
        unknown = "https://example.org/nowhere/sensor-never-seeded"
        mixed = _post(world, skt, points([temperature, unknown], 2))
        assert mixed.status_code == 200, mixed.text
        assert mixed.json()["accepted"] == 1 and mixed.json()["rejected"] == 1
        own = _post(world, skt, points([temperature] * 3, 3))
        assert own.status_code == 200 and own.json()["accepted"] == 3, own.text
        anywhere = _post(world, world.keys[Role.PRODUCER], points([stray], 4))  # bound to none
        assert anywhere.status_code == 200, anywhere.text
    finally:
        world.driver.execute_query("MATCH (s:Sensor {uri: $u}) DETACH DELETE s", u=stray)
