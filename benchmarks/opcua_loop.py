"""The closed loop in process and over OPC UA (decision 0061): steps per second side by side.

For each scenario the same seed runs under a baseline policy twice: with the plant in this
process (the anchor), and with the plant served by asyncua's server on a loopback port
(Basic256Sha256 SignAndEncrypt) and stepped through ``sim.opcua.remote``. It prints both loops'
steps per wall second, their ratio, the one-off cost of serving and connecting, and whether the
two runs' KPIs are identical (they must be: the values cross the wire bit for bit). No Neo4j is
needed: the baselines act on the plant directly.

    python -m benchmarks.opcua_loop [--scenarios net1-pump-wear,tep-a-feed-loss]
                                    [--policy reactive] [--seed 1] [--horizon-h H]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from twinkg.api.sim_opcua import OpcUaPlantConfig, over_opcua
from twinkg.api.sim_plants import build, loop_config
from twinkg.api.sim_service import shipped_scenario, shortened
from twinkg.sim.loop import run_plant, run_prefix
from twinkg.sim.results import SimResult
from twinkg.sim.scenario import Scenario, load_scenario


def _run(scenario: Scenario, policy: str, seed: int, opcua: OpcUaPlantConfig | None) -> SimResult:
    run_id = f"bench-opcua-{scenario.name}"
    plant = build(scenario, seed=seed, base=run_prefix(run_id), twin=False)
    config = loop_config(scenario, seed=seed)
    if opcua is None:
        result, _ = run_plant(
            plant, config, policy=policy, seed=seed, port=None, recorder=None, run_id=run_id
        )
        return result
    with over_opcua(plant, opcua) as served:
        result, _ = run_plant(
            served, config, policy=policy, seed=seed, port=None, recorder=None, run_id=run_id
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 1 when a run failed or the two arms' KPIs differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="net1-pump-wear,tep-a-feed-loss")
    parser.add_argument("--policy", default="reactive")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--horizon-h", type=float, default=None)
    args = parser.parse_args(argv)
    print(
        f"{'scenario':<24}{'steps':>7}{'in process':>14}{'over OPC UA':>14}{'ratio':>8}"
        f"{'serve+connect':>15}  same KPIs"
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="twinkg-bench-opcua-") as folder:
        opcua = OpcUaPlantConfig(directory=Path(folder))
        for name in args.scenarios.split(","):
            scenario = shortened(load_scenario(shipped_scenario(name.strip())), args.horizon_h)
            steps = round(scenario.time.horizon_s / scenario.time.step_s)
            local = _run(scenario, args.policy, args.seed, None)
            started = time.perf_counter()
            wire = _run(scenario, args.policy, args.seed, opcua)
            setup_s = time.perf_counter() - started - wire.wall_s
            same = local.kpis is not None and wire.kpis is not None
            same = same and local.kpis.values() == wire.kpis.values()  # type: ignore[union-attr]
            ok = ok and same and local.status == wire.status == "completed"
            print(
                f"{scenario.name:<24}{steps:>7}{steps / local.wall_s:>12.0f}/s"
                f"{steps / wire.wall_s:>12.0f}/s{wire.wall_s / local.wall_s:>7.1f}x"
                f"{setup_s:>14.2f}s  {'yes' if same else 'NO'}"
            )
            for result in (local, wire):
                if result.status != "completed":
                    print(f"  {result.status}: {result.reason}")
    print("ratio: the OPC UA loop's wall time over the in-process loop's (the anchor)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
