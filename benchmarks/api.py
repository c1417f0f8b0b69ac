"""API benchmark: the HTTP API driven from a second process on loopback, against the same work
done in process, and the SPARQL projection's lag under a sustained telemetry ingest.

Starts a throwaway Neo4j (the project's launcher, as the other benchmarks), seeds the SKAB
testbed (plus ``--assets`` generated assets, default none), makes an engineer and a producer API
key, and runs ``twinkg serve`` in a second process on a free loopback port (environment:
``TWINKG_NEO4J_URI``, ``TWINKG_HOME``, ``TWINKG_API_PORT``). From this process ``--concurrency``
threads share one httpx connection pool and loop for ``--duration`` seconds on each of:

* ``GET /assets/context?iri=<pump>`` — against ``Twin.asset_context`` in process;
* ``POST /cypher`` with a parameterised read — against ``Twin.cypher`` (the same guard and read
  transaction);
* ``GET /sparql`` with a SELECT — against ``Twin.sparql`` on a projection rebuilt in process;
* the Cypher and SPARQL calls in process once more with decision 0080's kept verdicts off
  (every text parsed, planned and judged anew, as before it);
* and that SELECT in process on the projection (Oxigraph) against rdflib on the same triples
  (the ontology's files and Neo4j's export, the projection's sources), answers compared first.

The in-process side runs the same calls with the same number of threads on its own driver, so
the ratio API/direct is what HTTP, authentication, the audit middleware and JSON cost (both
sides share the machine's cores with Neo4j; the API client decodes every JSON answer).

Then a producer posts telemetry batches (``--batch`` timestamps × the 8 SKAB sensors, one second
apart, ``--rate`` batches/s) for ``--ingest-seconds`` while another thread reads ``GET /ready``
every 100 ms: batches/s and points/s taken, the projection's lag (p50, p99, max) and the time
from the last ingest to caught-up, against the follower's poll interval.

    python -m benchmarks.api [--duration 10] [--concurrency 4] [--assets 0] [--quick]

(As a module: run as a script, this file would shadow the ``api`` package.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rdflib import Graph

from benchmarks.server import Throwaway, throwaway_server
from twinkg.api.results import AssetContext
from twinkg.api.security import KeyStore, Role
from twinkg.api.settings import Settings, api_keys_path
from twinkg.api.twin import Twin
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import agent_queries as aq
from twinkg.kg import api_queries, sparql_query
from twinkg.kg import store as store_module
from twinkg.kg.local_server import free_port
from twinkg.kg.projection import Projection
from twinkg.kg.records import GraphRecords
from twinkg.kg.sparql_pool import PoolLimits
from twinkg.ontology.catalog import ontology_files
from twinkg.ontology.namespaces import TK as TK_NS
from twinkg.ontology.vocab import TK, Label, PropKey, RelType

SPARQL = (
    f"PREFIX tk: <{TK_NS}> "
    "SELECT ?sensor ?tag WHERE { ?sensor a tk:Sensor ; tk:tag ?tag } ORDER BY ?tag"
)
CYPHER = (
    f"MATCH (s:{Label.SENSOR.value})-[:{RelType.MONITORS.value}]->(a {{uri: $asset}}) "
    "RETURN s.uri AS sensor, s.tag AS tag ORDER BY sensor"
)
JSON_RESULTS = "application/sparql-results+json"
RDFLIB_ROW = "SPARQL/rdflib"


@dataclass(frozen=True)
class Run:
    """Latencies (ms) of one operation driven for a while, and the failures."""

    ms: np.ndarray[Any, np.dtype[np.float64]]
    seconds: float
    errors: int

    @property
    def rps(self) -> float:
        """Calls per second (successful ones)."""
        return len(self.ms) / self.seconds

    def pct(self, q: float) -> float:
        """The ``q``-th percentile in ms."""
        return float(np.percentile(self.ms, q)) if len(self.ms) else math.nan


def drive(call: Callable[[], object], *, seconds: float, threads: int) -> Run:
    """``threads`` threads calling ``call`` in a loop for ``seconds``."""
    lock = threading.Lock()
    ms: list[float] = []
    errors = [0]
    start = time.perf_counter()
    deadline = start + seconds

    def worker() -> None:
        mine, failed = [], 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                call()
            except Exception:  # a failed call is counted, not timed
                failed += 1
                continue
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            ms.extend(mine)
            errors[0] += failed

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return Run(np.array(ms), time.perf_counter() - start, errors[0])


def _note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@contextmanager
def api_process(server: Throwaway, home: Path, port: int) -> Iterator[str]:
    """``twinkg serve`` in a second process; yields its base URL once it answers."""
    env = {
        **os.environ,
        "TWINKG_NEO4J_URI": server.uri,
        "TWINKG_NEO4J_USER": "neo4j",
        "TWINKG_NEO4J_PASSWORD": server.password,
        "TWINKG_HOME": str(home),
        "TWINKG_API_PORT": str(port),
        "TWINKG_SPARQL_USER_CONCURRENCY": os.environ.get("TWINKG_SPARQL_USER_CONCURRENCY", "4"),
    }
    twinkg = Path(sys.executable).with_name("twinkg")
    log = (home / "serve.log").open("wb")
    process = subprocess.Popen([str(twinkg), "serve"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"twinkg serve exited: see {home / 'serve.log'}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("twinkg serve did not answer within 180 s")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def caught_up(client: httpx.Client, timeout_s: float = 120) -> float:
    """Wait until the projection has applied the whole change log; seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        projection = client.get("/ready").json()["projection"]
        if projection["pending"] == 0:
            break
        time.sleep(0.1)
    return time.perf_counter() - start


def read_ops(
    client: httpx.Client, twin: Twin, pump: str
) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """The three reads: (name, over HTTP, in process)."""

    def ok(response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json()

    return [
        (
            "context lookup",
            lambda: ok(client.get("/assets/context", params={"iri": pump})),
            lambda: twin.asset_context(pump),
        ),
        (
            "Cypher read",
            lambda: ok(client.post("/cypher", json={"query": CYPHER, "params": {"asset": pump}})),
            lambda: twin.cypher(CYPHER, {"asset": pump}),
        ),
        (
            "SPARQL SELECT",
            lambda: ok(client.get("/sparql", params={"query": SPARQL})),
            lambda: twin.sparql(SPARQL, accept=JSON_RESULTS).body,
        ),
    ]


@dataclass(frozen=True)
class SensorSpec:
    """A SKAB sensor: its IRI, unit, and the middle of its physical range."""

    uri: str
    unit: str
    mid: float
    span: float


def sensors(plant: GraphRecords) -> list[SensorSpec]:
    """The plant's sensors with their units."""
    units = {r.start: r.end for r in plant.rels if r.type == RelType.HAS_UNIT}
    specs = []
    for node in plant.nodes:
        if str(TK.Sensor) in node.types and node.uri in units:
            low, high = (node.props.get(k) for k in (PropKey.PHYSICAL_MIN, PropKey.PHYSICAL_MAX))
            low = low if isinstance(low, int | float) else 0.0
            high = high if isinstance(high, int | float) else 1.0
            specs.append(SensorSpec(node.uri, units[node.uri], (low + high) / 2, (high - low) / 8))
    return specs


def batches(specs: list[SensorSpec], per_batch: int, start: datetime) -> Iterator[bytes]:
    """Telemetry bodies, ``per_batch`` seconds of every sensor each, one second apart."""
    second = 0
    while True:
        points = []
        for _ in range(per_batch):
            at = (start + timedelta(seconds=second)).isoformat()
            for i, spec in enumerate(specs):
                value = spec.mid + spec.span * math.sin(second / 30 + i)
                points.append({"sensor": spec.uri, "unit": spec.unit, "time": at, "value": value})
            second += 1
        yield json.dumps({"contract": "telemetry@1.0.0", "points": points}).encode()


@dataclass(frozen=True)
class LagRun:
    """What the ingest took, and the projection's lag seen meanwhile."""

    batches: int
    points: int
    accepted: int
    failed: int
    seconds: float
    lag_s: np.ndarray[Any, np.dtype[np.float64]]
    pending: np.ndarray[Any, np.dtype[np.int64]]
    catch_up_s: float


def ingest_under_watch(
    url: str, key: str, specs: list[SensorSpec], *, seconds: float, rate: float, per_batch: int
) -> LagRun:
    """Post batches at ``rate``/s for ``seconds`` while sampling ``/ready`` every 100 ms."""
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    bodies = batches(specs, per_batch, datetime.now(UTC) - timedelta(days=7))
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()
    last_ingest = [0.0]

    def sample() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                projection = client.get("/ready").json()["projection"]
                samples.append((time.perf_counter(), projection["pending"], projection["lag_s"]))
                stop.wait(0.1)

    watcher = threading.Thread(target=sample)
    watcher.start()
    sent = accepted = failed = points = 0
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while (now := time.perf_counter()) - start < seconds:
            due = start + sent / rate
            if now < due:
                time.sleep(due - now)
            response = client.post("/telemetry", content=next(bodies), headers=headers)
            sent += 1
            if response.status_code != 200:
                failed += 1
                continue
            report = response.json()
            points += report["points"]
            accepted += report["accepted"]
            last_ingest[0] = time.perf_counter()
    took = time.perf_counter() - start
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        if samples and samples[-1][0] > last_ingest[0] and samples[-1][1] == 0:
            break
        time.sleep(0.05)
    stop.set()
    watcher.join()
    during = [s for s in samples if s[0] <= last_ingest[0]]
    done = next((s[0] for s in samples if s[0] > last_ingest[0] and s[1] == 0), math.nan)
    return LagRun(
        sent,
        points,
        accepted,
        failed,
        took,
        np.array([s[2] for s in during] or [0.0]),
        np.array([s[1] for s in during] or [0]),
        done - last_ingest[0],
    )


@contextmanager
def verdicts_forgotten() -> Iterator[None]:
    """In this process, every SPARQL text parsed and every Cypher text planned and judged anew,
    as before decision 0080 (no text is short enough to keep its verdict)."""
    saved = sparql_query.CACHED_CHARS, store_module.PASSED_PLAN_CHARS
    sparql_query.CACHED_CHARS = store_module.PASSED_PLAN_CHARS = -1
    try:
        yield
    finally:
        sparql_query.CACHED_CHARS, store_module.PASSED_PLAN_CHARS = saved


def context_apart(twin: Twin, asset: str, *, events: int = 20) -> AssetContext:
    """``Twin.asset_context`` as it was before ``GraphStore.read_all``: each of its five reads
    in a session and transaction of its own (the context lookup's "afresh" row)."""
    read, now = twin.store.read, twin.clock().isoformat()
    return AssetContext.from_rows(
        read(aq.ASSET_PROFILE, asset=asset),
        sensors=read(aq.ASSET_SENSORS, asset=asset, as_of=now),
        neighbours=read(aq.NEIGHBOURS, asset=asset, as_of=now),
        policies=read(aq.POLICIES, asset=asset)[0],
        events=read(api_queries.ASSET_EVENTS, asset=asset, limit=events),
    )


def rdflib_anchor(server: Throwaway, twin: Twin, args: argparse.Namespace) -> tuple[str, Run, Run]:
    """The SPARQL SELECT on the projection (in process) against rdflib on the same triples: the
    ontology's Turtle files and the export of Neo4j the projection is built from. The answers
    are compared first, so the two sides do the same work."""
    graph = Graph()
    for file in ontology_files():
        graph.parse(file, format="turtle")
    graph += server.store.export()
    _note(f"rdflib anchor: {len(graph):,} triples")
    answer = json.loads(twin.sparql(SPARQL, accept=JSON_RESULTS).body)
    theirs = [(b["sensor"]["value"], b["tag"]["value"]) for b in answer["results"]["bindings"]]
    ours = [(str(row[0]), str(row[1])) for row in graph.query(SPARQL)]  # type: ignore[index]
    if ours != theirs:
        raise SystemExit(f"rdflib answers {len(ours)} rows, the projection {len(theirs)}")
    projection = drive(
        lambda: twin.sparql(SPARQL, accept=JSON_RESULTS).body,
        seconds=args.duration,
        threads=args.concurrency,
    )
    rdflib_side = drive(
        lambda: graph.query(SPARQL).serialize(format="json"),
        seconds=args.duration,
        threads=args.concurrency,
    )
    _note(f"SPARQL: {projection.rps:,.0f}/s on the projection, {rdflib_side.rps:,.0f}/s rdflib")
    return RDFLIB_ROW, projection, rdflib_side


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per read and side")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--assets", type=int, default=0, help="generated assets seeded too")
    parser.add_argument("--ingest-seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=4.0, help="telemetry batches per second")
    parser.add_argument("--batch", type=int, default=25, help="timestamps per batch (× sensors)")
    parser.add_argument("--quick", action="store_true", help="a 10-second smoke run")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.ingest_seconds = 1.5, 10.0
    return args


def main() -> None:
    """Seed, serve in a second process, drive both sides, print the figures."""
    args = _args()
    with throwaway_server() as server:
        plant = plant_records(Plant.SKAB_TESTBED)
        seeding.load(server.store, "skab", seeding.with_ontology(plant))
        if args.assets:
            generated = plant_records(Plant.GENERATED, assets=args.assets, seed=0)
            seeding.load(server.store, "generated", seeding.with_ontology(generated))
        pump = next(n.uri for n in plant.nodes if str(TK.CentrifugalPump) in n.types)
        api_home = server.home / "api"
        keys = KeyStore(api_keys_path(Settings(home=api_home)))
        _, engineer = keys.create(name="bench engineer", roles=[Role.ENGINEER])
        _, producer = keys.create(name="bench producer", roles=[Role.PRODUCER])
        settings = Settings(home=server.home / "direct")
        # Both sides let one caller run as many SPARQL queries as there are client threads
        # (the default share per caller is 2), so the comparison is of the same work.
        pool_limits = PoolLimits(workers=args.concurrency, per_user=args.concurrency)
        projection = Projection(server.store, limits=pool_limits)
        projection.rebuild()
        twin = Twin(settings, server.store, projection=projection)
        port = free_port()
        _note(f"seeded; starting twinkg serve on port {port}")
        with api_process(server, api_home, port) as url:
            limits = httpx.Limits(
                max_connections=args.concurrency, max_keepalive_connections=args.concurrency
            )
            headers = {"X-API-Key": engineer}
            with httpx.Client(base_url=url, headers=headers, limits=limits, timeout=60) as client:
                _note(f"API up; projection caught up after {caught_up(client):.1f} s")
                results = []
                afresh: dict[str, Run] = {}
                for name, over_http, direct in read_ops(client, twin, pump):
                    over_http(), direct()  # warm the plans and the pool
                    api = drive(over_http, seconds=args.duration, threads=args.concurrency)
                    local = drive(direct, seconds=args.duration, threads=args.concurrency)
                    _note(f"{name}: {api.rps:,.0f}/s over HTTP, {local.rps:,.0f}/s direct")
                    results.append((name, api, local))
                    if name == "context lookup":
                        if context_apart(twin, pump) != twin.asset_context(pump):
                            raise SystemExit("the context read apart differs from read together")
                        afresh[name] = drive(
                            lambda: context_apart(twin, pump),
                            seconds=args.duration,
                            threads=args.concurrency,
                        )
                        _note(f"{name}: {afresh[name].rps:,.0f}/s direct, five reads apart")
                    else:
                        with verdicts_forgotten():
                            afresh[name] = drive(
                                direct, seconds=args.duration, threads=args.concurrency
                            )
                        _note(f"{name}: {afresh[name].rps:,.0f}/s direct, judged afresh")
                results.append(rdflib_anchor(server, twin, args))
            _note(f"sustained ingest for {args.ingest_seconds:.0f} s")
            lag = ingest_under_watch(
                url,
                producer,
                sensors(plant),
                seconds=args.ingest_seconds,
                rate=args.rate,
                per_batch=args.batch,
            )
        projection.close()
        poll_s = Settings(home=api_home).projection_poll_s
    _report(args, results, afresh, lag, poll_s)


def _report(
    args: argparse.Namespace,
    results: list[tuple[str, Run, Run]],
    afresh: dict[str, Run],
    lag: LagRun,
    poll_s: float,
) -> None:
    print(
        f"API over loopback from a second process vs the same call in process; "
        f"{args.concurrency} threads, {args.duration:.1f} s each, {os.cpu_count()} cores shared "
        f"with Neo4j and the server"
    )
    head = f"{'operation':<16}{'side':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
    print(head + f"{'API/direct':>26}")
    for name, api, local in results:
        first, second = ("projection", "rdflib") if name == RDFLIB_ROW else ("API", "direct")
        for side, run in ((first, api), (second, local)):
            line = (
                f"{name if side == first else '':<16}{side:<10}{run.rps:>9,.0f}"
                f"{run.pct(50):>9.2f}{run.pct(99):>9.2f}{run.errors:>8}"
            )
            if side == second:
                line += (
                    f"   req/s ×{api.rps / local.rps:.2f}, p50 ×{api.pct(50) / local.pct(50):.2f}"
                )
            print(line)
        if name in afresh:
            run = afresh[name]
            print(
                f"{'':<16}{'afresh':<10}{run.rps:>9,.0f}{run.pct(50):>9.2f}{run.pct(99):>9.2f}"
                f"{run.errors:>8}   direct/afresh req/s ×{local.rps / run.rps:.2f}"
            )
    print(f"({RDFLIB_ROW}: the projection in process against rdflib on the same triples;")
    print(" afresh: in process with decision 0080's kept verdicts off, every text judged anew;")
    print(" for the context lookup, its five reads each in a transaction of its own, as before)")
    sensors_n = lag.points // max(lag.batches * args.batch, 1)
    print(
        f"\nsustained ingest: {lag.batches} batches ({args.batch} s × {sensors_n} sensors) "
        f"offered at {args.rate:.1f}/s for {lag.seconds:.1f} s: "
        f"{lag.batches / lag.seconds:.2f} batches/s, {lag.points / lag.seconds:,.0f} points/s, "
        f"{lag.accepted:,} of {lag.points:,} points accepted, {lag.failed} batches failed"
    )
    p50, p99 = float(np.percentile(lag.lag_s, 50)), float(np.percentile(lag.lag_s, 99))
    print(
        f"projection lag while ingesting ({len(lag.lag_s)} samples, every 100 ms): "
        f"p50 {p50:.3f} s, p99 {p99:.3f} s, max {float(lag.lag_s.max()):.3f} s; "
        f"pending entries p99 {float(np.percentile(lag.pending, 99)):.0f}"
    )
    print(
        f"last ingest → caught up: {lag.catch_up_s:.3f} s; against the follower's poll "
        f"interval ({poll_s:.2f} s): lag p99 ×{p99 / poll_s:.2f}, catch-up "
        f"×{lag.catch_up_s / poll_s:.2f}"
    )


if __name__ == "__main__":
    main()
