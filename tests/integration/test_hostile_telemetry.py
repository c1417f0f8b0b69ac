"""Hostile telemetry over real HTTP and through ``twinkg ingest``, against the real Neo4j.

Each finding of issue 11 about telemetry is sent as it was found: values of every JSON type
where a number belongs (a numeric string, null, true, an object, a one-element list, an integer
of 10^400, NaN and Infinity), times in years 0001, 1600 and 2300, JSON nested 5,000 and 100,000
deep, and CSV files with duplicate columns, bytes that are not UTF-8, no rows or ragged rows.
The API answers a 2xx whose counts say which points were accepted and which quarantined (the
valid point of a hostile batch is kept), or a 4xx with a stable code for a body that is not a
batch; never a 5xx, and ``/health`` answers after each. The CLI exits non-zero with one line on
stderr and no traceback for a file that is not a batch, and 0 with the counts otherwise.
Quarantined times are kept exactly as written, accepted ones exactly as sent.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from neo4j import Driver

from tests.conftest import Neo4jTarget
from tests.integration.api_world import PLANT, make_keys, seed_and_ingest, serving
from tests.integration.test_cli import run
from twinkg.api.app import create_app
from twinkg.api.security import Role
from twinkg.api.settings import Settings, telemetry_dir
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog

pytestmark = pytest.mark.neo4j

SENSOR = PLANT + "sensor-flow"
UNIT = "http://qudt.org/vocab/unit/L-PER-MIN"
START = datetime(2024, 1, 1, tzinfo=UTC)
_clock = itertools.count()  # every valid point is later than every earlier one, in any test order


def _time() -> str:
    return (START + timedelta(seconds=next(_clock))).isoformat().replace("+00:00", "Z")


def _point(value: str = "120.5", time: str | None = None) -> str:
    stamp = json.dumps(time if time is not None else _time())
    return f'{{"sensor": "{SENSOR}", "unit": "{UNIT}", "time": {stamp}, "value": {value}}}'


def _batch(*points: str) -> bytes:
    return ('{"contract": "telemetry@1.0.0", "points": [' + ", ".join(points) + "]}").encode()


@dataclass
class Served:
    """The API on a real port, a producer's key, and the telemetry log it writes."""

    url: str
    key: str
    log: TelemetryLog

    def post(self, body: bytes, client: httpx.Client) -> httpx.Response:
        headers = {"X-API-Key": self.key, "Content-Type": "application/json"}
        return client.post(f"{self.url}/telemetry", content=body, headers=headers)


@pytest.fixture(scope="module")
def served(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("hostile-telemetry")
    store = seed_and_ingest(driver, neo4j_target, home, ingest=False)
    settings = Settings(home=home, projection_poll_s=0.1)
    keys = make_keys(settings)
    with serving(create_app(settings, store=store)) as url:
        yield Served(url, keys[Role.PRODUCER], TelemetryLog(telemetry_dir(settings)))


VALUES = (
    '"120.5"',
    "null",
    "true",
    "{}",
    "[2.5]",
    "1" + "0" * 400,
    "NaN",
    "Infinity",
)


def _accepted(response: httpx.Response, points: int, accepted: int) -> dict[str, Any]:
    assert response.status_code == 200, response.text[:500]
    report: dict[str, Any] = response.json()
    assert (report["points"], report["accepted"], report["rejected"]) == (
        points,
        accepted,
        points - accepted,
    ), report
    return report


def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:500]
    assert response.json()["error"]["code"] == code
    assert response.headers["X-TwinKG-Error-Code"] == code


def test_bad_values_are_quarantined_one_by_one(served: Served) -> None:
    with httpx.Client(timeout=120) as client:
        body = _batch(*(_point(v) for v in VALUES), _point("121.0"))
        report = _accepted(served.post(body, client), len(VALUES) + 1, 1)
        assert client.get(f"{served.url}/health").status_code == 200
    reasons = " ".join(report["reasons"])
    for said in ("JSON string '120.5'", "JSON boolean true", "JSON object {}", "JSON array [2.5]"):
        assert said in reasons
    assert "beyond the range of a double" in reasons
    quarantined = served.log.quarantined(batch=report["batch_id"]).to_pylist()
    assert sorted(row["seq"] for row in quarantined) == list(range(len(VALUES)))
    kept = served.log.window(sensors=[SENSOR]).to_pylist()
    assert [row["value"] for row in kept if row["batch"] == report["batch_id"]] == [121.0]


def test_a_one_element_list_is_not_a_scalar(served: Served) -> None:
    with httpx.Client(timeout=120) as client:
        report = _accepted(served.post(_batch(_point("[2.5]")), client), 1, 0)
    assert any("JSON array [2.5], not a number" in reason for reason in report["reasons"])


def test_times_int64_nanoseconds_cannot_hold_are_quarantined_as_written(served: Served) -> None:
    far = ("2300-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1600-06-01T12:00:00Z")
    valid = _time()
    with httpx.Client(timeout=120) as client:
        # the valid point first: a point stamped later shadows the later points of its sensor
        body = _batch(_point("122.0", valid), *(_point(time=t) for t in far))
        report = _accepted(served.post(body, client), 4, 1)
    rows = served.log.quarantined(batch=report["batch_id"]).to_pylist()
    assert sorted(row["time"] for row in rows) == sorted(far)
    assert all("int64 nanoseconds" in row["reason"] for row in rows)
    kept = [
        r
        for r in served.log.window(sensors=[SENSOR]).to_pylist()
        if r["batch"] == report["batch_id"]
    ]
    assert [r["time"].isoformat().replace("+00:00", "Z") for r in kept] == [valid]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400, "json_too_deep"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "json_too_deep"),
        (b'{"points": [' + b"[" * 40 + b"]" * 40 + b"]}", 400, "json_too_deep"),
        (b"{not json", 400, "invalid_input"),
        (b"\xff\xfe\x00\x00garbage", 400, "invalid_input"),
        (b"[1, 2]", 400, "invalid_input"),
        (b'{"contract": "telemetry@1.0.0"}', 400, "invalid_input"),
        (b'{"points": [], "points": [1]}', 400, "invalid_input"),
    ],
    ids=[
        "objects-5000",
        "arrays-100000",
        "points-40",
        "not-json",
        "utf32",
        "array",
        "no-points",
        "twice",
    ],
)
def test_a_body_that_is_not_a_batch_is_a_4xx_with_a_code(
    served: Served, body: bytes, status: int, code: str
) -> None:
    files = sorted(served.log.root.rglob("*")) if served.log.root.exists() else []
    with httpx.Client(timeout=120) as client:
        _refused(served.post(body, client), status, code)
        assert client.get(f"{served.url}/health").status_code == 200
    assert (sorted(served.log.root.rglob("*")) if served.log.root.exists() else []) == files


def test_health_answers_while_hostile_bodies_are_read(served: Served) -> None:
    """Hostile bodies are read off the event loop: /health keeps answering while they are
    posted (no timing is asserted, only that every answer comes and none is a 5xx)."""
    bodies = [
        b"[" * 100_000 + b"]" * 100_000,
        _batch(*(_point("1" + "0" * 400) for _ in range(2000))),
    ]
    statuses: list[int] = []

    def hostile() -> None:
        with httpx.Client(timeout=300) as client:
            for body in bodies * 2:
                statuses.append(served.post(body, client).status_code)

    worker = threading.Thread(target=hostile)
    worker.start()
    health: list[int] = []
    with httpx.Client(timeout=300) as client:
        while worker.is_alive():
            health.append(client.get(f"{served.url}/health").status_code)
    worker.join()
    assert health and set(health) == {200}
    assert statuses and all(s < 500 for s in statuses), statuses


# ---- The command line ----


@pytest.fixture
def cli_env(empty_store: GraphStore, neo4j_target: Neo4jTarget, tmp_path: Path) -> dict[str, str]:
    seeding.load(empty_store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
    return {**neo4j_target.env(), "TWINKG_HOME": str(tmp_path / "home")}


def _one_line_refusal(done: subprocess.CompletedProcess[str], code: str) -> None:
    assert done.returncode == 5, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"error[{code}]"), done.stderr


def test_the_cli_refuses_what_is_not_a_batch_in_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    cases: list[tuple[str, bytes, str]] = [
        ("--json", b'{"a":' * 5000 + b"1" + b"}" * 5000, "json_too_deep"),
        ("--json", b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
        ("--json", b'{"points": 5}\xff', "invalid_input"),
        ("--csv", b"datetime;Pressure;Pressure\n2020-01-01 00:00:00;1;2\n", "invalid_input"),
        ("--csv", b"datetime;Pressure\n2020-01-01 00:00:00;\xff\n", "invalid_input"),
        ("--csv", b"datetime;Pres\xffsure\n2020-01-01 00:00:00;1\n", "invalid_input"),
        ("--csv", b"", "invalid_input"),
        ("--csv", b"datetime;Pressure\n", "invalid_input"),
        ("--csv", b"datetime;Pressure\n2020-01-01 00:00:00;1;2;3\n", "invalid_input"),
    ]
    for i, (option, data, code) in enumerate(cases):
        path = tmp_path / f"case-{i}"
        path.write_bytes(data)
        _one_line_refusal(run("ingest", option, str(path), "--no-classify", env=cli_env), code)
    assert not (Path(cli_env["TWINKG_HOME"]) / "telemetry").exists()


def test_the_cli_quarantines_bad_points_and_keeps_the_rest(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "batch.json"
    path.write_bytes(_batch(*(_point(v) for v in VALUES), _point("121.0")))
    done = run("ingest", "--json", str(path), "--no-classify", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert f"{len(VALUES) + 1} points, 1 accepted, {len(VALUES)} quarantined" in done.stdout
    path.write_bytes(_batch(_point('"[/bold] [red]"')))  # a reason the CLI prints as it is
    done = run("ingest", "--json", str(path), "--no-classify", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "JSON string '[/bold] [red]'" in done.stdout
    csv = tmp_path / "times.csv"
    csv.write_text(
        "datetime;Pressure\n0001-01-01 00:00:00;0.5\n1600-06-01 12:00:00;0.5\n"
        "2024-06-01 12:00:00;0.5\n2300-01-01 00:00:00;0.5\n2024-02-30 00:00:00;0.5\n",
        encoding="utf-8",
    )
    done = run("ingest", "--csv", str(csv), "--no-classify", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "5 points, 1 accepted, 4 quarantined" in done.stdout
    listed = run("quarantine", "--json", "--limit", "100", env=cli_env)
    times = {json.loads(line)["time"] for line in listed.stdout.splitlines()}
    assert {"0001-01-01T00:00:00Z", "1600-06-01T12:00:00Z", "2300-01-01T00:00:00Z"} <= times
    assert "2024-02-30 00:00:00" in times  # not a date: kept as the cell said
    kept = run("telemetry", "--json", "--limit", "100", env=cli_env)
    pressure = [json.loads(line) for line in kept.stdout.splitlines() if "pressure" in line]
    assert [row["time"] for row in pressure] == ["2024-06-01T12:00:00.000000000Z"]
