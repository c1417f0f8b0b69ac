"""Seed-load benchmark: batched UNWIND writes against one transaction per asset.

Starts a throwaway Neo4j (the project's own launcher, temporary data folder, free port), warms
its JIT with two ``--warmup``-asset loads (other seeds; they stay in the graph), then:

1. batched: loads a generated plant of ``--assets`` assets (default 100,000) with the ontology,
   in one transaction of batched ``UNWIND`` statements (the path ``twinkg seed`` uses);
2. per asset: loads a ``--sample`` asset plant (default 2,000; another seed, so nothing is merged
   into existing nodes) with one transaction per asset: the asset's node and every relationship
   whose later-written end it is;
3. batched again on a plant the size of the sample, for a like-for-like ratio.

Prints nodes/s and relationships/s for each, and the ratios side by side.
Targets (issue #2): batched ≥ 20,000 nodes/s; ratio ≥ 30.

    python benchmarks/seed_load.py [--assets 100000] [--sample 2000]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass

from benchmarks.server import throwaway_store
from twinkg.graph_seed.generator import generate
from twinkg.graph_seed.seeding import ontology_records
from twinkg.kg.records import GraphRecords, RelRecord
from twinkg.kg.store import GraphStore, WriteSummary, labels_for
from twinkg.ontology.vocab import Label


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
