"""Telemetry over MQTT 5 through a real Mosquitto, into the real Neo4j (issue 15, decision 0056).

The broker is TwinKG's own configuration: TLS with client certificates, each certificate's common
name its user, an ACL per role. The tests check the security model (no certificate, another
site's topic, the events tree are refused), the ingest's answers (a batch applied once however
often it is delivered, a malformed message refused with its reason into the dead letters and to
the producer, the worker going on), the shared subscription (two workers share the messages)
and at-least-once delivery (a worker that dies before acknowledging gets the message again and
the points are stored once).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neo4j import Driver
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import seed_skab
from tests.integration.mqtt_world import endpoint, local_broker, producer
from twinkg.api.mqtt_ingest import MqttIngest, MqttIngestStats, Outcome
from twinkg.api.settings import Settings, dead_letter_dir
from twinkg.api.twin import Twin
from twinkg.connect.json import JsonSource
from twinkg.connect.mqtt import broker
from twinkg.connect.mqtt.client import Message, Subscriber, connect, publish
from twinkg.connect.mqtt.topics import Role, state_topic, telemetry_filters
from twinkg.kg.dead_letters import DeadLetters
from twinkg.kg.events import SENSOR_SITES
from twinkg.kg.queries import NamedQuery
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import InvalidInputError, ServerError, StoreError

pytestmark = pytest.mark.neo4j

PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
SENSOR = PLANT + "sensor-flow"
UNIT = "http://qudt.org/vocab/unit/L-PER-MIN"
TOPIC = "twinkg/v1/SKT/tele/loop/gw1"


@pytest.fixture(scope="module")
def mqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.BrokerConfig]:
    yield from local_broker(tmp_path_factory.mktemp("broker"))


@pytest.fixture(scope="module")
def seeded(driver: Driver) -> GraphStore:
    """The SKAB testbed, seeded once for the module (each test's points are later than the
    previous test's, so none is quarantined as out of order)."""
    return seed_skab(driver)


@pytest.fixture
def twin(seeded: GraphStore, tmp_path: Path) -> Iterator[Twin]:
    store = seeded
    settings = Settings(home=tmp_path)
    twin = Twin(settings, store)
    yield twin
    twin.close()


def _recent(hour: int) -> datetime:
    """A start time in the past day (the contract refuses points from the future)."""
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return today - timedelta(hours=20 - hour)


def _batch(start: datetime, n: int, *, value: float = 120.0) -> bytes:
    points = [
        {
            "sensor": SENSOR,
            "unit": UNIT,
            "time": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
            "value": value + i,
        }
        for i in range(n)
    ]
    return json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()


def _worker(
    twin: Twin, config: broker.BrokerConfig, client_id: str, home: Path, *sites: str
) -> tuple[MqttIngest, Subscriber]:
    subscriber = Subscriber(
        endpoint(config), telemetry_filters(sites), client_id=client_id, receive_maximum=8
    )
    return MqttIngest(twin, subscriber, DeadLetters(home / "refused")), subscriber


def _stored(home: Path) -> int:
    return sum(m.accepted for m in TelemetryLog(home / "telemetry").manifests())


def test_the_broker_authenticates_every_client_and_keeps_each_to_its_topics(
    mqtt: broker.BrokerConfig,
) -> None:
    site_a = producer(mqtt, "gateway-a", "site-a")
    client = connect(site_a, "gateway-a")
    try:
        publish(client, "twinkg/v1/site-a/tele/area/node", b"{}", timeout_s=10)
        publish(client, "twinkg/v1/site-a/edge/gateway-a", b"{}", timeout_s=10)  # its own node
        for elsewhere in (
            "twinkg/v1/site-a/edge/edge-7",  # another edge node of its own site
            "twinkg/v1/site-b/edge/gateway-a",  # its own name at another site
            "twinkg/v1/site-b/tele/area/node",  # another site's telemetry
            "twinkg/v1/site-a/evt/decision/area/pump",  # the twin's events
            "twinkg/v1/site-a/refused/area/node",  # refusals are the twin's to write
            "twinkg/v1/state/twin/twinkg-ingest-1",  # an ingest worker's announcement, forged
        ):
            with pytest.raises(ServerError, match="Not authorized"):
                publish(client, elsewhere, b"{}", timeout_s=10)
    finally:
        client.disconnect()
    anonymous = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    anonymous.tls_set(ca_certs=str(mqtt.pki / "ca.crt"))  # TLS, but no client certificate
    assert _refused(anonymous, mqtt.port)
    plain = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)  # no TLS at all
    assert _refused(plain, mqtt.port)
    # the twin's own certificate passes the same check (so the refusals above are the broker's)
    assert connect(endpoint(mqtt), "service-probe").is_connected()


def _refused(client: paho.Client, port: int) -> bool:
    """Whether the broker drops ``client`` before it is ever connected."""
    try:
        client.connect("127.0.0.1", port)
    except OSError:
        return True  # the TLS handshake failed inside connect
    for _ in range(100):
        code = client.loop(timeout=0.05)
        if client.is_connected():
            return False
        if code != paho.MQTT_ERR_SUCCESS:
            return True
    return False


def test_a_batch_over_mqtt_is_applied_once_however_often_it_arrives(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path, driver: Driver
) -> None:
    gateway = connect(producer(mqtt, "gw-skab", "SKT"), "gw-skab")
    worker, subscriber = _worker(twin, mqtt, "ingest-once", tmp_path)
    body = _batch(_recent(0), 50)
    try:
        for _ in range(3):  # a producer that retries, or a broker that redelivers
            publish(gateway, "twinkg/v1/SKT/tele/loop/gw-once", body, timeout_s=10)
        stats = worker.run(max_messages=3, idle_s=20)
    finally:
        subscriber.close(end_session=True)
        gateway.disconnect()
    assert (stats.messages, stats.applied, stats.duplicates, stats.refused) == (3, 1, 2, 0)
    assert stats.points_accepted == 50
    assert _stored(tmp_path) == 50
    batches = driver.execute_query(
        "MATCH (b:IngestBatch {rdfs_label: 'mqtt:SKT/loop/gw-once'}) RETURN count(b) AS n"
    ).records[0]["n"]
    assert batches == 1  # one batch, named after where it came from


def test_a_malformed_message_is_refused_with_its_reason_and_the_worker_goes_on(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path, driver: Driver
) -> None:
    gateway_endpoint = producer(mqtt, "gw-hostile", "SKT")
    listener = Subscriber(
        gateway_endpoint, ["twinkg/v1/SKT/refused/#"], client_id="gw-hostile-listener"
    )
    gateway = connect(gateway_endpoint, "gw-hostile")
    worker, subscriber = _worker(twin, mqtt, "ingest-hostile", tmp_path)
    nodes_before = driver.execute_query("MATCH (n) RETURN count(n) AS n").records[0]["n"]
    hostile = [
        (TOPIC, b"\xff\xfe not json"),
        (TOPIC, b'{"contract": "telemetry@1.0.0", "points": [], "extra": 1}'),
        (TOPIC, b'{"contract": "no-such-contract@9", "points": []}'),
        ("twinkg/v1/SKT/tele/loop", b"{}"),  # allowed by the ACL, not a telemetry topic
    ]
    good = _batch(_recent(1), 5)
    seen: list[Outcome] = []
    try:
        for topic, payload in hostile:
            publish(gateway, topic, payload, timeout_s=10)
        publish(gateway, TOPIC, good, timeout_s=10)
        stats = worker.run(
            max_messages=5, idle_s=20, on_outcome=lambda _m, outcome: seen.append(outcome)
        )
        refusals = [(m.topic, json.loads(m.payload)) for m in _take(listener, 3)]
    finally:
        gateway.disconnect()
        listener.close(end_session=True)
        subscriber.close(end_session=True)
    assert [o.kind for o in seen] == ["refused"] * 4 + ["applied"]
    assert all(o.code and o.reason for o in seen[:4])
    assert stats.points_accepted == 5
    letters = list(DeadLetters(tmp_path / "refused").read())
    assert [letter.payload for letter in letters] == [payload for _, payload in hostile]
    assert all(letter.reason and letter.code for letter in letters)
    assert "not twinkg/v1/{site}/tele/{area}/{node}" in letters[3].reason
    # the producer heard why, on its own refused topic, for the three it could be told about
    assert len(refusals) == 3
    assert {topic for topic, _ in refusals} == {"twinkg/v1/SKT/refused/loop/gw1"}
    assert {body["sha256"] for _, body in refusals} >= {letters[0].sha256, letters[1].sha256}
    # nothing of the refused messages reached the graph: only the good batch's records did
    nodes_after = driver.execute_query("MATCH (n) RETURN count(n) AS n").records[0]["n"]
    assert nodes_after > nodes_before
    assert _stored(tmp_path) == 5
    metrics = twin.metrics
    assert metrics.registry.get_sample_value("twinkg_points_ingested_total", {"way": "mqtt"}) == 5
    refused = {
        sample.labels["code"]: sample.value
        for family in metrics.refused.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert sum(refused.values()) == 4 and set(refused) == {o.code for o in seen[:4]}


def test_a_worker_that_dies_unacknowledged_gets_its_messages_again_in_order(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path
) -> None:
    gateway = connect(producer(mqtt, "gw-redeliver", "SKT"), "gw-redeliver")
    _dying, dying_sub = _worker(twin, mqtt, "ingest-redeliver", tmp_path)
    start = _recent(2)
    bodies = [_batch(start + timedelta(minutes=i), 4) for i in range(12)]
    try:
        for body in bodies[:6]:
            publish(gateway, TOPIC, body, timeout_s=10)
        taken = list(_take(dying_sub, 6))
        assert [m.payload for m in taken] == bodies[:6]
        dying_sub.close()  # "dies": handled nothing, acknowledged nothing, session kept
        for body in bodies[6:]:  # published while no worker is connected
            publish(gateway, TOPIC, body, timeout_s=10)
        back, back_sub = _worker(twin, mqtt, "ingest-redeliver", tmp_path)
        try:
            seen: list[bytes] = []
            all_in = threading.Event()

            def heard(message: Message, outcome: Outcome) -> None:
                seen.append(message.payload)
                if back.stats.applied == 12:  # every batch stored: stop (idle_s: a deadline)
                    all_in.set()

            stats = back.run(stop=all_in, idle_s=60, on_outcome=heard)
        finally:
            back_sub.close(end_session=True)
    finally:
        gateway.disconnect()
    assert [p for i, p in enumerate(seen) if p not in seen[:i]] == bodies  # in order
    assert stats.applied == 12 and stats.refused == 0 and stats.points_quarantined == 0
    assert stats.duplicates == len(seen) - 12  # a message delivered twice is applied once
    assert _stored(tmp_path) == 12 * 4  # every point once


def test_workers_split_by_site_each_take_only_their_sites(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path
) -> None:
    broker.issue(mqtt, "gw-other", Role.PRODUCER, site="other")
    skab = connect(producer(mqtt, "gw-split", "SKT"), "gw-split")
    other = connect(endpoint(mqtt, "gw-other"), "gw-other")
    skab_worker, skab_sub = _worker(twin, mqtt, "ingest-skab", tmp_path, "SKT")
    other_worker, other_sub = _worker(twin, mqtt, "ingest-other", tmp_path, "other")
    try:
        publish(skab, TOPIC, _batch(_recent(4), 2), timeout_s=10)
        publish(other, "twinkg/v1/other/tele/a/n", b"not json", timeout_s=10)
        skab_stats = skab_worker.run(max_messages=1, idle_s=60)
        other_stats = other_worker.run(max_messages=1, idle_s=60)
    finally:
        for sub in (skab_sub, other_sub):
            sub.close(end_session=True)
        skab.disconnect()
        other.disconnect()
    assert (skab_stats.messages, skab_stats.applied) == (1, 1)
    assert (other_stats.messages, other_stats.refused) == (1, 1)


def test_while_the_store_is_away_the_message_is_kept_and_retried(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = connect(producer(mqtt, "gw-retry", "SKT"), "gw-retry")
    worker, subscriber = _worker(twin, mqtt, "ingest-retry", tmp_path)
    worker.retry_s = 0.01
    real = twin.ingest_batches
    failures = [2]  # Neo4j answers the third try

    def away(*args: Any, **kwargs: Any) -> Any:
        if failures[0]:
            failures[0] -= 1
            raise StoreError("Neo4j is unreachable")
        return real(*args, **kwargs)

    monkeypatch.setattr(twin, "ingest_batches", away)
    try:
        publish(gateway, TOPIC, _batch(_recent(5), 4), timeout_s=10)
        stats = worker.run(max_messages=1, idle_s=20)
    finally:
        subscriber.close(end_session=True)
        gateway.disconnect()
    assert (stats.retries, stats.applied, stats.refused) == (2, 1, 0)
    assert _stored(tmp_path) == 4
    assert list(DeadLetters(tmp_path / "refused").read()) == []  # a store failure is no refusal


def test_a_retiring_worker_drains_its_share_before_it_leaves(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path
) -> None:
    gateway = connect(producer(mqtt, "gw-retire", "SKT"), "gw-retire")
    leaving, _leaving_sub = _worker(twin, mqtt, "ingest-retire", tmp_path)
    start = _recent(6)
    try:
        for i in range(10):  # routed to the worker while it takes none
            publish(gateway, TOPIC, _batch(start + timedelta(minutes=i), 3), timeout_s=10)
        leaving.retire(idle_s=10)  # ten messages wait on the broker: delivered at once
        for i in range(10, 16):  # after it left: held for no one
            publish(gateway, TOPIC, _batch(start + timedelta(minutes=i), 3), timeout_s=10)
        successor, successor_sub = _worker(twin, mqtt, "ingest-retire", tmp_path)
        try:
            later = successor.run(idle_s=2)
        finally:
            successor_sub.close(end_session=True)
    finally:
        gateway.disconnect()
    assert leaving.stats.applied == 10  # it drained everything routed to it
    assert later.messages == 0  # its session ended: nothing was kept for the name
    assert _stored(tmp_path) == 10 * 3


def _take(subscriber: Subscriber, n: int) -> Iterator[Message]:
    for i, message in enumerate(subscriber.messages(idle_s=30)):  # a deadline
        yield message
        if i + 1 >= n:
            return


def test_dead_letters_keep_the_payload_and_say_when_they_cut_it(tmp_path: Path) -> None:
    letters = DeadLetters(tmp_path)
    small = letters.add("mqtt:a", b"abc", code="invalid_input", reason="not JSON")
    big = letters.add("mqtt:b", b"x" * 70_000, code="payload_too_large", reason="too big")
    (tmp_path / f"{small.at[:10]}.jsonl").open("a").write('{"torn": ')  # a crash mid-line
    read = list(letters.read())
    assert [r.source for r in read] == ["mqtt:a", "mqtt:b"]
    assert read[0].payload == b"abc" and not read[0].truncated
    assert read[1].truncated and len(read[1].payload) == 64 * 1024 and read[1].size == 70_000
    assert big.sha256 == read[1].sha256


def test_the_local_settings_point_the_workers_at_the_local_broker(tmp_path: Path) -> None:
    from twinkg.api.settings import mqtt_endpoint  # noqa: PLC0415

    settings = Settings(home=tmp_path, mqtt_port=18999)
    local = mqtt_endpoint(settings)
    assert local.url == "mqtts://127.0.0.1:18999"
    assert local.credentials is not None
    assert local.credentials.cert == tmp_path.resolve() / "broker/pki/clients/twinkg-service.crt"
    assert dead_letter_dir(settings) == tmp_path.resolve() / "telemetry" / "refused"


_FIELD = st.sampled_from(["sensor", "value", "unit", "time", "quality", "producer", "extra"])
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [SENSOR, UNIT, "1999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+14:00"]
    ),
)
_POINT = st.one_of(
    st.dictionaries(_FIELD, st.one_of(_SCALAR, st.lists(_SCALAR, max_size=2)), max_size=6),
    _SCALAR,
)
_ENVELOPE = st.fixed_dictionaries(
    {"points": st.lists(_POINT, max_size=6)},
    optional={
        "contract": st.sampled_from(["telemetry@1.0.0", "telemetry", "telemetry@9.9.9", "", 7]),
        "producer": st.one_of(st.text(max_size=10), st.integers()),
        "oops": st.integers(),
    },
)
_PAYLOAD = st.one_of(
    _ENVELOPE.map(lambda d: json.dumps(d, allow_nan=True).encode()),
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b"[]", b"null", b'{"points": {}}', b"\xef\xbb\xbf{}", b"[" * 100]),
)
_TOPIC = st.one_of(
    st.just(TOPIC),
    st.sampled_from(
        [
            "twinkg/v1/SKT/tele",
            "twinkg/v1/SKT/tele/a/b/c",
            "twinkg/v1/SKT/tele/-x/y",
            "twinkg/v1/SKT/tele/a/$y",
            "twinkg/v1/other/tele/a/n",  # another site's topic: the SKAB sensor is not its
        ]
    ),
)


@pytest.fixture(scope="module")
def hostile_worker(
    mqtt: broker.BrokerConfig, seeded: GraphStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MqttIngest]:
    home = tmp_path_factory.mktemp("hostile")
    twin = Twin(Settings(home=home), seeded)
    worker, subscriber = _worker(twin, mqtt, "ingest-fuzz", home)
    yield worker
    subscriber.close(end_session=True)
    twin.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(payloads=st.lists(st.tuples(_TOPIC, _PAYLOAD), min_size=1, max_size=4))
def test_any_message_is_applied_or_refused_with_a_reason_and_the_worker_goes_on(
    hostile_worker: MqttIngest, payloads: list[tuple[str, bytes]]
) -> None:
    """Hostile payloads and topics straight into the worker's handler (the broker's delivery is
    tested above): every message is applied, a duplicate, or refused with a code and a reason
    kept in the dead letters; an applied one accounts for every point it gave."""
    letters = DeadLetters(hostile_worker.dead_letters.folder)
    for topic, payload in payloads:
        before = sum(1 for _ in letters.read())
        outcome = hostile_worker.handle(Message(topic, payload, 0, 0, redelivered=False))
        after = list(letters.read())
        if outcome.kind == "refused":
            assert outcome.code and outcome.reason
            assert len(after) == before + 1 and after[-1].payload == payload[:65536]
            assert after[-1].code == outcome.code
            continue
        assert len(after) == before  # nothing refused, nothing kept as a dead letter
        document = json.loads(payload.decode("utf-8-sig"))
        if outcome.kind == "applied":
            assert outcome.accepted + outcome.quarantined == len(document["points"])
            if topic.startswith("twinkg/v1/other/"):  # no sensor of site "other" exists
                assert outcome.accepted == 0
        else:
            assert outcome.kind == "duplicate"


def test_messages_waiting_together_are_one_batch_and_each_keeps_its_own_outcome(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path, driver: Driver
) -> None:
    """Decision 0067: what waits when the worker takes a message is ingested with it as one
    batch; a malformed message among them is refused alone, a repeat is a duplicate, and each
    message gets its own outcome (and so its own receipt and acknowledgement)."""
    gateway = connect(producer(mqtt, "gw-group", "SKT"), "gw-group")
    worker, subscriber = _worker(twin, mqtt, "ingest-group", tmp_path)
    start = _recent(7)
    good = [_batch(start + timedelta(minutes=i), 3, value=100.0 + i) for i in range(5)]
    bodies = [*good[:2], b"not json", *good[2:], good[0]]
    seen: list[tuple[bytes, str, int]] = []
    try:
        for body in bodies:
            publish(gateway, TOPIC, body, timeout_s=10)
        waited = threading.Event()
        for _ in range(1200):  # every message received before the worker takes the first
            if subscriber.pending() == len(bodies):
                break
            waited.wait(0.05)
        assert subscriber.pending() == len(bodies)
        stats = worker.run(
            max_messages=len(bodies),
            idle_s=20,
            on_outcome=lambda m, o: seen.append((m.payload, o.kind, o.accepted)),
        )
    finally:
        subscriber.close(end_session=True)
        gateway.disconnect()
    assert [(payload, kind) for payload, kind, _ in seen] == [
        (good[0], "applied"),
        (good[1], "applied"),
        (b"not json", "refused"),
        (good[2], "applied"),
        (good[3], "applied"),
        (good[4], "applied"),
        (good[0], "duplicate"),
    ]
    assert [accepted for _, kind, accepted in seen if kind == "applied"] == [3] * 5
    assert (stats.applied, stats.duplicates, stats.refused, stats.points_accepted) == (5, 1, 1, 15)
    assert _stored(tmp_path) == 15
    hashes = [
        twin.read_batches(JsonSource("mqtt:SKT/loop/gw1", body=b))[0].content_hash for b in good
    ]
    rows, _, _ = driver.execute_query(
        "MATCH (m:IngestMessage)-[:IN_BATCH]->(b:IngestBatch) WHERE m.contentHash IN $hashes "
        "RETURN b.uri AS batch, b.acceptedCount AS accepted, count(m) AS messages",
        hashes=hashes,
    )
    assert [(r["accepted"], r["messages"]) for r in rows] == [(15, 5)]  # one batch of five


def _declaring(body: bytes, contract: str) -> bytes:
    """``body`` declaring ``contract`` instead."""
    return json.dumps({**json.loads(body), "contract": contract}).encode()


def _received(subscriber: Subscriber, count: int) -> None:
    """Until ``count`` messages wait in ``subscriber`` (none taken yet)."""
    waited = threading.Event()
    for _ in range(1200):
        if subscriber.pending() == count:
            return
        waited.wait(0.05)
    raise AssertionError(f"{subscriber.pending()} of {count} messages received")


def _take_all(
    worker: MqttIngest, subscriber: Subscriber, gateway: paho.Client, bodies: list[bytes]
) -> tuple[MqttIngestStats, list[str]]:
    """Publish ``bodies``, wait until all of them wait at ``subscriber``, and let ``worker``
    take them: its stats and each message's outcome. Closes the subscriber and the gateway."""
    seen: list[str] = []
    try:
        for body in bodies:
            publish(gateway, TOPIC, body, timeout_s=10)
        _received(subscriber, len(bodies))
        stats = worker.run(
            max_messages=len(bodies), idle_s=20, on_outcome=lambda m, o: seen.append(o.kind)
        )
    finally:
        subscriber.close(end_session=True)
        gateway.disconnect()
    return stats, seen


def _batches_of(driver: Driver, bodies: list[bytes], twin: Twin) -> list[tuple[int, int, str]]:
    """Each stored batch that holds ``bodies``: points accepted, messages, contract."""
    hashes = [
        twin.read_batches(JsonSource("mqtt:SKT/loop/gw1", body=b))[0].content_hash for b in bodies
    ]
    rows, _, _ = driver.execute_query(
        "MATCH (b:IngestBatch) OPTIONAL MATCH (m:IngestMessage)-[:IN_BATCH]->(b) "
        "WITH b, collect(m.contentHash) AS messages "
        "WHERE b.contentHash IN $hashes OR any(h IN messages WHERE h IN $hashes) "
        "RETURN b.acceptedCount AS accepted, size(messages) AS messages, "
        "b.contractVersion AS contract",
        hashes=hashes,
    )
    return [(r["accepted"], r["messages"], r["contract"]) for r in rows]


def test_a_contract_named_with_or_without_its_version_is_one_group(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path, driver: Driver
) -> None:
    """``telemetry`` resolves to the version ``telemetry@1.0.0`` names: messages declaring
    either, waiting together, are one batch checked with that contract."""
    gateway = connect(producer(mqtt, "gw-names", "SKT"), "gw-names")
    worker, subscriber = _worker(twin, mqtt, "ingest-names", tmp_path)
    start = _recent(10)
    plain = [_batch(start + timedelta(minutes=i), 3, value=95.0 + i) for i in range(3)]
    bodies = [plain[0], _declaring(plain[1], "telemetry"), plain[2]]
    _, seen = _take_all(worker, subscriber, gateway, bodies)
    assert seen == ["applied"] * 3
    assert _batches_of(driver, bodies, twin) == [(9, 3, "telemetry@1.0.0")]


def test_a_retry_keeps_what_the_failed_try_applied(
    mqtt: broker.BrokerConfig,
    seeded: GraphStore,
    tmp_path: Path,
    driver: Driver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three messages that cannot share a batch (TWINKG_INGEST_MAX_POINTS below two of them)
    are three groups of one try. The store fails the second group once: the retry takes the
    second and third, and not the first again (it would come out a duplicate)."""
    twin = Twin(Settings(home=tmp_path, ingest_max_points=5), seeded)
    gateway = connect(producer(mqtt, "gw-partial", "SKT"), "gw-partial")
    worker, subscriber = _worker(twin, mqtt, "ingest-partial", tmp_path)
    worker.retry_s = 0.01
    start = _recent(11)
    bodies = [_batch(start + timedelta(minutes=i), 3, value=97.0 + i) for i in range(3)]
    ingest = twin.ingest_batches
    calls: list[int] = []

    def flaky(batches: Any, **options: Any) -> Any:
        calls.append(len(calls))
        if len(calls) == 2:
            raise StoreError("the store went away mid-try")
        return ingest(batches, **options)

    monkeypatch.setattr(twin, "ingest_batches", flaky)
    try:
        stats, seen = _take_all(worker, subscriber, gateway, bodies)
        stored = _batches_of(driver, bodies, twin)
    finally:
        twin.close()
    assert seen == ["applied"] * 3
    assert (stats.retries, len(calls)) == (1, 4)  # the first group once, the second twice
    assert _stored(tmp_path) == 9
    assert stored == [(3, 0, "telemetry@1.0.0")] * 3


def test_a_group_refused_whole_is_taken_message_by_message(
    mqtt: broker.BrokerConfig,
    twin: Twin,
    tmp_path: Path,
    driver: Driver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Should the ingest refuse a group as a whole, its messages are not refused with it: each
    is ingested alone and answered on its own."""
    gateway = connect(producer(mqtt, "gw-whole", "SKT"), "gw-whole")
    worker, subscriber = _worker(twin, mqtt, "ingest-whole", tmp_path)
    start = _recent(12)
    bodies = [_batch(start + timedelta(minutes=i), 3, value=99.0 + i) for i in range(3)]
    ingest = twin.ingest_batches
    sizes: list[int] = []

    def picky(batches: Any, **options: Any) -> Any:
        sizes.append(len(batches))
        if len(batches) > 1:
            raise InvalidInputError("refused as a group")
        return ingest(batches, **options)

    monkeypatch.setattr(twin, "ingest_batches", picky)
    stats, seen = _take_all(worker, subscriber, gateway, bodies)
    assert sizes == [3, 1, 1, 1]
    assert seen == ["applied"] * 3
    assert (stats.applied, stats.refused) == (3, 0)
    assert _stored(tmp_path) == 9
    assert _batches_of(driver, bodies, twin) == [(3, 0, "telemetry@1.0.0")] * 3


def test_an_ingest_workers_state_says_when_it_stops_and_when_its_connection_is_lost(
    mqtt: broker.BrokerConfig,
) -> None:
    """The retained state announcement goes ``online: false`` with its reason: ``stopped`` when
    the worker closes, ``connection lost`` (the broker publishes the connection's Will) when
    its connection drops without a DISCONNECT; a reconnection announces it online again."""
    topic = state_topic("ingest-state")
    seen: list[dict[str, Any]] = []
    broker.issue(mqtt, "state-watch", Role.OBSERVER)  # a dashboard: it may read the states
    observer = Subscriber(endpoint(mqtt, "state-watch"), [topic], client_id="observer-state")

    def heard(condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for message in observer.messages(idle_s=60):  # a bound for slow machines, not a wait
            observer.ack(message)
            seen.append(json.loads(message.payload))
            if condition(seen[-1]):
                return seen[-1]
        log = (mqtt.home / "mosquitto.log").read_text(errors="replace").splitlines()[-20:]
        raise AssertionError(f"no such announcement; heard {seen}; broker log: {log}")

    try:
        worker = Subscriber(
            endpoint(mqtt), telemetry_filters(["SKT"]), client_id="ingest-state", announce=topic
        )
        assert heard(lambda s: s["online"] is True)["client"] == "ingest-state"
        for _ in range(3):
            sock = worker.client.socket()
            assert isinstance(sock, socket.socket)  # an ssl.SSLSocket
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the network goes: no DISCONNECT is sent
                break
            except OSError:  # paho was closing this one itself (CI saw it once): take the next
                heard(lambda s: s["online"] is True)
        else:
            raise AssertionError(f"the worker's connection kept closing by itself; heard {seen}")
        lost = heard(lambda s: s["online"] is False)
        assert lost == {"online": False, "client": "ingest-state", "reason": "connection lost"}
        heard(lambda s: s["online"] is True)  # paho reconnects, the subscription is announced
        worker.close(end_session=True)
        stopped = heard(lambda s: s["online"] is False)
        assert stopped["reason"] == "stopped" and datetime.fromisoformat(stopped["at"])
    finally:
        observer.close(end_session=True)
    # retained: whoever subscribes later learns that the worker is gone, and why
    late = Subscriber(endpoint(mqtt, "state-watch"), [topic], client_id="observer-late")
    try:
        [message] = list(late.messages(idle_s=5))  # the retained one arrives at subscribe
        late.ack(message)
        assert json.loads(message.payload)["reason"] == "stopped"
    finally:
        late.close(end_session=True)


def test_a_producer_naming_another_sites_sensors_is_refused_whole(
    mqtt: broker.BrokerConfig, twin: Twin, tmp_path: Path, driver: Driver
) -> None:
    """Decision 0083: the ACL keeps a producer to its site's topics, and the worker keeps its
    payload to its site's sensors. A batch naming a sensor of another site, or of none, is
    refused whole (nothing written, the producer told why); a sensor the graph does not know
    is the contract's to quarantine; the worker goes on."""
    lost = "https://example.org/nowhere/sensor-stray"  # on no site
    watcher = "https://example.org/nowhere/sensor-watching-the-pump"  # on SKT by what it watches
    driver.execute_query(
        "MATCH (p:Resource {uri: $pump}) CREATE (:Resource:Sensor {uri: $lost}) "
        "CREATE (:Resource:Sensor {uri: $watcher})-[:MONITORS]->(p)",
        lost=lost,
        watcher=watcher,
        pump=PLANT + "pump",
    )
    broker.issue(mqtt, "gw-elsewhere", Role.PRODUCER, site="elsewhere")
    skt = connect(producer(mqtt, "gw-skt-sites", "SKT"), "gw-skt-sites")  # both issued first:
    elsewhere = endpoint(mqtt, "gw-elsewhere")  # an issue restarts the broker
    listener = Subscriber(
        elsewhere, ["twinkg/v1/elsewhere/refused/#"], client_id="gw-elsewhere-listener"
    )
    gateway = connect(elsewhere, "gw-elsewhere")
    worker, subscriber = _worker(twin, mqtt, "ingest-sites", tmp_path, "elsewhere", "SKT")
    start = _recent(13)
    stray = json.loads(_batch(start, 2))
    stray["points"][1]["sensor"] = lost
    unknown = json.loads(_batch(start + timedelta(minutes=1), 2))
    unknown["points"][0]["sensor"] = "https://example.org/nowhere/sensor-never-seeded"
    foreign = json.loads(_batch(start, 3))
    foreign["points"][2]["sensor"] = watcher
    sent = [
        ("twinkg/v1/elsewhere/tele/a/gw", json.dumps(foreign).encode()),  # SKT's on another site
        (TOPIC, json.dumps(stray).encode()),  # one sensor of SKT, one of no site
        (TOPIC, json.dumps(unknown).encode()),  # an unknown sensor: quarantined, not refused
        (TOPIC, _batch(start + timedelta(minutes=2), 4)),  # the worker goes on
    ]
    nodes_before = driver.execute_query("MATCH (n) RETURN count(n) AS n").records[0]["n"]
    seen: list[Outcome] = []
    try:
        publish(gateway, sent[0][0], sent[0][1], timeout_s=10)
        _received(subscriber, 1)  # in this order: the topics are two, the worker's queue one
        for topic, body in sent[1:]:
            publish(skt, topic, body, timeout_s=10)
        worker.run(max_messages=4, idle_s=20, on_outcome=lambda _m, o: seen.append(o))
        heard = next(iter(_take(listener, 1)), None)
        # the segment events give a thing on no site is no site: its sensors are no producer's
        lone = json.loads(_batch(start + timedelta(minutes=3), 1))
        lone["points"][0]["sensor"] = lost
        unplaced = Message(
            "twinkg/v1/unplaced/tele/a/gw", json.dumps(lone).encode(), 0, 0, redelivered=False
        )
        seen.append(worker.handle(unplaced))
    finally:
        for client in (gateway, skt):
            client.disconnect()
        for sub in (listener, subscriber):
            sub.close(end_session=True)
        for uri in (lost, watcher):
            driver.execute_query("MATCH (s:Sensor {uri: $u}) DETACH DELETE s", u=uri)
    assert [o.kind for o in seen] == ["refused", "refused", "applied", "applied", "refused"]
    assert {seen[0].code, seen[1].code, seen[4].code} == {"site_mismatch"}
    assert seen[0].reason is not None and SENSOR in seen[0].reason
    assert "site 'elsewhere'" in seen[0].reason and f"{watcher} (site 'SKT')" in seen[0].reason
    assert seen[1].reason is not None and f"{lost} (no site)" in seen[1].reason
    assert SENSOR not in seen[1].reason  # only the sensors at fault are named
    assert (seen[2].accepted, seen[2].quarantined) == (1, 1)
    assert (seen[3].accepted, seen[3].quarantined) == (4, 0)
    assert heard is not None and json.loads(heard.payload)["code"] == "site_mismatch"
    letters = list(DeadLetters(tmp_path / "refused").read())
    assert [(letter.code, letter.payload) for letter in letters] == [
        ("site_mismatch", sent[0][1]),
        ("site_mismatch", sent[1][1]),
        ("site_mismatch", unplaced.payload),
    ]
    assert _stored(tmp_path) == 5  # nothing of the refused messages was written
    nodes_after = driver.execute_query("MATCH (n) RETURN count(n) AS n").records[0]["n"]
    batches = driver.execute_query(
        "MATCH (b:IngestBatch) WHERE b.rdfs_label STARTS WITH 'mqtt:elsewhere/' "
        "RETURN count(b) AS n"
    ).records[0]["n"]
    assert batches == 0 and nodes_after > nodes_before


def test_while_the_store_is_away_at_the_site_check_each_refusal_is_made_once(
    mqtt: broker.BrokerConfig,
    twin: Twin,
    tmp_path: Path,
    driver: Driver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sites are read before any refusal is made: a group whose read fails is tried again
    whole, and each message it refuses is dead-lettered once."""
    adrift = "https://example.org/nowhere/sensor-adrift"
    driver.execute_query("CREATE (:Resource:Sensor {uri: $u})", u=adrift)  # on no site
    gateway = connect(producer(mqtt, "gw-site-retry", "SKT"), "gw-site-retry")
    worker, subscriber = _worker(twin, mqtt, "ingest-site-retry", tmp_path)
    worker.retry_s = 0.01
    real = twin.store.read
    failures = [2]  # Neo4j answers the third try

    def away(query: NamedQuery, **params: Any) -> list[dict[str, Any]]:
        if query is SENSOR_SITES and failures[0]:
            failures[0] -= 1
            raise StoreError("Neo4j is unreachable")
        return real(query, **params)

    monkeypatch.setattr(twin.store, "read", away)
    start = _recent(14)
    stray = json.loads(_batch(start, 2))
    stray["points"][0]["sensor"] = adrift
    bodies = [b"not json", json.dumps(stray).encode(), _batch(start + timedelta(minutes=1), 3)]
    try:
        for body in bodies:
            publish(gateway, TOPIC, body, timeout_s=10)
        _received(subscriber, len(bodies))  # taken as one group
        stats = worker.run(max_messages=len(bodies), idle_s=20)
    finally:
        subscriber.close(end_session=True)
        gateway.disconnect()
        driver.execute_query("MATCH (s:Sensor {uri: $u}) DETACH DELETE s", u=adrift)
    assert failures == [0] and stats.retries == 2
    assert (stats.applied, stats.refused) == (1, 2)
    letters = list(DeadLetters(tmp_path / "refused").read())
    assert [letter.payload for letter in letters] == bodies[:2]  # each refusal once
    assert letters[1].code == "site_mismatch"
    assert _stored(tmp_path) == 3
