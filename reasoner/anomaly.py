"""Multivariate anomaly detection on telemetry: rolling features and Hotelling's T².

Each row's features are the mean and the standard deviation of every channel over the last
``window`` rows, that row included (causal: a score never looks ahead; the first rows of a run use
the shorter window they have). A :class:`Detector` is fitted on a stretch of normal operation:
the mean vector of those features and the inverse of their regularised covariance. A row's T² is
its Mahalanobis² distance from normal; the threshold is ``factor`` × a high quantile of T² on the
training rows, and the score ``T² / (T² + threshold)`` lies in [0, 1), 0.5 at the threshold (the
meaning ``tk:anomalyScore`` gives it). :func:`episodes` turns scores into the runs that become
``tk:Anomaly`` events.

Window sums are accumulated one window position at a time (``window`` vectorised passes over the
rows) rather than taken as differences of cumulative sums: a window's features then depend on its
own rows only, always added in the same order, so a run scored batch by batch (:class:`Scorer`)
gives bit-identical scores to the run scored at once, and the variance is a two-pass sum of
squared deviations (no cancellation, whatever the level of a channel or the length of a run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from twinkg.ontology.errors import InvalidInputError

FORMAT_VERSION = 1
"""Version of the ``.npz`` layout written by :meth:`Detector.save`."""

Floats = NDArray[np.float64]
_CHUNK_ROWS = 4096  # rows per chunk of the feature computation


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


def _features(history: Floats, values: Floats, window: int, prior: Floats | None = None) -> Floats:
    """Rolling mean and standard deviation of ``values``, ``history`` being the rows before them.

    ``history`` holds at most ``window - 1`` rows; when it holds fewer, the run started less than a
    window ago and the first windows are partial. A partial window of ``m`` rows is completed by
    ``window - m`` pseudo-rows of normal operation when a ``prior`` (normal means, then normal
    standard deviations) is given: the window starts at "normal" and real rows displace it, so
    the start of a run is not flagged just because ``m`` is small. Returns an ``n × 2k`` array:
    means, then standard deviations (population).
    """
    n, k = values.shape
    pad = window - 1 - history.shape[0]
    rows = np.concatenate([np.zeros((pad, k)), history, values])
    valid = np.concatenate([np.zeros(pad), np.ones(history.shape[0] + n)])[:, None]
    count = np.minimum(history.shape[0] + 1 + np.arange(n), window)[:, None].astype(np.float64)
    out = np.empty((n, 2 * k))
    for begin in range(0, n, _CHUNK_ROWS):  # chunks that stay in the CPU cache
        stop = min(begin + _CHUNK_ROWS, n)
        span = slice(begin, stop + window - 1)
        out[begin:stop] = _window_stats(rows[span], valid[span], count[begin:stop], prior)
    return out


def _window_stats(rows: Floats, valid: Floats, count: Floats, prior: Floats | None) -> Floats:
    """Features of the ``m`` windows ending at rows ``window-1 … window+m-2`` of ``rows``."""
    m, k = count.shape[0], rows.shape[1]
    window = rows.shape[0] - m + 1
    # one vectorised pass per position in the window, in a fixed order: each output row sums the
    # same values in the same order however the run was split into batches or chunks
    total = np.zeros((m, k))
    for j in range(window):
        total += rows[j : j + m]  # padding rows are 0.0, so they add nothing
    missing = window - count  # 0 for a full window: the prior terms then add exactly 0.0
    mean = total / count if prior is None else (total + missing * prior[:k]) / window
    spread = np.zeros((m, k))
    term = np.empty((m, k))
    for j in range(window):
        np.subtract(rows[j : j + m], mean, out=term)
        term *= term
        term *= valid[j : j + m]
        spread += term
    if prior is None:
        return np.concatenate([mean, np.sqrt(spread / count)], axis=1)
    spread += missing * (prior[k:] ** 2 + (prior[:k] - mean) ** 2)
    return np.concatenate([mean, np.sqrt(spread / window)], axis=1)


@dataclass(frozen=True, slots=True, eq=False)
class Detector:
    """A fitted detector: which channels, what is normal for them, and where the threshold lies."""

    channels: tuple[str, ...]
    window: int
    mean: Floats = field(repr=False)
    precision: Floats = field(repr=False)
    threshold: float
    fitted_on: str

    def __post_init__(self) -> None:
        k = len(self.channels)
        if k == 0 or len(set(self.channels)) != k:
            raise InvalidInputError("channels must be non-empty and distinct")
        if self.window < 1:
            raise InvalidInputError(f"window must be at least 1, got {self.window}")
        if self.mean.shape != (2 * k,) or self.precision.shape != (2 * k, 2 * k):
            raise InvalidInputError(f"mean and precision do not match {k} channels")
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            raise InvalidInputError(f"threshold must be positive, got {self.threshold}")
        for array in (self.mean, self.precision):
            array.flags.writeable = False

    def t_squared(self, features: Floats) -> Floats:
        """Hotelling's T² (Mahalanobis² from the training mean) of each row of features."""
        centred = features - self.mean
        t2: Floats = np.einsum("ij,jk,ik->i", centred, self.precision, centred)
        return t2

    def scorer(self) -> Scorer:
        """A fresh stateful scorer for one run, fed batch by batch."""
        return Scorer(self)

    def score(self, values: Floats) -> Floats:
        """Scores in [0, 1) of the rows of one whole run (``n × k``, columns as ``channels``)."""
        return self.scorer().update(values)

    def save(self, path: Path) -> None:
        """Write the detector to ``path`` as an uncompressed ``.npz`` (no pickles)."""
        with path.open("wb") as handle:
            np.savez(
                handle,
                format_version=np.int64(FORMAT_VERSION),
                channels=np.array(self.channels, dtype=np.str_),
                window=np.int64(self.window),
                mean=self.mean,
                precision=self.precision,
                threshold=np.float64(self.threshold),
                fitted_on=np.str_(self.fitted_on),
            )


class Scorer:
    """Scores one run arriving in batches; the scores equal those of the run scored at once."""

    __slots__ = ("_detector", "_tail")

    def __init__(self, detector: Detector) -> None:
        self._detector = detector
        self._tail: Floats = np.empty((0, len(detector.channels)))

    def update(self, values: Floats) -> Floats:
        """Scores of the next rows of the run; keeps the last ``window - 1`` rows for the next."""
        detector = self._detector
        matrix = _as_matrix(values, len(detector.channels))
        features = _features(self._tail, matrix, detector.window, detector.mean)
        keep = detector.window - 1
        self._tail = np.concatenate([self._tail, matrix])[-keep:] if keep else self._tail
        t2 = detector.t_squared(features)
        return t2 / (t2 + detector.threshold)


def fit(
    values: Floats,
    *,
    channels: tuple[str, ...],
    fitted_on: str,
    window: int = 30,
    skip: int = 30,
    quantile: float = 0.99,
    factor: float = 1.5,
) -> Detector:
    """Fit a detector on rows of normal operation (``n × k``, columns as ``channels``).

    The first ``skip`` rows (at least ``window - 1``) only fill the rolling window and are left out
    of the statistics, so every training row has a full window.
    The covariance is regularised as ``C + 0.01·diag(C) + 1e-9·I``, so a constant channel does not
    make it singular (any later movement of that channel then scores as highly anomalous).
    """
    matrix = _as_matrix(values, len(channels))
    k = len(channels)
    if window < 1 or skip < window - 1:
        raise InvalidInputError(
            f"need window ≥ 1 and skip ≥ window - 1 (full windows only), got {window} and {skip}"
        )
    if not (0.0 < quantile < 1.0 and factor > 0.0):
        raise InvalidInputError(f"need 0 < quantile < 1 and factor > 0, got {quantile}, {factor}")
    needed = skip + max(window, 4 * k)
    if matrix.shape[0] < needed:
        raise InvalidInputError(
            f"{matrix.shape[0]} rows are too few to fit {k} channels "
            f"(need ≥ {needed}: skip {skip} + max(window {window}, 4 × channels))"
        )
    features = _features(np.empty((0, k)), matrix, window)[skip:]
    mean = features.mean(axis=0)
    covariance = np.cov(features, rowvar=False)
    covariance += np.diag(0.01 * np.diag(covariance) + 1e-9)
    precision = np.linalg.inv(covariance)
    precision = (precision + precision.T) / 2  # exact symmetry, whatever inv's rounding
    centred = features - mean
    t2 = np.einsum("ij,jk,ik->i", centred, precision, centred)
    threshold = factor * float(np.quantile(t2, quantile))
    return Detector(
        channels=tuple(channels),
        window=window,
        mean=mean,
        precision=precision,
        threshold=threshold,
        fitted_on=fitted_on,
    )


def load(path: Path) -> Detector:
    """Read a detector written by :meth:`Detector.save`; refuses other format versions."""
    try:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise InvalidInputError(
                    f"{path}: detector format {version}, this version reads {FORMAT_VERSION}"
                )
            return Detector(
                channels=tuple(str(c) for c in data["channels"]),
                window=int(data["window"]),
                mean=np.array(data["mean"], dtype=np.float64),
                precision=np.array(data["precision"], dtype=np.float64),
                threshold=float(data["threshold"]),
                fitted_on=str(data["fitted_on"]),
            )
    except (OSError, KeyError, ValueError) as error:
        raise InvalidInputError(f"{path}: not a saved detector ({error})") from error


@dataclass(frozen=True, slots=True)
class Episode:
    """A run of rows scored above the threshold: the makings of one ``tk:Anomaly``."""

    start: datetime  # UTC, time of the first row above the threshold
    end: datetime  # UTC, time of the last row above the threshold
    first_row: int
    last_row: int
    peak_score: float
    mean_score: float  # over all rows from first to last, merged gaps included
    points: int  # rows from first to last, merged gaps included


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(moment: np.datetime64) -> datetime:
    return _EPOCH + timedelta(microseconds=int(moment.astype("datetime64[us]").astype(np.int64)))


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
    """
    if not np.issubdtype(times.dtype, np.datetime64):
        raise InvalidInputError(f"times must be datetime64, got {times.dtype}")
    scores = np.asarray(scores, dtype=np.float64)
    if times.shape != scores.shape or scores.ndim != 1:
        raise InvalidInputError(f"times {times.shape} and scores {scores.shape} differ in shape")
    if np.isnat(times).any():
        raise InvalidInputError("times contain NaT")
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
