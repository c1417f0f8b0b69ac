"""An action's confidence never exceeds the trust of the evidence its hypothesis rests on
(decision 0035): the pure functions of ``agents.planning``, for any trust values and scores."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from twinkg.agents.planning import (
    bound_action,
    bounded,
    confidence_bound,
    evidence_trust,
    rests_on,
)
from twinkg.agents.state import ActionKind, Finding, Hypothesis, ProposedAction, Symptom

PLANT = "https://w3id.org/twinkg/plant/t/"
QK = "http://qudt.org/vocab/quantitykind/"
KINDS = [QK + k for k in ("VolumeFlowRate", "Pressure", "Temperature", "Acceleration")]
SENSORS = [f"{PLANT}sensor-{i}" for i in range(6)]
ASSETS = [PLANT + a for a in ("pump", "motor", "loop")]
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _symptom(sensor: str, kind: str, trust: float, score: str | None, **extra: Any) -> Symptom:
    return Symptom(
        sensor=sensor,
        quantity_kind=kind,
        baseline_mean=1.0,
        baseline_std=0.1,
        mean=2.0,
        shift=10.0,
        spread=1.0,
        trust=trust,
        trust_score=score,
        **extra,
    )


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    """Symptoms, findings, hypotheses and the trust rows the graph would return for them."""
    sensors = draw(st.lists(st.sampled_from(SENSORS), unique=True, max_size=6))
    symptoms, rows = [], []
    for sensor in sensors:
        scored = draw(st.booleans())
        score = f"{sensor}/trust" if scored else None
        symptoms.append(_symptom(sensor, draw(st.sampled_from(KINDS)), draw(unit), score))
        if scored:
            rows.append({"trust": score, "subject": sensor, "confidence": draw(unit)})
    findings = []
    for i, asset in enumerate(draw(st.lists(st.sampled_from(ASSETS), max_size=4))):
        findings.append(Finding(uri=f"{PLANT}event-{i}", kind="anomaly", asset=asset))
    for asset in sorted({f.asset for f in findings}):
        if draw(st.booleans()):  # an asset with no trust score at all gives no row
            rows.append({"trust": f"{asset}/trust", "subject": asset, "confidence": draw(unit)})
    hypotheses = [
        Hypothesis(
            mode=f"{PLANT}mode-{i}",
            code=None,
            score=draw(unit),
            explained=draw(st.lists(st.sampled_from(KINDS), unique=True)),
            rank=i + 1,
        )
        for i in range(draw(st.integers(0, 3)))
    ]
    return {"symptoms": symptoms, "findings": findings, "hypotheses": hypotheses, "rows": rows}


@given(cases())
def test_confidence_never_exceeds_the_trust_of_its_evidence(case: dict[str, Any]) -> None:
    symptoms, findings, hypotheses = case["symptoms"], case["findings"], case["hypotheses"]
    used, subjects = rests_on(hypotheses, symptoms, findings)
    evidence = evidence_trust(used, subjects, case["rows"])
    bound = confidence_bound(evidence)
    # the plan's formula before the bound: the data's mean trust times the top score
    trust = [s.trust for s in symptoms]
    data_trust = sum(trust) / len(trust) if trust else 0.0
    old = round(data_trust * (hypotheses[0].score if hypotheses else 1.0), 6)
    confidence = bounded(old, bound)

    # every piece of evidence carries its own score's confidence, 0 when it has none
    by_score = {r["trust"]: r["confidence"] for r in case["rows"]}
    expected = {(s.sensor, by_score.get(s.trust_score or "", 0.0)) for s in used}
    for subject in subjects:
        found = [r["confidence"] for r in case["rows"] if r["subject"] == subject]
        expected.add((subject, min(found, default=0.0)))
    assert {(e.subject, e.confidence) for e in evidence} == expected
    lowest = min((e.confidence for e in evidence), default=0.0)
    assert confidence <= lowest
    assert confidence <= old
    assert bound.value == lowest
    if evidence:  # the bound names the evidence that set it, with that evidence's score
        setter = next(e for e in evidence if e.subject == bound.subject)
        assert setter.confidence == lowest and setter.trust_score == bound.trust_score
    else:
        assert bound.subject is None and bound.trust_score is None
    # whatever confidence a planner claims, the bounded action carries no more than the bound
    action = ProposedAction(
        kind=ActionKind.WORK_ORDER, target=ASSETS[0], confidence=1.0, proposed_at="2020-01-01Z"
    )
    capped = bound_action(action, bound)
    assert capped is not None and capped.confidence <= lowest


@given(st.lists(unit, min_size=1, max_size=8), unit)
def test_the_lowest_trust_bounds_and_is_named(trusts: list[float], score: float) -> None:
    symptoms = [
        _symptom(SENSORS[i % 6] + f"-{i}", KINDS[0], 1.0, f"{PLANT}trust-{i}")
        for i in range(len(trusts))
    ]
    rows = [
        {"trust": f"{PLANT}trust-{i}", "subject": s.sensor, "confidence": t}
        for i, (s, t) in enumerate(zip(symptoms, trusts, strict=True))
    ]
    top = Hypothesis(mode=PLANT + "mode", code=None, score=score, explained=[KINDS[0]], rank=1)
    used, subjects = rests_on([top], symptoms, [])
    bound = confidence_bound(evidence_trust(used, subjects, rows))
    lowest = min(trusts)
    assert bound.value == lowest
    assert bounded(round(score, 6), bound) <= lowest
    # ties go to the subject first in IRI order; here the sensors' names carry their index
    tied = sorted(s.sensor for s, t in zip(symptoms, trusts, strict=True) if t == lowest)
    assert bound.subject == tied[0]
    assert bound.trust_score == next(r["trust"] for r in rows if r["subject"] == tied[0])


def test_a_neighbour_sensor_of_an_explained_kind_is_evidence() -> None:
    """The loop's water temperature belongs to a neighbour, but the failure mode manifests in
    temperature: its low trust bounds the confidence, and it is named as the bounding subject."""
    pump_flow = _symptom(PLANT + "sensor-flow", KINDS[0], 1.0, PLANT + "trust-flow")
    motor_temp = _symptom(PLANT + "sensor-motor-temp", KINDS[2], 1.0, PLANT + "trust-motor")
    loop_temp = _symptom(
        PLANT + "sensor-loop-temp",
        KINDS[2],
        1.0,
        PLANT + "trust-loop",
        asset=PLANT + "loop",
        relation="upstream",
    )
    rows = [
        {"trust": PLANT + "trust-flow", "subject": pump_flow.sensor, "confidence": 0.97},
        {"trust": PLANT + "trust-motor", "subject": motor_temp.sensor, "confidence": 0.95},
        {"trust": PLANT + "trust-loop", "subject": loop_temp.sensor, "confidence": 0.04},
        {"trust": PLANT + "trust-pump", "subject": PLANT + "pump", "confidence": 0.9},
    ]
    overheating = Hypothesis(
        mode=PLANT + "Overheating", code="OHE", score=1.0, explained=[KINDS[2]], rank=1
    )
    finding = Finding(uri=PLANT + "anomaly-1", kind="anomaly", asset=PLANT + "pump")
    used, subjects = rests_on([overheating], [pump_flow, motor_temp, loop_temp], [finding])
    assert [s.sensor for s in used] == [motor_temp.sensor, loop_temp.sensor]  # not the flow
    assert subjects == [PLANT + "pump"]
    bound = confidence_bound(evidence_trust(used, subjects, rows))
    assert (bound.value, bound.subject, bound.trust_score) == (
        0.04,
        loop_temp.sensor,
        PLANT + "trust-loop",
    )
    assert bounded(1.0, bound) == 0.04
    # without the neighbour's sensor the same evidence would allow 0.9 (the pump's own trust)
    alone = confidence_bound(evidence_trust([motor_temp], subjects, rows))
    assert (alone.value, alone.subject) == (0.9, PLANT + "pump")


def test_evidence_without_a_trust_score_bounds_to_zero() -> None:
    unscored = _symptom(PLANT + "sensor-x", KINDS[1], 1.0, None)
    finding = Finding(uri=PLANT + "alarm-1", kind="alarm", asset=PLANT + "motor")
    used, subjects = rests_on([], [unscored], [finding])
    bound = confidence_bound(evidence_trust(used, subjects, []))
    assert bound.value == 0.0 and bound.trust_score is None
    assert bound.subject == PLANT + "motor"  # tie at 0: the first subject in IRI order
    assert confidence_bound([]).value == 0.0  # resting on nothing allows nothing
    stale = Finding(uri=PLANT + "sensor-x", kind="stale_sensor", asset=PLANT + "motor")
    assert rests_on([], [], [stale])[1] == [PLANT + "sensor-x"]  # a stale sensor is its own
