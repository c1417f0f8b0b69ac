"""Telemetry ingest against the real Neo4j, as a new user runs it from the command line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from neo4j import Driver

from tests.conftest import REPO, Neo4jTarget
from tests.integration.test_cli import TWINKG, run
from twinkg.connect.json import from_json_points
from twinkg.graph_seed import seeding
from twinkg.graph_seed.registry import Plant, plant_records
from twinkg.kg.store import GraphStore, WriteSummary
from twinkg.kg.telemetry_log import POINTS_SCHEMA, QUARANTINE_SCHEMA, BatchManifest, TelemetryLog
from twinkg.ontology.catalog import load_ontology
from twinkg.ontology.errors import PayloadTooLargeError, StoreError
from twinkg.reasoner.ingest import IngestOptions, ingest
from twinkg.reasoner.validation import validate
from twinkg.shapes.registry import ingest_shapes

pytestmark = pytest.mark.neo4j
SKAB = REPO.parent / "shared" / "data" / "skab" / "data"
CAVITATION = SKAB / "other" / "13.csv"
PUMP = "https://w3id.org/twinkg/plant/skab-testbed/pump"
SENSOR = "https://w3id.org/twinkg/plant/skab-testbed/sensor-flow"
UNIT_FLOW = "http://qudt.org/vocab/unit/L-PER-MIN"
UNIT_BAR = "http://qudt.org/vocab/unit/BAR"


def _counts(driver: Driver) -> tuple[int, int]:
    records, _, _ = driver.execute_query(
        "CALL () { MATCH (n) RETURN count(n) AS n } "
        "CALL () { MATCH ()-[r]->() RETURN count(r) AS r } RETURN n, r"
    )
    return records[0]["n"], records[0]["r"]


@pytest.fixture
def skab_env(empty_store: GraphStore, neo4j_target: Neo4jTarget, tmp_path: Path) -> dict[str, str]:
    seeding.load(empty_store, "skab", seeding.with_ontology(plant_records(Plant.SKAB_TESTBED)))
    return {**neo4j_target.env(), "TWINKG_HOME": str(tmp_path / "home")}


def _labelled(path: Path) -> tuple[datetime, datetime, set[datetime]]:
    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    stamps = {
        datetime.strptime(r["datetime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        for r in rows
        if r["anomaly"] == "1.0"
    }
    return min(stamps), max(stamps), stamps


@pytest.mark.skipif(not CAVITATION.exists(), reason=f"SKAB data not found at {CAVITATION}")
def test_skab_cavitation_replay_lines_up_with_the_labels(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    done = run("ingest", "--skab", str(CAVITATION), env=skab_env)
    assert done.returncode == 0, done.stderr
    assert "7384 points, 7384 accepted, 0 quarantined" in done.stdout
    onset, end, labelled = _labelled(CAVITATION)
    records, _, _ = driver.execute_query(
        "MATCH (a:Anomaly)-[:CONCERNS]->(:Pump {uri: $pump}) "
        "RETURN a.occurredAt AS start, a.endedAt AS end ORDER BY start",
        pump=PUMP,
    )
    episodes = [(r["start"].to_native(), r["end"].to_native()) for r in records]
    assert episodes, "no anomaly on the pump"
    # the pump's first episode starts within a minute after the labelled onset of cavitation,
    # none before it, and every episode touches the labelled span (no false alarm on this run)
    assert 0 <= (episodes[0][0] - onset).total_seconds() <= 60, episodes
    assert all(s <= end and e >= onset for s, e in episodes), episodes
    covered = {t for t in labelled if any(s <= t <= e for s, e in episodes)}
    assert covered  # the flow collapses at the onset and near the end of the labelled span
    # a critical alarm derived from an anomaly that the flow sensor drove, at the onset
    alarms, _, _ = driver.execute_query(
        "MATCH (al:Alarm {severity: 'critical'})-[:PROV_WAS_DERIVED_FROM]->(a:Anomaly)"
        "-[:CONCERNS]->(:Pump {uri: $pump}) "
        "MATCH (a)-[:DRIVEN_BY]->(s:Sensor) RETURN al.occurredAt AS at, collect(s.uri) AS by",
        pump=PUMP,
    )
    assert alarms, "no critical alarm on the pump"
    assert 0 <= (alarms[0]["at"].to_native() - onset).total_seconds() <= 60
    assert SENSOR in alarms[0]["by"]
    # a sustained anomaly raised a critical alarm, and the reasoner marked the pump at risk
    labels, _, _ = driver.execute_query(
        "MATCH (p {uri: $pump}) RETURN labels(p) AS labels, p.inferredType AS inferred", pump=PUMP
    )
    assert {"AtRiskAsset", "SinglePointOfFailure"} <= set(labels[0]["labels"])
    state, _, _ = driver.execute_query(
        "MATCH (s:Sensor) RETURN count(s.lastObservedAt) AS n, max(s.lastObservedAt) AS last"
    )
    assert state[0]["n"] == 8
    assert state[0]["last"].to_native() == datetime(2020, 2, 8, 19, 6, 26, tzinfo=UTC)
    trust, _, _ = driver.execute_query(
        "MATCH (t:TrustScore)-[:SCORE_OF]->({uri: $pump}) RETURN t.confidence AS c, "
        "t.anomalyScore AS a, t.qualityScore AS q",
        pump=PUMP,
    )
    assert 0 <= trust[0]["c"] < 0.8 and trust[0]["a"] > 0.5 and trust[0]["q"] == 1.0
    # the telemetry log replays the run deterministically
    log = TelemetryLog(Path(skab_env["TWINKG_HOME"]) / "telemetry")
    first = log.window(sensors=[SENSOR])
    assert first.num_rows == 923
    assert first.equals(log.window(sensors=[SENSOR]))
    part = log.window(start=onset, end=onset + timedelta(seconds=60))
    assert part.num_rows > 0 and pa.compute.min(part["time"]).as_py() >= onset
    # what the ingest wrote meets the same contracts as any other way in
    outcome = validate(GraphStore(driver).export(), ingest_shapes(), ontology=load_ontology())
    assert outcome.conforms, outcome.violations[:3]
    # applying the same file again changes nothing
    before = _counts(driver)
    again = run("ingest", "--skab", str(CAVITATION), env=skab_env)
    assert again.returncode == 0 and "ingested before" in again.stdout
    assert _counts(driver) == before


def _point(seconds: int, value: object, **extra: object) -> dict[str, object]:
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
    return {
        "sensor": SENSOR,
        "value": value,
        "unit": UNIT_FLOW,
        "time": moment.isoformat().replace("+00:00", "Z"),
        **extra,
    }


def test_bad_points_go_to_quarantine_with_their_reason(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    points = [
        _point(0, 120.0),
        _point(1, float("nan")),
        _point(2, 120.5, unit=UNIT_BAR),
        _point(3, 121.0, sensor=SENSOR + "-unknown"),
        _point(4, 999.0),
        _point(2, 123.0),  # not after the previous reading of the sensor
        _point(5, 124.0, quality="excellent"),
        _point(6, 125.0),
        _point(10**8, 122.0),  # years in the future
    ]
    batch = tmp_path / "batch.json"
    batch.write_text(
        json.dumps({"contract": "telemetry@1.0.0", "producer": "edge-1", "points": points}),
        encoding="utf-8",
    )
    done = run("ingest", "--json", str(batch), env=skab_env)
    assert done.returncode == 0, done.stderr
    assert "9 points, 2 accepted, 7 quarantined" in done.stdout
    counted = run("quarantine", "--count", env=skab_env)
    assert counted.stdout.strip() == "7"
    listed = run("quarantine", "--json", env=skab_env)
    reasons = [json.loads(line)["reason"] for line in listed.stdout.splitlines()]
    assert len(reasons) == 7
    assert "physical range" in reasons[0]
    assert "not the sensor's unit" in reasons[1]
    assert "known sensor" in reasons[2]
    assert "physical range" in reasons[3]
    assert "earlier reading" in reasons[4]
    assert '"good", "uncertain" or "bad"' in reasons[5]
    assert "later than the reception time" in reasons[6]
    batch_nodes, _, _ = driver.execute_query(
        "MATCH (b:IngestBatch) RETURN b.acceptedCount AS a, b.rejectedCount AS r, "
        "b.contractVersion AS c"
    )
    assert (batch_nodes[0]["a"], batch_nodes[0]["r"], batch_nodes[0]["c"]) == (
        2,
        7,
        "telemetry@1.0.0",
    )
    last, _, _ = driver.execute_query("MATCH (s {uri: $s}) RETURN s.lastValue AS v", s=SENSOR)
    assert last[0]["v"] == 125.0


@pytest.mark.parametrize(
    ("content", "contract", "code"),
    [
        ("not json at all", None, "invalid_input"),
        (json.dumps({"points": "nope"}), None, "invalid_input"),
        (json.dumps({"contract": "telemetry@9.0.0", "points": []}), None, "contract_unknown"),
        (json.dumps({"contract": "telemetry@1.0.7", "points": []}), None, "contract_unknown"),
        (json.dumps({"contract": "weather@1.0.0", "points": []}), None, "contract_unknown"),
        (json.dumps({"points": [{"sensor": SENSOR, "colour": "red"}]}), None, "invalid_input"),
        (
            json.dumps({"contract": "telemetry@1.0.0", "points": []}),
            "telemetry@0.9.0",
            "invalid_input",
        ),
    ],
)
def test_broken_batches_change_nothing(  # noqa: PLR0917 - pytest parameters
    skab_env: dict[str, str],
    driver: Driver,
    tmp_path: Path,
    content: str,
    contract: str | None,
    code: str,
) -> None:
    batch = tmp_path / "batch.json"
    batch.write_text(content, encoding="utf-8")
    before = _counts(driver)
    extra = ["--contract", contract] if contract else []
    done = run("ingest", "--json", str(batch), *extra, env=skab_env)
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stderr.startswith(f"error[{code}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _counts(driver) == before
    assert not (Path(skab_env["TWINKG_HOME"]) / "telemetry").exists()


def test_a_json_batch_can_come_on_stdin(skab_env: dict[str, str], driver: Driver) -> None:
    document = {"contract": "telemetry", "points": [_point(0, 120.0), _point(1, 121.0)]}
    done = subprocess.run(
        [TWINKG, "ingest", "--json", "-"],
        input=json.dumps(document),
        env=skab_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "2 points, 2 accepted, 0 quarantined" in done.stdout


def test_a_csv_with_an_unknown_column_is_refused(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime;Pressure;Humidity\n2020-01-01 00:00:00;0.1;40\n", encoding="utf-8")
    before = _counts(driver)
    done = run("ingest", "--csv", str(bad), env=skab_env)
    assert done.returncode == 5
    assert "'Humidity' is not the externalId of any sensor" in done.stderr
    assert _counts(driver) == before


class _FailingStore(GraphStore):
    """The real store, whose write fails after the contract and the log staging succeeded."""

    def write(self, *args: object, **kwargs: object) -> WriteSummary:
        raise StoreError("Neo4j went away")


def test_a_neo4j_failure_leaves_no_trace_in_the_log(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    log = TelemetryLog(tmp_path / "telemetry")
    store = _FailingStore(driver)
    batch = from_json_points([_point(0, 120.0), _point(1, -5.0)])
    with pytest.raises(StoreError):
        ingest(store, log, batch, content_hash="f" * 64, options=IngestOptions())
    assert log.manifests() == []
    assert log.window().num_rows == 0 and log.quarantined().num_rows == 0
    files = (tmp_path / "telemetry").rglob("*")
    leftovers = [p for p in files if p.is_file() and p.name != ".lock"]  # the writer lock
    assert leftovers == []
    # and the same batch goes through once Neo4j is back
    report = ingest(GraphStore(driver), log, batch, content_hash="f" * 64)
    assert (report.accepted, report.rejected) == (1, 1)
    assert log.window().num_rows == 1 and log.quarantined().num_rows == 1


def test_a_batch_with_nothing_acceptable_is_still_recorded(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    log = TelemetryLog(tmp_path / "telemetry")
    batch = from_json_points([_point(0, -1.0), _point(1, float("inf")), _point(2, "12")])
    report = ingest(GraphStore(driver), log, batch, content_hash="e" * 64)
    assert (report.accepted, report.rejected, report.aggregates) == (0, 3, 0)
    assert [t.quality for t in report.trust] == [0.0]  # no point met the contract
    assert log.quarantined().num_rows == 3 and log.window().num_rows == 0
    nodes, _, _ = driver.execute_query(
        "MATCH (b:IngestBatch) RETURN b.acceptedCount AS a, b.rejectedCount AS r"
    )
    assert (nodes[0]["a"], nodes[0]["r"]) == (0, 3)


def test_time_must_move_forward_across_batches(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    log, store = TelemetryLog(tmp_path / "telemetry"), GraphStore(driver)
    first = from_json_points([_point(0, 120.0), _point(2, 121.0)])
    assert ingest(store, log, first, content_hash="a" * 64).accepted == 2
    second = from_json_points([_point(1, 122.0), _point(2, 123.0), _point(3, 124.0)])
    report = ingest(store, log, second, content_hash="b" * 64)
    assert (report.accepted, report.rejected) == (1, 2)
    assert all("earlier reading" in r for r in report.reasons)
    assert log.window(sensors=[SENSOR])["value"].to_pylist() == [120.0, 121.0, 124.0]


def _envelope_alarms(driver: Driver) -> list[tuple[str, str, str, int]]:
    records, _, _ = driver.execute_query(
        "MATCH (al:Alarm)-[:PROV_USED]->({uri: $env}) OPTIONAL MATCH (al)-[:IN_BATCH]->(b) "
        "RETURN al.uri AS uri, toString(al.occurredAt) AS start, toString(al.endedAt) AS end, "
        "count(b) AS batches ORDER BY start",
        env="https://w3id.org/twinkg/plant/skab-testbed/envelope-pump-flow",
    )
    return [(r["uri"], r["start"], r["end"], r["batches"]) for r in records]


@pytest.mark.parametrize("realarm_s", [3600.0, 150.0])
def test_a_standing_envelope_alarm_is_raised_once_and_cleared_by_a_normal_reading(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path, realarm_s: float
) -> None:
    """ISA-18.2: a condition that stays out of its envelope across batches (and across a gap
    with no reading) is one alarm, extended; a window back inside clears it; the next excursion
    is a new alarm; a standing one older than ``realarm_s`` is raised anew."""
    log, store = TelemetryLog(tmp_path / "telemetry"), GraphStore(driver)
    options = IngestOptions(received_at=datetime(2026, 1, 1, 1, tzinfo=UTC), realarm_s=realarm_s)
    high = [  # 150 L/min is above the 140 L/min envelope; 80 is inside
        [_point(0, 150.0), _point(60, 151.0), _point(180, 152.0)],  # a gap: still one condition
        [_point(240, 153.0), _point(300, 150.0)],
        [_point(360, 80.0), _point(420, 150.0)],  # cleared, then out again
    ]
    reports = [
        ingest(store, log, from_json_points(b), content_hash=f"{i}" * 64, options=options)
        for i, b in enumerate(high)
    ]
    raised = [r.alarms for r in reports]
    alarms = _envelope_alarms(driver)
    owner = driver.execute_query(
        "MATCH (a)-[:HAS_ENVELOPE]->({uri: $env}) RETURN a.uri AS uri",
        env="https://w3id.org/twinkg/plant/skab-testbed/envelope-pump-flow",
    ).records[0]["uri"]
    assert all(not r.anomalies for r in reports)  # three windows: no detector has a say
    # the work the batch gives the agents: the asset of each alarm raised anew, not extended
    assert [r.finding_assets for r in reports] == [(owner,) if n else () for n in raised]
    if realarm_s > 300:
        assert raised == [1, 0, 1]
        assert [(a[1][11:19], a[2][11:19], a[3]) for a in alarms] == [
            ("00:00:00", "00:06:00", 2),  # extended over the second batch to its last window
            ("00:07:00", "00:08:00", 1),
        ]
    else:  # the first condition outlasts realarm_s by the second batch: raised again there
        assert raised == [1, 1, 1]
        assert [a[1][11:19] for a in alarms] == ["00:00:00", "00:04:00", "00:07:00"]


def test_a_log_that_cannot_be_written_keeps_neo4j_unchanged(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the log's folder should be", encoding="utf-8")
    before = _counts(driver)
    with pytest.raises(StoreError, match="cannot write the telemetry log"):
        ingest(
            GraphStore(driver),
            TelemetryLog(blocked),
            from_json_points([_point(0, 120.0)]),
            content_hash="c" * 64,
        )
    assert _counts(driver) == before


def test_a_batch_past_the_limits_is_refused_before_anything_is_written(
    skab_env: dict[str, str], driver: Driver, tmp_path: Path
) -> None:
    log, store = TelemetryLog(tmp_path / "telemetry"), GraphStore(driver)
    # one reading a minute: every point is a window aggregate of its own
    batch = from_json_points([_point(60 * i, 120.0) for i in range(50)])
    before = _counts(driver)
    with pytest.raises(PayloadTooLargeError, match="TWINKG_INGEST_MAX_GRAPH_RECORDS") as refused:
        ingest(
            store, log, batch, content_hash="1" * 64, options=IngestOptions(max_graph_records=100)
        )
    assert refused.value.code == "payload_too_large"
    assert "50 window aggregates" in str(refused.value)
    with pytest.raises(PayloadTooLargeError, match="TWINKG_INGEST_MAX_POINTS"):
        ingest(store, log, batch, content_hash="1" * 64, options=IngestOptions(max_points=49))
    assert _counts(driver) == before
    assert log.manifests() == [] and log.pending() == []
    assert [p for p in (tmp_path / "telemetry").rglob("*.*") if p.name != ".lock"] == []
    report = ingest(store, log, batch, content_hash="1" * 64, options=IngestOptions())
    assert (report.accepted, report.aggregates) == (50, 50)


def _legacy_home(tmp_path: Path) -> dict[str, str]:
    """A home whose log holds a row a former version stored with a wrapped-around time (a
    reading of 0001-01-01 kept as a time in 1759); the CLI's environment."""
    home = tmp_path / "home"
    log = TelemetryLog(home / "telemetry")
    moments = [
        int(datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 10**9,
        -6_626_971_578_871_345_152,
    ]
    points = pa.table(
        {
            "sensor": [SENSOR, SENSOR],
            "time": pa.array(moments, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "value": [1.0, 2.0],
            "quality": [None, None],
            "producer": ["edge", "edge"],
            "batch": ["legacy", "legacy"],
            "seq": [0, 1],
        },
        schema=POINTS_SCHEMA,
    )
    manifest = BatchManifest("legacy", "telemetry@1.0.0", "2026-01-02T00:00:00+00:00", 2, 0, ())
    log.commit(
        log.stage(manifest=manifest, points=points, quarantine=QUARANTINE_SCHEMA.empty_table())
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TWINKG_")}
    return {**env, "TWINKG_HOME": str(home)}


def test_the_log_reads_back_whatever_it_holds(tmp_path: Path) -> None:
    env = _legacy_home(tmp_path)
    for args, answer in ((("telemetry", "--count"), "2"), (("quarantine", "--count"), "0")):
        done = run(*args, env=env)
        assert (done.returncode, done.stdout.strip()) == (0, answer), done.stderr


def test_the_cli_shows_times_with_nanoseconds(tmp_path: Path) -> None:
    env = _legacy_home(tmp_path)
    table = run("telemetry", env=env)
    assert table.returncode == 0, table.stderr
    assert "Traceback" not in table.stderr
    lines = run("telemetry", "--json", env=env)
    assert lines.returncode == 0, lines.stderr
    times = sorted(json.loads(line)["time"] for line in lines.stdout.splitlines())
    # numpy agrees: np.datetime64(-6_626_971_578_871_345_152, "ns")
    assert times == ["1759-12-31T22:33:41.128654848Z", "2026-01-01T00:00:00.000000000Z"]
