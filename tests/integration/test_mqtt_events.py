"""The twin's decisions and findings as MQTT events (``api.event_stream``), through a real
Mosquitto, from decisions the agents recorded and findings the ingest raised in the real Neo4j:
the right topics (the asset's site, area and asset tags), in commit order, each once per run; a
publisher that fails half-way goes on where it stopped and repeats at most the events of one
decision or change log entry, with the same ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from neo4j import Driver

from tests.conftest import seed_skab
from tests.integration.mqtt_world import endpoint, local_broker
from tests.integration.test_leases import raise_alarms
from twinkg.agents.state import ActionKind
from twinkg.api.event_stream import EventPublisher
from twinkg.api.settings import Settings
from twinkg.api.twin import Twin, agents_twin
from twinkg.connect.mqtt import broker
from twinkg.connect.mqtt.client import Subscriber, connect, publish
from twinkg.connect.mqtt.topics import Role
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import ServerError

pytestmark = pytest.mark.neo4j

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"
AS_OF = "2020-02-08T19:06:30+00:00"


@pytest.fixture(scope="module")
def mqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerConfig]:
    yield from local_broker(tmp_path_factory.mktemp("broker"))


@pytest.fixture
def decided(driver: Driver, tmp_path: Path) -> Iterator[Twin]:
    """Two decisions on the SKAB pump: an unsafe setpoint (refused) and a controlled stop of a
    criticality-A pump (waiting for a supervisor)."""
    store = seed_skab(driver)
    with agents_twin(Settings(home=tmp_path), store) as twin:
        unsafe = twin.new_action(
            ActionKind.SETPOINT_CHANGE,
            PLANT + "pump",
            0.95,
            quantity_kind=FLOW,
            current_setpoint=80.0,
            proposed_setpoint=500.0,
            ramp_s=60.0,
            as_of=AS_OF,
        )
        assert twin.propose(unsafe, as_of=AS_OF).state.outcome == "refused"
        stop = twin.new_action(ActionKind.CONTROLLED_STOP, PLANT + "pump", 0.95, as_of=AS_OF)
        assert twin.propose(stop, as_of=AS_OF).status == "awaiting_approval"
        yield twin


def test_decisions_are_published_as_events_on_the_plant_s_topics(
    mqtt: broker.BrokerConfig, decided: Twin, tmp_path: Path
) -> None:
    broker.issue(mqtt, "dashboard", Role.OBSERVER)
    observer = Subscriber(endpoint(mqtt, "dashboard"), ["twinkg/v1/+/evt/#"], client_id="dash")
    service = connect(endpoint(mqtt), "twinkg-events")
    cursor = tmp_path / "events.cursor"
    publisher = EventPublisher(
        decided.store, lambda t, b: publish(service, t, b, timeout_s=10), cursor
    )
    try:
        assert publisher.publish_new() == 3
        assert publisher.publish_new() == 0  # nothing new
        received = [next(observer.messages(idle_s=10)) for _ in range(3)]
    finally:
        service.disconnect()
        observer.close(end_session=True)
    bodies = [json.loads(m.payload) for m in received]
    pump = "twinkg/v1/SKT/evt/{}/SKT-LAB/P-1"
    assert [m.topic for m in received] == [
        pump.format("decision"),
        pump.format("decision"),
        pump.format("approval"),
    ]
    assert [b["outcome"] for b in bodies] == ["refused", "awaiting_approval", "awaiting_approval"]
    assert [b["chain_index"] for b in bodies] == [1, 2, 2]
    assert bodies[2]["id"] == bodies[2]["decision"] + "#approval"
    assert bodies[0]["asset"] == PLANT + "pump" and bodies[0]["site"] == PLANT + "site"
    assert bodies[0]["action_kind"] == "setpoint_change" and bodies[0]["at"]
    assert cursor.read_text().strip() == "2"
    # a second publisher over the same cursor (a restart) publishes nothing again
    again = EventPublisher(decided.store, lambda t, b: pytest.fail(f"published {t}"), cursor)
    assert again.publish_new() == 0


def test_a_publisher_that_fails_goes_on_where_it_stopped(decided: Twin, tmp_path: Path) -> None:
    sent: list[str] = []
    calls = [0]

    def flaky(topic: str, body: bytes) -> None:
        calls[0] += 1
        if calls[0] == 3:  # the broker goes away at the third event (decision 2's approval)
            raise ServerError("MQTT broker did not acknowledge")
        sent.append(json.loads(body)["id"])

    cursor = tmp_path / "cursor"
    with pytest.raises(ServerError):
        EventPublisher(decided.store, flaky, cursor).publish_new()
    assert cursor.read_text().strip() == "1"  # decision 2 was not finished
    assert EventPublisher(decided.store, flaky, cursor).publish_new() == 2
    first, second = sent[0], sent[1]
    assert first != second and first.endswith("#decision") and second.endswith("#decision")
    # decision 2's decision event went twice (at least once), with the same id to drop it by
    assert sent == [first, second, second, second.replace("#decision", "#approval")]
    assert cursor.read_text().strip() == "2"


def _published(store: GraphStore, tmp_path: Path) -> tuple[EventPublisher, list[tuple[str, Any]]]:
    sent: list[tuple[str, Any]] = []
    publisher = EventPublisher(
        store,
        lambda topic, body: sent.append((topic, json.loads(body))),
        tmp_path / "events.cursor",
        tmp_path / "findings.cursor",
    )
    return publisher, sent


def test_findings_are_published_on_their_asset_s_topics_once_per_change(
    driver: Driver, tmp_path: Path
) -> None:
    store = seed_skab(driver)
    with agents_twin(Settings(home=tmp_path), store) as twin:
        start = datetime.now(UTC) - timedelta(minutes=10)
        raise_alarms(twin, start)
        publisher, sent = _published(store, tmp_path)
        assert publisher.publish_new() == len(sent)
        graph = {
            r["uri"]: r
            for r in driver.execute_query(
                "MATCH (e:Resource)-[:CONCERNS]->(t) WHERE e:Anomaly OR e:Alarm "
                "RETURN e.uri AS uri, t.uri AS asset, t.tag AS tag, e.status AS status"
            ).records
        }
        assert len(graph) >= 2  # the pump's flow alarm and the motor's temperature alarm
        assert {body["finding"] for _, body in sent} == set(graph)  # every finding, once
        assert len(sent) == len(graph)
        seq = publisher.findings_cursor()
        assert seq > 0
        for topic, body in sent:
            row = graph[body["finding"]]
            assert topic == f"twinkg/v1/SKT/evt/finding/SKT-LAB/{row['tag']}"
            assert body["asset"] == row["asset"] and body["status"] == row["status"]
            assert body["kind"] == "finding" and body["site"] == PLANT + "site"
            assert body["id"] == f"{body['finding']}#finding@{body['seq']}"
            assert 0 < body["seq"] <= seq and body["started"] and body["ended"]
        # a restart over the same cursors publishes nothing again
        assert _published(store, tmp_path)[0].publish_new() == 0
        # the readings go on: the standing alarms grow, and are published again, later
        first = {body["finding"]: body for _, body in sent}
        sent.clear()
        raise_alarms(twin, start + timedelta(seconds=60), new_alarms=0)
        assert publisher.publish_findings() == len(sent) > 0
        grown = [body for _, body in sent if body["finding"] in first]
        assert grown, f"no standing alarm was extended: {sent}"
        for body in grown:
            earlier = first[body["finding"]]
            assert body["seq"] > earlier["seq"] and body["ended"] > earlier["ended"]
            assert body["id"] != earlier["id"]


def test_a_findings_publisher_that_fails_repeats_the_change_and_says_when_entries_are_gone(
    driver: Driver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = seed_skab(driver)
    with agents_twin(Settings(home=tmp_path), store) as twin:
        raise_alarms(twin)
    calls, sent = [0], []

    def flaky(topic: str, body: bytes) -> None:
        calls[0] += 1
        if calls[0] == 2:  # the broker goes away at the second finding of the change
            raise ServerError("MQTT broker did not acknowledge")
        sent.append(json.loads(body)["id"])

    findings = tmp_path / "findings.cursor"
    publisher = EventPublisher(store, flaky, tmp_path / "events.cursor", findings)
    with pytest.raises(ServerError):
        publisher.publish_findings()
    before = publisher.findings_cursor()
    again = publisher.publish_findings()
    assert again >= 2 and sent[0] in sent[1:]  # the change's findings again, same ids
    assert publisher.findings_cursor() > before
    # entries pruned before they were published: the publisher says so and goes on
    findings.write_text("0\n")
    driver.execute_query("MATCH (c:Change) WITH c ORDER BY c.seq LIMIT 1 DETACH DELETE c")
    with caplog.at_level(logging.WARNING, logger="twinkg.api.event_stream"):
        publisher.publish_findings()
    assert "were pruned before their findings were published" in caplog.text
