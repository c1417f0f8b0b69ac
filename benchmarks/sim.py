"""Closed-loop benchmark: every shipped scenario, every policy, five seeds; and the loop's speed.

Starts a throwaway Neo4j (the project's launcher, temporary folder, free port), then for each
scenario under ``scenarios/`` runs the baselines (run-to-failure, preventive, reactive) and the
twin's agents (``twinkg``: the rule planner with look-ahead) on the same seeds, through
``api.sim_service.SimService.compare`` (each run recorded as a ``tk:SimulationRun``), and prints
per scenario the mean and 95 % interval of each KPI per policy, side by side.

Targets (issue 14), judged per scenario and printed as "met" / "not met":

- unplanned downtime of ``twinkg`` at least 30 % lower than the best baseline's (the baseline
  with the least unplanned downtime; where every policy has none, there is nothing to lower and
  the line says so);
- throughput of ``twinkg`` no more than 1 % lower than that baseline's;
- 0 applied actions that break a safety shape, in every run of every policy.

Speed with agents in the loop (the ``twinkg`` runs): simulated time over wall time, against the
targets TEP 48 h ≥ 1,000× and Net3 7 days ≥ 5,000×, with decisions per simulated day.

    python -m benchmarks.sim [--scenarios tep-a-feed-loss,net3-station-faults] [--seeds 1-5]
                             [--policies run-to-failure,preventive,reactive,twinkg] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.server import throwaway_store
from twinkg.api.settings import Settings
from twinkg.api.sim_service import (
    Comparison,
    ComparisonRow,
    open_sim_service,
    parse_policies,
    parse_seeds,
    shipped_scenarios,
)
from twinkg.sim.kpi import KPI_NAMES
from twinkg.sim.results import SimResult

BASELINES = ("run-to-failure", "preventive", "reactive")
TWIN = "twinkg"
DOWNTIME_CUT = 0.30  # at least 30 % less unplanned downtime than the best baseline
THROUGHPUT_LOSS = 0.01  # at most 1 % less throughput
SPEED = {"tep-a-feed-loss": 1_000.0, "net3-station-faults": 5_000.0}  # × real time, with agents


def _cell(row: ComparisonRow | None) -> str:
    if row is None or row.mean is None:
        return "n/a"
    if row.low is None or row.high is None or row.seeds < 2:
        return f"{row.mean:.4g}"
    return f"{row.mean:.4g} [{row.low:.4g}, {row.high:.4g}]"


def _row(comparison: Comparison, kpi: str, policy: str) -> ComparisonRow | None:
    return next((r for r in comparison.rows if r.kpi == kpi and r.policy == policy), None)


def _mean(comparison: Comparison, kpi: str, policy: str) -> float | None:
    row = _row(comparison, kpi, policy)
    return None if row is None else row.mean


def print_table(comparison: Comparison) -> None:
    """The KPI table of one scenario: a line per KPI, a column per policy."""
    width = 30
    head = f"{'KPI':<22}" + "".join(f"{p:>{width}}" for p in comparison.policies)
    print(head)
    for kpi in KPI_NAMES:
        unit = next((r.unit for r in comparison.rows if r.kpi == kpi and r.unit), "")
        label = f"{kpi} ({unit})" if unit else kpi
        cells = "".join(
            f" {_cell(_row(comparison, kpi, p)):>{width - 1}}" for p in comparison.policies
        )
        print(f"{label:<22}{cells}")


def judge(comparison: Comparison) -> list[str]:
    """The targets, each as one printed line ending in met / not met."""
    lines: list[str] = []
    baselines = [p for p in comparison.policies if p in BASELINES]
    if TWIN not in comparison.policies or not baselines:
        return ["targets: need twinkg and at least one baseline"]
    downtime = {p: _mean(comparison, "unplanned_downtime_h", p) for p in baselines}
    known = {p: v for p, v in downtime.items() if v is not None}
    twin_downtime = _mean(comparison, "unplanned_downtime_h", TWIN)
    if not known or twin_downtime is None:
        return ["targets: no downtime figures (every run failed?)"]
    best = min(known, key=lambda p: (known[p], baselines.index(p)))
    base = known[best]
    if base <= 0.0:
        lines.append(
            f"unplanned downtime: best baseline {best} has none, twinkg {twin_downtime:.3g} h: "
            + ("met (nothing to lower)" if twin_downtime <= 0.0 else "not met")
        )
    else:
        cut = 1.0 - twin_downtime / base
        verdict = "met" if cut >= DOWNTIME_CUT else "not met"
        lines.append(
            f"unplanned downtime: twinkg {twin_downtime:.3g} h vs best baseline {best} "
            f"{base:.3g} h: {cut:+.1%} lower (target ≥ {DOWNTIME_CUT:.0%}): {verdict}"
        )
    best_throughput = _mean(comparison, "throughput", best)
    twin_throughput = _mean(comparison, "throughput", TWIN)
    if best_throughput and twin_throughput is not None and best_throughput > 0:
        ratio = twin_throughput / best_throughput
        verdict = "met" if ratio >= 1.0 - THROUGHPUT_LOSS else "not met"
        lines.append(
            f"throughput: twinkg / {best} = {ratio:.4f} (target ≥ {1 - THROUGHPUT_LOSS:.2f}): "
            f"{verdict}"
        )
    unsafe = sum(
        r.kpis.unsafe_applied_actions
        for r in comparison.results
        if r.kpis is not None and not math.isnan(r.kpis.unsafe_applied_actions)
    )
    lines.append(
        f"applied actions that break a safety shape, all runs: {unsafe:g} (target 0): "
        + ("met" if unsafe == 0 else "not met")
    )
    failed = [r for r in comparison.results if r.status != "completed"]
    if failed:
        lines.append(f"failed runs: {len(failed)} (first: {failed[0].reason})")
    return lines


def speed(comparison: Comparison) -> list[str]:
    """Simulated over wall time of the twin's runs, with decisions per simulated day."""
    runs: Sequence[SimResult] = [
        r for r in comparison.results if r.policy == TWIN and r.status == "completed"
    ]
    if not runs:
        return []
    simulated = sum(r.simulated_s for r in runs)
    wall = sum(r.wall_s for r in runs)
    days = simulated / 86_400.0
    decisions = sum(len(r.decisions) for r in runs)
    factor = simulated / wall if wall > 0 else math.inf
    line = (
        f"speed with agents: {simulated / 3600 / len(runs):.1f} simulated h per run, "
        f"{wall / len(runs):.1f} s wall per run: {factor:,.0f}× real time; "
        f"{decisions / days:.2f} decisions per simulated day"
    )
    target = SPEED.get(comparison.scenario)
    if target is not None:
        line += f" (target ≥ {target:,.0f}×: {'met' if factor >= target else 'not met'})"
    return [line]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scenarios", default="", help="comma-separated names (default: all)")
    parser.add_argument("--seeds", default="1-5")
    parser.add_argument("--policies", default=",".join((*BASELINES, TWIN)))
    parser.add_argument("--horizon-h", type=float, default=None, help="shorten every scenario")
    parser.add_argument("--out", type=Path, default=None, help="where the plots go")
    args = parser.parse_args(argv)
    shipped = shipped_scenarios()
    names = [n for n in args.scenarios.split(",") if n] or sorted(shipped)
    unknown = [n for n in names if n not in shipped]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; shipped: {', '.join(sorted(shipped))}")
        return 2
    seeds = parse_seeds(args.seeds)
    policies = parse_policies(args.policies)
    out = args.out or Path(tempfile.mkdtemp(prefix="twinkg-sim-bench-"))
    with throwaway_store() as (store, home):
        settings = Settings(home=home / "twin")
        with open_sim_service(settings, store, twin_policies=TWIN in policies) as service:
            for name in names:
                comparison = service.compare(
                    shipped[name], policies, seeds, out, horizon_h=args.horizon_h
                )
                print(
                    f"\n== {comparison.scenario}@{comparison.scenario_version} "
                    f"({comparison.scenario_hash[:12]}), seeds {args.seeds}, "
                    f"mean [95 % interval]"
                )
                print_table(comparison)
                for line in (*judge(comparison), *speed(comparison)):
                    print(line)
                print(f"plots: {comparison.png} {comparison.svg}")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
