"""The diagnoser's ranking reads the direction of each symptom and never breaks a tie by name."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinkg.agents.diagnose import DIRECTIONS, rank, support, symptoms
from twinkg.agents.state import Symptom

QK = "http://qudt.org/vocab/quantitykind/"
TEMP, FLOW, PRESSURE, ACC = (
    QK + "Temperature",
    QK + "VolumeFlowRate",
    QK + "Pressure",
    QK + "Acceleration",
)
THRESHOLD = 2.0


def _symptom(
    kind: str, shift: float, spread: float = 1.0, *, trust: float = 1.0, name: str = ""
) -> Symptom:
    return Symptom(
        sensor=f"urn:sensor:{name or kind.rsplit('/', 1)[-1]}",
        quantity_kind=kind,
        baseline_mean=10.0,
        baseline_std=1.0,
        mean=10.0 + shift,
        shift=shift,
        spread=spread,
        trust=trust,
    )


def _mode(name: str, *pattern: tuple[str, str]) -> dict[str, Any]:
    return {
        "mode": name,
        "code": None,
        "kinds": sorted({k for k, _ in pattern}),
        "signature": [{"kind": k, "direction": d} for k, d in pattern],
    }


def test_a_fall_counts_against_a_rise_mode() -> None:
    # The motor temperature fell 5 σ (SKAB valve1/0.csv): no evidence of overheating.
    found = [_symptom(TEMP, -5.1)]
    ranked = rank(
        [_mode("urn:Overheating", (TEMP, "rise")), _mode("urn:Cooling", (TEMP, "fall"))],
        found,
        [],
        threshold=THRESHOLD,
    )
    by_mode = {h.mode: h for h in ranked}
    assert ranked[0].mode == "urn:Cooling"
    assert by_mode["urn:Overheating"].score == 0.0
    assert by_mode["urn:Overheating"].contradicted == [TEMP]
    assert by_mode["urn:Overheating"].explained == []
    assert by_mode["urn:Cooling"].explained == [TEMP]


def test_a_contradicted_kind_pulls_a_mode_below_one_that_only_explains() -> None:
    # Flow fell, pressure rose: a throttled discharge, not a leak (that would drop the pressure).
    found = [_symptom(FLOW, -8.0), _symptom(PRESSURE, 6.0)]
    modes = [
        _mode("urn:Leak", (FLOW, "fall"), (PRESSURE, "fall")),
        _mode("urn:Plugged", (FLOW, "fall"), (PRESSURE, "rise")),
    ]
    ranked = rank(modes, found, [], threshold=THRESHOLD)
    assert [h.mode for h in ranked] == ["urn:Plugged", "urn:Leak"]
    assert ranked[0].score == 1.0 and ranked[1].score == 0.0
    assert ranked[1].contradicted == [PRESSURE]


def test_support_reads_sign_and_size() -> None:
    up, down, noisy = _symptom(TEMP, 2.0), _symptom(TEMP, -8.0), _symptom(TEMP, 0.0, 4.0)
    assert support(up, "rise", threshold=THRESHOLD) == pytest.approx(0.5)
    assert support(up, "fall", threshold=THRESHOLD) == pytest.approx(-0.5)
    assert support(down, "fall", threshold=THRESHOLD) == 1.0  # capped
    assert support(down, "any", threshold=THRESHOLD) == 1.0
    assert support(noisy, "oscillation", threshold=THRESHOLD) == 1.0
    assert support(_symptom(TEMP, 0.0, 0.5), "oscillation", threshold=THRESHOLD) == -1.0
    assert support(noisy, "rise", threshold=THRESHOLD) == 0.0
    with pytest.raises(ValueError, match="direction"):
        support(up, "sideways", threshold=THRESHOLD)


def test_equal_evidence_is_reported_as_a_tie_whatever_the_names() -> None:
    found = [_symptom(FLOW, -8.0)]
    for names in (("urn:A", "urn:Z"), ("urn:Z", "urn:A")):
        modes = [_mode(n, (FLOW, "fall"), (PRESSURE, "fall")) for n in names]
        ranked = rank(modes, [*found, _symptom(PRESSURE, -1.0)], [], threshold=THRESHOLD)
        assert ranked[0].tied_with == [ranked[1].mode]
        assert ranked[1].tied_with == [ranked[0].mode]
        assert ranked[0].score == ranked[1].score


def test_ties_are_separated_by_evidence_before_history() -> None:
    # Both explain the flow at full strength; the one that also explains the vibration wins.
    found = [_symptom(FLOW, -8.0), _symptom(ACC, 9.0)]
    modes = [
        _mode("urn:LowOutput", (FLOW, "fall")),
        _mode("urn:Cavitation", (FLOW, "fall"), (ACC, "rise")),
    ]
    history = [{"mode": "urn:LowOutput", "events": 50}]
    ranked = rank(modes, found, history, threshold=THRESHOLD)
    assert ranked[0].mode == "urn:Cavitation" and not ranked[0].tied_with
    # The same score and the same explained kinds: the larger move decides (200 σ beats 5 σ).
    found = [_symptom(TEMP, 200.0), _symptom(FLOW, 5.0)]
    modes = [_mode("urn:HighOutput", (FLOW, "rise")), _mode("urn:Overheating", (TEMP, "rise"))]
    ranked = rank(modes, found, [], threshold=THRESHOLD)
    assert [h.mode for h in ranked] == ["urn:Overheating", "urn:HighOutput"]
    # Equal in everything but history: the mode seen before wins.
    found = [_symptom(FLOW, -8.0)]
    modes = [_mode("urn:A", (FLOW, "fall")), _mode("urn:B", (FLOW, "fall"))]
    ranked = rank(modes, found, [{"mode": "urn:B", "events": 2}], threshold=THRESHOLD)
    assert ranked[0].mode == "urn:B" and not ranked[0].tied_with


def test_a_mode_without_patterns_shows_in_its_kinds_either_way() -> None:
    legacy = {"mode": "urn:Old", "code": None, "kinds": [TEMP], "signature": []}
    ranked = rank([legacy], [_symptom(TEMP, -8.0)], [], threshold=THRESHOLD)
    assert ranked[0].score == 1.0


def test_trust_weighs_support_both_ways() -> None:
    mode = _mode("urn:Overheating", (TEMP, "rise"))
    trusted = rank([mode], [_symptom(TEMP, 8.0)], [], threshold=THRESHOLD)[0]
    doubtful = rank([mode], [_symptom(TEMP, 8.0, trust=0.2)], [], threshold=THRESHOLD)[0]
    assert trusted.score == 1.0 and doubtful.score == pytest.approx(0.2)


def test_symptoms_keep_the_neighbour_relation_and_count_a_sensor_once() -> None:
    rows = [
        {"sensor": "urn:s1", "quantity_kind": TEMP},
        {"sensor": "urn:s2", "quantity_kind": TEMP, "asset": "urn:loop", "relation": "system"},
        {"sensor": "urn:s1", "quantity_kind": TEMP, "asset": "urn:motor", "relation": "driver"},
    ]
    base = pa.table(
        {"sensor": ["urn:s1", "urn:s1", "urn:s2", "urn:s2"], "value": [1.0, 2.0, 1.0, 2.0]}
    )
    now = pa.table({"sensor": ["urn:s1", "urn:s2"], "value": [5.0, 0.0]})
    found = symptoms(rows, base, now)
    assert [(s.sensor, s.relation, s.asset) for s in found] == [
        ("urn:s1", "own", None),
        ("urn:s2", "system", "urn:loop"),
    ]
    assert found[0].shift > 0 > found[1].shift


# ---- Property: renaming or reordering the modes never changes which wins ----

KINDS = (TEMP, FLOW, PRESSURE, ACC)
_patterns = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(DIRECTIONS)),
    min_size=1,
    max_size=4,
    unique=True,
)
_symptoms = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.floats(-12, 12, allow_nan=False),
        st.floats(0.2, 5.0, allow_nan=False),
        st.sampled_from((1.0, 0.5)),
    ),
    min_size=1,
    max_size=5,
)


def _winners(
    modes: list[dict[str, Any]], found: list[Symptom], history: list[dict[str, Any]]
) -> set[str]:
    ranked = rank(modes, found, history, threshold=THRESHOLD)
    return {ranked[0].mode, *ranked[0].tied_with} if ranked else set()


@settings(max_examples=300, deadline=None)
@given(
    signatures=st.lists(_patterns, min_size=1, max_size=6),
    raw=_symptoms,
    events=st.lists(st.integers(0, 2), min_size=6, max_size=6),
    data=st.data(),
)
def test_renaming_and_shuffling_modes_never_changes_who_wins(
    signatures: list[list[tuple[str, str]]],
    raw: list[tuple[str, float, float, float]],
    events: list[int],
    data: st.DataObject,
) -> None:
    found = [_symptom(k, z, r, trust=t, name=f"s{i}") for i, (k, z, r, t) in enumerate(raw)]
    names = [f"urn:mode:{i}" for i in range(len(signatures))]
    modes = [_mode(n, *sig) for n, sig in zip(names, signatures, strict=True)]
    history = [{"mode": n, "events": e} for n, e in zip(names, events, strict=False) if e]
    new_names = data.draw(
        st.lists(
            st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6),
            min_size=len(names),
            max_size=len(names),
            unique=True,
        )
    )
    rename = {old: f"urn:x:{new}" for old, new in zip(names, new_names, strict=True)}
    back = {v: k for k, v in rename.items()}
    renamed = [{**m, "mode": rename[m["mode"]]} for m in modes]
    shuffled = data.draw(st.permutations(renamed))
    renamed_history = [{**h, "mode": rename[str(h["mode"])]} for h in history]
    before = _winners(modes, found, history)
    after = {back[m] for m in _winners(list(shuffled), found, renamed_history)}
    assert before == after
    ranked = rank(modes, found, history, threshold=THRESHOLD)
    for h in ranked:  # a tie is symmetric and only between equal scores
        for other in h.tied_with:
            partner = next(x for x in ranked if x.mode == other)
            assert h.mode in partner.tied_with and partner.score == h.score
    assert all(0.0 <= h.score <= 1.0 and not math.isnan(h.coverage) for h in ranked)
    assert [h.rank for h in ranked] == list(range(1, len(ranked) + 1))
