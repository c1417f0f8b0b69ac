"""Seed-load benchmark: batched UNWIND writes against one transaction per asset.

Starts a throwaway Neo4j (the project's own launcher, temporary data folder, free port), warms
its JIT with two ``--warmup``-asset loads (other seeds; they stay in the graph), then:

1. batched: loads a generated plant of ``--assets`` assets (default 100,000) with the ontology,
   in one transaction of batched ``UNWIND`` statements (the path ``twinkg seed`` uses);
2. per asset: loads a ``--sample`` asset plant (default 2,000; another seed, so nothing is merged
   into existing nodes) with one transaction per asset: the asset's node and every relationship
   whose later-written end it is;
3. batched again on a plant the size of the sample, for a like-for-like ratio;
4. the anchor: ``neo4j-admin database import full`` of the ontology and the ``--assets`` plant
   (CSV files written from the same records) into an empty database, which is then started,
   given TwinKG's constraints and indexes, and counted back.

Prints nodes/s and relationships/s for each, and the ratios side by side.
Targets (issue #2): batched ≥ 20,000 nodes/s; ratio ≥ 30.

    python benchmarks/seed_load.py [--assets 100000] [--sample 2000]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.server import throwaway_store
from twinkg.graph_seed.generator import generate
from twinkg.graph_seed.seeding import ontology_records
from twinkg.kg import local_server
from twinkg.kg.mapping import LANG_SUFFIX
from twinkg.kg.records import GraphRecords, LangString, NodeRecord, RelRecord
from twinkg.kg.store import GraphCounts, GraphStore, WriteSummary, labels_for, open_driver
from twinkg.ontology.vocab import Label, PropKey


@dataclass(frozen=True)
class Rate:
    """Throughput of one load (phases known for the batched path only)."""

    nodes: int
    rels: int
    seconds: float
    phases: WriteSummary | None = None

    @property
    def nodes_per_s(self) -> float:
        """Nodes written per second."""
        return self.nodes / self.seconds

    @property
    def rels_per_s(self) -> float:
        """Relationships written per second."""
        return self.rels / self.seconds


def batched(store: GraphStore, records: GraphRecords) -> Rate:
    """One transaction of batched UNWIND statements."""
    start = time.perf_counter()
    summary = store.write(records)
    return Rate(len(records.nodes), len(records.rels), time.perf_counter() - start, summary)


def per_asset(store: GraphStore, records: GraphRecords) -> Rate:
    """One transaction per asset; non-asset nodes (policies, units) are written first, untimed."""
    assets = [n for n in records.nodes if Label.ASSET in labels_for(n.types)]
    others = [n for n in records.nodes if Label.ASSET not in labels_for(n.types)]
    position = {n.uri: i for i, n in enumerate(assets)}
    rels_of: dict[int, list[RelRecord]] = defaultdict(list)
    early: list[RelRecord] = []
    for rel in records.rels:
        at = max(position.get(rel.start, -1), position.get(rel.end, -1))
        (rels_of[at] if at >= 0 else early).append(rel)
    store.write(GraphRecords(tuple(others), tuple(early)))
    start = time.perf_counter()
    for i, node in enumerate(assets):
        store.write(GraphRecords((node,), tuple(rels_of[i])))
    seconds = time.perf_counter() - start
    return Rate(len(assets), sum(len(v) for v in rels_of.values()), seconds)


def _assets_only(records: GraphRecords) -> int:
    return sum(Label.ASSET in labels_for(n.types) for n in records.nodes)


# --- the anchor: neo4j-admin database import of the same plant -------------------------------

_CSV_TYPES: dict[type, str] = {str: "string", bool: "boolean", int: "long", float: "double"}
_ARRAY = ";"  # the import tool's array delimiter (labels, list properties)


@dataclass(frozen=True)
class ImportRate:
    """``neo4j-admin database import full`` of the same records into an empty database."""

    nodes: int
    rels: int
    csv_seconds: float
    """writing the CSV files from the records (Python; not counted in ``seconds``)"""
    seconds: float
    """the import command, JVM start included"""
    tool_seconds: float
    """what the tool itself reports (``IMPORT DONE in …``)"""
    schema_seconds: float
    """creating TwinKG's constraints and indexes on the imported graph, once started"""
    counted: GraphCounts
    """the nodes and relationships the started database holds"""


def _csv_type(value: Any) -> str:
    """The import header's type for ``value`` (the generated plant holds texts and numbers)."""
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list property has no import type")
        return _csv_type(value[0]) + "[]"
    kind = _CSV_TYPES.get(type(value))
    if kind is None:
        raise ValueError(f"the import anchor does not write {type(value).__name__} properties")
    return kind


def _cell(value: Any) -> str:
    """A CSV cell: lists joined by the array delimiter, booleans as the tool reads them."""
    if isinstance(value, list):
        cells = [_cell(v) for v in value]
        if any(_ARRAY in c for c in cells):
            raise ValueError(f"a list value holds the array delimiter {_ARRAY!r}")
        return _ARRAY.join(cells)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


def _one_per_uri(nodes: Sequence[NodeRecord]) -> list[NodeRecord]:
    """One record per IRI, as a later write merges into an earlier one (a plant names the
    ontology's units and quantity kinds bare: no types, no properties)."""
    merged: dict[str, NodeRecord] = {}
    for node in nodes:
        old = merged.get(node.uri)
        merged[node.uri] = (
            node
            if old is None
            else NodeRecord(node.uri, node.types or old.types, {**old.props, **node.props})
        )
    return list(merged.values())


def write_import_csv(records: GraphRecords, folder: Path) -> tuple[list[Path], Path]:
    """The records as the import tool's CSV files: one node file per set of labels and typed
    property keys (each with its own header), one relationship file."""
    groups: dict[tuple[str, ...], list[list[str]]] = defaultdict(list)
    for node in _one_per_uri(records.nodes):
        labels = _ARRAY.join(label.value for label in labels_for(node.types))
        props: dict[str, Any] = {}
        if node.types:
            props[PropKey.RDF_TYPE.value] = sorted(node.types)
        for key, value in node.props.items():
            values = value if isinstance(value, list) else [value]
            tagged = [v for v in values if isinstance(v, LangString)]
            if tagged and len(tagged) == len(values):  # as decision 0038 stores them
                lang_key = key.value + LANG_SUFFIX
                if isinstance(value, list):
                    props[key.value] = [t.text for t in tagged]
                    props[lang_key] = [t.lang for t in tagged]
                else:
                    props[key.value], props[lang_key] = tagged[0].text, tagged[0].lang
            else:
                props[key.value] = value
        header = ("uri:ID", ":LABEL", *(f"{k}:{_csv_type(v)}" for k, v in props.items()))
        groups[header].append([node.uri, labels, *(_cell(v) for v in props.values())])
    node_files = []
    for i, (header, rows) in enumerate(groups.items()):
        path = folder / f"nodes-{i}.csv"
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(rows)
        node_files.append(path)
    rel_file = folder / "relationships.csv"
    with rel_file.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow((":START_ID", ":END_ID", ":TYPE"))
        writer.writerows((r.start, r.end, r.type.value) for r in dict.fromkeys(records.rels))
    return node_files, rel_file


def admin_import(records: GraphRecords, folder: Path) -> ImportRate:
    """Import ``records`` with ``neo4j-admin database import full`` into a new, empty DBMS home
    under ``folder``, then start it, create TwinKG's schema and count what it holds."""
    started = time.perf_counter()
    csv_dir = folder / "csv"
    csv_dir.mkdir(parents=True)
    node_files, rel_file = write_import_csv(records, csv_dir)
    csv_s = time.perf_counter() - started
    home = folder / "neo4j"
    dbms_home = home / "data"  # where the launcher puts its DBMS (kg/local_server.py)
    dbms_home.mkdir(parents=True)
    command = [
        "java",
        "-Xmx4g",
        "-cp",
        local_server.build(),
        "org.neo4j.cli.AdminTool",
        "database",
        "import",
        "full",
        "neo4j",  # the database first: the file options take several values each
        f"--array-delimiter={_ARRAY}",
        f"--report-file={folder / 'import.report'}",  # not in the working directory
        *(f"--nodes={path}" for path in node_files),
        f"--relationships={rel_file}",
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        env={**os.environ, "NEO4J_HOME": str(dbms_home)},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    report = re.search(r"IMPORT DONE in (?:(\d+)m )?(\d+)s (\d+)ms", done.stdout)
    if done.returncode != 0 or report is None:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise SystemExit(f"neo4j-admin database import failed ({done.returncode}): {tail}")
    minutes, secs, millis = (int(g or 0) for g in report.groups())
    config = local_server.LocalServerConfig.throwaway(
        home, heap="4g", pagecache="2g", tx_memory="3g"
    )
    local_server.start(config, wait_s=300, parent_pid=os.getpid())
    driver = open_driver(config.bolt_uri, "neo4j", config.password)
    try:
        store = GraphStore(driver)
        schema_started = time.perf_counter()
        store.ensure_schema()
        schema_s = time.perf_counter() - schema_started
        counted = store.counts()
    finally:
        driver.close()
        local_server.stop(config)
    return ImportRate(
        len({n.uri for n in records.nodes}),
        len(dict.fromkeys(records.rels)),
        csv_s,
        seconds,
        minutes * 60 + secs + millis / 1000,
        schema_s,
        counted,
    )


def main() -> None:
    """Run the three loads and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    parser.add_argument("--warmup", type=int, default=20_000, help="assets per warm-up load")
    args = parser.parse_args()

    with throwaway_store() as (store, _home):
        store.ensure_schema()
        store.write(ontology_records())
        for warm_seed in (101, 102):  # JIT warm-up: the first big loads compile Neo4j's paths
            store.write(generate(assets=args.warmup, seed=warm_seed))

        t0 = time.perf_counter()
        big = generate(assets=args.assets, seed=7)
        gen_s = time.perf_counter() - t0
        big_rate = batched(store, big)
        slow = per_asset(store, generate(assets=args.sample, seed=11))
        small = batched(store, generate(assets=args.sample, seed=13))
    # The anchor: the ontology and the same plant, imported offline into an empty database
    # (the tool's only mode in Community; the batched load above wrote into a warm, non-empty one).
    ontology = ontology_records()
    whole = GraphRecords(ontology.nodes + big.nodes, ontology.rels + big.rels)
    with tempfile.TemporaryDirectory(prefix="twinkg-import-") as tmp:
        imported = admin_import(whole, Path(tmp))

    print(
        f"generated plant: {_assets_only(big):,} assets, {len(big.nodes):,} nodes, "
        f"{len(big.rels):,} relationships (generation {gen_s:.1f} s, not counted)"
    )
    print(f"{'path':<34}{'nodes':>9}{'rels':>10}{'seconds':>9}{'nodes/s':>11}{'rels/s':>11}")
    for name, rate in (
        (f"batched, {args.assets:,} assets", big_rate),
        (f"batched, {args.sample:,} assets", small),
        (f"one tx per asset, {args.sample:,}", slow),
    ):
        print(
            f"{name:<34}{rate.nodes:>9,}{rate.rels:>10,}{rate.seconds:>9.2f}"
            f"{rate.nodes_per_s:>11,.0f}{rate.rels_per_s:>11,.0f}"
        )
    if big_rate.phases:
        p = big_rate.phases
        print(
            f"batched {args.assets:,}, by phase: node statements {p.node_seconds:.2f} s "
            f"({p.nodes / p.node_seconds:,.0f} nodes/s), relationship statements "
            f"{p.relationship_seconds:.2f} s ({p.relationships / p.relationship_seconds:,.0f} "
            f"rels/s), commit {p.commit_seconds:.2f} s"
        )
    expected = GraphCounts(imported.nodes, imported.rels)
    if imported.counted != expected:
        raise SystemExit(f"the imported database holds {imported.counted}, not {expected}")
    end_to_end = imported.seconds + imported.schema_seconds
    print(
        f"anchor: neo4j-admin database import full of the ontology and the same plant "
        f"({imported.nodes:,} nodes, {imported.rels:,} relationships; counted back once started)"
    )
    print(
        f"  import {imported.seconds:.2f} s, JVM start included "
        f"({imported.nodes / imported.seconds:,.0f} nodes/s; the tool reports "
        f"{imported.tool_seconds:.2f} s); CSV written in {imported.csv_seconds:.2f} s, not counted"
    )
    print(
        f"  import + TwinKG's constraints and indexes on the started database "
        f"({imported.schema_seconds:.2f} s): {end_to_end:.2f} s, "
        f"{imported.nodes / end_to_end:,.0f} nodes/s"
    )
    print(
        f"ratio batched({args.assets:,}) / import nodes/s: "
        f"{big_rate.nodes_per_s / (imported.nodes / imported.seconds):.2f}x; "
        f"/ import + schema: {big_rate.nodes_per_s / (imported.nodes / end_to_end):.2f}x"
    )
    print(
        f"ratio batched({args.assets:,}) / per-asset nodes/s: "
        f"{big_rate.nodes_per_s / slow.nodes_per_s:.1f}x   (target >= 30)"
    )
    print(
        f"ratio batched({args.sample:,}) / per-asset nodes/s: "
        f"{small.nodes_per_s / slow.nodes_per_s:.1f}x   (same size, like for like)"
    )
    verdict = "met" if big_rate.nodes_per_s >= 20_000 else "NOT met"
    print(f"batched end-to-end nodes/s (commit included) target >= 20,000: {verdict}")


if __name__ == "__main__":
    main()
