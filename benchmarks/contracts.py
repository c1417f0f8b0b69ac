"""Telemetry-contract benchmark: the compiled numpy checks against pySHACL, same records.

Generates ``--records`` telemetry points (default 100,000; 5 % broken in every way the generator
knows), then:

1. compiled: checks all of them with the compiled contract (best of ``--repeat`` runs; the
   JSON-to-columns parse is timed apart, it is not validation);
2. pySHACL: validates ``--sample`` records (default 500, about a minute: enough to time) as RDF
   against the same contract;
3. agreement: the compiled checks on that same sample must give pySHACL's verdict for every
   record and every constraint, or the benchmark fails.

Prints records/s for each and the ratio. Targets (issue #3): compiled ≥ 1,000,000 records/s;
ratio ≥ 1,000.

    python benchmarks/contracts.py [--records 100000] [--sample 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

from rdflib import Graph, URIRef

from twinkg import shapes
from twinkg.graph_seed.telemetry import Telemetry, generate
from twinkg.ontology.namespaces import INGEST_BASE
from twinkg.reasoner.compiled import CompiledContract, compile_contract
from twinkg.reasoner.points import from_records
from twinkg.reasoner.telemetry_rdf import points_graph
from twinkg.reasoner.validation import validate

CONTRACT = Path(shapes.__file__).parent / "contracts" / "telemetry" / "1.0.0.ttl"
Verdicts = list[frozenset[tuple[str, str, str | None]]]


def compiled_verdicts(contract: CompiledContract, data: Telemetry) -> tuple[Verdicts, float]:
    """Per-record failed constraints, and the seconds the checks took (parse excluded)."""
    batch = from_records(data.records)
    started = time.perf_counter()
    result = contract.check(batch, data.sensors, latest_acceptable_ns=data.latest_acceptable_ns)
    seconds = time.perf_counter() - started
    verdicts = [
        frozenset(c.key for c, hit in zip(result.constraints, row, strict=True) if hit)
        for row in result.failures
    ]
    return verdicts, seconds


def pyshacl_verdicts(shapes_graph: Graph, data: Telemetry) -> tuple[Verdicts, float]:
    """Per-record failed constraints as pySHACL reports them, and the seconds it took."""
    graph, iris = points_graph(
        data.records,
        data.sensors,
        batch=URIRef(f"{INGEST_BASE}bench/batch"),
        latest_acceptable_ns=data.latest_acceptable_ns,
    )
    started = time.perf_counter()
    outcome = validate(graph, shapes_graph)
    seconds = time.perf_counter() - started
    found: dict[str, set[tuple[str, str, str | None]]] = defaultdict(set)
    for v in outcome.violations:
        found[v.focus_node].add((v.source_shape, v.component, v.source_constraint))
    return [frozenset(found.get(str(i), set())) for i in iris], seconds


def main() -> None:
    """Time both paths and print the figures side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("rdflib.term").setLevel(logging.ERROR)  # ill-typed literals are on purpose

    shapes_graph = Graph().parse(CONTRACT)
    contract = compile_contract(shapes_graph)
    data = generate(args.records, sensors=50, invalid_share=0.05, seed=1)
    started = time.perf_counter()
    batch = from_records(data.records)
    parse_s = time.perf_counter() - started
    runs = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = contract.check(batch, data.sensors, latest_acceptable_ns=data.latest_acceptable_ns)
        runs.append(time.perf_counter() - t0)
    compiled_s = min(runs)
    rejected = int(result.rejected.sum())

    sample = generate(args.sample, sensors=50, invalid_share=0.05, seed=1)
    expected, shacl_s = pyshacl_verdicts(shapes_graph, sample)
    actual, _ = compiled_verdicts(contract, sample)
    disagreements = sum(e != a for e, a in zip(expected, actual, strict=True))

    compiled_rate = args.records / compiled_s
    shacl_rate = args.sample / shacl_s
    print(f"contract: {CONTRACT.name}, {len(contract.constraints)} compiled constraints")
    print(f"{'path':<38}{'records':>10}{'seconds':>10}{'records/s':>14}")
    print(
        f"{'compiled numpy (best of ' + str(args.repeat) + ')':<38}"
        f"{args.records:>10,}{compiled_s:>10.3f}{compiled_rate:>14,.0f}"
    )
    print(f"{'pySHACL (reference)':<38}{args.sample:>10,}{shacl_s:>10.2f}{shacl_rate:>14,.0f}")
    print(f"ratio compiled/pySHACL: {compiled_rate / shacl_rate:,.0f}x (target >= 1,000)")
    print(
        f"compiled target >= 1,000,000 records/s: "
        f"{'met' if compiled_rate >= 1_000_000 else 'NOT met'}"
    )
    print(
        f"rejected by the compiled checks: {rejected:,} of {args.records:,}; "
        f"JSON-to-columns parse (not validation): {args.records / parse_s:,.0f} records/s"
    )
    print(
        f"verdicts on the {args.sample:,}-record sample: "
        f"{args.sample - disagreements:,} identical, {disagreements} different"
    )
    if disagreements:
        sys.exit(1)


if __name__ == "__main__":
    main()
