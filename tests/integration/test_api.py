"""The HTTP API end to end against the real Neo4j: assets, Cypher and SPARQL with their escape
corpora, telemetry in, contract validation, proposals, approvals by role and criticality, agent
jobs streamed as server-sent events, lineage, replay, verify and the audit log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from neo4j import Driver
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, Neo4jTarget
from tests.integration.api_world import (
    AS_OF,
    DATA,
    FLOW,
    PUMP,
    UNSAFE_PROPOSAL,
    ApiWorld,
    api_world,
)
from twinkg.api.security import Role
from twinkg.api.settings import audit_log_path

pytestmark = pytest.mark.neo4j
CORPUS = REPO / "tests" / "escape_corpus"


@pytest.fixture(scope="module")
def world(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWorld]:
    if not DATA.exists():
        pytest.skip(f"SKAB data not found at {DATA}: the API scenario replays it")
    with api_world(driver, neo4j_target, tmp_path_factory.mktemp("api"), ingest=True) as w:
        yield w


def _error(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert response.headers["X-TwinKG-Error-Code"] == body["error"]["code"]
    return str(body["error"]["code"])


def _caught_up(world: ApiWorld, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = world.client.get("/ready").json()["projection"]
        if status["pending"] == 0 or time.monotonic() > deadline:
            return dict(status)
        time.sleep(0.1)


def test_assets_and_their_context(world: ApiWorld) -> None:
    viewer = world.as_role(Role.VIEWER)
    pumps = world.client.get("/assets", params={"kind": "Pump"}, headers=viewer).json()
    assert PUMP in [a["uri"] for a in pumps]
    context = world.client.get("/assets/context", params={"iri": PUMP}, headers=viewer).json()
    assert context["asset"] == PUMP and context["criticality"] == "A"
    assert context["sensors"] and context["failure_modes"]
    assert context["policies"]["envelopes"]
    assert any(e["score"] is not None for e in context["events"]), "the ingest raised anomalies"
    missing = world.client.get(
        "/assets/context", params={"iri": "https://example.org/x"}, headers=viewer
    )
    assert missing.status_code == 404 and _error(missing) == "not_found"
    bad_kind = world.client.get("/assets", params={"kind": "Nope"}, headers=viewer)
    assert bad_kind.status_code == 400 and _error(bad_kind) == "invalid_input"


def test_cypher_reads_with_parameters_and_caps_rows(world: ApiWorld) -> None:
    engineer = world.as_role(Role.ENGINEER)
    response = world.client.post(
        "/cypher",
        json={"query": "MATCH (a {uri: $uri}) RETURN a.tag AS tag", "params": {"uri": PUMP}},
        headers=engineer,
    )
    assert response.status_code == 200
    assert response.json() == {"columns": ["tag"], "rows": [["P-1"]], "truncated": False}
    capped = world.client.post(
        "/cypher", json={"query": "UNWIND range(1, 5000) AS x RETURN x"}, headers=engineer
    ).json()
    assert capped["truncated"] is True and len(capped["rows"]) == world.settings.query_row_cap


def test_the_cypher_escape_corpus_over_http(world: ApiWorld) -> None:
    corpus = json.loads((CORPUS / "cypher.json").read_text())
    engineer = world.as_role(Role.ENGINEER)
    before = world.counts()
    for case in corpus["rejected"]:
        response = world.client.post(
            "/cypher",
            json={
                "query": case["query"],
                "params": case.get("params", {}),
                "timeout_s": case.get("timeout_s"),
            },
            headers=engineer,
        )
        assert 400 <= response.status_code < 500, (case["name"], response.text)
        # The HTTP request schema refuses some cases (an empty query) before the guard sees them.
        assert _error(response) == case.get("http_code", case["code"]), case["name"]
    assert world.counts() == before
    for case in corpus["allowed"]:
        response = world.client.post(
            "/cypher",
            json={"query": case["query"], "params": case.get("params", {})},
            headers=engineer,
        )
        assert response.status_code == 200, (case["name"], response.text)
    assert world.counts() == before


def test_the_audit_log_announces_a_write_before_it_runs_and_pairs_its_outcome(
    world: ApiWorld,
) -> None:
    engineer = {**world.as_role(Role.ENGINEER), "X-Request-ID": "audit-pairing-1"}
    response = world.client.post("/cypher", json={"query": "RETURN 1 AS one"}, headers=engineer)
    assert response.status_code == 200
    entries = world.client.get("/audit", headers=world.as_role(Role.COMPLIANCE)).json()
    intent, outcome = [e for e in entries if e["request_id"] == "audit-pairing-1"]
    assert (intent["phase"], intent["status"], intent["path"]) == ("intent", 0, "/cypher")
    assert intent["subject"] == outcome["subject"] != "anonymous"
    assert (outcome["phase"], outcome["status"], outcome["intent"]) == (
        "outcome",
        200,
        intent["index"],
    )


def test_the_audit_log_verifies_over_http_and_a_changed_line_is_found(world: ApiWorld) -> None:
    compliance = world.as_role(Role.COMPLIANCE)
    world.client.post("/cypher", json={"query": "RETURN 1"}, headers=world.as_role(Role.ENGINEER))
    good = world.client.get("/audit/verify", headers=compliance).json()
    assert good["ok"] is True and good["count"] >= 2 and good["first_bad_line"] is None
    kept = world.client.get(
        "/audit/verify", params={"expect_head": good["head"]}, headers=compliance
    ).json()
    assert kept["ok"] is True
    path = audit_log_path(world.settings)
    original = path.read_bytes()
    lines = original.decode().splitlines(keepends=True)
    changed = json.loads(lines[0])
    changed["path"] = "/somewhere-else"
    lines[0] = json.dumps(changed) + "\n"
    try:
        path.write_text("".join(lines))
        bad = world.client.get("/audit/verify", headers=compliance).json()
        assert bad["ok"] is False and bad["first_bad_line"] == 1 and bad["reason"], bad
    finally:
        path.write_bytes(original + path.read_bytes()[len("".join(lines).encode()) :])
    viewer = world.client.get("/audit/verify", headers=world.as_role(Role.VIEWER))
    assert viewer.status_code == 403 and _error(viewer) == "forbidden"
    malformed = world.client.get(
        "/audit/verify", params={"expect_head": "nothex"}, headers=compliance
    )
    assert malformed.status_code == 422 and _error(malformed) == "invalid_request"


def test_sparql_protocol_formats_and_lag(world: ApiWorld) -> None:
    engineer = world.as_role(Role.ENGINEER)
    _caught_up(world)
    query = (
        "PREFIX tk: <https://w3id.org/twinkg/ontology#> "
        "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> "
        # the projection holds asserted types and the ontology: subclasses by a property path
        "SELECT ?tag WHERE { ?p a/rdfs:subClassOf* tk:Pump ; tk:tag ?tag } ORDER BY ?tag"
    )
    get = world.client.get("/sparql", params={"query": query}, headers=engineer)
    assert get.status_code == 200, get.text
    assert get.headers["content-type"].startswith("application/sparql-results+json")
    tags = [b["tag"]["value"] for b in get.json()["results"]["bindings"]]
    assert "P-1" in tags
    assert float(get.headers["X-TwinKG-Projection-Lag-Seconds"]) >= 0
    assert int(get.headers["X-TwinKG-Projection-Pending"]) >= 0
    form = world.client.post(
        "/sparql",
        data={"query": query},
        headers={**engineer, "Accept": "text/csv"},
    )
    assert form.status_code == 200 and form.headers["content-type"].startswith("text/csv")
    assert "P-1" in form.text
    direct = world.client.post(
        "/sparql",
        content=f"CONSTRUCT {{ <{PUMP}> ?p ?o }} WHERE {{ <{PUMP}> ?p ?o }}",
        headers={
            **engineer,
            "Content-Type": "application/sparql-query",
            "Accept": "text/turtle",
        },
    )
    assert direct.status_code == 200 and direct.headers["content-type"].startswith("text/turtle")
    assert "P-1" in direct.text
    refused = world.client.get(
        "/sparql", params={"query": query}, headers={**engineer, "Accept": "image/png"}
    )
    assert refused.status_code == 406 and _error(refused) == "not_acceptable"


def test_the_sparql_escape_corpus_over_http(world: ApiWorld) -> None:
    path = CORPUS / "sparql.json"
    if not path.exists():
        pytest.fail(f"{path} is missing")
    corpus = json.loads(path.read_text())
    engineer = world.as_role(Role.ENGINEER)
    before = world.counts()
    for case in corpus["rejected"]:
        response = world.client.post(
            "/sparql",
            content=case["query"].encode(),
            headers={**engineer, "Content-Type": "application/sparql-query"},
        )
        assert 400 <= response.status_code < 500, (case["name"], response.text)
        # The HTTP request schema refuses some cases (an empty query) before the guard sees them.
        assert _error(response) == case.get("http_code", case["code"]), case["name"]
    for body in (b"update=INSERT+DATA+%7B%3Ca%3E+%3Cb%3E+%3Cc%3E%7D", b"query=ASK{}&update=x"):
        response = world.client.post(
            "/sparql",
            content=body,
            headers={**engineer, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400 and _error(response) == "sparql_refused"
    update = world.client.post(
        "/sparql",
        content=b"INSERT DATA { <urn:a> <urn:b> <urn:c> }",
        headers={**engineer, "Content-Type": "application/sparql-update"},
    )
    assert update.status_code == 400 and _error(update) == "sparql_refused"
    for case in corpus["allowed"]:
        response = world.client.post(
            "/sparql",
            content=case["query"].encode(),
            headers={**engineer, "Content-Type": "application/sparql-query"},
        )
        assert response.status_code == 200, (case["name"], response.text)
    assert world.counts() == before


def test_bad_bodies_are_clear_errors_and_change_nothing(world: ApiWorld) -> None:
    producer = world.as_role(Role.PRODUCER)
    before = world.counts()
    wrong_type = world.client.post(
        "/telemetry", content=b"a,b", headers={**producer, "Content-Type": "text/csv"}
    )
    assert wrong_type.status_code == 415 and _error(wrong_type) == "unsupported_media_type"
    malformed = world.client.post(
        "/telemetry", content=b"{not json", headers={**producer, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and _error(malformed) == "invalid_input"
    huge = b'{"points": [' + b" " * (world.settings.api_max_body_bytes + 10) + b"]}"
    too_big = world.client.post(
        "/telemetry", content=huge, headers={**producer, "Content-Type": "application/json"}
    )
    assert too_big.status_code == 413 and _error(too_big) == "payload_too_large"
    unknown_field = world.client.post(
        "/cypher", json={"query": "RETURN 1", "mode": "write"}, headers=world.as_role(Role.ENGINEER)
    )
    assert unknown_field.status_code == 422 and _error(unknown_field) == "invalid_request"
    assert world.counts() == before


def test_telemetry_over_http_is_contract_checked(world: ApiWorld) -> None:
    sensor = world.client.post(
        "/cypher",
        json={
            "query": "MATCH (s:Sensor)-[:HAS_UNIT]->(u) WHERE s.lastObservedAt IS NOT NULL "
            "RETURN s.uri AS uri, toString(s.lastObservedAt) AS t, s.lastValue AS v, "
            "u.uri AS unit ORDER BY uri LIMIT 1"
        },
        headers=world.as_role(Role.ENGINEER),
    ).json()["rows"][0]
    uri, last, value, unit = sensor
    point = {"sensor": uri, "unit": unit}
    points = [
        {**point, "time": last, "value": value},  # not after the previous reading
        {**point, "time": "2020-02-08T19:20:00+00:00", "value": value},
        {**point, "time": "2020-02-08T19:20:01+00:00", "value": float("nan")},
    ]
    body = json.dumps({"contract": "telemetry@1.0.0", "points": points}, allow_nan=True).encode()
    response = world.client.post(
        "/telemetry",
        content=body,
        headers={**world.as_role(Role.PRODUCER), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["points"] == 3 and report["rejected"] >= 1 and report["accepted"] >= 1
    again = world.client.post(
        "/telemetry",
        content=body,
        headers={**world.as_role(Role.PRODUCER), "Content-Type": "application/json"},
    ).json()
    assert again["duplicate"] is True


def test_contract_validation_of_posted_turtle(world: ApiWorld) -> None:
    engineer = world.as_role(Role.ENGINEER)
    broken = (
        "@prefix tk: <https://w3id.org/twinkg/ontology#> .\n<https://example.org/p9> a tk:Pump .\n"
    )
    response = world.client.post(
        "/contracts/asset/validate",
        content=broken.encode(),
        headers={**engineer, "Content-Type": "text/turtle"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["conforms"] is False and response.json()["results"]
    garbage = world.client.post(
        "/contracts/asset/validate",
        content=b"this is { not turtle",
        headers={**engineer, "Content-Type": "text/turtle"},
    )
    assert garbage.status_code == 400 and _error(garbage) == "turtle_malformed"
    unknown = world.client.post(
        "/contracts/nosuch/validate",
        content=broken.encode(),
        headers={**engineer, "Content-Type": "text/turtle"},
    )
    assert unknown.status_code == 400 and _error(unknown) == "contract_unknown"


def test_a_proposal_with_an_unknown_quantity_kind_is_an_input_error(world: ApiWorld) -> None:
    before = world.counts()
    response = world.client.post(
        "/actions",
        json={
            "kind": "setpoint_change",
            "target": PUMP,
            "confidence": 0.95,
            "quantity_kind": "http://qudt.org/vocab/quantitykind/NoSuchKind",
            "current_setpoint": 80.0,
            "proposed_setpoint": 81.0,
            "ramp_s": 60.0,
            "as_of": AS_OF,
        },
        headers=world.as_role(Role.AGENT),
    )
    assert response.status_code == 400, response.text
    assert _error(response) == "quantity_kind_unknown"
    assert world.counts() == before  # refused before any decision was recorded


def test_an_unsafe_proposal_is_refused_and_recorded(world: ApiWorld) -> None:
    response = world.client.post(
        "/actions",
        json=UNSAFE_PROPOSAL,
        headers=world.as_role(Role.AGENT),
    )
    assert response.status_code == 200, response.text
    step = response.json()["steps"][-1]
    assert step["outcome"] == "refused"
    run_id, number = step["decision"].rsplit("/", 2)[-2:]
    compliance = world.as_role(Role.COMPLIANCE)
    lineage = world.client.get(f"/decisions/{run_id}/{number}/lineage", headers=compliance)
    assert lineage.status_code == 200 and lineage.json()["prov_valid"] is True
    turtle = world.client.get(
        f"/decisions/{run_id}/{number}/lineage", headers={**compliance, "Accept": "text/turtle"}
    )
    assert turtle.headers["content-type"].startswith("text/turtle") and "prov:" in turtle.text
    jsonld = world.client.get(
        f"/decisions/{run_id}/{number}/lineage",
        headers={**compliance, "Accept": "application/ld+json"},
    )
    assert jsonld.headers["content-type"].startswith("application/ld+json")
    assert json.loads(jsonld.text)
    replay = world.client.post(f"/decisions/{run_id}/{number}/replay", headers=compliance).json()
    assert replay["same"] is True and replay["outcome"] == "refused"


def test_approval_by_role_and_criticality(world: ApiWorld, driver: Driver) -> None:
    proposal = {"kind": "controlled_stop", "target": PUMP, "confidence": 0.95, "as_of": AS_OF}
    step = world.client.post("/actions", json=proposal, headers=world.as_role(Role.AGENT)).json()[
        "steps"
    ][-1]
    assert step["outcome"] == "awaiting_approval"
    run_id, number = step["decision"].rsplit("/", 2)[-2:]
    waiting = world.client.get("/approvals", headers=world.as_role(Role.VIEWER)).json()
    assert step["decision"] in [r["decision"] for r in waiting]
    # It says when it was asked and until when it may be approved, and shows what the decision
    # used: findings first (those no earlier test's decision used), then the telemetry windows
    # and the trust scores; each of them is in the decision's lineage (as compliance reads it),
    # and no query rows are shown.
    mine = next(r for r in waiting if r["decision"] == step["decision"])
    # The inbox reads every request's evidence and target criticality in one query each: what
    # it shows is what one request's reads give.
    twin = world.app.state.twin
    inbox = twin.pending()
    assert step["decision"] in {p.decision for p in inbox}
    for request in inbox:
        alone = twin.evidence(request.run_id)
        assert sorted(map(repr, request.evidence)) == sorted(map(repr, alone)), request.run_id
        assert request.target_criticality == twin.criticality(request.action.target)
    asked, until = (datetime.fromisoformat(mine[k]) for k in ("requested_at", "expires_at"))
    assert until - asked == timedelta(hours=8)  # the default TWINKG_APPROVAL_REQUEST_TTL_S
    kinds = [e["kind"] for e in mine["evidence"]]
    order = [
        *("Alarm", "Anomaly", "TelemetryWindow", "TrustScore", "Hypothesis"),
        *("OperatingEnvelope", "SafetyPolicy", "ApprovalRequirement", "Policy"),
    ]
    assert {"TelemetryWindow", "TrustScore", "ApprovalRequirement"} <= set(kinds), kinds
    assert set(kinds) <= set(order) and kinds == sorted(kinds, key=order.index), kinds
    for finding in (e for e in mine["evidence"] if e["kind"] in {"Alarm", "Anomaly"}):
        assert finding["about"] == [PUMP] and finding["facts"]["occurredAt"], finding
    windows = [e for e in mine["evidence"] if e["kind"] == "TelemetryWindow"]
    assert all(e["about"] and e["facts"]["sampleCount"] > 0 for e in windows), windows
    lineage = world.client.get(
        f"/decisions/{run_id}/{number}/lineage", headers=world.as_role(Role.COMPLIANCE)
    ).json()
    used = json.dumps(lineage["graph"])
    assert all(e["iri"] in used for e in mine["evidence"])
    before = world.counts()
    # The pump is criticality A: an operator may not approve it, nor edit outside the rules.
    operator = world.client.post(
        f"/decisions/{run_id}/{number}/approve", json={}, headers=world.as_role(Role.OPERATOR)
    )
    assert operator.status_code == 403 and _error(operator) == "forbidden"
    bad_edit = world.client.post(
        f"/decisions/{run_id}/{number}/approve",
        json={"edits": {"confidence": 1.0}},
        headers=world.as_role(Role.SUPERVISOR),
    )
    assert bad_edit.status_code == 422 and _error(bad_edit) == "invalid_request"
    assert world.counts() == before
    approved = world.client.post(
        f"/decisions/{run_id}/{number}/approve",
        json={"comment": "checked on site"},
        headers=world.as_role(Role.SUPERVISOR),
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["steps"][-1]["outcome"] == "applied"
    again = world.client.post(
        f"/decisions/{run_id}/{number}/approve", json={}, headers=world.as_role(Role.SUPERVISOR)
    )
    assert again.status_code == 409 and _error(again) == "not_awaiting_approval"
    # The approval is in the audit log under the supervisor's identity.
    entries = world.client.get("/audit", headers=world.as_role(Role.COMPLIANCE)).json()
    mine = [e for e in entries if e["path"].endswith(f"/{run_id}/{number}/approve")]
    assert any(e["status"] == 200 and "supervisor" in json.dumps(e).lower() for e in mine), mine
    assert any(e["status"] == 403 for e in mine)
    driver.execute_query("MATCH (p {uri: $pump}) SET p.operationalStatus = 'running'", pump=PUMP)


def test_agent_jobs_stream_their_steps(world: ApiWorld) -> None:
    agent = world.as_role(Role.AGENT)
    job = world.client.post("/agents/jobs", json={"as_of": AS_OF}, headers=agent)
    assert job.status_code == 202, job.text
    events: list[tuple[str, dict[str, Any]]] = []
    with world.client.stream("GET", job.json()["events_url"], headers=agent) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line.split(":", 1)[1])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "end" and events[-1][1]["state"] == "done"
    assert "node" in kinds
    status = world.client.get(f"/agents/jobs/{job.json()['job_id']}", headers=agent).json()
    assert status["state"] == "done"
    # A client that reconnects with Last-Event-ID gets only what came after that event.
    url = job.json()["events_url"]
    resumed = world.client.get(url, headers={**agent, "Last-Event-ID": str(len(events) - 1)})
    assert resumed.status_code == 200
    assert [line for line in resumed.text.splitlines() if line.startswith("event:")] == [
        "event: end"
    ]
    bad = world.client.get(url, headers={**agent, "Last-Event-ID": "x1"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"


def test_verify_and_the_projection_sees_decisions(world: ApiWorld) -> None:
    verify = world.client.get("/provenance/verify", headers=world.as_role(Role.COMPLIANCE)).json()
    assert verify["ok"] is True and verify["records"] >= 2
    _caught_up(world)
    query = (
        "PREFIX tk: <https://w3id.org/twinkg/ontology#> "
        "SELECT (COUNT(?d) AS ?n) WHERE { ?d a tk:Decision }"
    )
    answer = world.client.get(
        "/sparql", params={"query": query}, headers=world.as_role(Role.COMPLIANCE)
    ).json()
    assert int(answer["results"]["bindings"][0]["n"]["value"]) == verify["records"]


def test_an_edit_is_judged_again_and_applied_as_edited(world: ApiWorld, driver: Driver) -> None:
    proposal = {
        "kind": "setpoint_change",
        "target": PUMP,
        "confidence": 0.3,  # under the trust threshold: a person must decide
        "quantity_kind": FLOW,
        "current_setpoint": 80.0,
        "proposed_setpoint": 75.0,
        "ramp_s": 60.0,
        "as_of": AS_OF,
    }
    made = world.client.post("/actions", json=proposal, headers=world.as_role(Role.AGENT))
    step = made.json()["steps"][-1]
    assert step["outcome"] == "awaiting_approval", step
    run_id, number = step["decision"].rsplit("/", 2)[-2:]
    url = f"/decisions/{run_id}/{number}/edit"
    supervisor = world.as_role(Role.SUPERVISOR)
    before = world.counts()
    for edits in ({}, {"proposed_setpoint": "NaN"}, {"confidence": 1.0}):
        refused = world.client.post(url, json={"edits": edits}, headers=supervisor)
        assert refused.status_code == 422 and _error(refused) == "invalid_request", edits
    nan = world.client.post(
        url,
        content=b'{"edits": {"proposed_setpoint": NaN}}',
        headers={**supervisor, "Content-Type": "application/json"},
    )
    assert 400 <= nan.status_code < 500
    assert world.counts() == before
    edited = world.client.post(
        url,
        json={"edits": {"proposed_setpoint": 77.5}, "comment": "smaller step"},
        headers=supervisor,
    )
    assert edited.status_code == 200, edited.text
    applied = edited.json()["steps"][-1]
    assert applied["outcome"] == "applied", applied
    records, _, _ = driver.execute_query(
        "MATCH (e {uri: $effect}) RETURN e.value AS value, e.previousValue AS previous",
        effect=applied["decision"] + "/effect",
    )
    assert (records[0]["value"], records[0]["previous"]) == (77.5, 80.0)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_what_came_in_and_what_was_decided(world: ApiWorld) -> None:
    viewer = world.as_role(Role.VIEWER)
    before = _samples(world.client.get("/metrics", headers=viewer).text)
    point = {
        "sensor": PUMP.rsplit("/", 1)[0] + "/sensor-flow",
        "unit": "http://qudt.org/vocab/unit/L-PER-MIN",
    }
    stamp = datetime.now(UTC) - timedelta(minutes=1)
    points = [
        {**point, "time": stamp.isoformat().replace("+00:00", "Z"), "value": 100.0},
        {**point, "time": "not a time", "value": 100.0},  # quarantined
    ]
    posted = world.client.post(
        "/telemetry",
        json={"contract": "telemetry@1.0.0", "points": points},
        headers=world.as_role(Role.PRODUCER),
    ).json()
    refused = world.client.post("/actions", json=UNSAFE_PROPOSAL, headers=world.as_role(Role.AGENT))
    assert refused.json()["steps"][-1]["outcome"] == "refused"
    response = world.client.get("/metrics", headers=viewer)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("twinkg_points_ingested_total", way="api") == posted["accepted"]
    assert grew("twinkg_points_quarantined_total", way="api") == posted["rejected"] >= 1
    assert grew("twinkg_ingest_batches_total", way="api", result="applied") == 1
    assert grew("twinkg_decisions_total", outcome="refused") == 1
    assert grew("twinkg_decision_seconds_count") == 1
    assert grew("twinkg_guard_seconds_count") == 1
    assert ("twinkg_guarded_again_total", ()) in after  # decision 0086; none changed here
    assert grew("twinkg_agent_node_seconds_count", node="record") == 1
    assert ("twinkg_projection_lag_seconds", ()) in after
    # metrics are read-only operational data: a producer (no read permission) gets none
    denied = world.client.get("/metrics", headers=world.as_role(Role.PRODUCER))
    assert denied.status_code == 403 and _error(denied) == "forbidden"
    assert world.client.get("/metrics").status_code == 401
