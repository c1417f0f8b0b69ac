"""Decision benchmark: the agents' decision loop, the provenance recorder and lineage reads.

Starts a throwaway Neo4j (the project's launcher, temporary folder, free port; heap 4g and page
cache 2g, as in the seed benchmark), seeds a generated plant of ``--assets`` assets (default
10,000) with the ontology, and writes one ``tk:Anomaly`` concerning each pump per round (the
generated plant has no findings, and a finding is decided on once). Then:

1. decision loop: ``Agents.run(scope=pump)`` with the rule-based planner, observe → diagnose →
   plan → guard → act → record (the record written to Neo4j included), ``--runs`` times with an
   in-memory checkpointer and ``--runs`` times with a SQLite one, after ``--warmup`` runs not
   counted. Without telemetry in a log the diagnoser finds no symptoms, so the planner's
   confidence is 0 and the guard asks for approval: the outcomes reached are printed.
2. provenance: records built from a real run's state (``decision_records``, run id varied):
   ``--single`` written with ``kg.provenance.record``, one transaction each (the agents' path),
   the rest chained 500 to a transaction with ``record_many`` until ``--decisions`` decisions
   are stored (or ``--fill-seconds`` runs out: the count stored is printed).
3. lineage: ``kg.lineage.lineage`` of ``--lineage`` random stored decisions.
4. ``kg.chain_verify.verify`` of the whole chain, once, beside its anchor: SHA-256 alone over
   the same canonical bytes (and orjson's encoding of the same documents); then
   ``verify(since=…)`` from the head 1,000 records back (a busy plant's day), against the whole
   chain's time.

Targets (issue text): decision p99 ≤ 100 ms; lineage p99 ≤ 50 ms with 100,000 decisions stored;
verify ≥ 20,000 records/s (issue 17).

    python benchmarks/decisions.py [--assets 10000] [--decisions 100000] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
from langgraph.checkpoint.memory import InMemorySaver

from benchmarks.server import throwaway_store
from twinkg.agents.checkpoint import open_checkpointer, serializer
from twinkg.agents.record import decision_iri, decision_records
from twinkg.agents.runner import Agents, RunResult
from twinkg.agents.state import AgentState
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg import chain_verify, lineage, provenance
from twinkg.kg.context import CONTEXT_NODES, action_context, graph_version
from twinkg.kg.records import GraphRecords, NodeRecord, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.ontology.vocab import TK, PropKey, RelType

DECISION_P99_MS = 100.0
LINEAGE_P99_MS = 50.0
SINCE_TAIL = 1_000  # a busy plant's decisions in a day: what a daily `verify --since` reads
VERIFY_TARGET = 20_000  # records/s (issue 17)
SINCE_TARGET_S = 5.0  # issue 17: a daily audit costs seconds whatever the chain's length
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Latency:
    """Per-call latencies (ms) and what the calls reached."""

    ms: np.ndarray[Any, np.dtype[np.float64]]
    outcomes: Counter[str]

    def pct(self, q: float) -> float:
        """The ``q``-th percentile in ms."""
        return float(np.percentile(self.ms, q))


def anomaly_records(pumps: Sequence[str], at: datetime, name: str) -> GraphRecords:
    """A ``tk:Anomaly`` at ``at`` concerning each pump (``…/anomaly/NAME/i``)."""
    nodes, rels = [], []
    for i, pump in enumerate(pumps):
        uri = f"{INGEST_BASE}anomaly/{name}/{i}"
        props: dict[PropKey, Any] = {
            PropKey.OCCURRED_AT: at,
            PropKey.ENDED_AT: at + timedelta(minutes=5),
            PropKey.ANOMALY_SCORE: 0.9,
            PropKey.SAMPLE_COUNT: 300,
        }
        nodes.append(NodeRecord(uri, (str(TK.Anomaly),), props))
        rels.append(RelRecord(RelType.CONCERNS, uri, pump))
    return GraphRecords(tuple(nodes), tuple(rels))


class Findings:
    """Anomalies on the pumps, one round at a time (each finding is decided on once)."""

    def __init__(self, store: GraphStore, pumps: Sequence[str]) -> None:
        self.store, self.pumps, self.round = store, list(pumps), 0
        self.queue: list[tuple[str, datetime]] = []

    def _write_round(self) -> None:
        at = T0 + timedelta(hours=self.round)
        self.store.write(anomaly_records(self.pumps, at, f"bench/{self.round}"))
        # as_of just after this round's findings: earlier rounds' are decided already
        self.queue = [(p, at + timedelta(minutes=10)) for p in self.pumps]
        self.round += 1

    def next(self) -> tuple[str, datetime]:
        """A pump with one undecided finding, and the moment to decide it at."""
        if not self.queue:
            self._write_round()
        return self.queue.pop()


def decide(agents: Agents, findings: Findings, runs: int) -> tuple[Latency, RunResult]:
    """``runs`` timed decisions, one per finding."""
    ms, outcomes = [], Counter[str]()
    last: RunResult | None = None
    for _ in range(runs):
        pump, as_of = findings.next()
        start = time.perf_counter()
        last = agents.run(scope=pump, as_of=as_of)
        ms.append((time.perf_counter() - start) * 1000)
        outcomes.update(s.outcome.value for s in last.steps)
        if last.status == "nothing_to_do":
            outcomes["nothing_to_do"] += 1
    assert last is not None
    return Latency(np.array(ms), outcomes), last


def fill(
    store: GraphStore,
    agents: Agents,
    template: AgentState,
    *,
    count: int,
    budget_s: float,
    single: int,
    batch: int = 500,
) -> tuple[list[str], float, float]:
    """Store ``count`` decisions: the first ``single`` one transaction each (the agents' path,
    timed), the rest chained ``batch`` to a transaction (``record_many``, an import's path).

    Returns the decision IRIs, the single-record rate and the bulk rate (records/s).
    """
    base = template.model_copy(update={"steps": [], "step": 1})
    iris: list[str] = []

    def item(i: int) -> tuple[GraphRecords, str]:
        state = base.model_copy(update={"run_id": f"bench-fill-{i:07d}"})
        iris.append(decision_iri(state))
        return decision_records(state, agents.agent, ended_at=datetime.now(UTC)), iris[-1]

    start = time.perf_counter()
    for i in range(min(single, count)):
        records, decision = item(i)
        provenance.record(store, records, decision=decision)
    single_rate = len(iris) / (time.perf_counter() - start)
    _note(f"{len(iris):,} records one transaction each: {single_rate:,.0f}/s")
    start = time.perf_counter()
    done = len(iris)
    while done < count and time.perf_counter() - start < budget_s:
        provenance.record_many(store, [item(i) for i in range(done, min(done + batch, count))])
        done = len(iris)
        if done % 10_000 < batch:
            _note(
                f"{done:,} records stored, {(done - single) / (time.perf_counter() - start):,.0f}/s"
            )
    bulk_rate = (done - single) / (time.perf_counter() - start) if done > single else 0.0
    return iris, single_rate, bulk_rate


def premise_cost(store: GraphStore, agents: Agents, template: AgentState, pump: str, n: int) -> str:
    """The median ms of one record transaction without and with the check that the action's
    context is still the one its guard judged (decision 0086): ``n`` records each way,
    alternating, each checked against ``pump``'s context (16 nodes or so) as it is."""
    rows = store.read(CONTEXT_NODES, uri=pump)
    version = graph_version(action_context(store, pump))
    premise = provenance.Premise(pump, version, tuple(str(r["uri"]) for r in rows))
    base = template.model_copy(update={"steps": [], "step": 1})
    plain_ms: list[float] = []
    held_ms: list[float] = []
    for i in range(2 * n):
        state = base.model_copy(update={"run_id": f"bench-premise-{i:05d}"})
        records = decision_records(state, agents.agent, ended_at=datetime.now(UTC))
        start = time.perf_counter()
        provenance.record(
            store, records, decision=decision_iri(state), premise=premise if i % 2 else None
        )
        (held_ms if i % 2 else plain_ms).append((time.perf_counter() - start) * 1000)
    plain, held = float(np.median(plain_ms)), float(np.median(held_ms))
    return (
        f"record transaction, median of {n} each, alternating: {plain:.1f} ms; with the check "
        f"that the action's context is the one its guard judged (decision 0086, applied "
        f"actions with an effect) {held:.1f} ms ({held / plain:.2f}x)"
    )


def timed(call: Callable[[], object], n: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Latencies (ms) of ``n`` calls."""
    ms = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        ms.append((time.perf_counter() - start) * 1000)
    return np.array(ms)


def _note(text: str) -> None:
    """Progress on stderr (the figures go to stdout at the end)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _chain_length(store: GraphStore) -> int:
    return int(store.read(chain_verify.CHAIN_HEAD, chain=provenance.CHAIN_IRI)[0]["length"])


def _pumps(records: GraphRecords) -> list[str]:
    pump = str(TK.CentrifugalPump)
    return [n.uri for n in records.nodes if pump in n.types]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=100_000, help="decisions to store")
    parser.add_argument("--runs", type=int, default=300, help="timed runs per checkpointer")
    parser.add_argument("--warmup", type=int, default=30, help="runs not counted")
    parser.add_argument("--lineage", type=int, default=500, help="lineage reads timed")
    parser.add_argument("--fill-seconds", type=float, default=3600.0, help="fill time limit")
    parser.add_argument(
        "--single", type=int, default=2000, help="records written one transaction each"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 assets, 5,000 decisions")
    args = parser.parse_args()
    if args.quick:
        args.assets, args.decisions, args.runs, args.warmup, args.lineage = (
            2_000,
            5_000,
            100,
            10,
            200,
        )
    return args


def _verify_since(store: GraphStore, stored: int) -> tuple[int, float]:
    """A daily audit: ``verify --since`` the head an earlier verify printed ``SINCE_TAIL``
    records ago; the records it checked and its seconds (NaN when the chain is shorter)."""
    tail = min(SINCE_TAIL, stored - 1)
    at = stored - tail
    trusted = store.read(chain_verify.PAGE, start=at, stop=at + 1) if at >= 1 else []
    if not trusted:
        return 0, float("nan")
    _note(f"verify --since #{at}")
    t = time.perf_counter()
    since = chain_verify.verify(store, since=str(trusted[0]["record_hash"]))
    seconds = time.perf_counter() - t
    assert since.ok and since.checked == tail, since
    return tail, seconds


def _hash_anchor(store: GraphStore, length: int) -> tuple[int, float, float]:
    """The anchor of verify: SHA-256 alone over the same canonical bytes verify hashes (read and
    encoded first, not timed), and orjson's encoding of the same documents. Bytes, hash seconds,
    orjson seconds."""
    texts: list[bytes] = []
    documents: list[dict[str, Any]] = []
    for start in range(1, length + 1, 500):
        rows = store.read(
            chain_verify.PAGE_DOCUMENTS,
            start=start,
            stop=min(start + 500, length + 1),
            unhashed=list(provenance.UNHASHED),
        )
        for row in rows:
            document = chain_verify.row_document(row)
            assert document is not None
            documents.append(document)
            texts.append(provenance.hashed_bytes(str(row["previous_hash"] or ""), document))
    t = time.perf_counter()
    for text in texts:
        hashlib.sha256(text).hexdigest()
    hash_s = time.perf_counter() - t
    t = time.perf_counter()
    for document in documents:
        orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return sum(map(len, texts)), hash_s, time.perf_counter() - t


def main() -> None:
    """Run the four measurements and print the figures."""
    args = _args()
    with throwaway_store() as (store, home):
        plant = plant_records(Plant.GENERATED, assets=args.assets, seed=0)
        t = time.perf_counter()
        seeding.load(store, "generated", seeding.with_ontology(plant))
        seed_s = time.perf_counter() - t
        findings = Findings(store, _pumps(plant))
        _note(f"seeded {args.assets:,} assets in {seed_s:.1f} s; decision loop, in memory")

        memory = Agents(store=store, log=None, checkpointer=InMemorySaver(serde=serializer()))
        decide(memory, findings, args.warmup)
        mem_lat, last = decide(memory, findings, args.runs)
        _note(f"in memory p99 {mem_lat.pct(99):.1f} ms; decision loop, SQLite")
        with open_checkpointer(str(home / "checkpoints.db")) as saver:
            sqlite = Agents(store=store, log=None, checkpointer=saver)
            decide(sqlite, findings, args.warmup)
            sql_lat, _ = decide(sqlite, findings, args.runs)
        premise = premise_cost(store, memory, last.state, findings.pumps[0], 100)
        runs_done = _chain_length(store)
        _note(f"SQLite p99 {sql_lat.pct(99):.1f} ms; filling to {args.decisions:,} decisions")
        iris, single_rate, bulk_rate = fill(
            store,
            memory,
            last.state,
            count=max(args.decisions - runs_done, 0),
            budget_s=args.fill_seconds,
            single=args.single,
        )
        stored = _chain_length(store)
        _note(f"{stored:,} decisions stored; lineage reads")
        sample = random.Random(0).choices(iris, k=args.lineage)
        it = iter(sample)
        lineage.lineage(store, sample[0])  # plan cache warm-up
        lin_ms = timed(lambda: lineage.lineage(store, next(it)), args.lineage)
        triples = len(lineage.lineage(store, sample[0]))
        _note("verify")
        t = time.perf_counter()
        report = chain_verify.verify(store)
        verify_s = time.perf_counter() - t
        tail, since_s = _verify_since(store, stored)
        hashed, hash_s, orjson_s = _hash_anchor(store, report.records)

    print(
        f"generated plant: {args.assets:,} assets, {len(plant.nodes):,} nodes, "
        f"{len(plant.rels):,} relationships, {len(findings.pumps):,} pumps "
        f"(seeded in {seed_s:.1f} s, not counted)"
    )
    print(
        f"decisions stored: {stored:,} (asked for {args.decisions:,}); chain length "
        f"{report.records:,}"
    )
    print(
        f"{'decision loop (observe → record)':<40}{'runs':>6}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}  outcomes"
    )
    for name, lat in (
        ("rule planner, InMemorySaver", mem_lat),
        ("rule planner, SqliteSaver", sql_lat),
    ):
        outs = ", ".join(f"{k} {v}" for k, v in sorted(lat.outcomes.items()))
        print(
            f"{name:<40}{len(lat.ms):>6}{lat.pct(50):>9.1f}{lat.pct(99):>9.1f}"
            f"{lat.ms.max():>9.1f}  {outs}"
        )
    print(
        f"provenance: {single_rate:,.0f} records/s one transaction each (the agents' path, "
        f"{min(args.single, len(iris)):,} records); {bulk_rate:,.0f} records/s chained 500 to a "
        "transaction (record_many); hash chained, record building included\n" + premise
    )
    print(
        f"lineage: {args.lineage} reads of random decisions ({triples} triples each): "
        f"p50 {np.percentile(lin_ms, 50):.1f} ms, p99 {np.percentile(lin_ms, 99):.1f} ms"
    )
    rate = report.records / verify_s
    print(
        f"verify: {report.records:,} records in {verify_s:.1f} s ({rate:,.0f} records/s), "
        f"{'ok' if report.ok else f'{len(report.problems)} PROBLEMS'}; target "
        f">= {VERIFY_TARGET:,} records/s: {'met' if rate >= VERIFY_TARGET else 'not met'}"
    )
    print(
        f"  anchor, same run: SHA-256 alone over the same canonical bytes "
        f"({hashed / 1e6:,.1f} MB, {hashed / max(report.records, 1) / 1e3:,.1f} kB a record) "
        f"{hash_s:.2f} s ({report.records / hash_s:,.0f} records/s); orjson encoding alone "
        f"{orjson_s:.2f} s; verify / hash alone: {verify_s / hash_s:,.0f}x"
    )
    print(
        f"verify --since a head {tail:,} records back: {since_s:.2f} s "
        f"({tail / since_s:,.0f} records/s) vs the whole chain {verify_s:.1f} s: "
        f"{verify_s / since_s:,.0f}x less; target <= {SINCE_TARGET_S:.0f} s: "
        f"{'met' if since_s <= SINCE_TARGET_S else 'not met'}"
    )
    print(f"{'figure':<42}{'value':>12}{'target':>12}  met")
    rows = (
        ("decision p99, InMemorySaver (ms)", mem_lat.pct(99), DECISION_P99_MS),
        ("decision p99, SqliteSaver (ms)", sql_lat.pct(99), DECISION_P99_MS),
        (f"lineage p99, {stored:,} stored (ms)", float(np.percentile(lin_ms, 99)), LINEAGE_P99_MS),
    )
    for name, value, target in rows:
        print(
            f"{name:<42}{value:>12.1f}{'<= ' + f'{target:.0f}':>12}  "
            f"{'yes' if value <= target else 'no'}"
        )
    print(f"{'provenance records/s, one per transaction':<42}{single_rate:>12,.0f}{'-':>12}  -")
    print(f"{'provenance records/s, 500 per transaction':<42}{bulk_rate:>12,.0f}{'-':>12}  -")


if __name__ == "__main__":
    main()
