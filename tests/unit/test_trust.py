"""Trust scores: the formulas by hand, their bounds and monotonicity, the per-subject records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from twinkg.ontology.errors import InvalidInputError
from twinkg.reasoner.trust import (
    TrustReason,
    TrustWeights,
    Window,
    ages,
    asset_score,
    confidence,
    freshness,
    quality,
    sensor_scores,
    window_anomaly,
)

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(minutes=10))


def at(seconds: float) -> np.datetime64:
    """A naive UTC datetime64 ``seconds`` after the window start."""
    return np.datetime64("2024-05-01T10:00:00", "ns") + np.timedelta64(int(seconds * 1e9), "ns")


# ---- the formulas ----


def test_quality_by_hand_and_without_evidence() -> None:
    assert quality([8, 5, 0], [2, 0, 0]).tolist() == [0.8, 1.0, 0.0]


def test_freshness_by_hand() -> None:
    got = freshness([0.5, 1.0, 61.0, 121.0, np.inf], 1.0, half_life_s=60.0)
    assert got.tolist() == [1.0, 1.0, 0.5, 0.25, 0.0]
    assert freshness(40.0, 10.0, half_life_s=15.0) == pytest.approx(0.25)


def test_confidence_by_hand() -> None:
    # 0.8 · 0.5 · (1 - 0.36) ** 0.5
    assert confidence(0.8, 0.5, 0.36) == pytest.approx(0.32)
    weights = TrustWeights(quality=2.0, freshness=0.0, anomaly=1.0)
    assert confidence(0.5, 0.0, 0.2, weights=weights) == pytest.approx(0.25 * 1.0 * 0.8)


def test_window_anomaly_is_an_observed_high_quantile() -> None:
    scores = np.arange(100) / 100
    assert window_anomaly(scores) == 0.95
    assert window_anomaly(scores, quantile=1.0) == 0.99
    blip = np.zeros(200)
    blip[50:55] = 0.9  # 2.5 % of the window: a blip, not a sustained fault
    assert window_anomaly(blip) == 0.0
    blip[50:70] = 0.9  # 10 %
    assert window_anomaly(blip) == 0.9
    assert window_anomaly([]) == 0.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="≥ 0"):
        quality([-1], [0])
    with pytest.raises(InvalidInputError, match="NaN"):
        quality([np.nan], [0])
    with pytest.raises(InvalidInputError, match="periods"):
        freshness(1.0, 0.0)
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        confidence(1.2, 1.0, 0.0)
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        window_anomaly([0.2, 1.5])
    with pytest.raises(InvalidInputError, match="weight anomaly"):
        TrustWeights(anomaly=-1.0)
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        Window(datetime(2024, 5, 1), datetime(2024, 5, 2))
    with pytest.raises(InvalidInputError, match="after it ends"):
        Window(WINDOW.end, WINDOW.start)


# ---- bounds and monotonicity ----


def test_every_component_lies_in_the_unit_interval() -> None:
    rng = np.random.default_rng(0)
    accepted, rejected = rng.integers(0, 100, 1000), rng.integers(0, 100, 1000)
    q = quality(accepted, rejected)
    f = freshness(rng.exponential(300, 1000), rng.uniform(0.1, 60, 1000))
    c = confidence(q, f, rng.uniform(0, 1, 1000), weights=TrustWeights(0.3, 2.0, 5.0))
    for values in (q, f, c):
        assert ((values >= 0) & (values <= 1)).all()


def test_older_is_less_fresh_and_more_rejects_lower_quality() -> None:
    f = freshness(np.linspace(0, 1000, 200), 5.0)
    assert (np.diff(f) <= 0).all()
    assert (np.diff(f[f < 1]) < 0).all()
    q = quality(100, np.arange(50))
    assert (np.diff(q) < 0).all()
    c = confidence(q, 1.0, 0.1)
    assert (np.diff(c) < 0).all()
    assert (np.diff(confidence(0.9, 0.9, np.linspace(0, 1, 50))) < 0).all()


# ---- per-subject records ----


def test_sensor_scores_keep_every_component_and_say_why() -> None:
    fresh, slow, silent = sensor_scores(
        ("urn:s:fresh", "urn:s:slow", "urn:s:silent"),
        accepted=[600, 90, 0],
        rejected=[0, 10, 0],
        newest=np.array([at(599), at(480), np.datetime64("NaT")]),
        period_s=[1.0, 60.0, 1.0],
        anomaly=0.19,
        window=WINDOW,
    )
    assert (fresh.quality, fresh.freshness, fresh.age_s) == (1.0, 1.0, 1.0)
    assert fresh.confidence == pytest.approx(0.9)  # sqrt(1 - 0.19)
    assert fresh.reasons == ()
    assert (slow.quality, slow.freshness, slow.age_s) == (0.9, 0.5, 120.0)  # 2 ** -(120-60)/60
    assert slow.confidence == pytest.approx(0.9 * 0.5 * 0.9)
    assert slow.reasons == (TrustReason.REJECTED_POINTS, TrustReason.STALE)
    assert (silent.quality, silent.freshness, silent.confidence, silent.age_s) == (0, 0, 0, None)
    assert silent.reasons == (TrustReason.NO_EVIDENCE, TrustReason.NO_DATA)
    assert fresh.as_of == WINDOW.end  # as_of defaults to the window's end, not the wall clock
    assert (fresh.window, fresh.weights, fresh.half_life_s) == (WINDOW, TrustWeights(), 60.0)
    assert (slow.subject, slow.accepted, slow.rejected) == ("urn:s:slow", 90, 10)


def test_a_later_as_of_makes_the_same_data_staler() -> None:
    newest = np.array([at(599)])
    scores = [
        sensor_scores(
            ("urn:s:x",),
            accepted=10,
            rejected=0,
            newest=newest,
            period_s=1.0,
            anomaly=0.0,
            window=WINDOW,
            as_of=WINDOW.end + timedelta(seconds=delay),
        )[0]
        for delay in (0, 60, 600)
    ]
    assert [s.freshness for s in scores] == [1.0, 0.5, pytest.approx(2 ** (-600 / 60))]
    eastern = WINDOW.end.astimezone(timezone(timedelta(hours=-5)))
    assert ages(newest, eastern).tolist() == [1.0]  # time zones do not change an age


def test_sensor_scores_refuse_points_after_as_of_and_mismatched_arrays() -> None:
    with pytest.raises(InvalidInputError, match="after as_of"):
        sensor_scores(
            ("urn:s:x",),
            accepted=1,
            rejected=0,
            newest=np.array([at(700)]),
            period_s=1.0,
            anomaly=0.0,
            window=WINDOW,
        )
    with pytest.raises(InvalidInputError, match="does not match 2 subjects"):
        sensor_scores(
            ("urn:s:x", "urn:s:y"),
            accepted=[1, 2, 3],
            rejected=0,
            newest=np.array([at(1), at(2)]),
            period_s=1.0,
            anomaly=0.0,
            window=WINDOW,
        )


def test_asset_score_takes_the_weakest_sensor_and_the_asset_anomaly() -> None:
    sensors = sensor_scores(
        ("urn:s:a", "urn:s:b"),
        accepted=[100, 50],
        rejected=[0, 50],
        newest=np.array([at(600), at(480)]),
        period_s=[1.0, 60.0],
        anomaly=0.0,
        window=WINDOW,
    )
    asset = asset_score("urn:asset:pump", sensors, anomaly=0.75)
    assert (asset.quality, asset.freshness, asset.anomaly) == (0.5, 0.5, 0.75)
    assert asset.confidence == pytest.approx(0.5 * 0.5 * 0.5)
    assert asset.inputs == ("urn:s:a", "urn:s:b")
    assert (asset.accepted, asset.rejected, asset.age_s) == (150, 50, 120.0)
    assert asset.reasons == (
        TrustReason.REJECTED_POINTS,
        TrustReason.STALE,
        TrustReason.ANOMALOUS,
    )
    with pytest.raises(InvalidInputError, match="no sensor scores"):
        asset_score("urn:asset:pump", (), anomaly=0.0)
    later = sensor_scores(
        ("urn:s:c",),
        accepted=1,
        rejected=0,
        newest=np.array([at(600)]),
        period_s=1.0,
        anomaly=0.0,
        window=Window(START, START + timedelta(minutes=20)),
    )
    with pytest.raises(InvalidInputError, match="different windows"):
        asset_score("urn:asset:pump", (*sensors, *later), anomaly=0.0)
