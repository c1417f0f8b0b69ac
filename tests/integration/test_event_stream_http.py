"""``GET /events`` against the real Neo4j: the twin's findings, decisions, approval requests and
applied actions as server-sent events, as they are committed; filtered by kind, area and asset;
resumed after an event's id with nothing repeated and nothing left out; refused with a JSON
error before any event for a malformed cursor, an unknown kind or a caller who may not read.

Nothing here waits a fixed time: a stream is read until what is expected arrived, under a
generous deadline, or until it says it has caught up (the keep-alive comment, sent only once a
poll found nothing left to send).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget
from tests.integration.api_world import (
    AS_OF,
    MOTOR,
    PLANT,
    PUMP,
    UNSAFE_PROPOSAL,
    ApiWorld,
    api_world,
    uvicorn_serving,
)
from tests.integration.test_leases import raise_alarms
from twinkg.api import event_stream
from twinkg.api.security import Role
from twinkg.ontology.errors import StoreError
from twinkg.ontology.vocab import Label, RelType

pytestmark = pytest.mark.neo4j

DEADLINE_S = 60.0
"""The longest wait for what a stream should send; only a broken stream comes near it."""
LAB, AUX = PLANT + "lab", PLANT + "aux"
TOPIC = "twinkg/v1/SKT/evt/{kind}/{area}/{asset}"


@dataclass(frozen=True)
class Sse:
    """One server-sent event as a client reads it."""

    kind: str
    id: str
    data: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the event across streams: its kind, body id and stream id."""
        return self.kind, str(self.data["id"]), self.id


class Reader:
    """The events of an open ``text/event-stream`` response, read line by line."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.comments: list[str] = []

    def until(
        self, done: Callable[[list[Sse]], bool], *, deadline_s: float = DEADLINE_S
    ) -> list[Sse]:
        """The events read until ``done`` holds for them (asked after every line: the stream's
        keep-alive comments make sure it is asked often); fails past the deadline."""
        events: list[Sse] = []
        fields: dict[str, str] = {}
        deadline = time.monotonic() + deadline_s
        for line in self._lines:
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif fields:
                events.append(
                    Sse(fields["event"], fields.get("id", ""), json.loads(fields["data"]))
                )
                fields = {}
            if done(events):
                return events
            if time.monotonic() > deadline:
                pytest.fail(f"the stream did not send what was expected; it sent {events}")
        pytest.fail(f"the stream ended; it sent {events}")

    def caught_up(self) -> list[Sse]:
        """The events sent before the stream said it had sent everything there is."""
        self.comments.clear()
        return self.until(lambda _: bool(self.comments))


@pytest.fixture(scope="module")
def world(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWorld]:
    """The app over the SKAB testbed, polling often, with the motor moved to an area of its
    own (``SKT-AUX``) so that areas can be told apart."""
    home = tmp_path_factory.mktemp("events")
    with api_world(
        driver, neo4j_target, home, ingest=False, events_poll_s=0.05, events_keepalive_s=0.2
    ) as w:
        driver.execute_query(
            f"MATCH (site:{Label.SITE.value} {{uri: $site}}) "
            f"MATCH (m {{uri: $motor}})-[r:{RelType.PART_OF.value}]->() DELETE r "
            f"CREATE (a:{Label.RESOURCE.value}:{Label.AREA.value} {{uri: $aux, tag: 'SKT-AUX'}}) "
            f"CREATE (m)-[:{RelType.PART_OF.value}]->(a)-[:{RelType.PART_OF.value}]->(site)",
            site=PLANT + "site",
            motor=MOTOR,
            aux=AUX,
        )
        yield w


@contextmanager
def stream(
    world: ApiWorld,
    *,
    role: Role = Role.VIEWER,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> Iterator[Reader]:
    """An open ``GET /events`` (its start fixed once this yields)."""
    with world.client.stream(
        "GET", "/events", params=params, headers={**world.as_role(role), **(headers or {})}
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Reader(response.iter_lines())


def heads(world: ApiWorld) -> str:
    """The id of a stream that has sent everything committed so far."""
    now = event_stream.heads(world.store)
    return f"{now.decisions}.{now.changes}"


def propose(world: ApiWorld, proposal: dict[str, Any]) -> dict[str, Any]:
    """Propose an action as an agent; the decision it ended with."""
    response = world.client.post("/actions", json=proposal, headers=world.as_role(Role.AGENT))
    assert response.status_code == 200, response.text
    step: dict[str, Any] = response.json()["steps"][-1]
    return step


def stop(asset: str) -> dict[str, Any]:
    """A controlled stop of a criticality-A asset: it waits for a supervisor."""
    return {"kind": "controlled_stop", "target": asset, "confidence": 0.95, "as_of": AS_OF}


def approve(world: ApiWorld, decision: str, driver: Driver) -> dict[str, Any]:
    """Approve the waiting ``decision`` as a supervisor; the decision that applied it. The
    asset is running again afterwards (as the plant would be), so later tests can stop it."""
    run_id, number = decision.rsplit("/", 2)[-2:]
    response = world.client.post(
        f"/decisions/{run_id}/{number}/approve", json={}, headers=world.as_role(Role.SUPERVISOR)
    )
    assert response.status_code == 200, response.text
    driver.execute_query(
        "MATCH (a) WHERE a.uri IN $assets SET a.operationalStatus = 'running'",
        assets=[PUMP, MOTOR],
    )
    step: dict[str, Any] = response.json()["steps"][-1]
    return step


def test_a_decision_recorded_after_the_stream_starts_arrives_with_its_approval_and_action(
    world: ApiWorld, driver: Driver
) -> None:
    before = propose(world, UNSAFE_PROPOSAL)  # recorded before the stream: never sent
    assert before["outcome"] == "refused"
    with stream(world) as reader:
        waiting = propose(world, stop(PUMP))
        assert waiting["outcome"] == "awaiting_approval"
        sent = reader.until(lambda events: len(events) >= 2)
        index = waiting["chain_index"]
        assert [e.kind for e in sent] == ["decision", "approval"]
        for event in sent:
            assert event.data["decision"] == waiting["decision"]
            assert event.data["chain_index"] == index
            assert event.data["outcome"] == "awaiting_approval"
            assert event.data["id"] == f"{waiting['decision']}#{event.kind}"
            assert event.data["asset"] == PUMP and event.data["area"] == LAB
            assert event.data["topic"] == TOPIC.format(kind=event.kind, area="SKT-LAB", asset="P-1")
        # The decision event leaves the stream inside the decision (its first event sent), the
        # approval after it.
        assert sent[0].id.split(".")[0] == f"{index}:1"
        assert sent[1].id.split(".")[0] == str(index)
        assert sent[0].id.split(".")[1] == sent[1].id.split(".")[1]
        applied = approve(world, waiting["decision"], driver)
        assert applied["outcome"] == "applied"
        done = reader.until(lambda events: len(events) >= 2)
    assert [e.kind for e in done] == ["decision", "action"]
    assert {e.data["decision"] for e in done} == {applied["decision"]}
    assert done[1].data["action"] and done[1].data["action_kind"] == "controlled_stop"
    assert done[1].id.split(".")[0] == str(applied["chain_index"])
    assert applied["chain_index"] > index


def test_a_finding_arrives_as_it_is_committed(world: ApiWorld) -> None:
    with stream(world, kind="finding") as reader:
        raise_alarms(world.app.state.twin, new_alarms=0)
        sent = reader.until(lambda events: {e.data["asset"] for e in events} >= {PUMP, MOTOR})
    tags = {PUMP: ("SKT-LAB", "P-1"), MOTOR: ("SKT-AUX", "M-1")}
    for event in sent:
        assert event.kind == "finding" and event.data["type"] == "alarm"
        area, asset = tags[event.data["asset"]]
        assert event.data["topic"] == TOPIC.format(kind="finding", area=area, asset=asset)
        seq = event.data["seq"]
        assert event.data["id"] == f"{event.data['finding']}#finding@{seq}"
        assert event.id.split(".")[1].split(":")[0] == str(seq)
    # Both alarms came from one change log entry: the first leaves the stream inside it.
    first, second = sent[0], sent[1]
    assert first.data["seq"] == second.data["seq"]
    assert first.id.endswith(f".{first.data['seq']}:1") and second.id.endswith(
        f".{first.data['seq']}"
    )


@pytest.fixture(scope="module")
def history(world: ApiWorld, driver: Driver) -> tuple[str, list[Sse]]:
    """An id, and every event committed after it (read back until the stream caught up): a
    refused setpoint change on the pump, a stop of the motor that waited and was approved, and
    an alarm each on the pump and the motor."""
    since = heads(world)
    assert propose(world, UNSAFE_PROPOSAL)["outcome"] == "refused"
    waiting = propose(world, stop(MOTOR))
    assert waiting["outcome"] == "awaiting_approval"
    assert approve(world, waiting["decision"], driver)["outcome"] == "applied"
    raise_alarms(world.app.state.twin, datetime.now(UTC) - timedelta(minutes=5), new_alarms=0)
    with stream(world, since=since) as reader:
        events = reader.caught_up()
    kinds = [e.kind for e in events]
    assert kinds[:5] == ["decision", "decision", "approval", "decision", "action"], kinds
    assert set(kinds[5:]) == {"finding"} and {e.data["asset"] for e in events[5:]} == {PUMP, MOTOR}
    return since, events


FILTERS: dict[str, tuple[dict[str, Any], Callable[[Sse], bool]]] = {
    "asset tag": ({"asset": "P-1"}, lambda e: e.data["asset"] == PUMP),
    "asset IRI": ({"asset": MOTOR}, lambda e: e.data["asset"] == MOTOR),
    "two assets, findings only": (
        {"asset": ["P-1", MOTOR], "kind": "finding"},
        lambda e: e.kind == "finding",
    ),
    "area tag": ({"area": "SKT-AUX"}, lambda e: e.data["area"] == AUX),
    "area IRI": ({"area": LAB}, lambda e: e.data["area"] == LAB),
    "no such area": ({"area": "unplaced"}, lambda e: False),
    "one kind": ({"kind": "approval"}, lambda e: e.kind == "approval"),
    "two kinds": ({"kind": ["decision", "action"]}, lambda e: e.kind in {"decision", "action"}),
    "kind and area": (
        {"kind": "decision", "area": "SKT-LAB"},
        lambda e: e.kind == "decision" and e.data["area"] == LAB,
    ),
}


@pytest.mark.parametrize("case", FILTERS)
def test_filters_keep_the_asked_events_and_drop_the_others(
    world: ApiWorld, history: tuple[str, list[Sse]], case: str
) -> None:
    since, events = history
    params, wanted = FILTERS[case]
    with stream(world, since=since, **params) as reader:
        sent = reader.caught_up()
    expected = [e for e in events if wanted(e)]
    assert [(e.kind, e.data["id"]) for e in sent] == [(e.kind, e.data["id"]) for e in expected]
    assert len(expected) < len(events)  # the filter dropped something
    # Each id resumes the filtered stream after its event: the last one of its decision or
    # entry the filter keeps leaves the stream after the whole decision or entry.
    for event in sent:
        with stream(world, headers={"Last-Event-ID": event.id}, **params) as reader:
            rest = reader.caught_up()
        assert [e.key for e in rest] == [e.key for e in sent[sent.index(event) + 1 :]]


def test_a_stream_resumed_after_any_event_sends_exactly_the_events_after_it(
    world: ApiWorld, history: tuple[str, list[Sse]]
) -> None:
    _, events = history
    assert len({e.id for e in events}) == len(events)  # every event leaves its own mark
    for number, event in enumerate(events):
        # Last-Event-ID (what a reconnecting EventSource sends) wins over since.
        with stream(world, since="start", headers={"Last-Event-ID": event.id}) as reader:
            rest = reader.caught_up()
        assert [e.key for e in rest] == [e.key for e in events[number + 1 :]], event.id
    with stream(world, since=events[-1].id) as reader:
        assert reader.caught_up() == []


def test_since_start_replays_every_decision_and_finding_from_the_first(
    world: ApiWorld, history: tuple[str, list[Sse]]
) -> None:
    _, events = history
    with stream(world, since="start") as reader:
        everything = reader.caught_up()
    decisions = [e.data["chain_index"] for e in everything if e.kind == "decision"]
    assert decisions == list(range(1, event_stream.heads(world.store).decisions + 1))
    assert {e.key[:2] for e in events} <= {e.key[:2] for e in everything}
    findings = [e.data["seq"] for e in everything if e.kind == "finding"]
    assert findings == sorted(findings) and len(findings) >= 4  # the live test's and history's


BAD_IDS = ["x1", "1", "1.", ".1", "a.b", "1.2.3", "-1.2", "1:0.2", "0:1.2", "1.2:", "1 .2", "١.٢"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_malformed_id_is_refused_before_any_event(world: ApiWorld, bad: str) -> None:
    viewer = world.as_role(Role.VIEWER)
    responses = [world.client.get("/events", params={"since": bad}, headers=viewer)]
    if bad.isascii():  # a header carries ASCII
        responses.append(world.client.get("/events", headers={**viewer, "Last-Event-ID": bad}))
    for response in responses:
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert _error(response) == "invalid_input"
        assert "event id" in response.json()["error"]["message"]


def test_an_id_past_the_newest_event_and_an_unknown_kind_are_refused(world: ApiWorld) -> None:
    viewer = world.as_role(Role.VIEWER)
    now = event_stream.heads(world.store)
    for since in (f"{now.decisions + 1}.{now.changes}", f"{now.decisions}.{now.changes + 5}:1"):
        ahead = world.client.get("/events", params={"since": since}, headers=viewer)
        assert ahead.status_code == 400 and _error(ahead) == "invalid_input"
        assert "past the newest event" in ahead.json()["error"]["message"]
    unknown = world.client.get("/events", params={"kind": ["finding", "alarm"]}, headers=viewer)
    assert unknown.status_code == 400 and _error(unknown) == "invalid_input"
    assert "kind must be one of finding, decision, approval, action" in unknown.text


def test_a_caller_who_may_not_read_is_refused(world: ApiWorld) -> None:
    producer = world.client.get("/events", headers=world.as_role(Role.PRODUCER))
    assert producer.status_code == 403 and _error(producer) == "forbidden"
    nobody = world.client.get("/events")
    assert nobody.status_code == 401 and _error(nobody) == "auth_required"


def test_an_idle_stream_keeps_alive_and_ends_when_its_client_goes(world: ApiWorld) -> None:
    # A real server and client: the stream ends because the server sees the connection go.
    with uvicorn_serving(world.app, lifespan="off") as (url, server):
        headers = world.as_role(Role.VIEWER)
        with (
            httpx.Client(base_url=url, timeout=DEADLINE_S) as client,
            client.stream("GET", "/events", headers=headers) as response,
        ):
            assert response.status_code == 200
            reader = Reader(response.iter_lines())
            assert reader.until(lambda _: len(reader.comments) >= 2) == []
            assert set(reader.comments) == {"keep-alive"}
            assert server.server_state.tasks  # the stream is being served
        deadline = time.monotonic() + DEADLINE_S
        while server.server_state.tasks:
            assert time.monotonic() < deadline, "the stream went on after its client left"
            time.sleep(0.05)


def test_a_stream_that_cannot_read_neo4j_says_so_and_ends(
    world: ApiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stream(world) as reader:
        reader.caught_up()
        position = heads(world)

        def unreachable(*_: Any, **__: Any) -> Any:
            raise StoreError("Neo4j failed: connection refused")

        monkeypatch.setattr(event_stream, "heads", unreachable)
        sent = reader.until(lambda events: any(e.kind == "error" for e in events))
    (error,) = [e for e in sent if e.kind == "error"]
    assert error.data["code"] == "store_unavailable"
    assert "connection refused" in error.data["message"]
    assert error.data["resume_after"] == position


def _error(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert response.headers["X-TwinKG-Error-Code"] == body["error"]["code"]
    return str(body["error"]["code"])
