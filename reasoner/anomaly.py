"""Anomaly detection on telemetry: per-channel drift-tolerant residuals with an alarm logic.

A :class:`Detector` watches the channels of one piece of equipment. For every channel it keeps

* a *smoothed value*: an exponentially weighted moving average (EWMA) of the readings, weight
  ``smoothing`` on the newest row (a span of 10 rows), which averages the noise out;
* a *baseline*: the channel's normal level, learnt on the training rows, that follows slow drift
  (rate ``adaptation``) only while the channel is quiet — not in alarm and below its threshold —
  so an abnormal level is never learnt as normal; unless the channel stays above its threshold
  for more than ``relearn_after`` rows in a row (a new steady state): the baseline then follows
  until the alarm clears, and the episode it raised stays recorded;
* its *ratio*: ``|smoothed − baseline| / (scale · margin)``, 1.0 at the channel's threshold.

``scale`` is the standard deviation of the smoothed value on the training rows (a start-up
transient inside them trimmed away), floored twice: at ``relative_floor`` of the channel's
normal level, and at the instrument's stated accuracy (``tk:accuracy``). A few hundred
autocorrelated rows underestimate how far a healthy channel wanders over an hour, and a
movement smaller than the instrument can resolve is no evidence.

A row's score is ``r / (1 + r)`` with ``r`` the largest squared ratio over its channels: in
[0, 1), 0.5 at the threshold (the meaning ``tk:anomalyScore`` and the trust component
``anomaly`` give it). The ratios are the per-channel contributions: which sensors drove a score.

The alarm logic is hysteresis per channel: a channel enters alarm after ``raise_after``
consecutive rows above its threshold and leaves it after ``clear_after`` consecutive rows below;
the equipment is *active* while any channel is in alarm. Runs of active rows are the episodes
(:func:`alarm_episodes`) that become ``tk:Anomaly`` events, with the channels in alarm as their
drivers.

Everything is a recursion over rows in a fixed order kept in a :class:`Scorer`: a run scored
batch by batch gives bit-identical scores and states to the run scored at once. Decision record:
docs/decisions/0034-drift-tolerant-detectors.md; ``make bench-skab`` measures it on SKAB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from twinkg.ontology.errors import InvalidInputError

FORMAT_VERSION = 2
"""Version of the ``.npz`` layout written by :meth:`Detector.save` (1: Hotelling T² of rolling
features, no longer read)."""

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]
MAD_SIGMA = 1.4826  # median absolute deviation → standard deviation of a normal distribution
_TINY = 1e-12  # scale of a channel constant in training: any later movement is far out


@dataclass(frozen=True, slots=True)
class Settings:
    """The detector's settings: the same for every piece of equipment and every run."""

    smoothing: float = 2.0 / 11.0  # EWMA weight of the newest row (a span of 10 rows)
    adaptation: float = 0.005  # rate at which a quiet channel's baseline follows slow drift
    margin: float = 5.0  # threshold = margin × the channel's scale
    raise_after: int = 5  # consecutive rows above the threshold that raise a channel's alarm
    clear_after: int = 30  # consecutive rows below it that clear the alarm
    relearn_after: int = 1800  # rows continuously in alarm after which the baseline follows again
    skip: int = 50  # leading training rows that only settle the smoothed value
    relative_floor: float = 0.004  # smallest scale, as a share of the channel's normal level
    trim: float = 10.0  # training rows further than this many robust spreads are left out

    def __post_init__(self) -> None:
        if not (0.0 < self.smoothing <= 1.0 and 0.0 < self.adaptation <= 1.0):
            raise InvalidInputError(
                f"need 0 < smoothing ≤ 1 and 0 < adaptation ≤ 1, "
                f"got {self.smoothing} and {self.adaptation}"
            )
        if not (np.isfinite(self.margin) and self.margin >= 1.0):
            raise InvalidInputError(f"margin must be at least 1, got {self.margin}")
        if not (np.isfinite(self.relative_floor) and self.relative_floor >= 0.0):
            raise InvalidInputError(f"relative_floor must be ≥ 0, got {self.relative_floor}")
        if not (np.isfinite(self.trim) and self.trim >= 1.0):
            raise InvalidInputError(f"trim must be at least 1, got {self.trim}")
        if min(self.raise_after, self.clear_after, self.relearn_after) < 1 or self.skip < 0:
            raise InvalidInputError(
                "raise_after, clear_after and relearn_after must be ≥ 1, skip ≥ 0"
            )


DEFAULTS = Settings()


def _as_matrix(values: NDArray[np.floating] | NDArray[np.integer], k: int | None) -> Floats:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2:
        raise InvalidInputError(f"expected a 2-D array (rows × channels), got {matrix.ndim}-D")
    if k is not None and matrix.shape[1] != k:
        raise InvalidInputError(f"expected {k} channels, got {matrix.shape[1]}")
    if not np.isfinite(matrix).all():
        row = int(np.argwhere(~np.isfinite(matrix))[0, 0])
        raise InvalidInputError(f"values contain NaN or infinity (first at row {row})")
    return matrix


@dataclass(frozen=True, slots=True, eq=False)
class Detector:
    """A fitted detector: which channels, their normal level and noise, and their thresholds."""

    channels: tuple[str, ...]
    settings: Settings
    centre: Floats = field(repr=False)  # normal level: where smoothed value and baseline start
    scale: Floats = field(repr=False)  # noise of the smoothed value, floored (see :func:`fit`)
    limit: Floats = field(repr=False)  # threshold of the scaled residual (``margin``)
    fitted_on: str

    def __post_init__(self) -> None:
        k = len(self.channels)
        if k == 0 or len(set(self.channels)) != k:
            raise InvalidInputError("channels must be non-empty and distinct")
        for name in ("centre", "scale", "limit"):
            array = getattr(self, name)
            if array.shape != (k,) or not np.isfinite(array).all():
                raise InvalidInputError(f"{name} does not match {k} channels")
            array.flags.writeable = False
        if (self.scale <= 0).any() or (self.limit <= 0).any():
            raise InvalidInputError("scale and limit must be positive")

    @property
    def threshold(self) -> float:
        """The score at which a row is above its threshold (0.5, by construction)."""
        return 0.5

    def scorer(self) -> Scorer:
        """A fresh stateful scorer for one run, fed batch by batch."""
        return Scorer(self)

    def run(self, values: Floats) -> Scored:
        """Scores, contributions and alarm states of the rows of one whole run."""
        return self.scorer().update(values)

    def score(self, values: Floats) -> Floats:
        """Scores in [0, 1) of the rows of one whole run (``n × k``, columns as ``channels``)."""
        return self.run(values).scores

    def save(self, path: Path) -> None:
        """Write the detector to ``path`` as an uncompressed ``.npz`` (no pickles)."""
        s = self.settings
        with path.open("wb") as handle:
            np.savez(
                handle,
                format_version=np.int64(FORMAT_VERSION),
                channels=np.array(self.channels, dtype=np.str_),
                settings=np.array(
                    [
                        s.smoothing,
                        s.adaptation,
                        s.margin,
                        s.raise_after,
                        s.clear_after,
                        s.relearn_after,
                        s.skip,
                        s.relative_floor,
                        s.trim,
                    ],
                    dtype=np.float64,
                ),
                centre=self.centre,
                scale=self.scale,
                limit=self.limit,
                fitted_on=np.str_(self.fitted_on),
            )


@dataclass(frozen=True, slots=True, eq=False)
class Scored:
    """What a detector made of some rows: scores, per-channel ratios, alarm states."""

    scores: Floats  # n, in [0, 1), 0.5 at the threshold
    ratios: Floats  # n × k, each channel's |residual| / threshold (1.0 at it)
    alarmed: Bools  # n × k, each channel's alarm state after the row
    active: Bools  # n, any channel in alarm

    def __getitem__(self, rows: slice) -> Scored:
        return Scored(self.scores[rows], self.ratios[rows], self.alarmed[rows], self.active[rows])


class Scorer:
    """Scores one run arriving in batches; scores and states equal those of the run at once."""

    __slots__ = (
        "_a",
        "_above",
        "_b",
        "_base",
        "_below",
        "_clear",
        "_inv",
        "_k",
        "_learning",
        "_on",
        "_raise",
        "_relearn",
        "_smooth",
    )

    def __init__(self, detector: Detector) -> None:
        s = detector.settings
        self._k = len(detector.channels)
        self._a, self._b = s.smoothing, s.adaptation
        self._raise, self._clear, self._relearn = s.raise_after, s.clear_after, s.relearn_after
        self._inv = [
            1.0 / float(sc * lim) for sc, lim in zip(detector.scale, detector.limit, strict=True)
        ]
        self._smooth = [float(c) for c in detector.centre]
        self._base = list(self._smooth)
        self._on = [False] * self._k
        self._learning = [False] * self._k
        self._above = [0] * self._k
        self._below = [0] * self._k

    def rearm(self) -> None:
        """Declare the rows so far normal: no channel in alarm (after the rows a detector was
        fitted on, which are normal by definition); the baselines stay where they are."""
        self._on = [False] * self._k
        self._learning = [False] * self._k
        self._above = [0] * self._k
        self._below = [0] * self._k

    def update(self, values: Floats) -> Scored:
        """Scores and states of the next rows of the run (the state carries to the next call)."""
        matrix = _as_matrix(values, self._k)
        n, k = matrix.shape
        ratios = np.empty((n, k))
        alarmed = np.empty((n, k), dtype=bool)
        a, b, keep, follow = self._a, self._b, 1.0 - self._a, 1.0 - self._b
        relearn = self._relearn
        smooth, base, inv, on, learning = (
            self._smooth,
            self._base,
            self._inv,
            self._on,
            self._learning,
        )
        above, below = self._above, self._below
        rows = matrix.tolist()
        out_r = ratios.tolist() if n else []
        out_a = alarmed.tolist() if n else []
        for i in range(n):
            row, r_out, a_out = rows[i], out_r[i], out_a[i]
            for j in range(k):
                s = a * row[j] + keep * smooth[j]
                smooth[j] = s
                ratio = abs(s - base[j]) * inv[j]
                r_out[j] = ratio
                if ratio > 1.0:
                    above[j] += 1
                    below[j] = 0
                    if above[j] >= self._raise:
                        on[j] = True
                else:
                    below[j] += 1
                    above[j] = 0
                    if below[j] >= self._clear:
                        on[j] = False
                        learning[j] = False
                if above[j] > relearn:
                    learning[j] = True  # a new steady state: follow it until the alarm clears
                if (not on[j] and ratio <= 1.0) or learning[j]:
                    base[j] = b * s + follow * base[j]
                a_out[j] = on[j]
        ratios = np.array(out_r, dtype=np.float64).reshape(n, k)
        alarmed = np.array(out_a, dtype=bool).reshape(n, k)
        peak = (ratios * ratios).max(axis=1)
        active: Bools = np.any(alarmed, axis=1)
        return Scored(peak / (1.0 + peak), ratios, alarmed, active)


def fit(
    values: Floats,
    *,
    channels: tuple[str, ...],
    fitted_on: str,
    settings: Settings = DEFAULTS,
    accuracy: Floats | None = None,
) -> Detector:
    """Fit a detector on rows of normal operation (``n × k``, columns as ``channels``).

    The smoothed value runs over the training rows as it will in scoring; after the first
    ``settings.skip`` rows its mean is each channel's normal level (where the baseline starts)
    and its standard deviation the channel's noise, both over the rows within ``trim`` robust
    spreads (1.4826 × median absolute deviation, floored like the scale) of the median, so a
    start-up transient inside the training rows neither shifts the level nor inflates the
    noise. A few hundred autocorrelated rows
    underestimate how far a healthy channel wanders, so the scale is floored: at
    ``relative_floor`` of the normal level, and at the instrument's stated ``accuracy`` (one
    value per channel, in the channel's unit, 0 where unknown): a movement smaller than what
    the instrument can resolve is not evidence. The threshold lies ``margin`` scales away. A
    channel constant at 0 in training gets a tiny scale, so any later movement is far out.
    """
    matrix = _as_matrix(values, len(channels))
    k = len(channels)
    needed = settings.skip + 30
    if matrix.shape[0] < needed:
        raise InvalidInputError(
            f"{matrix.shape[0]} rows are too few to fit {k} channels "
            f"(need ≥ {needed}: skip {settings.skip} + 30)"
        )
    if k == 0 or len(set(channels)) != k:
        raise InvalidInputError("channels must be non-empty and distinct")
    floors = np.zeros(k) if accuracy is None else np.asarray(accuracy, dtype=np.float64)
    if floors.shape != (k,) or not np.isfinite(floors).all() or (floors < 0).any():
        raise InvalidInputError(f"accuracy must hold {k} finite values ≥ 0")
    smoothed = _smoothed(matrix, settings)[settings.skip :]
    median = np.median(smoothed, axis=0)
    spread = MAD_SIGMA * np.median(np.abs(smoothed - median), axis=0)
    floor = np.maximum(settings.relative_floor * np.abs(median), floors)
    kept = np.abs(smoothed - median) <= settings.trim * np.maximum(spread, floor)
    centre = np.array([smoothed[kept[:, j], j].mean() for j in range(k)])
    noise = np.array([smoothed[kept[:, j], j].std() for j in range(k)])
    scale = np.maximum(np.maximum(noise, settings.relative_floor * np.abs(centre)), floors)
    scale = np.where(scale > 0, scale, _TINY)
    limit = np.full(k, settings.margin)
    return Detector(
        channels=tuple(channels),
        settings=settings,
        centre=centre,
        scale=scale,
        limit=limit,
        fitted_on=fitted_on,
    )


def _smoothed(matrix: Floats, settings: Settings) -> Floats:
    """The EWMA of each channel over the rows, starting at the first row."""
    a = settings.smoothing
    smooth = matrix[0].copy()
    out = np.empty_like(matrix)
    for i, row in enumerate(matrix):
        smooth = a * row + (1.0 - a) * smooth
        out[i] = smooth
    return out


def load(path: Path) -> Detector:
    """Read a detector written by :meth:`Detector.save`; refuses other format versions."""
    try:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise InvalidInputError(
                    f"{path}: detector format {version}, this version reads {FORMAT_VERSION}: "
                    "refit it (ingest a run with fit rows)"
                )
            smoothing, adaptation, margin, raise_after, clear_after, relearn, skip, floor, trim = (
                float(v) for v in data["settings"]
            )
            return Detector(
                channels=tuple(str(c) for c in data["channels"]),
                settings=Settings(
                    smoothing,
                    adaptation,
                    margin,
                    int(raise_after),
                    int(clear_after),
                    int(relearn),
                    int(skip),
                    floor,
                    trim,
                ),
                centre=np.array(data["centre"], dtype=np.float64),
                scale=np.array(data["scale"], dtype=np.float64),
                limit=np.array(data["limit"], dtype=np.float64),
                fitted_on=str(data["fitted_on"]),
            )
    except (OSError, KeyError, ValueError) as error:
        raise InvalidInputError(f"{path}: not a saved detector ({error})") from error


@dataclass(frozen=True, slots=True)
class Episode:
    """A run of rows in alarm (or above the threshold): the makings of one ``tk:Anomaly``."""

    start: datetime  # UTC, time of the first row
    end: datetime  # UTC, time of the last row
    first_row: int
    last_row: int
    peak_score: float
    mean_score: float  # over all rows from first to last
    points: int  # rows from first to last
    drivers: tuple[int, ...] = ()  # channels in alarm during it, the strongest first


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(moment: np.datetime64) -> datetime:
    return _EPOCH + timedelta(microseconds=int(moment.astype("datetime64[us]").astype(np.int64)))


def _check_times(times: NDArray[np.datetime64], n: int) -> None:
    if not np.issubdtype(times.dtype, np.datetime64):
        raise InvalidInputError(f"times must be datetime64, got {times.dtype}")
    if times.shape != (n,):
        raise InvalidInputError(f"times {times.shape} and scores ({n},) differ in shape")
    if np.isnat(times).any():
        raise InvalidInputError("times contain NaT")


def alarm_episodes(times: NDArray[np.datetime64], scored: Scored) -> tuple[Episode, ...]:
    """Each run of active rows (the alarm logic's hysteresis already debounced them), with the
    channels in alarm during it as drivers, ordered by their peak ratio. Naive times are UTC."""
    _check_times(times, len(scored.scores))
    flags = np.concatenate([[False], scored.active, [False]])
    edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
    found = []
    for begin, stop in zip(edges[0::2], edges[1::2] - 1, strict=True):
        span = slice(int(begin), int(stop) + 1)
        inside: Bools = np.any(scored.alarmed[span], axis=0)
        peaks = scored.ratios[span].max(axis=0)
        drivers = tuple(int(j) for j in np.argsort(-peaks, kind="stable") if inside[j])
        scores = scored.scores[span]
        found.append(
            Episode(
                start=_utc(times[begin]),
                end=_utc(times[stop]),
                first_row=int(begin),
                last_row=int(stop),
                peak_score=float(scores.max()),
                mean_score=float(scores.mean()),
                points=int(stop - begin + 1),
                drivers=drivers,
            )
        )
    return tuple(found)


def episodes(
    times: NDArray[np.datetime64],
    scores: Floats,
    *,
    threshold: float = 0.5,
    min_points: int = 5,
    merge_gap_points: int = 10,
) -> tuple[Episode, ...]:
    """Contiguous runs of ``scores > threshold``, gaps of ≤ ``merge_gap_points`` rows merged,
    runs shorter than ``min_points`` rows (after merging) dropped. Naive times are read as UTC.
    (Scores alone, without the alarm logic: :func:`alarm_episodes` is what the ingest uses.)
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise InvalidInputError(f"times {times.shape} and scores {scores.shape} differ in shape")
    _check_times(times, scores.shape[0])
    if min_points < 1 or merge_gap_points < 0:
        raise InvalidInputError("min_points must be ≥ 1 and merge_gap_points ≥ 0")
    above = np.concatenate([[False], scores > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    starts, stops = edges[0::2], edges[1::2] - 1  # inclusive row indices of each run
    if starts.size == 0:
        return ()
    # a gap of g rows between runs: next start - previous stop - 1
    joined = (starts[1:] - stops[:-1] - 1) <= merge_gap_points
    first = np.concatenate([[True], ~joined])
    last = np.concatenate([~joined, [True]])
    found = []
    for begin, stop in zip(starts[first], stops[last], strict=True):
        points = int(stop - begin + 1)
        if points < min_points:
            continue
        span = scores[begin : stop + 1]
        found.append(
            Episode(
                start=_utc(times[begin]),
                end=_utc(times[stop]),
                first_row=int(begin),
                last_row=int(stop),
                peak_score=float(span.max()),
                mean_score=float(span.mean()),
                points=points,
            )
        )
    return tuple(found)
