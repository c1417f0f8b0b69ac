"""Detection → decision latency of ``twinkg run``, with and without a telemetry load.

Starts a throwaway Neo4j and TwinKG's own Mosquitto, seeds a generated plant of ``--assets``
assets, and starts ``twinkg run`` (MQTT ingest, the agents on work items, the event publisher;
with ``--workers N``, N-1 more agent-only processes) as a user would. Then three phases, side by
side in one run, each on ``--anomalies`` motors of its own. One site's gateway publishes it
all (a producer may name only its own site's sensors): the site with the most motors that have
an envelope.

1. **idle, spaced** (the anchor): one telemetry batch drives one motor's temperature far above
   its operating envelope for two minutes of readings, one motor every ``--spacing-s`` seconds
   (open loop: whether the earlier ones are decided or not), with nothing else going on;
2. **load, spaced**: the same, while a second publisher streams in-range telemetry of every
   other sensor of the site as fast as the twin takes it (QoS 1, 10,000-point batches, at most
   ``--load-ahead`` of them published and not yet stored); ``--load-sensors K --load-hz H``
   streams only K of them at H readings a second instead, the shape of
   ``benchmarks.mqtt_ingest``'s stream (fewer window aggregates and states a point);
3. **load, burst**: all the motors at once under the same load: the alarms queue for the agents,
   so the last one waits for the decisions of all before it (a stress figure, not a latency).

Each anomalous batch makes the ingest raise an envelope alarm, publish a work item for the motor,
and an agent decide on it. The latency of one alarm is read from the graph afterwards, on the one
clock of this machine:

- **detection → decision**: from the commit of the transaction that stored the alarm (its change
  log entry's ``at``, stamped just before that commit) to the end of the decision that used it
  (``prov:endedAtTime``, stamped when its record is written);
- **published → decision**: from the moment the benchmark published the batch.

Detection → decision is also printed in two parts, split at the start of the run that decided
(``prov:startedAtTime``): the wait for an agent (the work item over MQTT, the queue, the lease)
and the run itself (observe to record).

Prints p50, p95, p99 and the largest of each for every phase, the ratio of the loaded p99 to the
idle one, the load's points/s while the alarms were decided, and the target (issue 15): p99 of
detection → decision ≤ 1 s under load, for the spaced and the burst phase.

    python -m benchmarks.decision_latency [--assets 1000] [--anomalies 30] [--spacing-s 3]
        [--load-sensors 100 --load-hz 10 --load-ahead 32]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho

from benchmarks.server import throwaway_server
from twinkg.api.event_stream import Place
from twinkg.api.metrics import loops_up, scrape
from twinkg.connect.mqtt import broker
from twinkg.connect.mqtt.client import connect, publish
from twinkg.connect.mqtt.endpoint import MqttEndpoint
from twinkg.connect.mqtt.topics import Role, TelemetryTopic
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import telemetry_state
from twinkg.kg.events import SENSOR_SITES
from twinkg.kg.local_server import free_port
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog

TARGET_S = 1.0
TWINKG = str(Path(sys.executable).with_name("twinkg"))

_ENVELOPED = (  # a sensor reading the quantity of an envelope of the equipment it monitors
    "MATCH (s:Sensor)-[:MONITORS]->(p:Equipment)-[:HAS_ENVELOPE]->(e)"
    "-[:FOR_QUANTITY_KIND]->(qk)<-[:HAS_QUANTITY_KIND]-(s) "
    "WHERE e.maxValue IS NOT NULL RETURN s.uri AS sensor, p.uri AS asset, e.maxValue AS high "
    "ORDER BY asset, sensor"
)
_LATENCIES = (
    "UNWIND $assets AS asset "
    "MATCH (al:Alarm)-[:CONCERNS]->(:Resource {uri: asset}) "
    "MATCH (c:Change) WHERE al.uri IN c.uris "
    "WITH asset, al, min(c.at) AS detected "
    "MATCH (d:Decision)-[:PROV_USED]->(al) "
    "WITH asset, al, detected, d ORDER BY d.prov_endedAtTime "
    "WITH asset, al, detected, head(collect(d)) AS d "
    "WITH asset, al, detected, d.prov_startedAtTime AS began, d.prov_endedAtTime AS decided "
    "RETURN asset, al.uri AS alarm, "
    "detected.epochMillis + detected.nanosecond % 1000000 / 1e6 AS detected_ms, "
    "decided.epochMillis + decided.nanosecond % 1000000 / 1e6 AS decided_ms, "
    "began.epochMillis + began.nanosecond % 1000000 / 1e6 AS began_ms"
)


@dataclass(frozen=True)
class Probe:
    """An asset driven out of its envelope, and when its batch was published (epoch ms)."""

    asset: str
    published_ms: float


def _above(high: float, physical_max: float | None) -> float:
    """A reading well above an envelope's ``high`` that the sensor can still give."""
    wanted = high + max(abs(high) * 0.5, 10.0)
    return wanted if physical_max is None else min(wanted, physical_max)


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _alarm_batch(sensor: str, unit: str, value: float) -> bytes:
    """Two minutes of one flow sensor's readings at ``value``, ending a minute ago."""
    end = datetime.now(UTC) - timedelta(minutes=1)
    points = [
        {"sensor": sensor, "unit": unit, "value": value, "time": _stamp(end - timedelta(seconds=i))}
        for i in range(120, 0, -1)
    ]
    return json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()


def _load_batches(
    sensors: list[telemetry_state.SensorRow],
    *,
    start: datetime,
    count: int,
    points: int,
    hz: float = 1.0,
) -> list[bytes]:
    """``count`` batches of in-range readings of ``sensors``, ``hz`` rows a second from
    ``start``."""
    rng = np.random.default_rng(11)
    rows = max(1, points // len(sensors))
    out, row = [], 0
    for _ in range(count):
        body = []
        for _ in range(rows):
            stamp = _stamp(start + timedelta(seconds=row / hz))
            row += 1
            for s in sensors:
                low, high = s.physical_min or 0.0, s.physical_max or 100.0
                value = low + (high - low) * (0.45 + 0.1 * float(rng.random()))
                body.append({"sensor": s.uri, "unit": s.unit, "time": stamp, "value": value})
        out.append(json.dumps({"contract": "telemetry@1.0.0", "points": body}).encode())
    return out


class Load:
    """A publisher streaming in-range telemetry until stopped, as fast as the twin stores it:
    at most ``AHEAD`` batches published and not yet in the log, so a probe published meanwhile
    waits behind a few batches, not behind the whole stream."""

    AHEAD = 4

    def __init__(
        self,
        gateway: paho.Client,
        site: str,
        bodies: list[bytes],
        log: TelemetryLog,
        ahead: int = AHEAD,
    ) -> None:
        self.gateway, self.bodies, self.log, self.ahead = gateway, bodies, log, ahead
        self.topic = TelemetryTopic(site, "plant", "load").topic
        self.stop = threading.Event()
        self.sent = 0
        self.base = len(log.manifests())
        self.thread = threading.Thread(target=self._run, daemon=True)

    def stored(self) -> tuple[int, int]:
        """Batches and points accepted in the log since the load began (probes included)."""
        manifests = self.log.manifests()
        return len(manifests) - self.base, sum(m.accepted for m in manifests[self.base :])

    def _run(self) -> None:
        for body in self.bodies:
            while self.sent - self.stored()[0] >= self.ahead:
                if self.stop.wait(0.05):
                    return
            if self.stop.is_set():
                return
            publish(self.gateway, self.topic, body, timeout_s=600)
            self.sent += 1


def _probe(
    gateway: paho.Client, site: str, assets: list[tuple[str, str, str, float]], spacing_s: float
) -> list[Probe]:
    """Drive each asset out of its envelope in turn, one every ``spacing_s`` seconds (open
    loop: whether the earlier ones are decided or not; 0: all at once, a burst)."""
    probes, topic = [], TelemetryTopic(site, "plant", "probe").topic
    began = time.monotonic()
    for i, (sensor, asset, unit, value) in enumerate(assets):
        body = _alarm_batch(sensor, unit, value)
        time.sleep(max(0.0, began + i * spacing_s - time.monotonic()))
        published = time.time() * 1000
        publish(gateway, topic, body, timeout_s=600)
        probes.append(Probe(asset, published))
    return probes


def _wait_decided(
    store: GraphStore, assets: list[str], deadline_s: float
) -> list[dict[str, float]]:
    """The latency rows of ``assets`` once each has a decision (or the deadline passed)."""
    started = time.monotonic()
    while True:
        rows = store.read_only(_LATENCIES, {"assets": assets}).rows
        if len({r[0] for r in rows}) == len(assets) or time.monotonic() - started > deadline_s:
            return [{"asset": r[0], "detected": r[2], "decided": r[3], "began": r[4]} for r in rows]
        time.sleep(0.5)


def _until_ready(service: subprocess.Popen[bytes], port: int) -> None:
    """Until every loop of the service is up (its subscriptions made), as its metrics say."""
    deadline = time.monotonic() + 300
    while True:
        loops = loops_up(scrape(port) or {})
        if loops and all(loops.values()):
            return
        if service.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"twinkg run did not get ready (exit {service.poll()})")
        time.sleep(0.2)


def _figures(values: list[float]) -> str:
    if not values:
        return "no decision"
    a = np.array(values)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return f"p50 {p50:7.3f}  p95 {p95:7.3f}  p99 {p99:7.3f}  max {a.max():7.3f}"


@dataclass(frozen=True)
class Phase:
    """One phase's latencies in seconds, one per alarm: detection → decision, published →
    decision, and detection → decision split in two at the run's start (``prov:startedAtTime``):
    the wait for an agent (dispatch, the work queue, the lease) and the run itself."""

    detection: list[float]
    published: list[float]
    waited: list[float]
    ran: list[float]
    missing: int


def _phase(
    store: GraphStore,
    gateway: paho.Client,
    site: str,
    assets: list[tuple[str, str, str, float]],
    spacing_s: float = 0.0,
) -> Phase:
    probes = {p.asset: p for p in _probe(gateway, site, assets, spacing_s)}
    rows = _wait_decided(store, sorted(probes), deadline_s=600)
    by_asset: dict[str, dict[str, float]] = {}
    for row in rows:  # the first alarm of each asset (the batch raises one)
        asset = str(row["asset"])
        if asset not in by_asset or row["detected"] < by_asset[asset]["detected"]:
            by_asset[asset] = row
    detection = [(r["decided"] - r["detected"]) / 1000 for r in by_asset.values()]
    published = [(r["decided"] - probes[p].published_ms) / 1000 for p, r in by_asset.items()]
    waited = [(r["began"] - r["detected"]) / 1000 for r in by_asset.values()]
    ran = [(r["decided"] - r["began"]) / 1000 for r in by_asset.values()]
    return Phase(detection, published, waited, ran, len(probes) - len(by_asset))


def main() -> None:  # noqa: PLR0915 - one benchmark, read top to bottom
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--anomalies", type=int, default=30)
    parser.add_argument(
        "--service-log", type=Path, default=None, help="keep the service's log here"
    )
    parser.add_argument(
        "--spacing-s", type=float, default=3.0, help="seconds between alarms, spaced phases"
    )
    parser.add_argument("--load-batches", type=int, default=400)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument(
        "--load-sensors",
        type=int,
        default=0,
        help="stream only this many of the plant's other sensors (0: all of them)",
    )
    parser.add_argument(
        "--load-hz", type=float, default=1.0, help="readings a second of each load sensor"
    )
    parser.add_argument(
        "--load-ahead",
        type=int,
        default=Load.AHEAD,
        help="most load batches published and not yet in the log",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="twinkg run --workers (agent-only processes)"
    )
    parser.add_argument(
        "--agent-threads",
        type=int,
        default=None,
        help="twinkg run --agent-threads (default: the setting's, 4)",
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        server = stack.enter_context(throwaway_server())
        store = server.store
        plant = plant_records(Plant.GENERATED, assets=args.assets, seed=0)
        seeding.load(store, "generated", seeding.with_ontology(plant))
        units = {s.uri: s for s in telemetry_state.sensors(store) if s.unit is not None}
        # one site's gateway publishes: the site with the most enveloped sensors (a producer
        # may name only its own site's sensors, decision 0083)
        site_of = {
            r["sensor"]: Place.of(r["site_tag"], r["site"]).segment
            for r in store.read(SENSOR_SITES, sensors=sorted(units))
        }
        enveloped = [r for r in store.read_only(_ENVELOPED).rows if r[0] in units]
        site = Counter(site_of[r[0]] for r in enveloped).most_common(1)[0][0]
        units = {uri: s for uri, s in units.items() if site_of[uri] == site}
        targets = [
            (r[0], r[1], str(units[r[0]].unit), _above(r[2], units[r[0]].physical_max))
            for r in enveloped
            if r[0] in units
        ]
        n = args.anomalies
        if len(targets) < 3 * n + 2:
            raise SystemExit(
                f"{len(targets)} sensors of an enveloped asset on site {site}: use fewer "
                "--anomalies"
            )
        groups = [targets[i * n : (i + 1) * n] for i in range(3)]  # one group per phase
        probed = {f[0] for f in targets[: 3 * n + 2]}
        quiet = [s for uri, s in units.items() if uri not in probed]
        if args.load_sensors:
            quiet = quiet[: args.load_sensors]
        home = server.home / "twin"
        port = free_port()
        config = broker.BrokerConfig(home=home / "broker", port=port)
        env = {
            **os.environ,
            "TWINKG_NEO4J_URI": server.uri,
            "TWINKG_NEO4J_USER": "neo4j",
            "TWINKG_NEO4J_PASSWORD": server.password,
            "TWINKG_HOME": str(home),
            "TWINKG_MQTT_PORT": str(port),
            # the load replays readings of a day ago (a stream faster than real time must
            # start in the past): its sensors would all read as silent, a case each, and the
            # sweeps would decide on a thousand "stale sensors" that a live plant never has
            "TWINKG_AGENTS_STALE_AFTER_S": str(7 * 86_400),
        }
        broker.start(config)
        service = None
        try:
            broker.issue(config, "bench-gw", Role.PRODUCER, site=site)
            metrics_port = free_port()
            log_file = (
                subprocess.DEVNULL
                if args.service_log is None
                else stack.enter_context(args.service_log.open("wb"))
            )
            service = subprocess.Popen(
                [
                    *(TWINKG, "run", "--tick-s", "3600", "--metrics-port", str(metrics_port)),
                    *("--workers", str(args.workers)),
                    *(
                        ()
                        if args.agent_threads is None
                        else ("--agent-threads", str(args.agent_threads))
                    ),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                # as `twinkg service start` runs it: a session of its own, so the kernel's
                # autogroup scheduler gives the twin its own share of the CPU, not one it
                # shares with this process's load (a plant's publishers are not in it either)
                start_new_session=True,
            )
            _until_ready(service, metrics_port)
            endpoint = MqttEndpoint(config.url, config.client("bench-gw"))
            prober, loader = connect(endpoint, "bench-probe"), connect(endpoint, "bench-load")
            # warm-up: the service's first sweep, Neo4j's first plans of the ingest and agents
            _phase(store, prober, site, targets[3 * n : 3 * n + 2])
            idle = _phase(store, prober, site, groups[0], args.spacing_s)
            start = datetime.now(UTC) - timedelta(days=1)
            load = Load(
                loader,
                site,
                _load_batches(
                    quiet,
                    start=start,
                    count=args.load_batches,
                    points=args.points,
                    hz=args.load_hz,
                ),
                TelemetryLog(home / "telemetry"),
                args.load_ahead,
            )
            load.thread.start()
            while load.stored()[0] < 3:  # the load is flowing before the first probe
                time.sleep(0.1)
            began, before = time.monotonic(), load.stored()[1]
            loaded = _phase(store, prober, site, groups[1], args.spacing_s)
            burst = _phase(store, prober, site, groups[2])
            window_s, during = time.monotonic() - began, load.stored()[1] - before
            still = load.thread.is_alive()
            load.stop.set()
            load.thread.join(timeout=600)
            prober.disconnect()
            loader.disconnect()
        finally:
            if service is not None:
                service.send_signal(signal.SIGTERM)
                try:
                    service.wait(timeout=300)
                except subprocess.TimeoutExpired:
                    service.kill()
            broker.stop(config)
    rate = during / window_s
    print(
        f"generated plant of {args.assets} assets, one site's gateway ({site}: {len(units)} "
        f"sensors); {n} motors driven out of their envelope per phase; "
        f"`twinkg run --workers {args.workers} --agent-threads "
        f"{args.agent_threads or 'default'}`, 2 cores"
    )
    print(
        f"load while deciding: {rate:,.0f} points/s stored in the log ({window_s:.1f} s), "
        f"{len(quiet)} sensors at {args.load_hz:g} Hz, at most {args.load_ahead} batches ahead"
    )
    if not still:
        print("  (the load ran out before the last decision: raise --load-batches)")
    spaced = f"spaced {args.spacing_s:g} s"
    phases = (
        (f"idle, {spaced}", idle),
        (f"load, {spaced}", loaded),
        (f"load, burst of {n}", burst),
    )
    print(f"seconds                     {'phase':<21} figures")
    for name, phase in phases:
        print(f"detection → decision        {name:<21} {_figures(phase.detection)}")
        print(f"published → decision        {name:<21} {_figures(phase.published)}")
        print(f"  detection → run start     {name:<21} {_figures(phase.waited)}")
        print(f"  run start → decision      {name:<21} {_figures(phase.ran)}")
        if phase.missing:
            print(f"  {phase.missing} alarm(s) without a decision within the deadline ({name})")
    if idle.detection and loaded.detection and burst.detection:
        p99 = [float(np.percentile(x.detection, 99)) for _, x in phases]
        print(f"p99 detection → decision, under load / idle (both spaced): {p99[1] / p99[0]:.2f}×")
        for (name, phase), value in zip(phases[1:], p99[1:], strict=True):
            verdict = "met" if value <= TARGET_S and not phase.missing else "not met"
            print(f"target p99 ≤ {TARGET_S:g} s, {name}: {value:.3f} s ({verdict})")


if __name__ == "__main__":
    main()
