"""MQTT telemetry benchmark: JSON batches published to TwinKG's own Mosquitto (TLS, client
certificates, ACL) and ingested by an MQTT worker into the telemetry log and Neo4j, end to end.

Starts a throwaway Neo4j and a broker, seeds the SKAB testbed, and makes ``--messages`` JSON
batches of ``--points`` points each (the testbed's eight sensors, one reading a second, values
inside each sensor's range, all in the past day-and-a-half so the contract takes them). Three
runs of equal size, each with fresh timestamps, are measured side by side:

1. **broker alone**: the batches published at QoS 1 and received (acknowledged, not ingested)
   by a subscriber: what MQTT over TLS costs on this machine;
2. **ingest alone** (the anchor): the same number of batches through ``Twin.ingest`` in
   process, as ``POST /telemetry`` would take them, without MQTT;
3. **end to end**: a publisher thread publishes while the MQTT worker (``api.mqtt_ingest``)
   takes each message, checks it against the telemetry contract, applies it all or nothing
   and acknowledges it; timed from the first publish to the last acknowledgement.

Prints points/s of each, the end-to-end ratio to the anchor and to the target, and for the
anchor and the end-to-end run the CPU seconds per 10,000 points of this process and of the
Neo4j server (its JVM's counters in ``/proc``): what bounds the rate on a machine of two cores
(docs/performance.md, decision 0060).
Target (issue 15): ≥ 100,000 points/s end to end into the log.

    python -m benchmarks.mqtt_ingest [--messages 40] [--points 10000] [--warm 20]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho

from benchmarks.server import throwaway_store
from twinkg.api.mqtt_ingest import MqttIngest
from twinkg.api.reclassification import Reclassify
from twinkg.api.settings import Settings, dead_letter_dir
from twinkg.api.twin import Twin
from twinkg.connect.json import JsonSource
from twinkg.connect.mqtt import broker
from twinkg.connect.mqtt.client import Subscriber, connect, publish
from twinkg.connect.mqtt.endpoint import MqttEndpoint
from twinkg.connect.mqtt.topics import Role, telemetry_filters
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import telemetry_state
from twinkg.kg.dead_letters import DeadLetters
from twinkg.kg.local_server import free_port
from twinkg.kg.store import GraphStore

TARGET = 100_000
TOPIC = "twinkg/v1/SKT/tele/loop/bench"


def jvm_cpu(home: Path) -> Callable[[], float]:
    """CPU seconds so far of the Neo4j server under ``home`` (0.0 where ``/proc`` cannot say)."""
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"java" in command and str(home).encode() in command:
            return functools.partial(_cpu_seconds, entry / "stat")
    return lambda: 0.0


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batches(store: GraphStore, *, start: datetime, messages: int, points: int) -> list[bytes]:
    """``messages`` JSON batches of ``points`` points, one row of readings a second."""
    sensors = [s for s in telemetry_state.sensors(store) if s.unit is not None]
    rng = np.random.default_rng(7)
    rows = points // len(sensors)
    out: list[bytes] = []
    second = 0
    for _ in range(messages):
        body: list[dict[str, object]] = []
        for _ in range(rows):
            stamp = (start + timedelta(seconds=second)).isoformat().replace("+00:00", "Z")
            second += 1
            for sensor in sensors:
                low, high = sensor.physical_min or 0.0, sensor.physical_max or 100.0
                value = low + (high - low) * (0.45 + 0.1 * float(rng.random()))
                body.append(
                    {"sensor": sensor.uri, "unit": sensor.unit, "time": stamp, "value": value}
                )
        out.append(json.dumps({"contract": "telemetry@1.0.0", "points": body}).encode())
    return out


def _publish_all(gateway: paho.Client, bodies: list[bytes], timeout_s: float) -> None:
    for body in bodies:
        publish(gateway, TOPIC, body, timeout_s=timeout_s)


def broker_alone(config: broker.BrokerConfig, bodies: list[bytes]) -> float:
    """Seconds to publish ``bodies`` and receive every one (acknowledged, not ingested)."""
    service = MqttEndpoint(config.url, config.client(broker.SERVICE_USER))
    sub = Subscriber(service, telemetry_filters(["SKT"]), client_id="bench-raw")
    gateway = connect(MqttEndpoint(config.url, config.client("bench-gw")), "bench-gw-raw")
    started = time.perf_counter()
    sender = threading.Thread(target=_publish_all, args=(gateway, bodies, 60.0))
    sender.start()
    for received, message in enumerate(sub.messages(idle_s=60), start=1):
        sub.ack(message)
        if received == len(bodies):
            break
    elapsed = time.perf_counter() - started
    sender.join()
    sub.close(end_session=True)
    gateway.disconnect()
    return elapsed


def ingest_alone(twin: Twin, bodies: list[bytes]) -> tuple[float, int]:
    """Seconds to ingest ``bodies`` in process, and the points accepted."""
    accepted = 0
    started = time.perf_counter()
    for i, body in enumerate(bodies):
        for result in twin.ingest(
            JsonSource(f"bench-{i}", body=body), reclassify=Reclassify.BACKGROUND
        ):
            accepted += result.report.accepted
    return time.perf_counter() - started, accepted


def warm_groups(twin: Twin, bodies: list[bytes]) -> None:
    """Ingest ``bodies`` in groups of ``TWINKG_MQTT_GROUP_MAX``, as the MQTT worker takes a
    backlog: Neo4j plans each statement anew for a larger list of rows."""
    size = twin.settings.mqtt_group_max
    for first in range(0, len(bodies), size):
        group = [
            twin.read_batches(JsonSource(f"warm-{first + i}", body=body))[0]
            for i, body in enumerate(bodies[first : first + size])
        ]
        twin.ingest_batches(group, reclassify=Reclassify.BACKGROUND)


def end_to_end(
    twin: Twin, config: broker.BrokerConfig, bodies: list[bytes]
) -> tuple[float, int, int]:
    """Seconds from the first publish to the last acknowledgement; points accepted, quarantined."""
    service = MqttEndpoint(config.url, config.client(broker.SERVICE_USER))
    sub = Subscriber(
        service, telemetry_filters(["SKT"]), client_id="bench-ingest", receive_maximum=32
    )
    worker = MqttIngest(twin, sub, DeadLetters(dead_letter_dir(twin.settings)))
    gateway = connect(MqttEndpoint(config.url, config.client("bench-gw")), "bench-gw")
    started = time.perf_counter()
    sender = threading.Thread(target=_publish_all, args=(gateway, bodies, 120.0))
    sender.start()
    stats = worker.run(max_messages=len(bodies), idle_s=120)
    elapsed = time.perf_counter() - started
    sender.join()
    sub.close(end_session=True)
    gateway.disconnect()
    return elapsed, stats.points_accepted, stats.points_quarantined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument(
        "--warm", type=int, default=20, help="batches to warm Neo4j's JIT and plans with"
    )
    args = parser.parse_args()
    args.warm = max(1, min(args.warm, 2 * args.messages))  # inside the timeline below
    with throwaway_store() as (store, home):
        store.ensure_schema()
        seeding.load(store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
        config = broker.BrokerConfig(home=home / "broker", port=free_port())
        broker.start(config)
        try:
            broker.issue(config, "bench-gw", Role.PRODUCER, site="SKT")
            twin = Twin(Settings(home=home), store)
            span = args.messages * args.points // 8  # seconds of readings per run
            start = datetime.now(UTC) - timedelta(seconds=4 * span + 3600)
            # Neo4j compiles its write paths on the first batches: after two, the anchor's
            # Neo4j CPU per batch was 0.5 s; after ten, 0.35 s (the end-to-end run's 0.15 s)
            warm = batches(store, start=start, messages=args.warm, points=args.points)
            # one at a time (the anchor's path), then as groups (the worker's, decision 0067)
            ingest_alone(twin, warm[: args.warm // 2])
            warm_groups(twin, warm[args.warm // 2 :])
            start += timedelta(seconds=span // args.messages * args.warm + 1)
            anchor = batches(store, start=start, messages=args.messages, points=args.points)
            mqtt = batches(
                store,
                start=start + timedelta(seconds=span + 1),
                messages=args.messages,
                points=args.points,
            )
            neo4j_cpu = jvm_cpu(home)
            raw_s = broker_alone(config, mqtt)
            cpu = (time.process_time(), neo4j_cpu())
            alone_s, alone_points = ingest_alone(twin, anchor)
            alone_cpu = (time.process_time() - cpu[0], neo4j_cpu() - cpu[1])
            cpu = (time.process_time(), neo4j_cpu())
            e2e_s, e2e_points, quarantined = end_to_end(twin, config, mqtt)
            e2e_cpu = (time.process_time() - cpu[0], neo4j_cpu() - cpu[1])
            twin.close()
        finally:
            broker.stop(config)
    total = args.messages * args.points
    mb = sum(len(b) for b in mqtt) / 1e6
    print(f"{args.messages} messages × {args.points} points ({mb:.1f} MB of JSON), 2 cores")
    print(
        f"broker alone (TLS, QoS 1, no ingest): {total / raw_s:>12,.0f} points/s  ({raw_s:.2f} s)"
    )
    alone = alone_points / alone_s
    print(f"ingest alone, in process (anchor):    {alone:>12,.0f} points/s  ({alone_s:.2f} s)")
    rate = e2e_points / e2e_s
    print(f"MQTT end to end into the log:         {rate:>12,.0f} points/s  ({e2e_s:.2f} s)")
    print(f"  accepted {e2e_points} (anchor {alone_points}), quarantined {quarantined}")
    print(f"end to end / ingest alone: {rate / alone:.2f}×")
    per = 10_000 / total
    for name, (mine, neo4j) in (("ingest alone", alone_cpu), ("end to end", e2e_cpu)):
        print(
            f"CPU per 10,000 points, {name}: twin {mine * per:.3f} s, "
            f"Neo4j {neo4j * per:.3f} s (of 2 cores: at most "
            f"{2 * 10_000 / max((mine + neo4j) * per, 1e-9):,.0f} points/s)"
        )
    verdict = "met" if rate >= TARGET else "not met"
    print(f"target ≥ {TARGET:,} points/s: {rate / TARGET:.2f}× ({verdict})")


if __name__ == "__main__":
    main()
