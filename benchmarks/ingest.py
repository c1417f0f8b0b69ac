"""Ingest benchmark: a large SKAB-format CSV through the contract into the telemetry log and Neo4j.

Starts a throwaway Neo4j (the project's launcher, temporary folder, free port; heap 4g and page
cache 2g, as in the seed benchmark — the local default is 2g/1g), seeds the SKAB
testbed, and writes a CSV of ``--rows`` rows (default 125,000 rows × 8 sensors = 1,000,000
points) made of SKAB's anomaly-free run repeated with fresh timestamps. Then ingests it exactly
as ``twinkg ingest --skab`` does: read the CSV, check every point with the compiled telemetry
contract, stage the points in the Parquet log, fit and run the anomaly detectors, write the
batch, window aggregates, sensor state, anomalies and trust scores to Neo4j in one transaction,
and commit the log. A second file with 1 % broken cells shows the cost of quarantining. A
full-size warm-up file goes first (not counted): Neo4j's JIT compiles its write paths on the
first large transactions.

Prints points/s end to end and per phase, and the ratio against the target.
Target (issue #3): ≥ 200,000 points/s into the telemetry log with contracts on.

``--large`` measures instead what the documented limits hold at the *default* memory settings
(a Neo4j with TWINKG_NEO4J_HEAP, _PAGECACHE and _TX_MEMORY at their defaults, 2g/1g/2g), with the
peak of Neo4j's transaction memory (its own estimate, sampled) and of this process's memory:
a batch of TWINKG_INGEST_MAX_POINTS (5,000,000: 625,000 rows × 8 sensors, one reading a second,
about 83,000 window aggregates), the sparsest batch the record limit lets through (one reading a
minute: each point is an aggregate of its own), and one three times as large, which is refused
before anything is written (decision 0028). Figures are printed, not asserted.

    python benchmarks/ingest.py [--rows 125000]
    python benchmarks/ingest.py --large [--rows 625000]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from benchmarks.server import throwaway_store
from twinkg.connect.csv import column_sensors, read_wide_csv
from twinkg.connect.json import from_json_points
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import local_server, telemetry_state
from twinkg.kg.store import GraphStore, open_driver
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import PayloadTooLargeError
from twinkg.reasoner.ingest import MAX_GRAPH_RECORDS, IngestOptions, IngestReport, ingest
from twinkg.reasoner.points import PointBatch

SKAB_FREE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "skab"
    / "data"
    / "anomaly-free"
    / "anomaly-free.csv"
)
TARGET = 200_000


def write_csv(path: Path, rows: int, *, start_s: int, broken_share: float = 0.0) -> None:
    """SKAB's anomaly-free values repeated to ``rows`` rows, one second apart from ``start_s``."""
    free = pacsv.read_csv(SKAB_FREE, parse_options=pacsv.ParseOptions(delimiter=";"))
    columns = [c for c in free.column_names if c != "datetime"]
    reps = -(-rows // free.num_rows)
    data: dict[str, pa.Array] = {}
    stamps = pa.array(np.arange(start_s, start_s + rows, dtype=np.int64), pa.timestamp("s"))
    data["datetime"] = pa.compute.strftime(stamps, format="%Y-%m-%d %H:%M:%S")
    rng = np.random.default_rng(0)
    for c in columns:
        values = np.tile(free[c].to_numpy(), reps)[:rows].astype(object)
        if broken_share:
            values[rng.random(rows) < broken_share] = "n/a"
        data[c] = pa.array([str(v) for v in values])
    pacsv.write_csv(
        pa.table(data), path, write_options=pacsv.WriteOptions(delimiter=";", quoting_style="none")
    )


def run(
    store: GraphStore, log: TelemetryLog, path: Path, home: Path
) -> tuple[IngestReport, float, float]:
    """Ingest ``path``; returns the report, the CSV read seconds and the ingest seconds."""
    rows = telemetry_state.sensors(store)
    started = time.perf_counter()
    points = read_wide_csv(
        path,
        sensor_columns=column_sensors([(r.external_id, r.uri) for r in rows]),
        units={r.uri: r.unit for r in rows},
    )
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    report = ingest(
        store,
        log,
        points.batch,
        content_hash=points.content_hash,
        options=IngestOptions(
            replay=True, fit_rows=400, detector_dir=home / "detectors", source=path.name
        ),
    )
    return report, read_s, time.perf_counter() - started


@contextmanager
def default_memory_store() -> Iterator[tuple[GraphStore, Path]]:
    """A fresh Neo4j with TwinKG's default memory settings (those of the local server, which
    the TWINKG_NEO4J_* settings default to), seeded with the SKAB testbed."""
    defaults = {f.name: str(f.default) for f in dataclasses.fields(local_server.LocalServerConfig)}
    with tempfile.TemporaryDirectory(prefix="twinkg-bench-") as tmp:
        home = Path(tmp)
        config = local_server.LocalServerConfig.throwaway(
            home / "neo4j",
            heap=defaults["heap"],
            pagecache=defaults["pagecache"],
            tx_memory=defaults["tx_memory"],
        )
        local_server.start(config, wait_s=300, parent_pid=os.getpid())
        driver = open_driver(config.bolt_uri, "neo4j", config.password)
        try:
            store = GraphStore(driver)
            store.ensure_schema()
            seeding.load(store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
            yield store, home
        finally:
            driver.close()
            local_server.stop(config)


@contextmanager
def peak_transaction_memory(store: GraphStore) -> Iterator[list[int]]:
    """Sample Neo4j's transaction memory until the block ends; its peak in ``[0]``."""
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], telemetry_state.transaction_memory(store))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def sparse_batch(store: GraphStore, points: int, *, start: datetime) -> PointBatch:
    """``points`` readings of the SKAB testbed's sensors, one a minute per sensor."""
    rows = [r for r in telemetry_state.sensors(store) if r.unit is not None]
    per = -(-points // len(rows))
    return from_json_points(
        [
            {
                "sensor": row.uri,
                "unit": row.unit,
                "time": (start + timedelta(minutes=i)).isoformat(),
                "value": _inside(row.physical_min, row.physical_max),
            }
            for i in range(per)
            for row in rows
        ][:points]
    )


def _inside(low: float | None, high: float | None) -> float:
    """A value within a sensor's physical range."""
    if low is not None and high is not None:
        return (low + high) / 2
    return (low if low is not None else high if high is not None else 0.0) + 0.0


def large(rows: int) -> None:
    """The documented limits at the default memory settings (see the module docstring)."""
    with default_memory_store() as (store, home):
        log = TelemetryLog(home / "telemetry")
        path = home / "large.csv"
        write_csv(path, rows, start_s=1_600_000_000)
        with peak_transaction_memory(store) as peak:
            report, read_s, ingest_s = run(store, log, path, home)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"dense: {report.points:,} points (TWINKG_INGEST_MAX_POINTS 5,000,000), "
            f"{report.accepted:,} accepted, {report.aggregates:,} window aggregates: "
            f"{read_s + ingest_s:.1f} s, peak Neo4j transaction memory "
            f"{peak[0] / 2**30:.2f} GiB of 2 GiB, peak process memory {rss:.2f} GiB"
        )
        limit = MAX_GRAPH_RECORDS // 3 - 100  # 3 records an aggregate; sensor state, trust
        start = datetime.now(UTC) - timedelta(days=400)
        for name, points in (("sparse at the limit", limit), ("sparse, 3x the limit", 3 * limit)):
            batch = sparse_batch(store, points, start=start)
            started = time.perf_counter()
            try:
                with peak_transaction_memory(store) as peak:
                    digest = hashlib.sha256(f"sparse {points}".encode()).hexdigest()
                    done = ingest(store, log, batch, content_hash=digest)
                outcome = f"{done.aggregates:,} window aggregates committed"
            except PayloadTooLargeError as exc:
                outcome = f"refused before any write ({exc.code})"
            print(
                f"{name}: {points:,} points, {outcome} in {time.perf_counter() - started:.1f} s, "
                f"peak Neo4j transaction memory {peak[0] / 2**30:.2f} GiB"
            )
            start += timedelta(days=200)


def main() -> None:
    """Build the files, ingest them, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--large", action="store_true", help="the documented limits instead")
    args = parser.parse_args()
    if not SKAB_FREE.exists():
        print(f"SKAB data not found at {SKAB_FREE}: nothing to measure")
        sys.exit(2)
    if args.large:
        large(args.rows or 625_000)
        return
    args.rows = args.rows or 125_000
    with throwaway_store() as (store, home):
        seeding.load(store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
        log = TelemetryLog(home / "telemetry")
        # JIT warm-up, as in the seed benchmark: Neo4j compiles its write paths on the
        # first large transactions (a full-size file with other timestamps, not counted)
        warm = home / "warm.csv"
        write_csv(warm, args.rows, start_s=1_500_000_000)
        run(store, log, warm, home)
        clean, broken = home / "clean.csv", home / "broken.csv"
        write_csv(clean, args.rows, start_s=1_600_000_000)
        write_csv(broken, args.rows, start_s=1_700_000_000, broken_share=0.01)
        results = [
            (name, *run(store, log, path, home))
            for name, path in (("clean", clean), ("1% broken", broken))
        ]

    print(
        f"{'file':<11}{'points':>11}{'accepted':>10}{'quarant.':>9}{'read s':>8}"
        f"{'check s':>9}{'derive s':>9}{'log s*':>7}{'neo4j s':>9}{'points/s':>11}"
    )
    for name, report, read_s, ingest_s in results:
        sec = report.seconds
        print(
            f"{name:<11}{report.points:>11,}{report.accepted:>10,}{report.rejected:>9,}"
            f"{read_s:>8.2f}{sec['contract']:>9.2f}{sec['derive']:>9.2f}{sec['log']:>7.2f}"
            f"{sec['graph']:>9.2f}{report.points / (read_s + ingest_s):>11,.0f}"
        )
    _, report, read_s, ingest_s = results[0]
    rate = report.points / (read_s + ingest_s)
    print(
        f"end to end (CSV file → contract → Parquet log + Neo4j), clean file: {rate:,.0f} "
        f"points/s = {rate / TARGET:.2f}x the target of {TARGET:,} "
        f"({'met' if rate >= TARGET else 'NOT met'})"
    )
    print("* the Parquet log is staged in a thread while Neo4j writes (its time overlaps)")
    sec = report.seconds
    print(
        f"neo4j phases (clean file): node statements {sec['graph_nodes']:.2f} s, relationship "
        f"statements {sec['graph_relationships']:.2f} s, commit {sec['graph_commit']:.2f} s"
    )
    print(
        f"graph writes per batch: {report.aggregates:,} window aggregates, "
        f"{len(report.anomalies)} anomalies, {len(report.trust)} trust scores"
    )


if __name__ == "__main__":
    main()
