"""The provenance recorder and chain verification against the real Neo4j, without the agents."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from neo4j import Driver

from tests.conftest import forget_decisions
from twinkg.kg import chain_verify, provenance
from twinkg.kg.records import GraphRecords, NodeRecord, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import StoreError
from twinkg.ontology.namespaces import DECISION_BASE
from twinkg.ontology.vocab import TK, PropKey, RelType

pytestmark = pytest.mark.neo4j


@pytest.fixture(autouse=True)
def _leave_no_chain(driver: Driver) -> Iterator[None]:
    """These tests break chains on purpose; later modules share the database."""
    yield
    forget_decisions(driver)


AGENT = "https://w3id.org/twinkg/agent/test/1"
PINNED_HEAD = "527e1a6a7c89a6b9554f0b0a1aea7be5b0cab43a43dec931e5450e4109c6568b"


def _records(run: str, *, outcome: str = "applied") -> tuple[GraphRecords, str]:
    decision = f"{DECISION_BASE}{run}/1"
    at = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    nodes = (
        NodeRecord(
            decision,
            (str(TK.Decision),),
            {
                PropKey.RUN_ID: run,
                PropKey.STEP: 1,
                PropKey.OUTCOME: outcome,
                PropKey.PROV_STARTED_AT_TIME: at,
                PropKey.PROV_ENDED_AT_TIME: at,
                PropKey.RANDOM_SEED: 7,
            },
        ),
        NodeRecord(
            decision + "/action",
            (str(TK.ProposedAction),),
            {PropKey.ACTION_KIND: "work_order", PropKey.CONFIDENCE: 0.25},
        ),
        NodeRecord(AGENT, (str(TK.TwinAgent),), {PropKey.CODE_VERSION: "1"}),
    )
    rels = (
        RelRecord(RelType.PROV_WAS_GENERATED_BY, decision + "/action", decision),
        RelRecord(RelType.PROV_WAS_ASSOCIATED_WITH, decision, AGENT),
    )
    return GraphRecords(nodes, rels), decision


def test_records_chain_one_by_one_and_in_bulk(empty_store: GraphStore) -> None:
    records, first = _records("a")
    one = provenance.record(empty_store, records, decision=first)
    assert (one.chain_index, one.previous_hash, one.created) == (1, "", True)
    bulk = provenance.record_many(empty_store, [_records(r) for r in ("b", "c", "d")])
    assert [r.chain_index for r in bulk] == [2, 3, 4]
    assert bulk[0].previous_hash == one.record_hash  # the bulk path continues the same chain
    assert bulk[2].previous_hash == bulk[1].record_hash
    report = chain_verify.verify(empty_store, page=2)  # pages smaller than the chain
    assert report.ok and report.records == 4 and report.head_hash == bulk[-1].record_hash
    # The head the code before decision 0079's faster verify gave for these four records
    # (computed at ba91837): the faster paths hash the same bytes.
    assert report.head_hash == PINNED_HEAD


def test_writers_at_the_same_instant_each_get_their_own_place_in_the_chain(
    empty_store: GraphStore,
) -> None:
    """Four threads release their records at once, round after round, through both paths: every
    record gets its own index and links to the one before. Before the chain head's lock took
    Neo4j's documented `_LOCK_` idiom, two records of a round shared an index within the first
    rounds (the head was returned as read before the lock)."""
    rounds, writers = 25, 4
    empty_store.ensure_schema()  # as a twin has it before its first decision
    first, decision = _records("first")
    provenance.record(empty_store, first, decision=decision)
    errors: list[BaseException] = []

    def write(gate: threading.Barrier, run: str, bulk: bool) -> None:
        try:
            gate.wait()
            if bulk:
                provenance.record_many(empty_store, [_records(run + "-x"), _records(run + "-y")])
            else:
                records, decision = _records(run)
                provenance.record(empty_store, records, decision=decision)
        except BaseException as exc:  # reported below
            errors.append(exc)

    for r in range(rounds):
        gate = threading.Barrier(writers, timeout=60)
        threads = [
            threading.Thread(target=write, args=(gate, f"race-{r}-{w}", w == 0))
            for w in range(writers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert not errors, errors
    report = chain_verify.verify(empty_store)
    assert report.ok, report.problems[:3]
    assert report.records == 1 + rounds * (writers + 1)  # the bulk writer chains two a round


def test_recording_twice_changes_nothing(empty_store: GraphStore, driver: Driver) -> None:
    records, decision = _records("again")
    first = provenance.record(empty_store, records, decision=decision)
    second = provenance.record(empty_store, records, decision=decision)
    bulk = provenance.record_many(empty_store, [(records, decision)])
    assert not second.created and not bulk[0].created
    assert second.record_hash == first.record_hash == bulk[0].record_hash
    rows, _, _ = driver.execute_query("MATCH (d:Decision) RETURN count(d) AS n")
    assert rows[0]["n"] == 1
    assert chain_verify.verify(empty_store).records == 1


def test_a_record_may_not_touch_what_it_does_not_own(empty_store: GraphStore) -> None:
    records, decision = _records("foreign")
    bad = GraphRecords(
        records.nodes, (*records.rels, RelRecord(RelType.PROV_USED, AGENT, decision))
    )
    with pytest.raises(StoreError):
        provenance.record(empty_store, bad, decision=decision)
    assert chain_verify.verify(empty_store).records == 0


def test_a_failed_record_leaves_nothing(empty_store: GraphStore, driver: Driver) -> None:
    records, decision = _records("dangling")
    missing = GraphRecords(
        records.nodes,
        (*records.rels, RelRecord(RelType.PROV_USED, decision, "https://example.org/nowhere")),
    )
    with pytest.raises(StoreError):
        provenance.record(empty_store, missing, decision=decision)
    rows, _, _ = driver.execute_query(
        "MATCH (n) WHERE n.uri STARTS WITH $d RETURN count(n) AS n", d=decision
    )
    assert rows[0]["n"] == 0
    assert chain_verify.verify(empty_store).ok


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [
        ("MATCH (a {uri: $d + '/action'}) SET a.confidence = 0.99", "altered"),
        ("MATCH (a {uri: $d + '/action'}) REMOVE a.actionKind", "altered"),
        ("MATCH (d {uri: $d})-[r:PROV_WAS_ASSOCIATED_WITH]->() DELETE r", "altered"),
        ("MATCH (d {uri: $d}) SET d.outcome = 'refused'", "altered"),
        ("MATCH (d {uri: $d}) SET d.note = 'added later'", "altered"),
        ("MATCH (a {uri: $d + '/action'}) DETACH DELETE a", "altered"),
        ("MATCH (d {uri: $d}) SET d.previousHash = 'x'", "altered"),
    ],
)
def test_verify_names_the_record_that_was_changed(
    empty_store: GraphStore, driver: Driver, tamper: str, kind: str
) -> None:
    provenance.record_many(empty_store, [_records(r) for r in ("p", "q", "r")])
    target = f"{DECISION_BASE}q/1"
    driver.execute_query(tamper, d=target)
    problems = chain_verify.verify(empty_store).problems
    assert (kind, target) in {(p.kind, p.decision) for p in problems}


def test_verify_finds_deleted_and_stray_records(empty_store: GraphStore, driver: Driver) -> None:
    receipts = provenance.record_many(empty_store, [_records(r) for r in ("x", "y", "z")])
    head = receipts[-1].record_hash
    driver.execute_query("MATCH (d {uri: $d}) DETACH DELETE d", d=f"{DECISION_BASE}y/1")
    kinds = {p.kind for p in chain_verify.verify(empty_store).problems}
    assert "missing" in kinds
    # Cutting the last record and moving the head back: only the head kept outside tells.
    driver.execute_query(
        "MATCH (d {uri: $z}) DETACH DELETE d WITH 1 AS one "
        "MATCH (c {uri: $chain}) SET c.chainIndex = 2, c.recordHash = $h",
        z=f"{DECISION_BASE}z/1",
        chain=provenance.CHAIN_IRI,
        h=receipts[1].record_hash,
    )
    assert "head_mismatch" in {
        p.kind for p in chain_verify.verify(empty_store, expect_head=head).problems
    }
    # A decision written beside the chain, without an index.
    driver.execute_query(
        "CREATE (:Resource:Decision:prov_Activity {uri: $u, outcome: 'applied'})",
        u=f"{DECISION_BASE}stray/1",
    )
    assert "unchained" in {p.kind for p in chain_verify.verify(empty_store).problems}
