"""The HTTP API fuzzed from its own OpenAPI document (schemathesis), against the real Neo4j.

Every operation the document lists gets schema-valid and schema-breaking requests (a bounded,
derandomised number each) with an admin key, which may do everything; a few operations get a
second pass with a viewer key and with no key at all. For every response:

* no 5xx and no exception escaping the app (the in-process ASGI client re-raises one);
* the status, content type, headers and body conform to what the document says;
* a request answered 4xx changed nothing: the head of the change log (every graph write appends
  to it in its own transaction) and a fingerprint of the graph (nodes, relationships, property
  count, the log's own nodes left out) are the same before and after.

After a 2xx the test waits for the app's agent jobs to go idle, so the writes of an accepted
``POST /agents/jobs`` are never blamed on a later rejected request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from neo4j import Driver
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import ASGIClient
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Neo4jTarget
from tests.integration.api_world import AS_OF, DATA, PUMP, ApiWorld, api_world
from twinkg.api.http.jobs import Jobs
from twinkg.api.security import Role
from twinkg.kg import outbox
from twinkg.ontology.vocab import Label

pytestmark = pytest.mark.neo4j

BASE_URL = "http://testserver"
EXAMPLES = 12
"""Examples per operation and generation mode (admin pass)."""
SLOW = {
    ("POST", "/agents/jobs"): 3,
    ("POST", "/contracts/{name}/validate"): 6,
    ("POST", "/telemetry"): 8,
    ("POST", "/actions"): 6,
    ("GET", "/decisions/{run_id}/{step}/lineage"): 6,
    ("POST", "/decisions/{run_id}/{step}/replay"): 6,
    ("GET", "/provenance/verify"): 6,
    ("GET", "/events"): 4,
}
"""Operations that take long (agent runs, SHACL, chain walks, an event stream read until the
client's deadline) get fewer examples."""
GUARDED = (
    ("POST", "/cypher"),
    ("GET", "/sparql"),
    ("POST", "/telemetry"),
    ("POST", "/actions"),
    ("POST", "/agents/jobs"),
    ("POST", "/sim/runs"),
    ("POST", "/decisions/{run_id}/{step}/approve"),
    ("GET", "/audit"),
)
"""Operations fuzzed again with a viewer key and with none: all need more than reading."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
_LOG_LABELS = [Label.CHANGE.value, Label.CHANGE_LOG.value]
_FINGERPRINT = (
    "MATCH (n) WHERE none(l IN labels(n) WHERE l IN $skip) "
    "OPTIONAL MATCH (n)-[r]->() "
    "RETURN count(DISTINCT n) AS n, count(r) AS r, sum(size(keys(n))) AS p"
)


@dataclass
class Fuzzer:
    """The app behind an in-process ASGI client, its schema, and what went wrong so far."""

    world: ApiWorld
    schema: Any
    client: requests.Session
    failures: list[str] = field(default_factory=list)
    statuses: dict[str, set[int]] = field(default_factory=dict)
    job_ids: list[str] = field(default_factory=list)

    @property
    def jobs(self) -> Jobs:
        """The app's agent jobs."""
        jobs: Jobs = self.world.app.state.jobs
        return jobs

    def state(self) -> tuple[int, int, int, int]:
        """The change log's head and the graph's fingerprint without the log's nodes."""
        head = outbox.state(self.world.store, 0).head
        records, _, _ = self.world.driver.execute_query(_FINGERPRINT, skip=_LOG_LABELS)
        row = records[0]
        return head, int(row["n"]), int(row["r"]), int(row["p"] or 0)

    def operation(self, method: str, path: str) -> Any:
        """The schema's operation for ``method`` and ``path``."""
        return self.schema[path][method]

    def exchange(
        self, case: Any, headers: dict[str, str], expect: Callable[[int], bool] | None = None
    ) -> None:
        """Send ``case``, check the answer, and check that a rejected request changed nothing."""
        label = f"{case.operation.label} [{case.meta.generation.mode.value}]"
        before = self.state()
        try:
            response = case.call(base_url=BASE_URL, session=self.client, headers=headers)
        except Exception as exc:  # an exception escaped the app: report the request
            self.failures.append(f"{label}: unhandled {exc!r}\n{case.as_curl_command(headers)}")
            return
        status = response.status_code
        self.statuses.setdefault(case.operation.label, set()).add(status)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseExceptionGroup as exc:  # schemathesis raises the checks that failed
            self.failures.append(f"{label} → {status}: {exc}\n{case.as_curl_command(headers)}")
        if expect is not None and not expect(status):
            self.failures.append(f"{label}: unexpected {status} {response.text[:300]}")
        if status == 202 and case.operation.path == "/agents/jobs":
            self.job_ids.append(str(response.json()["job_id"]))
        if 200 <= status < 300:
            if not self.jobs.wait_idle(120):
                self.failures.append(f"{label}: agent jobs still busy after 120 s")
            self.world.app.state.twin.settle_reclassification()  # before the next snapshot
            return
        after = self.state()
        if 400 <= status < 500 and after != before:
            self.failures.append(
                f"{label} → {status} changed the graph: {before} → {after}\n"
                f"{case.as_curl_command(headers)}"
            )

    def fuzz(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        examples: int,
        modes: tuple[GenerationMode, ...] = tuple(GenerationMode),
        expect: Callable[[int], bool] | None = None,
        fixed: dict[str, Any] | None = None,
    ) -> None:
        """Run ``examples`` generated requests per mode against one operation; ``fixed`` parts
        (``query``, ``body``, ``path_parameters``) are sent as given, the rest generated."""
        operation = self.operation(method, path)
        for mode in modes:

            @settings(
                max_examples=examples,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(case=operation.as_strategy(generation_mode=mode, **(fixed or {})))
            def run(case: Any) -> None:
                self.exchange(case, headers, expect)

            try:
                run()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE and not fixed:
                    raise  # only a request with nothing left to break has no negative cases


@pytest.fixture(scope="module")
def fuzzer(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzer]:
    if not DATA.exists():
        pytest.skip(f"SKAB data not found at {DATA}: the agents need the cavitation run")
    with api_world(driver, neo4j_target, tmp_path_factory.mktemp("fuzz"), ingest=True) as world:
        document = world.client.get("/openapi.json").json()
        # Credentials come from the test, never generated (a random bearer token is a 401).
        config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
        schema = schemathesis.openapi.from_dict(document, config=config)
        # The world's TestClient ran the lifespan; this client reaches the same app in process
        # without starting a second one (it is never entered as a context manager).
        client = ASGIClient(cast(Any, world.app))
        yield Fuzzer(world, schema, client)
        assert world.app.state.jobs.wait_idle(120)


def _operations(fuzzer: Fuzzer) -> list[tuple[str, str]]:
    ops = []
    for result in fuzzer.schema.get_all_operations():
        operation = result.ok()
        ops.append((operation.method.upper(), operation.path))
    return sorted(ops)


def test_every_operation_as_admin(fuzzer: Fuzzer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="twinkg")
    admin = fuzzer.world.as_role(Role.ADMIN)
    ops = _operations(fuzzer)
    assert ("POST", "/cypher") in ops and ("GET", "/sparql") in ops, ops
    for method, path in ops:
        fuzzer.fuzz(method, path, headers=admin, examples=SLOW.get((method, path), EXAMPLES))
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, logged
    errors = [fuzzer.jobs.get(job_id).error for job_id in fuzzer.job_ids]
    assert not [e for e in errors if e and e["code"] == "internal_error"], errors
    assert not fuzzer.failures, "\n\n".join(fuzzer.failures[:20])
    # The fuzzer reached past the front door: some requests were accepted, some refused.
    seen = set().union(*fuzzer.statuses.values())
    assert any(200 <= s < 300 for s in seen) and any(400 <= s < 500 for s in seen), seen


@pytest.mark.parametrize(("role", "status"), [(Role.VIEWER, 403), (None, 401)])
def test_guarded_operations_refuse_without_the_permission(
    fuzzer: Fuzzer, caplog: pytest.LogCaptureFixture, role: Role | None, status: int
) -> None:
    caplog.set_level(logging.ERROR, logger="twinkg")
    headers = {} if role is None else fuzzer.world.as_role(role)
    fuzzer.failures.clear()
    for method, path in GUARDED:
        fuzzer.fuzz(
            method,
            path,
            headers=headers,
            examples=5,
            modes=(GenerationMode.POSITIVE,),
            expect=lambda got: got == status,
        )
        fuzzer.fuzz(
            method,
            path,
            headers=headers,
            examples=3,
            modes=(GenerationMode.NEGATIVE,),
            expect=lambda got: 400 <= got < 500,
        )
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, logged
    assert not fuzzer.failures, "\n\n".join(fuzzer.failures[:20])


def test_the_error_shape_is_documented(fuzzer: Fuzzer) -> None:
    document = fuzzer.world.client.get("/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert any(re.fullmatch(r"4XX|default", c) for c in codes), (method, path, codes)


def test_requests_anchored_on_real_data(fuzzer: Fuzzer, caplog: pytest.LogCaptureFixture) -> None:
    """Real IRIs, queries and a waiting decision fixed, the rest generated, so requests get
    past the lookups: into the agents, the approval checks, lineage and replay."""
    caplog.set_level(logging.ERROR, logger="twinkg")
    admin = fuzzer.world.as_role(Role.ADMIN)
    fuzzer.failures.clear()
    proposal = {"kind": "controlled_stop", "target": PUMP, "confidence": 0.95, "as_of": AS_OF}

    def waiting() -> dict[str, Any]:
        made = fuzzer.world.client.post("/actions", json=proposal, headers=admin)
        assert made.status_code == 200, made.text
        step = made.json()["steps"][-1]
        assert step["outcome"] == "awaiting_approval", step
        run_id, number = step["decision"].rsplit("/", 2)[-2:]
        return {"path_parameters": {"run_id": run_id, "step": int(number)}}

    decision, other = waiting(), waiting()
    select = "SELECT ?s ?p ?o WHERE { ?s ?p ?o } LIMIT 5"
    cypher = {"query": "MATCH (a {uri: $uri}) RETURN a.tag AS tag", "params": {"uri": PUMP}}
    anchored: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/assets/context", {"query": {"iri": PUMP}}),
        ("POST", "/cypher", {"body": cypher}),
        ("GET", "/sparql", {"query": {"query": select}}),
        ("POST", "/actions", {"body": {**proposal, "kind": "setpoint_change"}}),
        ("GET", "/decisions/{run_id}/{step}", decision),
        ("GET", "/decisions/{run_id}/{step}/lineage", decision),
        ("POST", "/decisions/{run_id}/{step}/replay", decision),
        ("POST", "/decisions/{run_id}/{step}/reject", decision),
        ("POST", "/decisions/{run_id}/{step}/approve", other),
    ]
    for method, path, fixed in anchored:
        fuzzer.fuzz(method, path, headers=admin, examples=4, fixed=fixed)
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, logged
    assert not fuzzer.failures, "\n\n".join(fuzzer.failures[:20])
    reached = {label: codes for label, codes in fuzzer.statuses.items() if 200 in codes}
    for label in (
        "GET /assets/context",
        "POST /cypher",
        "GET /sparql",
        "GET /decisions/{run_id}/{step}",
    ):
        assert label in reached, (label, fuzzer.statuses.get(label))
