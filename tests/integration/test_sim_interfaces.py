"""What-if simulation through its interfaces, end to end on the real Neo4j: the ``twinkg sim``
commands (run, compare, runs, show), the HTTP routes (``/sim/runs``) and the MCP tools
(``start_what_if_run``, ``what_if_run``) on a tiny Net1 scenario (two simulated hours after a
day's warm-up), their documented errors for bad input, and the roles (a viewer cannot start a
run)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from neo4j import Driver
from starlette.applications import Starlette
from starlette.routing import Mount
from typer.testing import CliRunner

from tests.conftest import Neo4jTarget
from tests.integration.api_world import ApiWorld, api_world
from tests.integration.test_cli import run
from tests.integration.test_mcp import Served, _body, _call, _error_code
from twinkg.api.cli.main import app as cli_app
from twinkg.api.mcp.server import create_mcp_app
from twinkg.api.security import Authenticator, KeyStore, Role
from twinkg.api.settings import Settings
from twinkg.api.sim_service import SimJobs, SimService
from twinkg.api.twin import Twin
from twinkg.kg.store import GraphStore
from twinkg.sim.kpi import KPI_NAMES

pytestmark = pytest.mark.neo4j

TINY = """\
schema = "twinkg-scenario/1"
name = "net1-tiny"
version = "1.0.0"
description = "Net1, two hours after the warm-up, the pump worn from the start."

[plant]
kind = "epanet"
model = "Net1"

[time]
horizon_h = 26.0
step_s = 900.0
telemetry_s = 900.0
decide_s = 3600.0
warmup_h = 24.0

[[fault]]
kind = "pump_wear"
target = "9"
at_h = 24.0
magnitude = 3.0

[run]
seeds = [1, 2]
"""
BROKEN = TINY.replace("step_s = 900.0", 'step_s = "fast"')
BROKEN_LINE = BROKEN.splitlines().index('step_s = "fast"') + 1


@pytest.fixture(scope="module")
def cli_env(neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("sim-cli")
    return {**neo4j_target.env(), "TWINKG_HOME": str(home)}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenarios") / "net1-tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


def _runs(driver: Driver, policy: str) -> list[dict[str, Any]]:
    records, _, _ = driver.execute_query(
        "MATCH (r:SimulationRun {policy: $policy})-[:SCENARIO]->(s:Scenario) "
        "RETURN r.uri AS run, r.simulationSeed AS seed, r.runStatus AS status, "
        "s.contentHash AS hash, COUNT { (:KPIResult)-[:KPI_OF]->(r) } AS kpis ORDER BY seed",
        policy=policy,
    )
    return [r.data() for r in records]


def test_cli_runs_records_shows_and_lists(
    cli_env: dict[str, str], scenario: Path, driver: Driver
) -> None:
    done = run(
        "sim",
        "run",
        "--scenario",
        str(scenario),
        "--policy",
        "reactive",
        "--seeds",
        "1-2",
        "--no-progress",
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("seed ")]
    assert [line.split()[:3] for line in lines] == [
        ["seed", "1", "completed"],
        ["seed", "2", "completed"],
    ]
    iris = [line.split("run ", 1)[1].strip() for line in lines]
    assert "availability=" in done.stdout and "unplanned_downtime_h=" in done.stdout
    recorded = _runs(driver, "reactive")
    assert [r["run"] for r in recorded] == iris
    assert [r["seed"] for r in recorded] == [1, 2]
    assert all(r["status"] == "completed" and r["kpis"] >= 5 for r in recorded)
    assert len({r["hash"] for r in recorded}) == 1

    shown = run("sim", "show", iris[0], env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert recorded[0]["hash"] in shown.stdout and "net1-tiny@1.0.0" in shown.stdout
    assert "kpi        availability = " in shown.stdout and "seed 1" in shown.stdout

    listed = run("sim", "runs", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    assert all(f"{iri}  net1-tiny@1.0.0  reactive" in listed.stdout for iri in iris)

    # --horizon-h shortens the run: another scenario hash, and the horizon it ran
    short = run(
        "sim",
        "run",
        "--scenario",
        str(scenario),
        "--policy",
        "run-to-failure",
        "--seeds",
        "3",
        "--horizon-h",
        "25",
        "--no-progress",
        env=cli_env,
    )
    assert short.returncode == 0, short.stderr
    (one,) = _runs(driver, "run-to-failure")
    assert one["hash"] != recorded[0]["hash"]
    records, _, _ = driver.execute_query(
        "MATCH (r:SimulationRun {uri: $run}) RETURN r.horizon AS h", run=one["run"]
    )
    assert records[0]["h"] == 25 * 3600.0


def test_cli_compare_prints_the_table_and_plots(
    cli_env: dict[str, str], scenario: Path, tmp_path: Path
) -> None:
    done = run(
        "sim",
        "compare",
        str(scenario),
        "--policies",
        "run-to-failure,preventive",
        "--seeds",
        "1,2",
        "--out",
        str(tmp_path / "plots"),
        "--progress",
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr
    for name in KPI_NAMES:
        assert name in done.stdout, name
    assert "run-to-failure" in done.stdout and "preventive" in done.stdout
    png, svg = tmp_path / "plots" / "net1-tiny.png", tmp_path / "plots" / "net1-tiny.svg"
    assert f"plots: {png} {svg}" in " ".join(done.stdout.split())
    assert png.read_bytes()[:4] == b"\x89PNG" and svg.stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--policy", "always-lucky", "--seeds", "1"], "invalid_input", "unknown policy"),
        (["--policy", "reactive", "--seeds", "5-1"], "invalid_input", "runs backwards"),
        (["--policy", "reactive", "--seeds", "1,x"], "invalid_input", "'x' is not a seed"),
        (["--policy", "reactive", "--horizon-h", "10"], "scenario_invalid", "horizon"),
    ],
)
def test_cli_bad_input_is_one_line_and_a_non_zero_exit(
    cli_env: dict[str, str], scenario: Path, args: list[str], code: str, needle: str
) -> None:
    # the console script's own app, in process (a process start each is most of the cost; the
    # console script's error path as a process is test_cli_a_malformed_scenario_names_its_line)
    done = CliRunner().invoke(
        cli_app, ["sim", "run", "--scenario", str(scenario), *args], env=cli_env
    )
    assert done.exit_code != 0, done.output
    assert done.stderr.startswith(f"error[{code}]: ") and needle in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == "", done.stdout


def test_cli_a_malformed_scenario_names_its_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text(BROKEN, encoding="utf-8")
    done = run("sim", "run", "--scenario", str(bad), "--policy", "reactive", env=cli_env)
    assert done.returncode != 0
    assert done.stderr.startswith("error[scenario_invalid]: "), done.stderr
    assert f"{bad}:{BROKEN_LINE}: time.step_s" in done.stderr, done.stderr
    missing = run("sim", "show", "no-such-run", env=cli_env)
    assert missing.returncode != 0 and missing.stderr.startswith("error[not_found]: ")


# -- HTTP ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiWorld]:
    with api_world(driver, neo4j_target, tmp_path_factory.mktemp("sim-api"), ingest=False) as w:
        yield w


def _wait(world: ApiWorld, job: str, role: Role = Role.VIEWER) -> dict[str, Any]:
    deadline = time.monotonic() + 240  # a bound on a hang, not a speed check
    while True:
        answer = world.client.get(f"/sim/runs/{job}", headers=world.as_role(role))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["state"] in ("done", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_http_runs_a_job_in_the_background(world: ApiWorld) -> None:
    body = {"scenario_toml": TINY, "policy": "preventive", "seeds": "1-2"}
    denied = world.client.post("/sim/runs", json=body, headers=world.as_role(Role.VIEWER))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    started = world.client.post("/sim/runs", json=body, headers=world.as_role(Role.AGENT))
    assert started.status_code == 202, started.text
    job = started.json()["job_id"]
    assert started.json()["seeds"] == [1, 2]
    done = _wait(world, job)
    assert done["state"] == "done", done
    assert done["progress"] == 1.0
    assert [r["seed"] for r in done["results"]] == [1, 2]
    for result in done["results"]:
        assert result["status"] == "completed" and result["policy"] == "preventive"
        assert result["run"].startswith("https://w3id.org/twinkg/sim/net1-tiny-preventive-s")
        assert set(result["kpis"]) == set(KPI_NAMES)
        assert 0.0 <= result["kpis"]["availability"] <= 1.0
    records, _, _ = world.driver.execute_query(
        "MATCH (r:SimulationRun) WHERE r.uri IN $runs RETURN count(r) AS n",
        runs=[r["run"] for r in done["results"]],
    )
    assert records[0]["n"] == 2
    listing = world.client.get("/sim/runs", headers=world.as_role(Role.VIEWER))
    assert listing.status_code == 200
    assert job in [j["job_id"] for j in listing.json()["jobs"]]
    assert {r["run"] for r in done["results"]} <= {r["run"] for r in listing.json()["runs"]}


def test_http_runs_a_shipped_scenario_shortened(world: ApiWorld) -> None:
    body = {"scenario": "net1-pump-wear", "policy": "run-to-failure", "seeds": [4], "horizon_h": 25}
    started = world.client.post("/sim/runs", json=body, headers=world.as_role(Role.SUPERVISOR))
    assert started.status_code == 202, started.text
    done = _wait(world, started.json()["job_id"])
    assert done["state"] == "done", done
    (result,) = done["results"]
    assert result["scenario"] == "net1-pump-wear" and result["seed"] == 4
    assert result["simulated_s"] == 25 * 3600.0


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ({"scenario_toml": TINY, "policy": "nope", "seeds": "1"}, 400, "invalid_input", "policy"),
        (
            {"scenario_toml": TINY, "policy": "reactive", "seeds": "5-1"},
            400,
            "invalid_input",
            "backwards",
        ),
        (
            {"scenario_toml": TINY, "policy": "reactive", "seeds": "1-20"},
            400,
            "invalid_input",
            "at most",
        ),
        (
            {"scenario_toml": BROKEN, "policy": "reactive"},
            400,
            "scenario_invalid",
            f"<upload>:{BROKEN_LINE}: time.step_s",
        ),
        (
            {"scenario_toml": TINY.replace('"Net1"', '"../../x.inp"'), "policy": "reactive"},
            400,
            "scenario_invalid",
            "not a file on the server",
        ),
        ({"scenario": "no-such-scenario", "policy": "reactive"}, 404, "not_found", "shipped"),
        (
            {"scenario": "net1-pump-wear", "scenario_toml": TINY, "policy": "reactive"},
            400,
            "invalid_input",
            "exactly one",
        ),
        ({"scenario": "../etc", "policy": "reactive"}, 422, "invalid_request", "scenario"),
    ],
)
def test_http_bad_input_has_a_stable_code(
    world: ApiWorld, body: dict[str, Any], status: int, code: str, needle: str
) -> None:
    answer = world.client.post("/sim/runs", json=body, headers=world.as_role(Role.AGENT))
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and needle in error["message"], error
    unknown = world.client.get("/sim/runs/nojob", headers=world.as_role(Role.VIEWER))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


# -- MCP ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mcp_served(driver: Driver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The MCP endpoint with the what-if tools, over real HTTP (as test_mcp serves it)."""
    store = GraphStore(driver)
    home = tmp_path_factory.mktemp("sim-mcp")
    key_store = KeyStore(home / "api-keys.json")
    keys = {
        role.value: key_store.create(name=f"sim-{role.value}", roles={role})[1]
        for role in (Role.AGENT, Role.VIEWER)
    }
    authenticator = Authenticator(key_store, None)
    settings = Settings(home=home)
    twin = Twin(settings, store)
    jobs = SimJobs(SimService(settings, store))
    endpoint = create_mcp_app(
        twin=lambda: twin, authenticator=lambda: authenticator, sim_jobs=lambda: jobs
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with endpoint.lifespan():
            yield

    app = Starlette(routes=[Mount("/mcp", app=endpoint.app)], lifespan=lifespan)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", keys, twin)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        jobs.close()


def test_mcp_starts_a_what_if_run_and_reads_it_back(mcp_served: Served) -> None:
    arguments = {"scenario_toml": TINY, "policy": "reactive", "seeds": "2"}
    denied = _call("viewer", mcp_served, "start_what_if_run", **arguments)
    assert _error_code(denied) == "forbidden"
    bad = _call("agent", mcp_served, "start_what_if_run", **{**arguments, "seeds": "5-1"})
    assert _error_code(bad) == "invalid_input"
    broken = _call(
        "agent", mcp_served, "start_what_if_run", scenario_toml=BROKEN, policy="reactive"
    )
    assert _error_code(broken) == "scenario_invalid"
    started = _body(_call("agent", mcp_served, "start_what_if_run", **arguments))
    assert started["seeds"] == [2] and started["state"] in ("queued", "running", "done")
    deadline = time.monotonic() + 240  # a bound on a hang, not a speed check
    while True:
        job = _body(_call("viewer", mcp_served, "what_if_run", job_id=started["job_id"]))
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert job["state"] == "done", job
    (result,) = job["results"]
    assert result["seed"] == 2 and result["status"] == "completed"
    assert result["run"].startswith("https://w3id.org/twinkg/sim/net1-tiny-reactive-s2-")
    assert set(result["kpis"]) == set(KPI_NAMES)
    unknown = _call("viewer", mcp_served, "what_if_run", job_id="nojob")
    assert _error_code(unknown) == "not_found"
