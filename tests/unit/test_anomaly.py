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
from twinkg.reasoner.anomaly import FORMAT_VERSION, Detector, episodes, fit, load

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


@pytest.mark.parametrize(("kind", "channel"), [("mean", 0), ("variance", 1)])
def test_a_shift_in_mean_or_variance_is_detected(
    detector: Detector, kind: str, channel: int
) -> None:
    values = noise(2000, 3)
    sd = [1.0, 2.0, 0.5][channel]
    if kind == "mean":
        values[1000:1300, channel] += 1.5 * sd
    else:
        values[1000:1300, channel] = 10 + (values[1000:1300, channel] - 10) * 3
    scores = detector.score(values)
    assert (scores[1015:1300] > 0.5).mean() > 0.9
    assert (scores[100:1000] > 0.5).mean() < 0.01
    (found,) = episodes(seconds(2000), scores)
    assert 1000 <= found.first_row <= 1015
    assert 1300 <= found.last_row <= 1330  # the window lags by at most its length
    assert found.peak_score > 0.7


def test_scores_are_causal(detector: Detector) -> None:
    values = noise(500, 4)
    changed = values.copy()
    changed[300:] += 50
    assert np.array_equal(detector.score(values)[:300], detector.score(changed)[:300])


def test_first_rows_complete_the_partial_window_with_normal_rows() -> None:
    normal = np.array([0.0, 1.0])  # normal mean 0, normal standard deviation 1
    unit = Detector(
        channels=("x",), window=3, mean=normal, precision=np.eye(2), threshold=1.0, fitted_on="t"
    )
    # row 0: [3] + 2 normal pseudo-rows: mean 1, spread (3-1)² + 2·(1 + 1²) = 8
    # row 1: [3, 6] + 1 pseudo-row: mean 3, spread 0 + 9 + (1 + 3²) = 19
    # row 2: [3, 6, 0], a full window: mean 3, spread 0 + 9 + 9 = 18
    features = np.array([[1, np.sqrt(8 / 3)], [3, np.sqrt(19 / 3)], [3, np.sqrt(6)]])
    t2 = ((features - normal) ** 2).sum(axis=1)
    assert np.allclose(unit.score(np.array([[3.0], [6.0], [0.0]])), t2 / (t2 + 1), atol=1e-12)


def test_the_start_of_a_normal_run_is_not_flagged(detector: Detector) -> None:
    for seed in range(20):
        assert (detector.score(noise(30, 100 + seed)) < 0.5).all()


def test_streaming_in_uneven_batches_equals_one_batch(detector: Detector) -> None:
    values = noise(1000, 5)
    values[600:700, 2] += 3
    whole = detector.score(values)
    scorer = detector.scorer()
    cuts = [0, 1, 2, 17, 17, 400, 640, 1000]  # 7 batches, one empty, some shorter than a window
    parts = [scorer.update(values[a:b]) for a, b in itertools.pairwise(cuts)]
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
    with pytest.raises(InvalidInputError, match="full windows only"):
        fit(noise(500, 7), channels=CHANNELS, fitted_on="t", window=30, skip=10)
    with pytest.raises(InvalidInputError, match="distinct"):
        fit(noise(500, 7), channels=("a", "a", "b"), fitted_on="t")


def test_a_constant_channel_is_regularised_and_its_movement_flagged() -> None:
    values = noise(1000, 8)
    values[:, 1] = 4.0
    fitted = fit(values, channels=CHANNELS, fitted_on="constant b")
    assert np.isfinite(fitted.precision).all()
    later = noise(600, 9)
    later[:, 1] = 4.0
    assert (fitted.score(later)[30:] > 0.5).mean() < 0.01
    later[300:, 1] = 4.5
    assert (fitted.score(later)[300:] > 0.5).all()


def test_save_and_load_round_trip(detector: Detector, tmp_path: Path) -> None:
    path = tmp_path / "detector.npz"
    detector.save(path)
    again = load(path)
    assert (again.channels, again.window, again.threshold, again.fitted_on) == (
        detector.channels,
        detector.window,
        detector.threshold,
        detector.fitted_on,
    )
    values = noise(300, 10)
    assert np.array_equal(again.score(values), detector.score(values))


def test_load_refuses_other_versions_and_other_files(tmp_path: Path) -> None:
    path = tmp_path / "future.npz"
    with path.open("wb") as handle:
        np.savez(handle, format_version=np.int64(FORMAT_VERSION + 1))
    with pytest.raises(InvalidInputError, match="format 2"):
        load(path)
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
    run = skab["other/13.csv"]
    assert run.labels is not None
    assert np.flatnonzero(run.labels)[[0, -1]].tolist() == [495, 759]
    scores = own_start(run, "other/13.csv").score(run.values)
    found = episodes(run.times, scores)
    assert any(e.first_row <= 759 and e.last_row >= 495 for e in found)
    precision, recall = precision_recall(scores > 0.5, run.labels)
    print(f"\nother/13.csv: P {precision:.3f} R {recall:.3f}, {len(found)} episodes")
    assert precision >= 0.45
    assert recall >= 0.7


def test_skab_all_labelled_runs(skab: dict[str, Run]) -> None:
    rows = []
    for name, run in skab.items():
        if run.labels is None:
            continue
        scores = own_start(run, name).score(run.values)
        precision, recall = precision_recall(scores > 0.5, run.labels)
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
    flagged = (fitted.score(run.values) > 0.5).mean()
    print(f"\nanomaly-free.csv on itself: {100 * flagged:.2f} % flagged")
    assert flagged < 0.02


def test_skab_streaming_equals_one_batch(skab: dict[str, Run]) -> None:
    run = skab["other/13.csv"]
    fitted = own_start(run, "other/13.csv")
    scorer = fitted.scorer()
    cuts = [0, 5, 29, 31, 200, 499, 760, len(run.values)]
    streamed = np.concatenate([scorer.update(run.values[a:b]) for a, b in itertools.pairwise(cuts)])
    assert np.array_equal(streamed, fitted.score(run.values))
