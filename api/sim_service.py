"""What-if simulation as a service, shared by the CLI, the HTTP API and the MCP tool.

:class:`SimService` runs a scenario under a policy for several seeds
(``api.sim_plants.run_scenario``; the twin's policies reach the twin through
``api.sim_port.TwinSimPort``), records every run in the graph (``api.sim_port.GraphRunRecorder``
over ``kg.sim_runs``, decision 0044), compares policies (KPI means with 95 % intervals from
``sim.kpi.summarize``, and the timelines drawn by ``sim.plot``) and reads recorded runs back.
:class:`SimJobs` runs such work in the background for the HTTP API and MCP, one job at a time, kept
in memory like the agent jobs (``api/http/jobs.py``).

Scenarios come from a file (the CLI), from the shipped ``scenarios/`` folder by name, or as TOML
text (HTTP and MCP, which never read a path a caller names). ``horizon_h`` shortens a run (for
a quick look, and the tests): the scenario is re-validated with it and its content hash, which
the run records, changes with it.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

import twinkg
import twinkg.sim
from twinkg.api.settings import Settings, sim_opcua_dir, telemetry_dir
from twinkg.kg import sim_runs
from twinkg.kg.sim_runs import SimRunRecord, SimRunSummary
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import (
    ConfigError,
    InvalidInputError,
    NotFoundError,
    ScenarioError,
    TwinKGError,
)
from twinkg.sim.kpi import KPI_NAMES, KpiResult, summarize
from twinkg.sim.policies import POLICIES, TWIN_POLICIES, check_policy
from twinkg.sim.results import SimResult
from twinkg.sim.scenario import Scenario, TimeSpec, load_scenario, parse_scenario

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from twinkg.api.sim_opcua import OpcUaPlantConfig

__all__ = [
    "MAX_SEEDS",
    "SCENARIO_DIR",
    "Comparison",
    "ComparisonRow",
    "SimJob",
    "SimJobs",
    "SimService",
    "parse_seeds",
    "result_summary",
    "shipped_scenarios",
]

MAX_SEEDS = 50
"""The most seeds one request may ask for."""
MAX_JOB_SEEDS = 10
"""The most seeds one background job (HTTP, MCP) may ask for."""
KEEP = 100
"""Background jobs kept in memory."""


def _scenario_dir() -> Path:
    """The shipped scenarios: ``twinkg/scenarios`` in an installed package, else the source
    tree's ``scenarios/`` beside the ``sim`` package."""
    installed = Path(twinkg.__file__).parent / "scenarios"
    if installed.is_dir():
        return installed
    return Path(twinkg.sim.__file__).resolve().parent.parent / "scenarios"


SCENARIO_DIR = _scenario_dir()
"""The scenarios shipped with TwinKG (``scenarios/*.toml``)."""

_log = logging.getLogger("twinkg.api")
_SEEDS = re.compile(r"\s*(\d{1,10})\s*(?:-\s*(\d{1,10})\s*)?")
_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

ProgressFn = Callable[[int, float], None]
"""Called with (seed, fraction of that seed's run done)."""


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds from ``"1-5"``, ``"1,3,7"``, ``"4"`` or a mix (``"1-3,7"``), in the order given;
    :class:`InvalidInputError` says what is wrong (a reversed range, a repeat, too many)."""
    seeds: list[int] = []
    if not text.strip():
        raise InvalidInputError("no seeds given (e.g. 1-5, 1,3,7 or 4)")
    for part in text.split(","):
        match = _SEEDS.fullmatch(part)
        if match is None:
            raise InvalidInputError(
                f"{part.strip()!r} is not a seed or a range of seeds (e.g. 1-5, 1,3,7 or 4)"
            )
        low = int(match.group(1))
        high = low if match.group(2) is None else int(match.group(2))
        if high < low:
            raise InvalidInputError(
                f"the seed range {low}-{high} runs backwards (write {high}-{low})"
            )
        if high - low + 1 > MAX_SEEDS:
            raise InvalidInputError(f"at most {MAX_SEEDS} seeds, not {high - low + 1}")
        seeds.extend(range(low, high + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise InvalidInputError(f"seeds repeat: {', '.join(map(str, repeated))}")
    if len(seeds) > MAX_SEEDS:
        raise InvalidInputError(f"at most {MAX_SEEDS} seeds, not {len(seeds)}")
    return tuple(seeds)


def parse_policies(text: str | Sequence[str]) -> tuple[str, ...]:
    """Policy names from ``"a,b"`` or a list; each must be known, none repeated."""
    names = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise InvalidInputError(f"no policy given (known: {', '.join(POLICIES)})")
    for name in names:
        check_policy(name)
    if len(set(names)) != len(names):
        raise InvalidInputError("a policy is named twice")
    return tuple(names)


def shipped_scenarios() -> dict[str, Path]:
    """The shipped scenarios by file stem."""
    if not SCENARIO_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}


def shipped_scenario(name: str) -> Path:
    """The shipped scenario ``name``; :class:`NotFoundError` listing them when there is none."""
    found = shipped_scenarios()
    if not _NAME.fullmatch(name) or name not in found:
        raise NotFoundError(f"no shipped scenario {name!r} (shipped: {', '.join(found) or 'none'})")
    return found[name]


def shortened(scenario: Scenario, horizon_h: float | None) -> Scenario:
    """``scenario`` with its horizon set to ``horizon_h`` (validated as in a file)."""
    if horizon_h is None:
        return scenario
    if not math.isfinite(horizon_h) or horizon_h <= 0:
        raise ScenarioError(f"{scenario.source}: --horizon-h must be a positive number of hours")
    try:
        time = TimeSpec.model_validate({**scenario.time.model_dump(), "horizon_h": horizon_h})
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ScenarioError(f"{scenario.source}: horizon {horizon_h:g} h: {reason}") from exc
    return scenario.model_copy(update={"time": time})


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def result_summary(result: SimResult) -> dict[str, Any]:
    """A run's result as plain JSON data (NaN KPIs as null)."""
    kpis = result.kpis
    return {
        "run": result.run,
        "scenario": result.scenario,
        "scenario_version": result.scenario_version,
        "scenario_hash": result.scenario_hash,
        "policy": result.policy,
        "seed": result.seed,
        "status": result.status,
        "reason": result.reason,
        "partial": result.partial,
        "kpis": {}
        if kpis is None
        else {name: _finite(value) for name, value in kpis.values().items()},
        "units": {} if kpis is None else dict(kpis.units),
        "decisions": list(result.decisions),
        "simulator": result.simulator,
        "simulator_version": result.simulator_version,
        "simulated_s": result.simulated_s,
    }


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One KPI under one policy across the seeds: mean and 95 % interval (None: no value)."""

    kpi: str
    policy: str
    unit: str
    mean: float | None
    low: float | None
    high: float | None
    seeds: int


@dataclass(frozen=True, slots=True)
class Comparison:
    """Policies compared on one scenario: a row per KPI × policy, the plots, every run."""

    scenario: str
    scenario_version: str
    scenario_hash: str
    policies: tuple[str, ...]
    seeds: tuple[int, ...]
    rows: tuple[ComparisonRow, ...]
    png: Path
    svg: Path
    results: tuple[SimResult, ...]


# ----------------------------------------------------------------------------- the service


@dataclass
class SimService:
    """Runs, compares and reads back simulated runs over one store.

    ``checkpointer`` is needed only by the twin's policies (their agents checkpoint); without
    one they are a :class:`ConfigError`.
    """

    settings: Settings
    store: GraphStore
    checkpointer: BaseCheckpointSaver[Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def load(self, path: str | Path, *, horizon_h: float | None = None) -> Scenario:
        """A scenario file, shortened to ``horizon_h`` when given."""
        return shortened(load_scenario(path), horizon_h)

    def run(
        self,
        scenario: str | Path | Scenario,
        policy: str,
        seeds: Sequence[int],
        progress: ProgressFn | None = None,
        *,
        horizon_h: float | None = None,
        opcua: OpcUaPlantConfig | None = None,
    ) -> list[SimResult]:
        """Run ``scenario`` (a file or a loaded scenario) under ``policy``, once per seed,
        each recorded in the graph; the results in seed order. With ``opcua`` (see
        :meth:`opcua_config`) each run's plant is served over OPC UA (decision 0061)."""
        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        loaded = shortened(loaded, horizon_h)
        check_policy(policy)
        if not seeds:
            raise InvalidInputError("no seeds given")
        from twinkg.api.sim_plants import run_scenario  # noqa: PLC0415 - loads the simulators
        from twinkg.api.sim_port import GraphRunRecorder  # noqa: PLC0415

        recorder = GraphRunRecorder(self.store)
        results = []
        with self._lock:  # one simulated run at a time per service (agents, checkpointer)
            for seed in seeds:
                report = None if progress is None else _seed_progress(progress, seed)
                port = self._port() if policy in TWIN_POLICIES else None
                results.append(
                    run_scenario(
                        loaded,
                        policy=policy,
                        seed=seed,
                        port=port,
                        recorder=recorder,
                        progress=report,
                        lookahead_workers=self.settings.sim_lookahead_workers,
                        opcua=opcua,
                    )
                )
        return results

    def opcua_config(self, *, port: int = 0, trusted: Sequence[Path] = ()) -> OpcUaPlantConfig:
        """How a run's plant is served over OPC UA: on loopback ``port`` (0: a free one), with
        the credentials under ``HOME/opcua/sim`` and ``trusted`` client certificates besides the
        run's own client."""
        from twinkg.api.sim_opcua import OpcUaPlantConfig  # noqa: PLC0415 - loads asyncua

        return OpcUaPlantConfig(
            directory=sim_opcua_dir(self.settings),
            port=port,
            trusted=tuple(trusted),
            timeout_s=self.settings.sim_opcua_timeout_s,
        )

    def compare(
        self,
        scenario: str | Path | Scenario,
        policies: Sequence[str],
        seeds: Sequence[int],
        out_dir: str | Path,
        progress: Callable[[str, int, float], None] | None = None,
        *,
        horizon_h: float | None = None,
    ) -> Comparison:
        """Run every policy for every seed and compare: KPI mean and 95 % interval per policy
        (Student's t across seeds; failed runs' partial KPIs are left out) and the timelines
        plotted to ``out_dir/<scenario>.png`` and ``.svg``."""
        from twinkg.sim.plot import plot_timelines  # noqa: PLC0415 - loads matplotlib

        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        loaded = shortened(loaded, horizon_h)
        names = parse_policies(policies)
        everything: list[SimResult] = []
        by_policy: dict[str, list[KpiResult]] = {}
        for policy in names:
            report = None
            if progress is not None:
                report = _policy_progress(progress, policy)
            results = self.run(loaded, policy, seeds, report)
            everything += results
            by_policy[policy] = [
                r.kpis for r in results if r.kpis is not None and r.status == "completed"
            ]
        rows: list[ComparisonRow] = []
        plotted = {p: runs for p, runs in by_policy.items() if runs}
        for policy, kpis in by_policy.items():
            summary = summarize(kpis) if kpis else {}
            units = kpis[0].units if kpis else {}
            for name in KPI_NAMES:
                mean, low, high = summary.get(name, (math.nan, math.nan, math.nan))
                rows.append(
                    ComparisonRow(
                        name,
                        policy,
                        units.get(name, ""),
                        _finite(mean),
                        _finite(low),
                        _finite(high),
                        len(kpis),
                    )
                )
        if not plotted:
            raise InvalidInputError("every run failed: nothing to compare")
        png, svg = plot_timelines(
            plotted, out_dir, loaded.name, title=f"{loaded.name}@{loaded.version}"
        )
        return Comparison(
            scenario=loaded.name,
            scenario_version=loaded.version,
            scenario_hash=loaded.content_hash,
            policies=names,
            seeds=tuple(seeds),
            rows=tuple(rows),
            png=png,
            svg=svg,
            results=tuple(everything),
        )

    def runs(self, *, limit: int = 50) -> list[SimRunSummary]:
        """The recorded runs, newest first."""
        return sim_runs.list_runs(self.store, limit=limit)

    def show(self, run: str) -> SimRunRecord:
        """One recorded run (its IRI, or its id: the part after ``sim/``);
        :class:`NotFoundError` when there is none."""
        iri = run if run.startswith(("http://", "https://")) else f"{_SIM_BASE}{run}/run"
        record = sim_runs.get_run(self.store, iri)
        if record is None:
            raise NotFoundError(f"no simulation run {run!r} in the graph")
        return record

    def _port(self) -> Any:
        if self.checkpointer is None:
            raise ConfigError("the twin's policies need the agents' checkpointer; none is open")
        from twinkg.api.sim_port import TwinSimPort  # noqa: PLC0415

        return TwinSimPort(
            store=self.store,
            log=TelemetryLog(telemetry_dir(self.settings)),
            checkpointer=self.checkpointer,
            settings=self.settings,
        )


_SIM_BASE = "https://w3id.org/twinkg/sim/"


def _seed_progress(progress: ProgressFn, seed: int) -> Callable[[float], None]:
    def report(fraction: float) -> None:
        progress(seed, fraction)

    return report


def _policy_progress(progress: Callable[[str, int, float], None], policy: str) -> ProgressFn:
    def report(seed: int, fraction: float) -> None:
        progress(policy, seed, fraction)

    return report


@contextmanager
def open_sim_service(
    settings: Settings, store: GraphStore, *, twin_policies: bool
) -> Iterator[SimService]:
    """A service over ``store``; with ``twin_policies`` the agents' checkpointer is opened
    too (and closed after)."""
    with ExitStack() as stack:
        saver = None
        if twin_policies:
            from twinkg.api.resources import open_checkpointer  # noqa: PLC0415

            saver = stack.enter_context(open_checkpointer(settings))
        yield SimService(settings, store, checkpointer=saver)


# ----------------------------------------------------------------------------- background jobs


@dataclass
class SimJob:
    """A background what-if run: its request, state, progress and results."""

    job_id: str
    scenario: str
    policy: str
    seeds: tuple[int, ...]
    started_by: str
    created_at: str
    state: str = "queued"  # queued | running | done | failed
    progress: float = 0.0  # of all seeds together
    finished_at: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        """Done or failed."""
        return self.state in ("done", "failed")


class SimJobs:
    """Background what-if runs of this process, one at a time, the newest :data:`KEEP` kept."""

    def __init__(self, service: SimService) -> None:
        self._service = service
        self._jobs: OrderedDict[str, SimJob] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twinkg-sim")

    @property
    def service(self) -> SimService:
        """The service the jobs run on."""
        return self._service

    @staticmethod
    def scenario_from(name: str | None, toml: str | None) -> Scenario:
        """The scenario of a request: a shipped one by name, or TOML text (exactly one)."""
        if (name is None) == (toml is None):
            raise InvalidInputError("give exactly one of: a shipped scenario's name, TOML text")
        if name is not None:
            return load_scenario(shipped_scenario(name))
        assert toml is not None
        _refuse_server_files(toml)  # before parsing: parsing reads the model file it names
        return parse_scenario(toml, "<upload>")

    def start(
        self,
        scenario: Scenario,
        *,
        policy: str,
        seeds: Sequence[int],
        by: str,
        horizon_h: float | None = None,
    ) -> SimJob:
        """Check the request and queue the job; it is returned at once."""
        check_policy(policy)
        scenario = shortened(scenario, horizon_h)
        if not seeds:
            raise InvalidInputError("no seeds given")
        if len(seeds) > MAX_JOB_SEEDS:
            raise InvalidInputError(f"at most {MAX_JOB_SEEDS} seeds per job, not {len(seeds)}")
        if policy in TWIN_POLICIES and self._service.checkpointer is None:
            raise ConfigError("the twin's policies need the agents' checkpointer; none is open")
        now = datetime.now(UTC).isoformat()
        job = SimJob(uuid.uuid4().hex[:20], scenario.name, policy, tuple(seeds), by, now)
        with self._lock:
            self._jobs[job.job_id] = job
            while len(self._jobs) > KEEP:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, scenario)
        return job

    def get(self, job_id: str) -> SimJob:
        """A job by id; :class:`NotFoundError` when this process has none by that id."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no simulation job {job_id!r} here (jobs are kept in memory)")
        return job

    def list(self) -> list[SimJob]:
        """The jobs kept, newest first."""
        with self._lock:
            return list(reversed(self._jobs.values()))

    def close(self) -> None:
        """Wait for the running job; queued ones are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, job: SimJob, scenario: Scenario) -> None:
        with self._lock:
            job.state = "running"
        done = 0

        def report(_: int, fraction: float) -> None:
            with self._lock:
                job.progress = (done + fraction) / len(job.seeds)

        try:
            for seed in job.seeds:
                result = self._service.run(scenario, job.policy, [seed], report)[0]
                done += 1
                with self._lock:
                    job.results.append(result_summary(result))
                    job.progress = done / len(job.seeds)
        except TwinKGError as exc:
            self._finish(job, "failed", {"code": exc.code, "message": " ".join(str(exc).split())})
            return
        except Exception:  # a job must end visibly, whatever happened
            _log.exception("simulation job %s failed", job.job_id)
            message = "an unexpected error; it has been logged"
            self._finish(job, "failed", {"code": "internal_error", "message": message})
            return
        self._finish(job, "done", None)

    def _finish(self, job: SimJob, state: str, error: dict[str, Any] | None) -> None:
        with self._lock:
            job.state, job.error = state, error
            job.finished_at = datetime.now(UTC).isoformat()


def _refuse_server_files(toml: str) -> None:
    """An uploaded scenario may run a wntr library network or TEP, never a file of the
    server's (an ``.inp`` or ``.fmu`` path): :class:`ScenarioError` otherwise. Malformed TOML
    is left to :func:`parse_scenario`, which names the line."""
    import tomllib  # noqa: PLC0415

    from twinkg.sim.scenario import epanet_library  # noqa: PLC0415

    try:
        plant = tomllib.loads(toml).get("plant")
    except tomllib.TOMLDecodeError:
        return
    if not isinstance(plant, dict):
        return
    kind, model = plant.get("kind"), plant.get("model")
    if kind == "tep" or (kind == "epanet" and isinstance(model, str) and model in epanet_library()):
        return
    if kind in ("epanet", "fmu"):
        raise ScenarioError(
            "<upload>: plant.model: an uploaded scenario may run a wntr library network "
            f"({', '.join(epanet_library())}) or tep, not a file on the server"
        )
