"""Mixed load on a freshly started API: context lookups, guarded Cypher, SPARQL and telemetry
from several clients at once, from the first request on.

Starts a throwaway Neo4j, seeds the SKAB testbed, makes an engineer and a producer API key, and
runs ``twinkg serve`` in a second process on a free loopback port. As soon as ``/health``
answers, ``--clients`` threads are released together (so the server's parsers and pools meet
concurrent first requests) and loop for ``--seconds`` over four operations, each client starting
on a different one: ``GET /assets/context`` of the pump, ``POST /cypher`` (a parameterised read),
``GET /sparql`` (a SELECT) and ``POST /telemetry`` (a batch of the client's own two sensors, one
second apart, so clients never race each other's readings). Then the same four operations run
one client at a time on the now warm server for a quarter of the time: the anchor the loaded
latencies are compared with.

What it prints: per operation, requests, req/s, p50/p99 ms, 4xx, 5xx and transport errors under
load, and p50 against the unloaded anchor; then the points the server accepted against the points
its telemetry log holds for those batches (they must be equal: an accepted point is never lost).

    python -m benchmarks.load [--seconds 60] [--clients 4]

The test suite runs :func:`mixed_load` on the test Neo4j too (``tests/integration/
test_service_load.py``) and asserts 0 5xx and every accepted point in the log.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.compute as pc

from benchmarks.api import CYPHER, SPARQL
from twinkg.api.security import KeyStore, Role
from twinkg.api.settings import Settings, api_keys_path, telemetry_dir
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.vocab import TK, RelType

OPERATIONS = ("context", "cypher", "sparql", "telemetry")


@dataclass
class Tally:
    """What one operation got: latencies of answered requests (ms) and how each ended."""

    ms: list[float] = field(default_factory=list)
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    server_codes: list[str] = field(default_factory=list)
    server_messages: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Every request sent, answered or not."""
        return self.ok + self.client_errors + self.server_errors + self.transport_errors

    def pct(self, q: float) -> float:
        """The ``q``-th percentile latency in ms (NaN when nothing was answered)."""
        return float(np.percentile(self.ms, q)) if self.ms else math.nan


@dataclass
class LoadReport:
    """The tallies per operation, the accepted points per batch, and the wall time."""

    tallies: dict[str, Tally]
    accepted: dict[str, int]
    seconds: float

    @property
    def server_errors(self) -> int:
        """5xx answers over all operations."""
        return sum(t.server_errors for t in self.tallies.values())


@dataclass(frozen=True)
class Target:
    """Where the API listens, the keys to use, the pump's IRI and the sensors to post for."""

    url: str
    engineer_key: str
    producer_key: str
    pump: str
    sensors: tuple[tuple[str, str], ...]  # (sensor IRI, unit IRI)


def target_of(url: str, home: Path) -> Target:
    """A target over the SKAB testbed: an engineer and a producer key made under ``home``."""
    keys = KeyStore(api_keys_path(Settings(home=home)))
    _, engineer = keys.create(name="load engineer", roles=[Role.ENGINEER])
    _, producer = keys.create(name="load producer", roles=[Role.PRODUCER])
    plant = plant_records(Plant.SKAB_TESTBED)
    pump = next(n.uri for n in plant.nodes if str(TK.CentrifugalPump) in n.types)
    units = {r.start: r.end for r in plant.rels if r.type == RelType.HAS_UNIT}
    sensors = tuple(sorted((n.uri, units[n.uri]) for n in plant.nodes if str(TK.Sensor) in n.types))
    return Target(url, engineer, producer, pump, sensors)


def _bodies(sensors: tuple[tuple[str, str], ...], start: datetime) -> Iterator[bytes]:
    """Telemetry bodies of ``sensors``: 5 seconds of readings each, one batch after another."""
    second = 0
    while True:
        points = []
        for _ in range(5):
            at = (start + timedelta(seconds=second)).isoformat()
            for i, (sensor, unit) in enumerate(sensors):
                value = 1.0 + 0.1 * math.sin(second / 7 + i)
                points.append({"sensor": sensor, "unit": unit, "time": at, "value": value})
            second += 1
        yield json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()


def operation_calls(
    target: Target, client: int, clients: int
) -> dict[str, Callable[[httpx.Client], Any]]:
    """The four operations as one client sends them (its own share of the sensors)."""
    mine = target.sensors[client::clients] or target.sensors[:1]
    bodies = _bodies(mine, datetime.now(UTC) - timedelta(days=3) + timedelta(hours=client))
    read = {"X-API-Key": target.engineer_key}
    write = {"X-API-Key": target.producer_key, "Content-Type": "application/json"}
    return {
        "context": lambda c: c.get("/assets/context", params={"iri": target.pump}, headers=read),
        "cypher": lambda c: c.post(
            "/cypher", json={"query": CYPHER, "params": {"asset": target.pump}}, headers=read
        ),
        "sparql": lambda c: c.get("/sparql", params={"query": SPARQL}, headers=read),
        "telemetry": lambda c: c.post("/telemetry", content=next(bodies), headers=write),
    }


def mixed_load(
    target: Target,
    *,
    seconds: float,
    clients: int = 4,
    min_each: int = 5,
    give_up_s: float = 600.0,
    sequential: bool = False,
) -> LoadReport:
    """``clients`` threads released together, each cycling over :data:`OPERATIONS` (client *i*
    starting at operation *i*) until ``seconds`` have passed AND it has sent every operation at
    least ``min_each`` times (so a slow machine still exercises each; ``give_up_s`` bounds the
    whole run). ``sequential`` runs one client at a time instead (the unloaded anchor)."""
    tallies = {name: Tally() for name in OPERATIONS}
    accepted: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(1 if sequential else clients)
    start = time.monotonic()

    def client(index: int) -> None:
        calls = operation_calls(target, index, clients)
        sent = dict.fromkeys(OPERATIONS, 0)
        with httpx.Client(base_url=target.url, timeout=120) as http:
            barrier.wait()
            began = time.monotonic()
            step = index
            while time.monotonic() - start < give_up_s:
                if time.monotonic() - began >= seconds and min(sent.values()) >= min_each:
                    break
                name = OPERATIONS[step % len(OPERATIONS)]
                step += 1
                sent[name] += 1
                _one(http, name, calls[name], tallies=tallies, accepted=accepted, lock=lock)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
        if sequential:
            thread.join()
    for thread in threads:
        thread.join()
    return LoadReport(tallies, accepted, time.monotonic() - start)


def _one(
    http: httpx.Client,
    name: str,
    call: Callable[[httpx.Client], Any],
    *,
    tallies: dict[str, Tally],
    accepted: dict[str, int],
    lock: threading.Lock,
) -> None:
    began = time.perf_counter()
    try:
        response: httpx.Response = call(http)
    except httpx.TransportError:
        with lock:
            tallies[name].transport_errors += 1
        return
    ms = (time.perf_counter() - began) * 1000
    with lock:
        tally = tallies[name]
        tally.ms.append(ms)
        if response.status_code >= 500:
            tally.server_errors += 1
            tally.server_codes.append(response.headers.get("X-TwinKG-Error-Code", "?"))
            tally.server_messages.append(response.text[:300])
        elif response.status_code >= 400:
            tally.client_errors += 1
        else:
            tally.ok += 1
            if name == "telemetry":
                report = response.json()
                if not report["duplicate"]:
                    accepted[report["batch_id"]] = int(report["accepted"])


def points_in_log(home: Path, batches: list[str]) -> dict[str, int]:
    """How many points the telemetry log under ``home`` holds for each of ``batches``."""
    table = TelemetryLog(telemetry_dir(Settings(home=home))).window()
    counts = dict.fromkeys(batches, 0)
    for row in pc.value_counts(table["batch"]).to_pylist():
        if row["values"] in counts:
            counts[row["values"]] = int(row["counts"])
    return counts


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the loaded run")
    parser.add_argument("--clients", type=int, default=4)
    return parser.parse_args()


def main() -> None:
    """Seed, serve in a second process, load it from the first request, print the figures."""
    from benchmarks.api import _note, api_process  # noqa: PLC0415
    from benchmarks.server import throwaway_server  # noqa: PLC0415
    from twinkg.kg.local_server import free_port  # noqa: PLC0415

    args = _args()
    with throwaway_server() as server:
        plant = plant_records(Plant.SKAB_TESTBED)
        seeding.load(server.store, "skab", seeding.with_ontology(plant))
        home = server.home / "api"
        home.mkdir(parents=True)
        keys = target_of("", home)  # the keys exist before the server reads them
        port = free_port()
        with api_process(server, home, port) as url:
            target = dataclasses.replace(keys, url=url)
            _note(f"server answers on {url}; {args.clients} clients released together")
            loaded = mixed_load(target, seconds=args.seconds, clients=args.clients)
            _note("unloaded anchor: the same operations, one client at a time")
            anchor = mixed_load(
                target, seconds=args.seconds / 4, clients=args.clients, sequential=True
            )
            in_log = points_in_log(home, [*loaded.accepted, *anchor.accepted])
    _report(args, loaded, anchor, in_log)


def _report(
    args: argparse.Namespace, loaded: LoadReport, anchor: LoadReport, in_log: dict[str, int]
) -> None:
    print(
        f"mixed load: {args.clients} clients released together on a fresh server for "
        f"{loaded.seconds:.1f} s ({os.cpu_count()} cores shared with Neo4j and the server); "
        f"anchor: the same operations one client at a time"
    )
    print(
        f"{'operation':<11}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'4xx':>6}{'5xx':>6}{'transport':>10}{'p50 vs unloaded':>18}"
    )
    for name in OPERATIONS:
        run, base = loaded.tallies[name], anchor.tallies[name]
        ratio = run.pct(50) / base.pct(50) if base.ms else math.nan
        print(
            f"{name:<11}{run.requests:>9}{run.ok / loaded.seconds:>8.1f}{run.pct(50):>9.1f}"
            f"{run.pct(99):>9.1f}{run.client_errors:>6}{run.server_errors:>6}"
            f"{run.transport_errors:>10}{f'×{ratio:.2f}':>18}"
        )
        if run.server_codes:
            print(f"  5xx codes: {sorted(set(run.server_codes))}")
    accepted = {**loaded.accepted, **anchor.accepted}
    kept = sum(in_log.get(b, 0) for b in accepted)
    lost = [b for b, n in accepted.items() if in_log.get(b, 0) != n]
    print(
        f"telemetry: {len(accepted)} batches, {sum(accepted.values()):,} points accepted, "
        f"{kept:,} in the log; batches whose points differ: {len(lost)}"
    )
    print(f"5xx under load: {loaded.server_errors}; unloaded: {anchor.server_errors}")


if __name__ == "__main__":
    main()
