"""Reclassification cost as window aggregates pile up: bare nodes read apart against the full read.

Starts a throwaway Neo4j, seeds a generated plant of ``--assets`` assets (default 1,000) with
the ontology, then stores window aggregates (``tk:WindowAggregate`` nodes observed by a sensor,
as the ingest stores them) in steps up to ``--aggregates`` (default 100,000). At each step it
times, side by side in one run:

1. ``reclassify``: the bare nodes read apart, one of them reasoned about for its twins
   (decision 0068), and the labels written;
2. the path before that change, the anchor: ``read_facts`` (every node as RDF), then
   ``classify`` (which collapses interchangeable individuals after the read).

It prints the seconds of each, the read alone, and the ratio. Target (issue 15): a run's cost
flat in the number of aggregates stored, so the background reclassification no longer grows
with history.

    python -m benchmarks.reclassify [--assets 1000] [--aggregates 100000]
"""

from __future__ import annotations

import argparse
import time

from rdflib import Graph

from benchmarks.server import throwaway_store
from twinkg.graph_seed.generator import generate
from twinkg.graph_seed.seeding import with_ontology
from twinkg.kg.inferred import read_facts, read_stored_facts
from twinkg.kg.records import GraphRecords, NodeRecord, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.catalog import load_ontology
from twinkg.ontology.vocab import TK, PropKey, RelType
from twinkg.reasoner.inference import classify, reasoning_terms, reclassify

_NS = "https://w3id.org/twinkg/ingest/aggregate/bench/"


def _aggregates(start: int, stop: int, sensors: list[str]) -> GraphRecords:
    nodes, rels = [], []
    for k in range(start, stop):
        uri = f"{_NS}{k}"
        props = {PropKey.SAMPLE_COUNT: 10, PropKey.VALUE: float(k)}
        nodes.append(NodeRecord(uri, (str(TK.WindowAggregate),), props))
        rels.append(RelRecord(RelType.OBSERVED_BY, uri, sensors[k % len(sensors)]))
    return GraphRecords(tuple(nodes), tuple(rels))


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=1000)
    parser.add_argument("--aggregates", type=int, default=100_000)
    args = parser.parse_args()
    steps = [0] + [n for n in (1_000, 10_000, 30_000, 100_000) if n < args.aggregates]
    steps.append(args.aggregates)
    ontology = load_ontology()
    terms = reasoning_terms(ontology)
    keys = terms.keys | {PropKey.TAG}
    with throwaway_store() as (store, _):
        store.ensure_schema()
        plant = generate(assets=args.assets, seed=0)
        store.write(with_ontology(plant))
        sensors = [n.uri for n in plant.nodes if any(t.endswith("Sensor") for t in n.types)]
        reclassify(store, ontology=ontology)  # warm-up: JIT, plan cache, JVM on disk
        print(f"plant: {args.assets} assets, {len(sensors)} sensors")
        print(
            f"{'aggregates':>10} | {'reclassify s':>12} {'read s':>7} | "
            f"{'before s':>8} {'read s':>7} | before / after"
        )
        stored = 0
        for step in steps:
            for start in range(stored, step, 10_000):
                store.write(_aggregates(start, min(step, start + 10_000), sensors))
            stored = step
            after, after_read = _timed_reclassify(store, ontology, keys, terms.rel_types)
            before, before_read = _timed_before(store, ontology, keys, terms.rel_types)
            print(
                f"{step:>10,} | {after:>12.2f} {after_read:>7.2f} | "
                f"{before:>8.2f} {before_read:>7.2f} | {before / after:.2f}×"
            )


def _timed_reclassify(
    store: GraphStore, ontology: Graph, keys: frozenset[PropKey], rels: frozenset[RelType]
) -> tuple[float, float]:
    started = time.perf_counter()
    read_stored_facts(store, keys=keys, rel_types=rels)
    read = time.perf_counter() - started
    started = time.perf_counter()
    reclassify(store, ontology=ontology)
    return time.perf_counter() - started, read


def _timed_before(
    store: GraphStore, ontology: Graph, keys: frozenset[PropKey], rels: frozenset[RelType]
) -> tuple[float, float]:
    started = time.perf_counter()
    facts = read_facts(store, keys=keys, rel_types=rels)
    read = time.perf_counter() - started
    classify(ontology, facts)
    return time.perf_counter() - started, read


if __name__ == "__main__":
    main()
