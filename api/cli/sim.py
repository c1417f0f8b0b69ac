"""``twinkg sim …``: run what-if scenarios on simulated plants, compare policies, read runs back.

Every run is recorded in the graph (``tk:SimulationRun`` with its scenario, versions, KPIs and the
decisions it informed; decision 0044), so ``twinkg sim show`` and SPARQL find it later. Bad
input (a scenario file that does not validate, an unknown policy, seeds like ``5-1``) is one line
on stderr and a non-zero exit, before any simulator starts.
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twinkg.api.cli.common import errors_as_exit_codes, load_settings, open_store, out
from twinkg.api.cli.progress import ProgressOption, phase_bars
from twinkg.api.sim_service import (
    Comparison,
    open_sim_service,
    parse_policies,
    parse_seeds,
    shortened,
)
from twinkg.sim.kpi import KPI_NAMES
from twinkg.sim.policies import TWIN_POLICIES, check_policy
from twinkg.sim.results import SimResult
from twinkg.sim.scenario import load_scenario

app = typer.Typer(help="What-if simulation: run scenarios, compare policies, read runs back.")

HorizonOption = Annotated[
    float | None,
    typer.Option(
        "--horizon-h",
        help="simulate only this many hours (a quick look; the run records the shortened "
        "scenario and its hash)",
    ),
]
SeedsOption = Annotated[
    str | None,
    typer.Option(help="seeds: 1-5, 1,3,7 or 4 (default: the scenario's own)"),
]
OverOption = Annotated[
    str,
    typer.Option(
        help="how the loop reaches the plant: process (in this process) or opcua (served as an "
        "OPC UA server on loopback, Basic256Sha256 SignAndEncrypt, stepped as a client)"
    ),
]
OpcUaPortOption = Annotated[
    int,
    typer.Option(min=0, max=65535, help="with --over opcua: serve on this port (0: a free one)"),
]
TrustOption = Annotated[
    list[Path] | None,
    typer.Option(help="an OPC UA client certificate (DER or PEM) the served plant also trusts"),
]
_STEPS = 1000


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def _unit(unit: str) -> str:
    return "" if unit == "1" else f" {unit}"


def _print_result(result: SimResult) -> None:
    head = f"seed {result.seed}  {result.status}"
    if result.partial:
        head += " (partial)"
    out.print(f"{head}  run {result.run}", markup=False)
    if result.reason:
        out.print(f"  reason: {result.reason}", markup=False)
    if result.kpis is not None:
        values = result.kpis.values()
        units = result.kpis.units
        shown = "  ".join(
            f"{name}={_number(values[name])}{_unit(units.get(name, '1'))}" for name in KPI_NAMES
        )
        out.print(f"  {shown}", markup=False)
    if result.decisions:
        out.print(f"  decisions: {len(result.decisions)}", markup=False)


@app.command("run")
@errors_as_exit_codes
def run_command(  # noqa: PLR0917 - one parameter per option
    scenario: Annotated[Path, typer.Option(help="the scenario file (TOML)")],
    policy: Annotated[str, typer.Option(help="run-to-failure, preventive, reactive, twinkg, …")],
    seeds: SeedsOption = None,
    horizon_h: HorizonOption = None,
    progress: ProgressOption = None,
    over: OverOption = "process",
    opcua_port: OpcUaPortOption = 0,
    trust: TrustOption = None,
) -> None:
    """Run a scenario under one policy, once per seed; print each run's KPIs and IRI."""
    check_policy(policy)
    if over != "process":
        from twinkg.api.sim_opcua import check_over  # noqa: PLC0415 - loads asyncua

        check_over(over)
    picked = None if seeds is None else parse_seeds(seeds)
    loaded = shortened(load_scenario(scenario), horizon_h)
    settings = load_settings()
    with (
        open_store(settings) as store,
        open_sim_service(settings, store, twin_policies=policy in TWIN_POLICIES) as service,
        phase_bars(progress) as bars,
    ):
        opcua = None
        if over == "opcua":
            opcua = service.opcua_config(port=opcua_port, trusted=trust or [])
        results = service.run(
            loaded,
            policy,
            picked or loaded.run.seeds,
            lambda seed, f: bars(f"{policy} seed {seed}", round(f * _STEPS), _STEPS),
            opcua=opcua,
        )
    for result in results:
        _print_result(result)


def _print_comparison(comparison: Comparison) -> None:
    table = Table(
        title=f"{comparison.scenario}@{comparison.scenario_version} "
        f"(seeds {', '.join(map(str, comparison.seeds))}): mean [95 % interval]"
    )
    table.add_column("KPI", no_wrap=True)
    table.add_column("unit")
    for policy in comparison.policies:
        table.add_column(policy, justify="right")
    by_key = {(row.kpi, row.policy): row for row in comparison.rows}
    for name in KPI_NAMES:
        unit = next((r.unit for r in comparison.rows if r.kpi == name and r.unit), "")
        cells = []
        for policy in comparison.policies:
            row = by_key[(name, policy)]
            cells.append(f"{_number(row.mean)} [{_number(row.low)}, {_number(row.high)}]")
        table.add_row(name, unit, *cells)
    # wide enough for every cell on one line, also when stdout is not a terminal (80 columns)
    out.print(table, width=max(out.width, 40 + 28 * len(comparison.policies)))
    failed = [r for r in comparison.results if r.status != "completed"]
    for result in failed:
        out.print(
            f"left out: {result.policy} seed {result.seed} {result.status}: {result.reason}",
            markup=False,
        )
    out.print(f"plots: {comparison.png} {comparison.svg}", markup=False)


@app.command("compare")
@errors_as_exit_codes
def compare_command(  # noqa: PLR0917 - one parameter per option
    scenario: Annotated[Path, typer.Argument(help="the scenario file (TOML)")],
    policies: Annotated[
        str, typer.Option(help="comma-separated, e.g. run-to-failure,preventive,reactive,twinkg")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the plots")],
    seeds: SeedsOption = None,
    horizon_h: HorizonOption = None,
    progress: ProgressOption = None,
) -> None:
    """Run several policies on one scenario and compare their KPIs (mean and 95 % interval
    across seeds) in a table, with the KPI timelines plotted as PNG and SVG."""
    names = parse_policies(policies)
    picked = None if seeds is None else parse_seeds(seeds)
    loaded = shortened(load_scenario(scenario), horizon_h)
    settings = load_settings()
    twin = any(p in TWIN_POLICIES for p in names)
    with (
        open_store(settings) as store,
        open_sim_service(settings, store, twin_policies=twin) as service,
        phase_bars(progress) as bars,
    ):
        comparison = service.compare(
            loaded,
            names,
            picked or loaded.run.seeds,
            out_dir,
            lambda p, seed, f: bars(f"{p} seed {seed}", round(f * _STEPS), _STEPS),
        )
    _print_comparison(comparison)


@app.command("runs")
@errors_as_exit_codes
def runs_command(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 50,
) -> None:
    """The recorded simulation runs, newest first, one line each."""
    settings = load_settings()
    with (
        open_store(settings) as store,
        open_sim_service(settings, store, twin_policies=False) as service,
    ):
        runs = service.runs(limit=limit)
    if not runs:
        out.print("no simulation runs recorded")
        return
    for run in runs:
        status = (run.status or "?") + (" (partial)" if run.partial else "")
        seed = "" if run.seed is None else str(run.seed)
        out.print(
            f"{run.run}  {run.scenario}@{run.scenario_version}  {run.policy}  seed {seed}  "
            f"{status}  {run.started_at or ''}",
            markup=False,
        )


@app.command("show")
@errors_as_exit_codes
def show_command(
    run: Annotated[str, typer.Argument(help="the run's IRI, or its id (after sim/)")],
) -> None:
    """One recorded run: scenario and hash, seed, versions, KPIs and decisions."""
    settings = load_settings()
    with (
        open_store(settings) as store,
        open_sim_service(settings, store, twin_policies=False) as service,
    ):
        record = service.show(run)
    s = record.summary
    lines = [
        f"run        {s.run}",
        f"scenario   {s.scenario}@{s.scenario_version} ({record.scenario_file})",
        f"hash       {s.scenario_hash}",
        f"policy     {s.policy}   seed {s.seed}",
        f"status     {s.status}{' (partial)' if s.partial else ''}"
        + (f": {s.reason}" if s.reason else ""),
        f"started    {s.started_at}   ended {s.ended_at or '-'}",
        f"simulator  {record.simulator} {record.simulator_version}   horizon "
        f"{_number(None if record.horizon_s is None else record.horizon_s / 3600)} h, step "
        f"{_number(record.step_s)} s",
        f"versions   twinkg {record.twinkg_version}, ontology {record.ontology_version}, "
        f"shapes {record.shapes_version}",
    ]
    for line in lines:
        out.print(line, markup=False)
    for name, (value, unit) in record.kpis.items():
        out.print(f"kpi        {name} = {_number(value)} {unit}", markup=False)
    out.print(f"decisions  {len(record.decisions)}", markup=False)
    for decision in record.decisions:
        out.print(f"  {decision}", markup=False)


@app.command("serve")
@errors_as_exit_codes
def serve_command(  # noqa: PLR0917 - one parameter per option
    scenario: Annotated[Path, typer.Argument(help="the scenario file (TOML)")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="the OPC UA port")] = 4841,
    host: Annotated[str, typer.Option(help="the address to listen on")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(min=0, help="the seed the plant is built for")] = 1,
    trust: TrustOption = None,
    horizon_h: HorizonOption = None,
) -> None:
    """Serve a scenario's plant as an OPC UA server until Ctrl-C, for an external client that
    steps it (Instantiate, Step, Snapshot/Restore) or subscribes to its outputs."""
    from twinkg.api.settings import sim_opcua_dir  # noqa: PLC0415
    from twinkg.api.sim_opcua import OpcUaPlantConfig, ServedScenario, serve_scenario  # noqa: PLC0415

    loaded = shortened(load_scenario(scenario), horizon_h)
    settings = load_settings()
    config = OpcUaPlantConfig(
        directory=sim_opcua_dir(settings),
        host=host,
        port=port,
        trusted=tuple(trust or ()),
        timeout_s=settings.sim_opcua_timeout_s,
    )
    stop = threading.Event()

    def ready(served: ServedScenario) -> None:
        for line in (
            f"serving    {loaded.name}@{loaded.version} plant {served.plant!r} at {served.url}",
            "security   Basic256Sha256 SignAndEncrypt",
            f"server     {served.server_cert}",
            f"client     {served.client_cert} (key {served.client_key}, URI {served.client_uri})",
            f"instantiate parameters={served.parameters} seed=<uint32>",
            f"step       dt={served.step_s:g} s, {served.steps} steps for the scenario's horizon",
            "Ctrl-C stops",
        ):
            out.print(line, markup=False, soft_wrap=True)

    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        steps = serve_scenario(loaded, config, seed=seed, ready=ready, stop=stop)
    finally:
        signal.signal(signal.SIGTERM, previous)
    out.print(f"stopped after {steps} steps", markup=False)
