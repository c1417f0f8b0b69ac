"""The anomaly detector: rolling features, Hotelling's T², streaming, episodes; synthetic, SKAB."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from twinkg.ontology.errors import InvalidInputError
from twinkg.reasoner.anomaly import (
    FORMAT_VERSION,
    Detector,
    Settings,
    alarm_episodes,
    episodes,
    fit,
    load,
)

SKAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "skab" / "data"
CHANNELS = ("a", "b", "c")
Floats = NDArray[np.float64]


def noise(rows: int, seed: int) -> Floats:
    return np.random.default_rng(seed).normal(size=(rows, len(CHANNELS))) * [1.0, 2.0, 0.5] + 10


@pytest.fixture(scope="module")
def detector() -> Detector:
    return fit(noise(3000, 1), channels=CHANNELS, fitted_on="synthetic normal")


def seconds(n: int) -> NDArray[np.datetime64]:
    return np.datetime64("2024-05-01T00:00:00", "ns") + np.arange(n) * np.timedelta64(1, "s")


# ---- synthetic ----


def test_stationary_noise_is_not_flagged(detector: Detector) -> None:
    scores = detector.score(noise(3000, 2))
    assert ((scores >= 0) & (scores < 1)).all()
    assert (scores[30:] > 0.5).mean() < 0.01
    assert episodes(seconds(3000), scores) == ()


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_a_level_shift_is_detected_and_drives_the_episode(detector: Detector, channel: int) -> None:
    values = noise(2000, 3)
    sd = [1.0, 2.0, 0.5][channel]
    values[1000:1300, channel] += 6 * sd
    run = detector.run(values)
    assert (run.scores[1030:1300] > 0.5).mean() > 0.9
    assert not run.active[100:1000].any()
    (found,) = alarm_episodes(seconds(2000), run)
    assert 1000 <= found.first_row <= 1030
    assert 1300 <= found.last_row <= 1360  # the smoothing lags, then clear_after rows below
    assert found.drivers == (channel,)
    assert found.peak_score > 0.7


def test_a_slow_drift_is_followed_not_flagged(detector: Detector) -> None:
    values = noise(3000, 11)
    values[:, 0] += np.linspace(0.0, 3.0, 3000)  # 3 standard deviations over the run
    assert not detector.run(values).active.any()


def test_a_channel_in_alarm_is_relearnt_after_relearn_after_rows() -> None:
    settings = Settings(relearn_after=100)
    fitted = fit(noise(1000, 12), channels=CHANNELS, fitted_on="t", settings=settings)
    values = noise(3000, 13)
    values[1000:, 0] += 10  # a new steady state, never going back
    run = fitted.run(values)
    assert run.active[1050:1100].all()
    assert not run.active[2000:].any()
    found = alarm_episodes(seconds(3000), run)
    assert found[0].first_row >= 1000
    assert found[0].drivers == (0,)


def test_scores_are_causal(detector: Detector) -> None:
    values = noise(500, 4)
    changed = values.copy()
    changed[300:] += 50
    assert np.array_equal(detector.score(values)[:300], detector.score(changed)[:300])


def test_the_recursion_by_hand() -> None:
    settings = Settings(smoothing=0.5, adaptation=0.5, raise_after=2, clear_after=1, skip=0)
    unit = Detector(
        channels=("x",),
        settings=settings,
        centre=np.array([0.0]),
        scale=np.array([1.0]),
        limit=np.array([1.0]),
        fitted_on="t",
    )
    # row 0: smoothed 2, baseline 0: ratio 2, above once (not yet in alarm): not quiet, the
    #        baseline stays 0
    # row 1: smoothed 3, ratio 3: above twice, in alarm: the baseline stays 0
    # row 2: smoothed 1.5, ratio 1.5: above, still in alarm
    # row 3: smoothed 0.75, ratio 0.75: below once, the alarm clears; quiet: baseline → 0.375
    # row 4: smoothed 0.375, ratio 0 against the baseline 0.375
    run = unit.run(np.array([[4.0], [4.0], [0.0], [0.0], [0.0]]))
    assert run.ratios[:, 0].tolist() == [2.0, 3.0, 1.5, 0.75, 0.0]
    assert run.active.tolist() == [False, True, True, False, False]
    r2 = np.array([4.0, 9.0, 2.25, 0.5625, 0.0])
    assert np.allclose(run.scores, r2 / (1 + r2), atol=1e-15)


def test_the_start_of_a_normal_run_is_not_flagged(detector: Detector) -> None:
    for seed in range(20):
        assert (detector.score(noise(30, 100 + seed)) < 0.5).all()


def test_streaming_in_uneven_batches_equals_one_batch(detector: Detector) -> None:
    values = noise(1000, 5)
    values[600:700, 2] += 3
    whole = detector.score(values)
    scorer = detector.scorer()
    cuts = [0, 1, 2, 17, 17, 400, 640, 1000]  # 7 batches, one empty, some shorter than a window
    parts = [scorer.update(values[a:b]).scores for a, b in itertools.pairwise(cuts)]
    assert [len(p) for p in parts] == [1, 1, 15, 0, 383, 240, 360]
    assert np.array_equal(np.concatenate(parts), whole)


def test_nan_and_infinity_are_refused(detector: Detector) -> None:
    bad = noise(500, 6)
    bad[123, 1] = np.nan
    with pytest.raises(InvalidInputError, match="row 123"):
        fit(bad, channels=CHANNELS, fitted_on="t")
    bad[123, 1] = np.inf
    with pytest.raises(InvalidInputError, match="NaN or infinity"):
        detector.score(bad)


def test_wrong_shapes_and_too_few_rows_are_refused(detector: Detector) -> None:
    with pytest.raises(InvalidInputError, match="expected 3 channels"):
        detector.score(np.zeros((10, 2)))
    with pytest.raises(InvalidInputError, match="2-D"):
        detector.score(np.zeros(10))
    with pytest.raises(InvalidInputError, match="too few"):
        fit(noise(59, 7), channels=CHANNELS, fitted_on="t")
    with pytest.raises(InvalidInputError, match="margin"):
        Settings(margin=0.5)
    with pytest.raises(InvalidInputError, match="distinct"):
        fit(noise(500, 7), channels=("a", "a", "b"), fitted_on="t")


def test_a_constant_channel_is_regularised_and_its_movement_flagged() -> None:
    values = noise(1000, 8)
    values[:, 1] = 4.0
    fitted = fit(values, channels=CHANNELS, fitted_on="constant b")
    assert np.isfinite(fitted.scale).all()
    later = noise(600, 9)
    later[:, 1] = 4.0
    assert (fitted.score(later)[30:] > 0.5).mean() < 0.01
    later[300:, 1] = 4.5
    assert (fitted.score(later)[300:] > 0.5).all()


def test_save_and_load_round_trip(detector: Detector, tmp_path: Path) -> None:
    path = tmp_path / "detector.npz"
    detector.save(path)
    again = load(path)
    assert (again.channels, again.settings, again.fitted_on) == (
        detector.channels,
        detector.settings,
        detector.fitted_on,
    )
    assert np.array_equal(again.scale, detector.scale)
    values = noise(300, 10)
    assert np.array_equal(again.score(values), detector.score(values))


def test_load_refuses_other_versions_and_other_files(tmp_path: Path) -> None:
    path = tmp_path / "future.npz"
    with path.open("wb") as handle:
        np.savez(handle, format_version=np.int64(FORMAT_VERSION + 1))
    with pytest.raises(InvalidInputError, match=f"format {FORMAT_VERSION + 1}"):
        load(path)
    old = tmp_path / "hotelling.npz"
    with old.open("wb") as handle:  # the layout of format 1: Hotelling T² of rolling features
        np.savez(handle, format_version=np.int64(1), window=np.int64(30))
    with pytest.raises(InvalidInputError, match=r"detector format 1, this version reads .*refit"):
        load(old)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(InvalidInputError, match="not a saved detector"):
        load(junk)


# ---- episodes ----


def test_episodes_merge_short_gaps_and_drop_short_runs() -> None:
    scores = np.zeros(100)
    scores[10:16] = 0.7  # 6 rows
    scores[20:23] = 0.9  # after a gap of 4 rows: merged with the run before
    scores[50:53] = 0.8  # 3 rows, alone: dropped
    scores[70:76] = 0.6  # 6 rows, gap of 11 to the nearest: its own episode
    scores[75] = 0.5  # not above the threshold
    found = episodes(seconds(100), scores, min_points=5, merge_gap_points=10)
    assert [(e.first_row, e.last_row, e.points, e.peak_score) for e in found] == [
        (10, 22, 13, 0.9),
        (70, 74, 5, 0.6),
    ]
    assert found[0].mean_score == pytest.approx((6 * 0.7 + 3 * 0.9) / 13)  # the gap counts as 0
    assert found[1].mean_score == pytest.approx(0.6)
    assert (found[0].start, found[0].end, found[1].start) == (
        datetime(2024, 5, 1, 0, 0, 10, tzinfo=UTC),
        datetime(2024, 5, 1, 0, 0, 22, tzinfo=UTC),
        datetime(2024, 5, 1, 0, 1, 10, tzinfo=UTC),
    )
    assert found[0].start.tzinfo is UTC


def test_episodes_at_the_edges_and_bad_input() -> None:
    scores = np.full(8, 0.9)
    (whole,) = episodes(seconds(8), scores)
    assert (whole.first_row, whole.last_row, whole.points) == (0, 7, 8)
    assert episodes(seconds(0), np.zeros(0)) == ()
    with pytest.raises(InvalidInputError, match="differ in shape"):
        episodes(seconds(7), scores)
    not_times: Any = np.arange(8)
    with pytest.raises(InvalidInputError, match="datetime64"):
        episodes(not_times, scores)


# ---- SKAB ----

LABELS = ("datetime", "anomaly", "changepoint")


class Run:
    """One SKAB file: times, sensor values, labels."""

    def __init__(self, path: Path) -> None:
        table = np.genfromtxt(path, delimiter=";", names=True, dtype=None, encoding="utf-8")
        names = table.dtype.names or ()
        self.channels = tuple(n for n in names if n not in LABELS)
        self.values = np.column_stack([table[c].astype(np.float64) for c in self.channels])
        self.times = table["datetime"].astype("datetime64[ns]")
        self.labels = table["anomaly"].astype(bool) if "anomaly" in names else None


@pytest.fixture(scope="module")
def skab() -> dict[str, Run]:
    if not SKAB.is_dir():
        pytest.skip(f"SKAB data not found at {SKAB} (it lives in ../shared/data/skab)")
    return {f"{p.parent.name}/{p.name}": Run(p) for p in sorted(SKAB.glob("*/*.csv"))}


def own_start(run: Run, name: str) -> Detector:
    """SKAB's protocol: the start of each run is normal; rows 30..400 fit the detector."""
    return fit(run.values[:400], channels=run.channels, fitted_on=f"SKAB {name} rows 0..399")


def precision_recall(flagged: NDArray[np.bool_], labels: NDArray[np.bool_]) -> tuple[float, float]:
    hits = float((flagged & labels).sum())
    return hits / max(int(flagged.sum()), 1), hits / max(int(labels.sum()), 1)


def test_skab_cavitation_run_13(skab: dict[str, Run]) -> None:
    """Two-phase flow at the pump inlet: the flow collapses for seconds at the onset; the rest
    of the labelled span barely moves any channel, so only the onset is caught, by the flow."""
    run = skab["other/13.csv"]
    assert run.labels is not None
    assert np.flatnonzero(run.labels)[[0, -1]].tolist() == [495, 759]
    seen = own_start(run, "other/13.csv").run(run.values)
    found = alarm_episodes(run.times[400:], seen[400:])
    first = found[0]
    assert 495 <= 400 + first.first_row <= 495 + 60  # within a minute of the onset, not before
    assert run.channels[first.drivers[0]] == "Volume_Flow_RateRMS"  # numpy's name for it
    precision, recall = precision_recall(seen.active[400:], run.labels[400:])
    print(f"\nother/13.csv: P {precision:.3f} R {recall:.3f}, {len(found)} episodes")
    assert precision >= 0.45
    assert recall >= 0.15


def test_skab_all_labelled_runs(skab: dict[str, Run]) -> None:
    rows = []
    for name, run in skab.items():
        if run.labels is None:
            continue
        active = own_start(run, name).run(run.values).active
        precision, recall = precision_recall(active[400:], run.labels[400:])
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        rows.append((name, precision, recall, f1))
    print(f"\n{'file':14s}     P     R    F1")
    for name, precision, recall, f1 in rows:
        print(f"{name:14s} {precision:5.2f} {recall:5.2f} {f1:5.2f}")
    means = np.array([r[1:] for r in rows]).mean(axis=0)
    print(f"{'mean':14s} {means[0]:5.3f} {means[1]:5.3f} {means[2]:5.3f} over {len(rows)} files")
    assert len(rows) == 34
    assert means[2] >= 0.65


def test_skab_anomaly_free_fitted_on_itself(skab: dict[str, Run]) -> None:
    run = skab["anomaly-free/anomaly-free.csv"]
    fitted = fit(run.values, channels=run.channels, fitted_on="SKAB anomaly-free.csv")
    seen = fitted.run(run.values)
    flagged = seen.active.mean()
    found = alarm_episodes(run.times, seen)
    print(f"\nanomaly-free.csv on itself: {100 * flagged:.2f} % flagged, {len(found)} episodes")
    # known weakness (docs/decisions/0034): the fluid warms by 2.5 °C over the 2.6 h run, past a
    # threshold set on its first 400 rows; the baseline relearns it after relearn_after rows
    assert flagged < 0.25
    assert len(found) <= 12


def test_skab_streaming_equals_one_batch(skab: dict[str, Run]) -> None:
    run = skab["other/13.csv"]
    fitted = own_start(run, "other/13.csv")
    scorer = fitted.scorer()
    cuts = [0, 5, 29, 31, 200, 499, 760, len(run.values)]
    streamed = np.concatenate(
        [scorer.update(run.values[a:b]).scores for a, b in itertools.pairwise(cuts)]
    )
    assert np.array_equal(streamed, fitted.score(run.values))
