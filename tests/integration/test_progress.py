"""Progress of long work against the real Neo4j: ingest and replay report their phases in order,
never past their totals, and the graph write ends on the number of records Neo4j was sent; the
CLI's ``--progress`` draws on stderr without changing stdout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from neo4j import Driver

from tests.conftest import REPO, Neo4jTarget, forget_decisions, seed_skab
from tests.integration.test_cli import run
from twinkg.agents.checkpoint import open_checkpointer
from twinkg.agents.replay import replay
from twinkg.agents.runner import Agents
from twinkg.agents.state import ActionKind, ApprovalInput, Outcome, ProposedAction
from twinkg.connect.csv import column_sensors, read_wide_csv
from twinkg.connect.json import from_json_points
from twinkg.connect.skab import SKAB
from twinkg.kg import telemetry_state
from twinkg.kg.store import GraphStore, WriteSummary
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.reasoner.ingest import IngestOptions, IngestReport, ingest
from twinkg.reasoner.progress import IngestPhase, Progress, ReplayPhase

pytestmark = pytest.mark.neo4j
DATA = REPO.parent / "shared" / "data" / "skab" / "data" / "other" / "13.csv"
PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
PUMP, SENSOR = PLANT + "pump", PLANT + "sensor-flow"
SUPERVISOR = "https://w3id.org/twinkg/ontology#SupervisorRole"
IVANOVA = PLANT + "person-ivanova"
AS_OF = datetime(2020, 2, 8, 19, 6, 30, tzinfo=UTC)
INGEST_ORDER = [p.value for p in IngestPhase]
REPLAY_ORDER = [p.value for p in ReplayPhase]
Report = tuple[str, int, int]


class _CountingStore(GraphStore):
    """The real store; keeps what each write reports having sent to Neo4j."""

    def __init__(self, driver: Driver) -> None:
        super().__init__(driver)
        self.written: list[WriteSummary] = []

    def write(self, *args: Any, **kwargs: Any) -> WriteSummary:
        summary = super().write(*args, **kwargs)
        self.written.append(summary)
        return summary


def _recorder() -> tuple[list[Report], Progress]:
    """A list of reports and the callback that appends to it."""
    reports: list[Report] = []
    return reports, lambda phase, done, total: reports.append((phase, done, total))


def _phases(reports: list[Report]) -> list[str]:
    """The phases in the order they first reported; fails if one comes back after another."""
    order: list[str] = []
    for phase, _, _ in reports:
        if not order or order[-1] != phase:
            assert phase not in order, f"{phase} reported again after {order[-1]}"
            order.append(phase)
    return order


def _check_counts(reports: list[Report]) -> dict[str, tuple[int, int]]:
    """Each phase starts at 0, never goes back or past its total, and ends complete; returns
    each phase's last ``(done, total)``."""
    last: dict[str, tuple[int, int]] = {}
    for phase, done, total in reports:
        assert 0 <= done <= total, (phase, done, total)
        if phase in last:
            assert done >= last[phase][0], (phase, done, last[phase])
        else:
            assert done == 0, (phase, done, total)
        last[phase] = (done, total)
    for phase, (done, total) in last.items():
        assert done == total, (phase, done, total)
    return last


@pytest.fixture(scope="module")
def store(driver: Driver) -> _CountingStore:
    """The SKAB testbed seeded in an empty database."""
    counting = _CountingStore(driver)
    seed_skab(driver, counting)
    return counting


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("progress")


@pytest.fixture(scope="module")
def skab_ingest(store: _CountingStore, home: Path) -> tuple[IngestReport, list[Report]]:
    """The SKAB cavitation run parsed and ingested as ``twinkg ingest --skab`` does."""
    if not DATA.exists():
        pytest.skip(f"SKAB data not found at {DATA}")
    reports, record = _recorder()
    rows = telemetry_state.sensors(store)
    points = read_wide_csv(
        DATA,
        sensor_columns=column_sensors([(r.external_id, r.uri) for r in rows]),
        units={r.uri: r.unit for r in rows},
        layout=SKAB,
        progress=lambda done, total: reports.append((IngestPhase.PARSE, done, total)),
    )
    store.written.clear()
    report = ingest(
        store,
        TelemetryLog(home / "telemetry"),
        points.batch,
        content_hash=points.content_hash,
        options=IngestOptions(replay=True, fit_rows=400, source=DATA.name),
        progress=record,
    )
    return report, reports


def test_an_ingest_reports_every_phase_in_order(
    store: _CountingStore, skab_ingest: tuple[IngestReport, list[Report]]
) -> None:
    report, reports = skab_ingest
    assert report.points == 7384 and report.accepted == 7384
    assert _phases(reports) == INGEST_ORDER
    last = _check_counts(reports)
    assert last[IngestPhase.PARSE] == (9, 9)  # the time column and 8 sensor columns
    assert last[IngestPhase.CONTRACT] == (report.points, report.points)
    assert last[IngestPhase.LOG][0] == report.accepted + report.rejected
    # the graph phase ends on what Neo4j was sent, in more than one statement's report
    (written,) = store.written
    assert last[IngestPhase.GRAPH][0] == written.nodes + written.relationships
    graph = [done for phase, done, _ in reports if phase == IngestPhase.GRAPH]
    assert len(graph) >= 3, graph


def test_a_json_ingest_reports_points_and_a_duplicate_reports_nothing(
    store: _CountingStore, skab_ingest: tuple[IngestReport, list[Report]], home: Path
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [
        {"sensor": SENSOR, "value": v, "unit": "http://qudt.org/vocab/unit/L-PER-MIN", "time": t}
        for v, t in (
            (120.0, start.isoformat()),
            (-5.0, (start + timedelta(seconds=1)).isoformat()),  # out of range: quarantined
            (121.0, (start + timedelta(seconds=2)).isoformat()),
        )
    ]
    reports, record = _recorder()
    batch = from_json_points(
        points, progress=lambda done, total: reports.append((IngestPhase.PARSE, done, total))
    )
    log = TelemetryLog(home / "telemetry")
    store.written.clear()
    report = ingest(store, log, batch, content_hash="9" * 64, progress=record)
    assert (report.accepted, report.rejected) == (2, 1)
    assert _phases(reports) == INGEST_ORDER
    last = _check_counts(reports)
    assert last[IngestPhase.PARSE] == (3, 3)
    assert last[IngestPhase.LOG] == (3, 3)
    (written,) = store.written
    assert last[IngestPhase.GRAPH][0] == written.nodes + written.relationships
    again, record_again = _recorder()
    twice = ingest(store, log, batch, content_hash="9" * 64, progress=record_again)
    assert twice.duplicate and again == []


@pytest.fixture(scope="module")
def agents(
    store: _CountingStore,
    skab_ingest: tuple[IngestReport, list[Report]],
    home: Path,
    driver: Driver,
) -> Iterator[Agents]:
    with open_checkpointer(str(home / "checkpoints.sqlite")) as saver:
        yield Agents(store=store, log=TelemetryLog(home / "telemetry"), checkpointer=saver)
    forget_decisions(driver)


def _approved(agents: Agents) -> tuple[str, str]:
    """A work order that waited for a person and was approved: (first step, second step)."""
    action = ProposedAction(
        kind=ActionKind.WORK_ORDER, target=PUMP, confidence=0.5, proposed_at=AS_OF.isoformat()
    )
    waiting = agents.run(scope=PUMP, as_of=AS_OF, action=action).steps[-1]
    assert waiting.outcome is Outcome.AWAITING_APPROVAL
    request = agents.request_for(waiting.decision)
    now = datetime.now(UTC)
    answer = ApprovalInput(
        outcome="approved",
        approver=IVANOVA,
        role=SUPERVISOR,
        action_hash=request["action_hash"],
        graph_version=request["graph_version"],
        expires_at=(now + timedelta(minutes=30)).isoformat(),
        given_at=now.isoformat(),
    )
    done = agents.answer(waiting.decision, answer).steps[-1]
    assert done.outcome is Outcome.APPLIED
    return waiting.decision, done.decision


def test_a_replay_reports_each_step_and_the_comparison(
    store: _CountingStore, agents: Agents, home: Path
) -> None:
    first, second = _approved(agents)
    log = TelemetryLog(home / "telemetry")
    for decision, steps in ((first, 1), (second, 2)):
        reports, record = _recorder()
        result = replay(store, log, decision, progress=record)
        assert result.same, result.differences
        assert result.steps == steps
        assert _phases(reports) == REPLAY_ORDER
        last = _check_counts(reports)
        assert all(last[p] == (steps, steps) for p in REPLAY_ORDER), last
        replayed = [done for phase, done, _ in reports if phase == ReplayPhase.REPLAY]
        assert replayed == list(range(steps + 1))  # one report per replayed step


def test_the_cli_draws_bars_only_when_asked_and_stdout_stays_the_same(
    store: _CountingStore, agents: Agents, neo4j_target: Neo4jTarget, home: Path
) -> None:
    _, decision = _approved(agents)
    env = {**neo4j_target.env(), "TWINKG_HOME": str(home)}
    quiet = run("replay", decision, env=env)
    drawn = run("replay", decision, "--progress", env=env)
    off = run("replay", decision, "--no-progress", env=env)
    assert quiet.returncode == drawn.returncode == off.returncode == 0, drawn.stderr
    assert quiet.stdout == drawn.stdout == off.stdout
    assert quiet.stdout.startswith(f"same decision: {decision} (")
    hide_cursor = "\x1b[?25l"  # a live display starting on a terminal
    assert hide_cursor in drawn.stderr
    assert "\x1b[" not in quiet.stderr and "\x1b[" not in off.stderr
    batch = home / "cli-batch.json"
    point = {"sensor": SENSOR, "value": 122.0, "unit": "http://qudt.org/vocab/unit/L-PER-MIN"}
    batch.write_text(
        json.dumps({"points": [point | {"time": "2026-01-01T00:01:00Z"}]}), encoding="utf-8"
    )
    ingested = run("ingest", "--json", str(batch), "--no-classify", "--progress", env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert "1 points, 1 accepted, 0 quarantined" in ingested.stdout
    assert hide_cursor in ingested.stderr
