"""``twinkg verify``'s fast path (decision 0079) against the plain one, on hostile records.

The plain path reads a record node by node through the driver (its temporal objects turned into
ISO text), builds the hashed document and hashes ``json.dumps``' bytes; the fast path reads a
page in one query with times as Cypher's text and tries orjson's bytes first. Records are
written with odd values (exponent floats, -0.0, extreme integers, astral and control
characters, several values with repeats, times with offsets) and then some are tampered with
through Cypher (another offset for the same instant, nanoseconds, a named zone, a duration or a
number where a time was, a time where text was). Each record's verdict must be the plain
path's; where the plain path cannot read a value as its type, the record is altered.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from neo4j import Driver

from tests.conftest import forget_decisions
from twinkg.kg import chain_verify, provenance
from twinkg.kg.records import GraphRecords, NodeRecord, RelRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.namespaces import DECISION_BASE
from twinkg.ontology.vocab import TK, PropKey, RelType

pytestmark = pytest.mark.neo4j

AGENT = "https://w3id.org/twinkg/agent/test/differential"
_RUNS = itertools.count()


@pytest.fixture(autouse=True)
def _leave_no_chain(driver: Driver) -> Iterator[None]:
    yield
    forget_decisions(driver)


def _plain_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain_value(v) for v in value]
    return value.iso_format() if hasattr(value, "iso_format") else value


def _plain_verdict(driver: Driver, decision: str) -> bool:
    """The record's verdict the way verify worked before decision 0079."""
    nodes, _, _ = driver.execute_query(
        "MATCH (n:Resource) WHERE n.uri = $d OR n.uri STARTS WITH $d + '/' "
        "RETURN n.uri AS uri, coalesce(n.rdf_type, []) AS types, properties(n) AS props",
        d=decision,
    )
    rels, _, _ = driver.execute_query(
        "MATCH (n:Resource)-[r]->(m:Resource) WHERE n.uri = $d OR n.uri STARTS WITH $d + '/' "
        "RETURN n.uri AS start, type(r) AS type, m.uri AS end",
        d=decision,
    )
    head, _, _ = driver.execute_query(
        "MATCH (d {uri: $d}) RETURN d.previousHash AS previous, d.recordHash AS hash", d=decision
    )
    try:
        document = provenance.record_document(
            (
                (r["uri"], r["types"], {k: _plain_value(v) for k, v in r["props"].items()})
                for r in nodes
            ),
            ((r["start"], r["type"], r["end"]) for r in rels),
        )
    except ValueError:  # a time that no longer reads as one: the record was altered
        return False
    recomputed = provenance.record_hash(str(head[0]["previous"] or ""), document)
    return bool(recomputed == head[0]["hash"])


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
_FLOAT = st.sampled_from([1e-7, 1e16, -0.0, 5e-324, 1.7976931348623157e308, 0.1, 1e-5]) | (
    st.floats(allow_nan=False, allow_infinity=False)
)
_INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_TIME = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-7))]
    ),
)
_TAMPERS = [
    None,
    "SET n.prov_endedAtTime = datetime({datetime: n.prov_endedAtTime, timezone: '+09:00'})",
    "SET n.prov_endedAtTime = n.prov_endedAtTime + duration({nanoseconds: 1})",
    "SET n.prov_endedAtTime = datetime({datetime: n.prov_endedAtTime, timezone: 'Europe/Paris'})",
    "SET n.prov_endedAtTime = duration({days: 1})",
    "SET n.prov_endedAtTime = 42",
    "SET n.prov_endedAtTime = date(n.prov_endedAtTime)",
    "SET n.outcome = datetime('2026-01-01T00:00:00Z')",
    "SET n.confidence = -0.0",
    "SET n.randomSeed = n.randomSeed",
    "SET n.rdfs_comment = n.rdfs_comment + ['added']",
]


def _record(
    comment: list[str], confidence: float, seed: int, ended: datetime, outcome: str
) -> tuple[GraphRecords, str]:
    decision = f"{DECISION_BASE}differential-{next(_RUNS)}/1"
    nodes = (
        NodeRecord(
            decision,
            (str(TK.Decision),),
            {
                PropKey.RUN_ID: "differential",
                PropKey.STEP: 1,
                PropKey.OUTCOME: outcome,
                PropKey.PROV_ENDED_AT_TIME: ended,
                PropKey.RANDOM_SEED: seed,
                PropKey.RDFS_COMMENT: comment,
                PropKey.CONFIDENCE: confidence,
            },
        ),
        NodeRecord(
            decision + "/action",
            (str(TK.ProposedAction),),
            {PropKey.ACTION_KIND: outcome or "x", PropKey.CONFIDENCE: confidence},
        ),
        NodeRecord(AGENT, (str(TK.TwinAgent),), {PropKey.CODE_VERSION: "1"}),
    )
    rels = (
        RelRecord(RelType.PROV_WAS_GENERATED_BY, decision + "/action", decision),
        RelRecord(RelType.PROV_WAS_ASSOCIATED_WITH, decision, AGENT),
    )
    return GraphRecords(nodes, rels), decision


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.tuples(
        st.lists(_TEXT, min_size=1, max_size=4),  # several values, with repeats
        _FLOAT,
        _INT,
        _TIME,
        _TEXT,
    ),
    tamper=st.sampled_from(_TAMPERS),
)
def test_the_fast_verify_gives_the_plain_verdict_on_hostile_records(
    empty_store: GraphStore,
    driver: Driver,
    values: tuple[list[str], float, int, datetime, str],
    tamper: str | None,
) -> None:
    records, decision = _record(*values)
    receipt = provenance.record(empty_store, records, decision=decision)
    if tamper is not None:
        driver.execute_query(f"MATCH (n {{uri: $d}}) {tamper}", d=decision)
    expected = _plain_verdict(driver, decision)
    if tamper is None:
        assert expected, "the plain path must accept what was just recorded"
    report = chain_verify.verify(empty_store)
    altered = {p.decision for p in report.problems if p.kind == "altered"}
    assert (decision not in altered) == expected, (tamper, report.problems)
    since = chain_verify.verify(empty_store, since=receipt.record_hash)
    assert since.ok == expected or since.problems[0].kind == "altered"
