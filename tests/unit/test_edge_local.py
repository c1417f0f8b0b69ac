"""The edge's local parts without a server (decision 0059): rules trip after N readings in a
row and latch until the value falls back; hostile rule documents are refused with a reason;
the local decision chain shows an altered, dropped or cut-off record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinkg.connect.edge.chain import EdgeChain, verify
from twinkg.connect.edge.rules import Reading, Rule, RuleAction, RuleBook, parse_rule
from twinkg.ontology.errors import InvalidInputError

SENSOR = "https://w3id.org/twinkg/plant/p/sensor"
RULE = Rule("hot", SENSOR, 95.0, 3, RuleAction.CONTROLLED_STOP, "https://w3id.org/twinkg/plant/p/m")


def _readings(*values: float) -> list[Reading]:
    return [Reading(SENSOR, f"2026-01-01T00:00:{i:02d}Z", v) for i, v in enumerate(values)]


def test_a_rule_trips_after_n_readings_in_a_row_and_latches_until_it_falls_back() -> None:
    book = RuleBook([RULE])
    assert book.observe(_readings(96, 97, 90, 96, 97)) == []  # the run was broken
    trips = book.observe(_readings(98))
    assert [t.rule.id for t in trips] == ["hot"]
    assert [r.value for r in trips[0].readings] == [96, 97, 98]  # the evidence
    assert book.observe(_readings(99, 99, 99, 99)) == []  # latched: one excursion, one trip
    assert book.observe(_readings(math.nan, 94, 96, 96, 96))[0].rule == RULE  # re-armed


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": _json | st.just("r1"),
            "sensor": _json | st.just(SENSOR),
            "above": _json,
            "count": _json,
            "action": _json | st.sampled_from(["alarm", "controlled_stop"]),
            "target": _json | st.just(SENSOR),
            "demanded_by": _json,
        },
    )
    | _json
)
def test_any_rule_document_is_a_rule_or_refused_with_a_reason(row: object) -> None:
    try:
        rule = parse_rule(row)
    except InvalidInputError as exc:
        assert str(exc)
        return
    assert math.isfinite(rule.above) and rule.count >= 1 and rule.sensor.startswith("http")


def test_the_local_chain_shows_an_altered_dropped_or_cut_off_record(tmp_path: Path) -> None:
    chain = EdgeChain(tmp_path / "decisions.jsonl")
    for n in range(3):
        chain.append({"rule": "hot", "n": n})
    assert verify(chain.path).ok and EdgeChain(chain.path).length == 3  # reopened, resumed
    lines = chain.path.read_bytes().splitlines(keepends=True)
    altered = json.loads(lines[1])
    altered["body"]["n"] = 7
    (tmp_path / "altered.jsonl").write_bytes(
        lines[0] + json.dumps(altered).encode() + b"\n" + lines[2]
    )
    assert any("no longer matches" in p for p in verify(tmp_path / "altered.jsonl").problems)
    (tmp_path / "dropped.jsonl").write_bytes(lines[0] + lines[2])
    assert not verify(tmp_path / "dropped.jsonl").ok
    (tmp_path / "cut.jsonl").write_bytes(lines[0] + lines[1])
    assert verify(tmp_path / "cut.jsonl").ok  # a cut-off tail needs a count kept elsewhere
    assert not verify(tmp_path / "cut.jsonl", expect_length=3).ok


@pytest.mark.parametrize("above", [math.inf, -math.inf, math.nan])
def test_a_rule_threshold_must_be_finite(above: float) -> None:
    row = {**RULE.as_json(), "above": above}
    with pytest.raises(InvalidInputError, match="finite"):
        parse_rule(row)
