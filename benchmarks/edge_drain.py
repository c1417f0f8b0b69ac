"""Edge buffer drain benchmark: an outage's worth of telemetry buffered on the edge, then
drained into the central twin once the link is back (issue 15, decision 0059).

Starts a throwaway Neo4j and TwinKG's own Mosquitto (TLS, client certificates, ACL), seeds the
SKAB testbed, and makes an outage of ``--minutes`` at a plant rate of ``--rate`` points/s in
one JSON batch per ``--batch-s`` seconds. The default, 2,000 points/s for 10 minutes (1.2 M
points), is a plant of 200 sensors at 10 Hz; the testbed has eight sensors, so each carries
``rate / 8`` readings a second (the points are what costs, not the sensor count). Two runs of
equal size, each with its own timestamps, are measured side by side:

1. **anchor**: the batches published straight to the broker by a producer (QoS 1) while the
   MQTT ingest worker (``api.mqtt_ingest``) ingests them; from the first publish to the last
   acknowledgement: no buffer;
2. **drain**: the same number of batches taken into the edge's buffer (SQLite, WAL) while the
   link is down (the fill time is printed too), then the link starts and forwards them; from
   the link's start until the buffer is empty, which happens only when the twin's receipt for
   every batch has come back.

Two batches are ingested first, unmeasured (Neo4j compiles its write paths on the first ones).
Prints points/s of each and the ratio drain / anchor.

    python -m benchmarks.edge_drain [--minutes 10] [--rate 2000] [--batch-s 1]
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.mqtt_ingest import batches, ingest_alone
from benchmarks.server import throwaway_store
from twinkg.api.mqtt_ingest import MqttIngest, MqttIngestStats
from twinkg.api.settings import Settings, dead_letter_dir
from twinkg.api.twin import Twin
from twinkg.connect.edge.service import EdgeConfig, EdgeService
from twinkg.connect.mqtt import broker
from twinkg.connect.mqtt.client import Subscriber, connect, publish
from twinkg.connect.mqtt.endpoint import MqttEndpoint
from twinkg.connect.mqtt.topics import Role, TelemetryTopic, state_topic, telemetry_filters
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg.dead_letters import DeadLetters
from twinkg.kg.local_server import free_port

SITE, NODE = "SKT", "edge-bench"


def _worker(twin: Twin, config: broker.BrokerConfig) -> tuple[MqttIngest, Subscriber]:
    service = MqttEndpoint(config.url, config.client(broker.SERVICE_USER))
    sub = Subscriber(
        service,
        telemetry_filters([SITE]),
        client_id="bench-edge-ingest",
        receive_maximum=32,
        announce=state_topic("bench-edge-ingest"),
    )
    return MqttIngest(twin, sub, DeadLetters(dead_letter_dir(twin.settings))), sub


def anchor(twin: Twin, config: broker.BrokerConfig, bodies: list[bytes]) -> tuple[float, int]:
    """Seconds from the first publish to the last acknowledgement; points accepted."""
    worker, sub = _worker(twin, config)
    gateway = connect(MqttEndpoint(config.url, config.client(NODE)), "bench-anchor")
    topic = TelemetryTopic(SITE, "edge", NODE).topic

    def send() -> None:
        for body in bodies:
            publish(gateway, topic, body, timeout_s=120)

    started = time.perf_counter()
    sender = threading.Thread(target=send)
    sender.start()
    stats = worker.run(max_messages=len(bodies), idle_s=300)
    elapsed = time.perf_counter() - started
    sender.join()
    sub.close()
    gateway.disconnect()
    return elapsed, stats.points_accepted


def drain(
    twin: Twin, config: broker.BrokerConfig, bodies: list[bytes], folder: Path
) -> tuple[float, float, MqttIngestStats]:
    """Seconds to fill the buffer (link down), seconds to drain it; the ingest's counts."""
    edge = EdgeConfig(
        folder=folder,
        site=SITE,
        node=NODE,
        area="edge",
        endpoint=MqttEndpoint(config.url, config.client(NODE)),
        inbox=folder / "inbox",
        max_bytes=1 << 40,
        window=256,
    )
    service = EdgeService(edge)
    started = time.perf_counter()
    for body in bodies:
        assert service.runtime.take(body)
    filled = time.perf_counter() - started
    worker, sub = _worker(twin, config)
    stop = threading.Event()
    thread = threading.Thread(target=lambda: worker.run(stop=stop))
    thread.start()
    started = time.perf_counter()
    service.start()
    while service.buffer.depth().entries:
        time.sleep(0.05)
    drained = time.perf_counter() - started
    service.stop()
    stop.set()
    thread.join()
    sub.close()
    return filled, drained, worker.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=2000, help="plant points per second")
    parser.add_argument("--batch-s", type=int, default=1, help="seconds of readings a batch")
    args = parser.parse_args()
    messages = int(args.minutes * 60 / args.batch_s)
    points = args.rate * args.batch_s
    with throwaway_store() as (store, home):
        store.ensure_schema()
        seeding.load(store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
        config = broker.BrokerConfig(home=home / "broker", port=free_port())
        broker.start(config)
        try:
            broker.issue(config, NODE, Role.PRODUCER, site=SITE)
            twin = Twin(Settings(home=home), store)
            span = messages * points // 8  # seconds of readings per run
            start = datetime.now(UTC) - timedelta(seconds=4 * span + 3600)
            warm = batches(store, start=start, messages=2, points=points)
            ingest_alone(twin, warm)  # Neo4j compiles its write paths on the first batches
            start += timedelta(seconds=2 * points // 8 + 1)
            anchor_bodies = batches(store, start=start, messages=messages, points=points)
            drain_bodies = batches(
                store, start=start + timedelta(seconds=span + 1), messages=messages, points=points
            )
            anchor_s, anchor_points = anchor(twin, config, anchor_bodies)
            filled_s, drain_s, stats = drain(twin, config, drain_bodies, home / "edge")
            twin.close()
        finally:
            broker.stop(config)
    total = messages * points
    mb = sum(len(b) for b in drain_bodies) / 1e6
    print(
        f"outage of {args.minutes:g} min at {args.rate:,} points/s: {messages} batches × "
        f"{points:,} points = {total:,} points ({mb:.1f} MB of JSON), 2 cores"
    )
    print(
        f"buffer filled with the link down: {total / filled_s:>12,.0f} points/s ({filled_s:.2f} s)"
    )
    rate_anchor = anchor_points / anchor_s
    print(f"anchor, straight to the broker:   {rate_anchor:>12,.0f} points/s ({anchor_s:.2f} s)")
    rate_drain = stats.points_accepted / drain_s
    print(f"drain, buffer to twin, receipted: {rate_drain:>12,.0f} points/s ({drain_s:.2f} s)")
    print(
        f"  drained: accepted {stats.points_accepted} (anchor {anchor_points}), quarantined "
        f"{stats.points_quarantined}, batches {stats.applied} applied + {stats.duplicates} repeats"
    )
    print(f"drain / anchor: {rate_drain / rate_anchor:.2f}×")


if __name__ == "__main__":
    main()
