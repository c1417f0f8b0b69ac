"""Trust scores: how far to believe the data about a sensor or an asset over a window.

Three components, each in [0, 1] (the ``tk:TrustScore`` properties of the ontology):

* quality ``q`` = accepted / (accepted + rejected) points of the window; with no points at all
  there is no evidence, so ``q = 0`` and the score says why (:attr:`TrustReason.NO_EVIDENCE`);
* freshness ``f`` = 1 while the newest point is no older than the sensor's sampling period, then
  halving with every ``half_life_s`` of further age: ``2 ** (-(age - period) / half_life)``. Age is
  measured against an explicit ``as_of`` (replays run in the past), never the wall clock;
* anomaly ``a`` = the detector's score over the window (:func:`window_anomaly`).

They combine into ``confidence = q**wq · f**wf · (1 - a)**wa`` (:class:`TrustWeights`). The array
functions work on many sensors at once; :func:`sensor_scores` and :func:`asset_score` wrap them
into :class:`TrustScore` records that keep every input a provenance record has to cite.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twinkg.ontology.errors import InvalidInputError

Floats = NDArray[np.float64]
_Item = TypeVar("_Item", bound=np.generic)


class TrustReason(enum.Enum):
    """Why a component is below 1 (or unknown), recorded with the score."""

    NO_EVIDENCE = "no_evidence"  # no accepted or rejected point in the window: quality 0
    REJECTED_POINTS = "rejected_points"  # some points of the window failed the contract
    NO_DATA = "no_data"  # no point at all, so no age: freshness 0
    STALE = "stale"  # the newest point is older than the sampling period
    ANOMALOUS = "anomalous"  # the window's anomaly score is above the detector's threshold


@dataclass(frozen=True, slots=True)
class TrustWeights:
    """Exponents of the components in the confidence; 0 ignores a component."""

    quality: float = 1.0
    freshness: float = 1.0
    anomaly: float = 0.5

    def __post_init__(self) -> None:
        for name in ("quality", "freshness", "anomaly"):
            weight = getattr(self, name)
            if not (np.isfinite(weight) and weight >= 0):
                raise InvalidInputError(f"trust weight {name} must be finite and ≥ 0: {weight}")


@dataclass(frozen=True, slots=True)
class Window:
    """The time window a score covers; both ends timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidInputError("window start and end must be timezone-aware")
        if self.start > self.end:
            raise InvalidInputError(f"window starts after it ends: {self.start} > {self.end}")


@dataclass(frozen=True, slots=True)
class TrustScore:
    """One subject's trust over a window, with everything needed to recompute it."""

    subject: str  # IRI of the sensor or asset (tk:scoreOf)
    quality: float
    freshness: float
    anomaly: float
    confidence: float
    weights: TrustWeights
    window: Window
    as_of: datetime
    half_life_s: float
    accepted: int
    rejected: int
    age_s: float | None  # of the newest point at as_of; None when there is no point at all
    reasons: tuple[TrustReason, ...]
    inputs: tuple[str, ...] = ()  # for an asset: the sensors it combines


def _floats(values: ArrayLike, name: str) -> Floats:
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).any():
        raise InvalidInputError(f"{name} contains NaN")
    return array


def quality(accepted: ArrayLike, rejected: ArrayLike) -> Floats:
    """Share of accepted points; 0 where there is no point at all (no evidence)."""
    good, bad = _floats(accepted, "accepted"), _floats(rejected, "rejected")
    if (good < 0).any() or (bad < 0).any():
        raise InvalidInputError("point counts must be ≥ 0")
    total = good + bad
    return np.divide(good, total, out=np.zeros(np.broadcast(good, bad).shape), where=total > 0)


def freshness(age_s: ArrayLike, period_s: ArrayLike, *, half_life_s: float = 60.0) -> Floats:
    """1 up to one sampling period of age, then halving every ``half_life_s``; 0 at infinite age."""
    age, period = _floats(age_s, "age_s"), _floats(period_s, "period_s")
    if (age < 0).any():
        raise InvalidInputError("ages must be ≥ 0 (a point newer than as_of?)")
    if not (np.isfinite(period).all() and (period > 0).all()):
        raise InvalidInputError("sampling periods must be finite and > 0")
    if not (np.isfinite(half_life_s) and half_life_s > 0):
        raise InvalidInputError(f"half_life_s must be finite and > 0: {half_life_s}")
    return np.exp2(-np.maximum(age - period, 0.0) / half_life_s)


def window_anomaly(scores: ArrayLike, *, quantile: float = 0.95) -> float:
    """The window's anomaly: the ``quantile`` of its scores (an observed score, not interpolated).

    A high quantile rather than the maximum, so that a handful of rows above the threshold (less
    than 5 % of the window by default) does not weigh like a sustained fault; ``quantile=1`` gives
    the maximum. An empty window gives 0: its quality is 0 already, so the confidence is 0 anyway.
    """
    values = _floats(scores, "scores").ravel()
    if not 0.0 < quantile <= 1.0:
        raise InvalidInputError(f"quantile must be in (0, 1]: {quantile}")
    if ((values < 0) | (values > 1)).any():
        raise InvalidInputError("anomaly scores must lie in [0, 1]")
    return float(np.quantile(values, quantile, method="higher")) if values.size else 0.0


def confidence(
    quality: ArrayLike,
    freshness: ArrayLike,
    anomaly: ArrayLike,
    *,
    weights: TrustWeights = TrustWeights(),
) -> Floats:
    """``quality**wq · freshness**wf · (1 - anomaly)**wa``, in [0, 1] (``0**0`` is 1)."""
    parts = [_floats(v, n) for v, n in ((quality, "quality"), (freshness, "fresh"), (anomaly, "a"))]
    if any(((p < 0) | (p > 1)).any() for p in parts):
        raise InvalidInputError("quality, freshness and anomaly must lie in [0, 1]")
    q, f, a = parts
    value = q**weights.quality * f**weights.freshness * (1.0 - a) ** weights.anomaly
    return np.clip(value, 0.0, 1.0)


def _datetime64(moment: datetime) -> np.datetime64:
    if moment.tzinfo is None:
        raise InvalidInputError(f"{moment} has no time zone")
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "ns")


def ages(newest: NDArray[np.datetime64], as_of: datetime) -> Floats:
    """Seconds from each sensor's newest point to ``as_of``; ``inf`` where there is none (NaT)."""
    if not np.issubdtype(newest.dtype, np.datetime64):
        raise InvalidInputError(f"newest must be datetime64, got {newest.dtype}")
    # whole seconds and nanoseconds apart: an int64 difference of two instants ns apart would
    # wrap for a point of 1677 seen in 2026 (a newest point at the edge of the range)
    now = _datetime64(as_of).astype(np.int64)
    ns = newest.astype("datetime64[ns]").astype(np.int64)
    seconds = (now // 10**9 - ns // 10**9).astype(np.float64)
    age = np.where(np.isnat(newest), np.inf, seconds + (now % 10**9 - ns % 10**9) / 1e9)
    if (age < 0).any():
        raise InvalidInputError(f"a newest point lies after as_of {as_of.isoformat()}")
    return np.asarray(age, dtype=np.float64)


def _reasons(
    q: float, f: float, a: float, *, accepted: int, rejected: int, age: float
) -> tuple[TrustReason, ...]:
    found = []
    if accepted + rejected == 0:
        found.append(TrustReason.NO_EVIDENCE)
    elif q < 1:
        found.append(TrustReason.REJECTED_POINTS)
    if np.isinf(age):
        found.append(TrustReason.NO_DATA)
    elif f < 1:
        found.append(TrustReason.STALE)
    if a > 0.5:
        found.append(TrustReason.ANOMALOUS)
    return tuple(found)


def _per_subject(values: NDArray[_Item], n: int, name: str) -> NDArray[_Item]:
    try:
        return np.broadcast_to(values, (n,))
    except ValueError as error:
        raise InvalidInputError(f"{name} does not match {n} subjects: {error}") from error


def sensor_scores(
    subjects: Sequence[str],
    *,
    accepted: ArrayLike,
    rejected: ArrayLike,
    newest: NDArray[np.datetime64],
    period_s: ArrayLike,
    anomaly: ArrayLike,
    window: Window,
    as_of: datetime | None = None,
    weights: TrustWeights = TrustWeights(),
    half_life_s: float = 60.0,
) -> tuple[TrustScore, ...]:
    """Trust of many sensors over one window: one score per subject, arrays broadcast to them.

    ``newest`` is each sensor's newest point (NaT: none); ``anomaly`` is each sensor's window
    anomaly (for a multivariate detector, the score of the asset it belongs to); ``as_of``
    defaults to the window's end.
    """
    moment = window.end if as_of is None else as_of
    n = len(subjects)
    good = _per_subject(_floats(accepted, "accepted"), n, "accepted")
    bad = _per_subject(_floats(rejected, "rejected"), n, "rejected")
    period = _per_subject(_floats(period_s, "period_s"), n, "period_s")
    a = _per_subject(_floats(anomaly, "anomaly"), n, "anomaly")
    newest_n = _per_subject(newest, n, "newest")
    if ((good % 1) != 0).any() or ((bad % 1) != 0).any():
        raise InvalidInputError("point counts must be whole numbers")
    age = ages(newest_n, moment)
    q = quality(good, bad)
    f = freshness(age, period, half_life_s=half_life_s)
    c = confidence(q, f, a, weights=weights)
    return tuple(
        TrustScore(
            subject=subjects[i],
            quality=float(q[i]),
            freshness=float(f[i]),
            anomaly=float(a[i]),
            confidence=float(c[i]),
            weights=weights,
            window=window,
            as_of=moment,
            half_life_s=half_life_s,
            accepted=int(good[i]),
            rejected=int(bad[i]),
            age_s=None if np.isinf(age[i]) else float(age[i]),
            reasons=_reasons(
                q[i], f[i], a[i], accepted=int(good[i]), rejected=int(bad[i]), age=age[i]
            ),
        )
        for i in range(n)
    )


def asset_score(
    subject: str,
    sensors: Sequence[TrustScore],
    *,
    anomaly: float,
    weights: TrustWeights | None = None,
) -> TrustScore:
    """An asset's trust: its weakest sensor's quality and freshness, with the asset's anomaly.

    The minimum rather than a point-weighted mean: a multivariate detector and an agent's
    decision read every channel, so one sensor rejecting half its points spoils the picture of
    the asset however many good sensors surround it, and a fast sensor must not outvote a slow
    one merely by sending more points. ``weights`` default to the sensors' (which must agree).
    """
    if not sensors:
        raise InvalidInputError(f"asset {subject} has no sensor scores to combine")
    first = sensors[0]
    if any(
        (s.window, s.as_of, s.half_life_s) != (first.window, first.as_of, first.half_life_s)
        for s in sensors
    ):
        raise InvalidInputError(f"sensor scores of {subject} cover different windows or as_of")
    if weights is None:
        if any(s.weights != first.weights for s in sensors):
            raise InvalidInputError(f"sensor scores of {subject} use different weights")
        weights = first.weights
    q = min(s.quality for s in sensors)
    f = min(s.freshness for s in sensors)
    c = float(confidence(q, f, anomaly, weights=weights))
    known = [s.age_s for s in sensors if s.age_s is not None]
    reasons: set[TrustReason] = {
        r for s in sensors for r in s.reasons if r is not TrustReason.ANOMALOUS
    }
    if anomaly > 0.5:
        reasons.add(TrustReason.ANOMALOUS)
    return TrustScore(
        subject=subject,
        quality=q,
        freshness=f,
        anomaly=float(anomaly),
        confidence=c,
        weights=weights,
        window=first.window,
        as_of=first.as_of,
        half_life_s=first.half_life_s,
        accepted=sum(s.accepted for s in sensors),
        rejected=sum(s.rejected for s in sensors),
        age_s=max(known) if len(known) == len(sensors) else None,
        reasons=tuple(r for r in TrustReason if r in reasons),
        inputs=tuple(s.subject for s in sensors),
    )
