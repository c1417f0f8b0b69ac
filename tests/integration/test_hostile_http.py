"""Every body-taking route of the HTTP API against hostile bytes, on the real Neo4j.

Schemathesis (``test_api_fuzz.py``) fuzzes what the OpenAPI document describes; this module sends
what no document describes: arbitrary bytes, invalid UTF-8, a byte-order mark, JSON nested
thousands deep, numbers of hundreds of digits, ``NaN``/``Infinity`` tokens, duplicate keys, lone
surrogates, and every JSON type where another is expected, under several content types. For
each request (Hypothesis, derandomised, plus the corpus of issue 11 as explicit examples):

* the answer is never a 5xx, and a 4xx carries the one error shape with a stable code;
* a 4xx changed nothing: the change log's head, the graph's fingerprint and the telemetry log's
  files and quarantine are as before;
* the server still answers ``/health`` afterwards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from neo4j import Driver

from tests.conftest import Neo4jTarget
from tests.integration.api_world import PUMP, ApiWorld, api_world
from twinkg.api.security import Role
from twinkg.kg import outbox
from twinkg.ontology.vocab import Label

pytestmark = pytest.mark.neo4j

SENSOR = "https://w3id.org/twinkg/plant/skab-testbed/sensor-accelerometer1"
ROUTES = (
    ("POST", "/telemetry"),
    ("POST", "/cypher"),
    ("POST", "/sparql"),
    ("POST", "/actions"),
    ("POST", "/agents/jobs"),
    ("POST", "/contracts/telemetry/validate"),
    ("POST", "/decisions/no-such-run/0/approve"),
)
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/sparql-query",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "",
)
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
_SKIP = [Label.CHANGE.value, Label.CHANGE_LOG.value]
_FINGERPRINT = (
    "MATCH (n) WHERE none(l IN labels(n) WHERE l IN $skip) OPTIONAL MATCH (n)-[r]->() "
    "RETURN count(DISTINCT n) AS n, count(r) AS r, sum(size(keys(n))) AS p"
)


def _point(value: str = "1.5", time: str = '"2020-02-08T18:00:00Z"') -> str:
    return (
        f'{{"sensor": "{SENSOR}", "unit": "http://qudt.org/vocab/unit/GM", '
        f'"time": {time}, "value": {value}}}'
    )


def _batch(*points: str) -> bytes:
    return ('{"contract": "telemetry@1.0.0", "points": [' + ", ".join(points) + "]}").encode()


# The findings of issue 11, item 2 and 12, sent to every route (each is hostile somewhere).
CORPUS: tuple[bytes, ...] = (
    _batch(_point('"1.5"'), _point("null"), _point("true"), _point("{}"), _point("[2.5]")),
    _batch(_point("1" + "0" * 400)),
    _batch(_point(time='"2300-01-01T00:00:00Z"'), _point(time='"0001-01-01T00:00:00Z"')),
    _batch(_point("NaN"), _point("Infinity"), _point("-Infinity")),
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b"[" * 100_000 + b"]" * 100_000,
    b"\xef\xbb\xbf" + _batch(_point()),
    b'{"contract": "telemetry@1.0.0", "points": [], "points": [1]}',
    b'{"query": "\\ud800"}',
    b"\xff\xfe\x00\x00garbage",
    b'{"query": "RETURN 1", "params": {"x": ' + b"9" * 500 + b"}}",
    b'{"asset": "' + PUMP.encode() + b'", "kind": "setpoint", "arguments": {"value": 1e999}}',
    b"",
)

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_bodies = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda doc: json.dumps(doc).encode()),
    st.integers(min_value=1, max_value=20_000).map(lambda d: b"[" * d + b"]" * d),
    st.integers(min_value=1, max_value=20_000).map(lambda d: b"{" + b'"a":{' * d + b"}" * (d + 1)),
    st.integers(min_value=1, max_value=600).map(lambda d: _batch(_point("1" * d))),
    st.sampled_from(
        ["NaN", "Infinity", "-0", "1e400", "-1e-400", '"1e3"', "[]", "[1, 2]", '{"v": 1}']
    ).map(lambda v: _batch(_point(v), _point())),
    st.sampled_from(
        [
            '"2262-04-12T00:00:00Z"',
            '"1677-09-21T00:00:00Z"',
            '"0000-01-01T00:00:00Z"',
            '"-0044-03-15T12:00:00Z"',
            '"2020-02-30T00:00:00Z"',
            '"2020-01-01T24:00:00Z"',
            '"2020-01-01T00:00:00+25:00"',
            '"99999-01-01T00:00:00Z"',
            "20200101",
            "null",
        ]
    ).map(lambda t: _batch(_point(time=t), _point())),
)


class State:
    """What a rejected request must leave as it was."""

    def __init__(self, world: ApiWorld) -> None:
        self.world = world

    def snapshot(self) -> tuple[object, ...]:
        """The change log's head, the graph's fingerprint, and the telemetry folder's files."""
        head = outbox.state(self.world.store, 0).head
        records, _, _ = self.world.driver.execute_query(_FINGERPRINT, skip=_SKIP)
        row = records[0]
        telemetry = self.world.home / "telemetry"
        files = (
            tuple(sorted(str(p.relative_to(telemetry)) for p in telemetry.rglob("*")))
            if telemetry.exists()
            else ()
        )
        return head, int(row["n"]), int(row["r"]), int(row["p"] or 0), files


@pytest.fixture(scope="module")
def world(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWorld]:
    home: Path = tmp_path_factory.mktemp("hostile")
    with api_world(driver, neo4j_target, home, ingest=False) as built:
        yield built


def _send(world: ApiWorld, method: str, path: str, body: bytes, content_type: str) -> None:
    headers = {**world.as_role(Role.ADMIN)}
    if content_type:
        headers["Content-Type"] = content_type
    before = State(world).snapshot()
    response = world.client.request(method, path, content=body, headers=headers)
    status = response.status_code
    shown = body[:120]
    assert status < 500, (method, path, content_type, shown, status, response.text[:300])
    if status >= 400:
        error = response.json()["error"]
        assert _CODE.match(error["code"]), (path, error)
        assert response.headers["X-TwinKG-Error-Code"] == error["code"]
        assert State(world).snapshot() == before, (method, path, content_type, shown, error)
    jobs = world.app.state.jobs
    assert jobs.wait_idle(120), "agent jobs still busy after 120 s"
    world.app.state.twin.settle_reclassification()  # an accepted batch's labels, written


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_the_issue_corpus_never_answers_5xx(world: ApiWorld, method: str, path: str) -> None:
    for body in CORPUS:
        for content_type in ("application/json", "text/plain"):
            _send(world, method, path, body, content_type)
    assert world.client.get("/health").status_code == 200


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_hostile_bytes_never_answer_5xx(world: ApiWorld, method: str, path: str) -> None:
    @settings(
        max_examples=40,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(body=_bodies, content_type=st.sampled_from(CONTENT_TYPES))
    @example(body=b"\x80\x81", content_type="application/json")
    def run(body: bytes, content_type: str) -> None:
        _send(world, method, path, body, content_type)

    run()
    assert world.client.get("/health").status_code == 200
