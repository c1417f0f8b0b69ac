"""Issue 13's contract classes over real HTTP and through ``twinkg ingest --json``, real Neo4j.

A batch mixes valid points with one point of each class the differential found (a time outside
the years int64 nanoseconds hold, lenient forms of a time, a value given twice, an integer of
10^400, a producer with a final newline) and points at the very edges of the range. The API
answers 200 with each bad point quarantined for a specific reason and the valid ones stored;
the CLI exits 0 with the counts and no traceback (decision 0037).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
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
from twinkg.reasoner.timestamps import FIRST_NS

pytestmark = pytest.mark.neo4j

FLOW, FLOW_UNIT = PLANT + "sensor-flow", "http://qudt.org/vocab/unit/L-PER-MIN"
PRESSURE, PRESSURE_UNIT = PLANT + "sensor-pressure", "http://qudt.org/vocab/unit/BAR"
START = datetime(2024, 1, 1, tzinfo=UTC)
_clock = itertools.count()  # every valid point is later than every earlier one


def _time() -> str:
    return (START + timedelta(seconds=next(_clock))).isoformat().replace("+00:00", "Z")


def _point(value: Any = 120.5, time: str | None = None, **more: Any) -> dict[str, Any]:
    point = {"sensor": FLOW, "unit": FLOW_UNIT, "value": value, "time": time or _time()}
    return {**point, **more}


# Each bad point (all after the batch's valid ones: a later point of a sensor stamped in the
# far future would be shadowed by it, as the SHACL says), and words of its reason.
BAD: list[tuple[Any, str]] = [
    (_point(time="1500-01-01T00:00:00Z"), "before 1677-09-21T00:12:43.145224193Z"),
    (_point(time="2300-01-01T00:00:00Z"), "after 2262-04-11T23:47:16.854775806Z"),
    (_point(time="0001-01-01T00:00:00Z"), "int64 nanoseconds"),
    (_point(time="2024-03-01 12:30:00Z"), "not in the xsd:dateTime form"),
    (_point(time="20240301T123000Z"), "not in the xsd:dateTime form"),
    (_point(time="2024-03-01T12:30Z"), "not in the xsd:dateTime form"),
    (_point(time="2024-03-01T12:30:00+0530"), "not in the xsd:dateTime form"),
    (_point(value=[5.0, 5.0]), "JSON array [5.0,5.0], not a number"),
    (_point(producer="edge-1\n"), "control character"),
]


def _body(points: list[dict[str, Any]], tail: str = "") -> bytes:
    text = json.dumps({"contract": "telemetry@1.0.0", "points": points})
    return text[: -len("]}")].encode() + tail.encode() + b"]}"


def _huge(point: dict[str, Any]) -> str:
    """A point whose value is an integer of 10^400 (no JSON encoder writes one)."""
    return (
        ", "
        + json.dumps({**point, "value": 0})[:-1].replace('"value": 0', '"value": 1' + "0" * 400)
        + "}"
    )


@dataclass
class Served:
    url: str
    key: str
    log: TelemetryLog


@pytest.fixture(scope="module")
def served(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("contract-semantics")
    store = seed_and_ingest(driver, neo4j_target, home, ingest=False)
    settings = Settings(home=home, projection_poll_s=0.1)
    keys = make_keys(settings)
    with serving(create_app(settings, store=store)) as url:
        yield Served(url, keys[Role.PRODUCER], TelemetryLog(telemetry_dir(settings)))


def _post(served: Served, body: bytes) -> httpx.Response:
    headers = {"X-API-Key": served.key, "Content-Type": "application/json"}
    with httpx.Client(timeout=120) as client:
        response = client.post(f"{served.url}/telemetry", content=body, headers=headers)
        assert client.get(f"{served.url}/health").status_code == 200
    return response


def test_one_bad_point_never_refuses_the_valid_points_of_its_batch(served: Served) -> None:
    valid = [_point(120.5), _point(121.5)]
    bad = [point for point, _ in BAD]
    response = _post(served, _body(valid + bad, tail=_huge(_point())))
    assert response.status_code == 200, response.text[:500]
    report = response.json()
    total = len(valid) + len(bad) + 1
    assert (report["points"], report["accepted"], report["rejected"]) == (total, 2, total - 2)
    rows = {r["seq"]: r for r in served.log.quarantined(batch=report["batch_id"]).to_pylist()}
    assert sorted(rows) == list(range(2, total))
    for seq, (point, said) in enumerate(BAD, start=len(valid)):
        assert said in rows[seq]["reason"], (point, rows[seq]["reason"])
        assert rows[seq]["time"] == point["time"]  # kept as written
    assert "beyond the range of a double" in rows[total - 1]["reason"]
    kept = [
        r for r in served.log.window(sensors=[FLOW]).to_pylist() if r["batch"] == report["batch_id"]
    ]
    assert [r["value"] for r in kept] == [120.5, 121.5]


def test_the_edges_of_the_range_are_stored_exactly(served: Served) -> None:
    first = "1677-09-21T00:12:43.145224193Z"  # the first instant int64 nanoseconds hold
    points = [
        {"sensor": PRESSURE, "unit": PRESSURE_UNIT, "value": 1.0, "time": first},
        {"sensor": PRESSURE, "unit": PRESSURE_UNIT, "value": 1.5, "time": "1700-01-01T00:00:00Z"},
    ]
    response = _post(served, _body(points))
    assert response.status_code == 200, response.text[:500]
    report = response.json()
    assert report["accepted"] == 2, report
    table = served.log.window(sensors=[PRESSURE])
    stored = pc.cast(table["time"], pa.int64()).to_pylist()
    assert stored[:1] == [FIRST_NS]
    last, beyond = "2262-04-11T23:47:16.854775806Z", "2262-04-11T23:47:16.854775807Z"
    response = _post(served, _body([{**points[1], "time": last}, {**points[1], "time": beyond}]))
    assert response.status_code == 200, response.text[:500]
    reasons = response.json()["reasons"]
    assert response.json()["rejected"] == 2, reasons
    assert any("later than the reception time" in r for r in reasons), reasons
    assert any("after 2262-04-11T23:47:16.854775806Z" in r for r in reasons), reasons


@pytest.fixture
def cli_env(empty_store: GraphStore, neo4j_target: Neo4jTarget, tmp_path: Path) -> dict[str, str]:
    seeding.load(empty_store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
    return {**neo4j_target.env(), "TWINKG_HOME": str(tmp_path / "home")}


def test_the_cli_quarantines_an_out_of_range_year_and_keeps_the_rest(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "batch.json"
    path.write_bytes(_body([_point(120.5), _point(121.5), *(point for point, _ in BAD)]))
    done = run("ingest", "--json", str(path), "--no-classify", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{len(BAD) + 2} points, 2 accepted, {len(BAD)} quarantined" in done.stdout
    assert "before 1677-09-21T00:12:43.145224193Z" in done.stdout
