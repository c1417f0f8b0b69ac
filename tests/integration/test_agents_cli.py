"""The decision commands through the real ``twinkg`` command line: ``agents run|propose|pending|
approve``, ``verify``, ``lineage`` and ``replay``, against the real Neo4j.

One module-wide setup seeds the SKAB testbed, ingests the cavitation run (``other/13.csv``) and lets
the agents decide once; each test then asserts on exit codes, the lines printed and the graph.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from neo4j import Driver
from rdflib import RDF, Graph, URIRef
from rdflib.namespace import PROV

from tests.conftest import REPO, Neo4jTarget, wipe
from tests.integration.test_cli import run
from twinkg.ontology.vocab import TK

pytestmark = pytest.mark.neo4j
DATA = REPO.parent / "shared" / "data" / "skab" / "data" / "other" / "13.csv"
PLANT = "https://w3id.org/twinkg/plant/skab-testbed/"
PUMP = PLANT + "pump"
IVANOVA, PETROV = PLANT + "person-ivanova", PLANT + "person-petrov"  # supervisor, operator
SUPERVISOR = "https://w3id.org/twinkg/ontology#SupervisorRole"
FLOW = "http://qudt.org/vocab/quantitykind/VolumeFlowRate"
# One line per decision step: "<decision IRI>  <outcome>: <what>[; top hypothesis …]".
DECISION_LINE = re.compile(
    r"^(?P<decision>https?://\S+)  (?P<outcome>applied|refused|awaiting_approval|rejected): "
    r"(?P<what>.*)$",
    re.MULTILINE,
)
ERROR_LINE = re.compile(r"^error\[(?P<code>[a-z_]+)\]: \S.*$")


@dataclass(frozen=True)
class Scenario:
    """The environment every command runs in, and what the first ``agents run`` printed."""

    env: dict[str, str]
    home: Path
    first_run: subprocess.CompletedProcess[str]

    def twinkg(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``twinkg ARGS`` against the test Neo4j with this scenario's TWINKG_HOME."""
        return run(*args, env=self.env)


def _decisions(stdout: str) -> list[tuple[str, str, str]]:
    """(decision, outcome, what) for every decision line printed."""
    return [(m["decision"], m["outcome"], m["what"]) for m in DECISION_LINE.finditer(stdout)]


def _error_code(done: subprocess.CompletedProcess[str]) -> str:
    """The code of the one ``error[<code>]: …`` line on stderr (and nothing else there)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    match = ERROR_LINE.match(lines[0])
    assert match, lines[0]
    return match["code"]


def _outcome(driver: Driver, decision: str) -> str | None:
    records, _, _ = driver.execute_query(
        "MATCH (d:Decision {uri: $d}) RETURN d.outcome AS outcome", d=decision
    )
    return None if not records else str(records[0]["outcome"])


def _pending(scenario: Scenario) -> list[str]:
    done = scenario.twinkg("agents", "pending", "--json")
    assert done.returncode == 0, done.stderr
    return [str(r["decision"]) for r in json.loads(done.stdout)]


def _propose(scenario: Scenario, kind: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = scenario.twinkg(
        "agents", "propose", "--asset", PUMP, "--kind", kind, "--as-of", "data", *args
    )
    assert done.returncode == 0, done.stderr
    return done


def _rule_decision_with_windows(driver: Driver) -> str:
    """A decision of the rule planner that read telemetry windows from the log."""
    records, _, _ = driver.execute_query(
        "MATCH (d:Decision {plannerKind: 'rules'})-[:PROV_USED]->(:TelemetryWindow) "
        "WITH DISTINCT d ORDER BY d.chainIndex LIMIT 1 RETURN d.uri AS uri"
    )
    assert records, "no rule-planner decision read a telemetry window"
    return str(records[0]["uri"])


@pytest.fixture(scope="module")
def scenario(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Scenario:
    if not DATA.exists():
        pytest.skip(f"SKAB data not found at {DATA}: the agent commands decide on its replay")
    wipe(driver)  # the suite's Neo4j is shared: start from nothing
    home = tmp_path_factory.mktemp("agents-cli")
    env = {k: v for k, v in neo4j_target.env().items() if not k.startswith("TWINKG_LLM_")}
    env |= {"TWINKG_HOME": str(home)}
    env.pop("TWINKG_CHECKPOINT_URL", None)  # the SQLite checkpointer under TWINKG_HOME
    # No classification: the agents do not need the inferred labels, and it saves half the time.
    for args in (("seed", "--plant", "skab-testbed"), ("ingest", "--skab", str(DATA))):
        done = run(*args, "--no-classify", env=env)
        assert done.returncode == 0, done.stderr
    first = run("agents", "run", "--as-of", "data", env=env)
    assert first.returncode == 0, first.stderr
    return Scenario(env, home, first)


def test_agents_run_decides_once_and_pending_lists_the_waiting(
    scenario: Scenario, driver: Driver
) -> None:
    assert scenario.first_run.returncode == 0, scenario.first_run.stderr
    printed = _decisions(scenario.first_run.stdout)
    assert printed, scenario.first_run.stdout
    assert "reason: " in scenario.first_run.stdout
    for decision, outcome, _ in printed:
        assert _outcome(driver, decision) == outcome, decision
    waiting = {d for d, outcome, _ in printed if outcome == "awaiting_approval"}

    pending = scenario.twinkg("agents", "pending")
    assert pending.returncode == 0, pending.stderr
    listed = {m.group(1) for m in re.finditer(r"^(https?://\S+)  ", pending.stdout, re.MULTILINE)}
    assert listed == waiting, pending.stdout
    if not waiting:
        assert "no approval is waiting" in pending.stdout

    again = scenario.twinkg("agents", "run", "--as-of", "data")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "agents: nothing to decide on"
    records, _, _ = driver.execute_query("MATCH (d:Decision) RETURN count(d) AS n")
    assert records[0]["n"] == len(printed)  # the second cycle recorded nothing


def test_approvals_are_bound_to_roles_and_time(scenario: Scenario, driver: Driver) -> None:
    proposed = _propose(scenario, "work_order", "--confidence", "0.5")
    [(decision, outcome, what)] = _decisions(proposed.stdout)
    assert outcome == "awaiting_approval" and what.startswith("work_order on pump"), what
    assert "waiting for approval by: " in proposed.stdout
    [(other, outcome, _)] = _decisions(
        _propose(scenario, "work_order", "--confidence", "0.5").stdout
    )
    assert outcome == "awaiting_approval"

    # An operator approving as supervisor, an approval already expired: refused, nothing resumed.
    wrong = scenario.twinkg(
        "agents", "approve", decision, "--as", PETROV, "--role", "SupervisorRole"
    )
    assert wrong.returncode == 10, wrong.stderr
    assert _error_code(wrong) == "approver_role"
    assert f"does not hold the role {SUPERVISOR}" in wrong.stderr
    assert wrong.stdout == ""
    expired = scenario.twinkg("agents", "approve", other, "--as", IVANOVA, "--expires-in-s", "-5")
    assert expired.returncode == 10, expired.stderr
    assert _error_code(expired) == "approval_expired"
    assert {decision, other} <= set(_pending(scenario))
    assert _outcome(driver, decision) == _outcome(driver, other) == "awaiting_approval"
    records, _, _ = driver.execute_query(
        "MATCH (d:Decision) WHERE d.uri IN [$a, $b] RETURN count(d) AS n", a=decision, b=other
    )
    assert records[0]["n"] == 2  # no step recorded for either refused answer

    approved = scenario.twinkg(
        "agents", "approve", decision, "--as", IVANOVA, "--role", "SupervisorRole"
    )
    assert approved.returncode == 0, approved.stderr
    steps = _decisions(approved.stdout)
    assert steps[-1][1] == "applied", approved.stdout
    applied = steps[-1][0]
    assert applied != decision and _outcome(driver, applied) == "applied"
    assert _outcome(driver, decision) == "awaiting_approval"  # the first record is never rewritten
    records, _, _ = driver.execute_query(
        "MATCH (:Decision {uri: $d})-[:PROV_WAS_INFORMED_BY]->(a:Approval)-[:APPROVES]->"
        "(:Resource {uri: $first + '/action'}) "
        "MATCH (a)-[:PROV_WAS_ASSOCIATED_WITH]->(p) MATCH (a)-[:APPROVER_ROLE]->(r) "
        "OPTIONAL MATCH (w:MaintenanceWorkOrder) WHERE w.uri STARTS WITH $d + '/' "
        "RETURN p.uri AS person, r.uri AS role, count(w) AS orders",
        d=applied,
        first=decision,
    )
    assert [(r["person"], r["role"], r["orders"]) for r in records] == [(IVANOVA, SUPERVISOR, 1)]

    twice = scenario.twinkg("agents", "approve", decision, "--as", IVANOVA)
    assert twice.returncode == 10, twice.stderr
    assert _error_code(twice) == "not_awaiting_approval"

    # A request past its validity (TWINKG_APPROVAL_REQUEST_TTL_S cut to a millisecond): it says
    # so in `pending`, approving it is refused with its own code and resumes nothing, and it
    # can still be rejected, which is recorded.
    short = {**scenario.env, "TWINKG_APPROVAL_REQUEST_TTL_S": "0.001"}
    listed = run("agents", "pending", "--json", env=short)
    assert listed.returncode == 0, listed.stderr
    request = next(r for r in json.loads(listed.stdout) if r["decision"] == other)
    assert datetime.fromisoformat(request["expires_at"]) < datetime.now(UTC), request
    late = run("agents", "approve", other, "--as", IVANOVA, env=short)
    assert late.returncode == 10 and _error_code(late) == "approval_request_expired", late.stderr
    assert "may only be rejected" in late.stderr
    assert _outcome(driver, other) == "awaiting_approval" and other in _pending(scenario)
    rejected = run("agents", "reject", other, "--as", PETROV, "--comment", "too late", env=short)
    assert rejected.returncode == 0, rejected.stderr
    assert _decisions(rejected.stdout)[-1][1] == "rejected", rejected.stdout
    assert other not in _pending(scenario)


def test_a_setpoint_above_the_envelope_is_refused(scenario: Scenario, driver: Driver) -> None:
    done = _propose(
        scenario,
        "setpoint_change",
        *("--quantity-kind", FLOW, "--current", "80", "--setpoint", "200", "--ramp-s", "600"),
    )
    [(decision, outcome, what)] = _decisions(done.stdout)
    assert outcome == "refused", done.stdout
    assert what.startswith("setpoint_change on pump (80 → 200 over 600 s)"), what
    assert _outcome(driver, decision) == "refused"
    records, _, _ = driver.execute_query(
        "MATCH (e) WHERE e.uri STARTS WITH $d + '/' AND e:SetpointChange RETURN count(e) AS n",
        d=decision,
    )
    assert records[0]["n"] == 0  # refused: no effect written


def test_verify_finds_an_altered_record_and_a_wrong_head(
    scenario: Scenario, driver: Driver
) -> None:
    ok = scenario.twinkg("verify")
    assert ok.returncode == 0, ok.stderr
    match = re.fullmatch(r"ok: (\d+) records, head ([0-9a-f]{64})\n", ok.stdout)
    assert match, ok.stdout
    records, _, _ = driver.execute_query("MATCH (d:Decision) RETURN count(d) AS n")
    assert int(match[1]) == records[0]["n"] > 0
    head = match[2]

    decision = _rule_decision_with_windows(driver)
    reason, _, _ = driver.execute_query(
        "MATCH (d:Decision {uri: $d}) WITH d, d.reason AS before SET d.reason = 'all is well' "
        "RETURN before",
        d=decision,
    )
    try:
        tampered = scenario.twinkg("verify")
        assert tampered.returncode == 12, tampered.stderr
        assert _error_code(tampered) == "provenance_tampered"
        assert tampered.stdout.splitlines() == [
            f"altered: {decision} (its triples no longer match its hash)"
        ]
    finally:
        driver.execute_query(
            "MATCH (d:Decision {uri: $d}) SET d.reason = $r", d=decision, r=reason[0]["before"]
        )
    restored = scenario.twinkg("verify")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout == ok.stdout

    wrong = scenario.twinkg("verify", "--expect-head", "0" * 64)
    assert wrong.returncode == 12, wrong.stderr
    assert _error_code(wrong) == "provenance_tampered"
    assert f"head is {head}, not {'0' * 64}" in wrong.stdout


def test_verify_since_a_trusted_head_checks_only_what_came_after_it(
    scenario: Scenario, driver: Driver
) -> None:
    """``verify --since HEAD`` (issue 17): the trusted head's record and the records after it
    are recomputed, linked from the head on; a change before the head is left to a full
    verify, a change at or after it is found; a head the chain does not hold is a problem."""
    first = scenario.twinkg("verify")
    match = re.fullmatch(r"ok: (\d+) records, head ([0-9a-f]{64})\n", first.stdout)
    assert match, first.stdout
    length, trusted = int(match[1]), match[2]
    for _ in range(2):  # two records added after the trusted head
        _propose(scenario, "work_order", "--confidence", "0.5")
    since = scenario.twinkg("verify", "--since", trusted)
    assert since.returncode == 0, since.stderr
    added = re.fullmatch(
        rf"ok: {length + 2} records \(2 checked after the trusted head, #{length}\), "
        r"head ([0-9a-f]{64})\n",
        since.stdout,
    )
    assert added, since.stdout
    head = added[1]

    def altered(where: str, check: Callable[[], None]) -> None:
        """Change the reason of the decision ``where`` names, ``check``, then restore it."""
        rows, _, _ = driver.execute_query(
            f"MATCH (d:Decision) WHERE {where} WITH d, d.reason AS before "
            "SET d.reason = 'all is well' RETURN d.uri AS uri, before",
            trusted=trusted,
            length=length,
        )
        try:
            check()
        finally:
            driver.execute_query(
                "MATCH (d:Decision {uri: $u}) SET d.reason = $r",
                u=rows[0]["uri"],
                r=rows[0]["before"],
            )

    def before_the_head() -> None:  # trusted as the earlier audit found it; a full verify sees it
        assert scenario.twinkg("verify", "--since", trusted).returncode == 0
        assert scenario.twinkg("verify").returncode == 12

    def after_the_head() -> None:
        found = scenario.twinkg("verify", "--since", trusted)
        assert found.returncode == 12 and _error_code(found) == "provenance_tampered"
        assert found.stdout.startswith("altered: "), found.stdout

    def the_head_itself() -> None:
        found = scenario.twinkg("verify", "--since", trusted)
        assert found.returncode == 12, found.stdout
        assert "the trusted head's own triples no longer match its hash" in found.stdout

    altered("d.chainIndex = 1", before_the_head)
    altered("d.chainIndex = $length + 2", after_the_head)
    altered("d.recordHash = $trusted", the_head_itself)
    assert scenario.twinkg("verify", "--since", trusted).stdout == since.stdout  # restored
    now = scenario.twinkg("verify", "--since", head)
    assert now.returncode == 0 and "(0 checked after the trusted head" in now.stdout
    unknown = scenario.twinkg("verify", "--since", "0" * 64)
    assert unknown.returncode == 12, unknown.stdout
    assert "no record has the trusted head hash" in unknown.stdout
    malformed = scenario.twinkg("verify", "--since", "HEAD")
    assert malformed.returncode == 5 and _error_code(malformed) == "invalid_input"
    assert malformed.stdout == ""


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")  # rdflib
def test_lineage_prints_and_exports_valid_prov(
    scenario: Scenario, driver: Driver, tmp_path: Path
) -> None:
    decision = _rule_decision_with_windows(driver)
    text = scenario.twinkg("lineage", decision)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"decision {decision}  (#"), lines[0]
    assert re.fullmatch(r"PROV-O: valid \(\d+ triples\)", lines[-1]), lines[-1]
    outcome = _outcome(driver, decision)
    assert any(line.startswith(f"  outcome: {outcome} — ") for line in lines), text.stdout
    assert any(line.startswith("    telemetry ") for line in lines), text.stdout

    for fmt, name, rdf_format in (
        ("turtle", "f.ttl", "turtle"),
        ("json-ld", "f.jsonld", "json-ld"),
    ):
        target = tmp_path / name
        done = scenario.twinkg("lineage", decision, "--format", fmt, "-o", str(target))
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""  # the graph went to the file
        graph = Graph().parse(target, format=rdf_format)
        root = URIRef(decision)
        assert (root, RDF.type, TK.Decision) in graph, fmt
        used = set(graph.objects(root, PROV.used))
        assert used, fmt
        assert any((u, RDF.type, TK.TelemetryWindow) in graph for u in used), fmt

    missing = scenario.twinkg("lineage", "no-such-run/1")
    assert missing.returncode == 8, missing.stderr
    assert _error_code(missing) == "decision_not_found"


def test_replay_reaches_the_same_decision_and_needs_its_inputs(
    scenario: Scenario, driver: Driver
) -> None:
    decision = _rule_decision_with_windows(driver)
    same = scenario.twinkg("replay", decision)
    assert same.returncode == 0, same.stderr
    assert same.stdout.startswith(f"same decision: {decision} ("), same.stdout

    telemetry, moved = scenario.home / "telemetry", scenario.home / "telemetry-moved"
    shutil.move(telemetry, moved)
    try:
        gone = scenario.twinkg("replay", decision)
    finally:
        shutil.rmtree(telemetry, ignore_errors=True)  # in case the command created it afresh
        shutil.move(moved, telemetry)
    assert gone.returncode == 9, gone.stderr
    assert _error_code(gone) == "replay_inputs_missing"

    missing = scenario.twinkg("replay", "no-such-run/1")
    assert missing.returncode == 8, missing.stderr
    assert _error_code(missing) == "decision_not_found"
