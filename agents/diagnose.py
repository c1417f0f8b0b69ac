"""Reason: the diagnoser ranks the failure modes that could explain the monitor's findings.

The diagnoser reads the asset's failure modes with their signatures (``susceptibleTo``,
``manifestsAs``, ``hasSymptom``: per symptom, the quantity kind it shows in and the direction the
readings move — rise, fall, oscillation or any), the sensors on the asset and those on its
neighbours (up- and downstream, its drivers, the systems it is part of) that measure a kind one of
its modes shows in, all with their trust scores, the equipment around it and past events; it
reads the raw telemetry of the finding and of the window before it from the log and measures how
far, and which way, each sensor moved (:func:`symptoms`). :func:`rank` scores each mode by the
signed support of its signature (a move the other way counts against it) and separates equal
scores by evidence only, reporting a tie when the evidence is equal (decision 0036).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from twinkg.agents.context import Gather, RunContext
from twinkg.agents.state import AgentState, Finding, Hypothesis, Symptom, Trigger, parse_time
from twinkg.kg import agent_queries as q


def _span(findings: Sequence[Finding], as_of: datetime) -> tuple[datetime, datetime]:
    starts = [parse_time(f.occurred_at) for f in findings if f.occurred_at]
    ends = [parse_time(f.ended_at or f.occurred_at) for f in findings if f.occurred_at]
    if not starts:
        return as_of - timedelta(minutes=5), as_of
    return min(starts), min(max(ends) + timedelta(seconds=1), as_of + timedelta(seconds=1))


def _stats(table: pa.Table, sensor: str) -> tuple[int, float, float]:
    values = table.filter(pc.equal(table["sensor"], sensor)).column("value").to_numpy()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0, float("nan"), float("nan")
    return int(values.size), float(values.mean()), float(values.std())


def symptoms(
    sensors: Sequence[dict[str, Any]], baseline: pa.Table, during: pa.Table
) -> list[Symptom]:
    """How far each sensor moved during the finding, against the baseline window.

    ``sensors`` are rows of the asset's own sensors, then of its neighbours' (with ``asset`` and
    ``relation``); a sensor listed twice counts once, as the first row says.
    """
    out: list[Symptom] = []
    done: set[str] = set()
    for row in sensors:
        if not row.get("quantity_kind") or row["sensor"] in done:
            continue
        done.add(row["sensor"])
        n_base, base_mean, base_std = _stats(baseline, row["sensor"])
        n_now, mean, std = _stats(during, row["sensor"])
        if n_base < 2 or n_now == 0:
            continue
        scale = max(base_std, 1e-6 * max(abs(base_mean), 1.0))
        quality = row.get("quality")
        freshness = row.get("freshness")
        trust = 1.0 if quality is None else float(quality) * float(freshness or 0.0)
        out.append(
            Symptom(
                sensor=row["sensor"],
                quantity_kind=row["quantity_kind"],
                baseline_mean=round(base_mean, 9),
                baseline_std=round(base_std, 9),
                mean=round(mean, 9),
                shift=round((mean - base_mean) / scale, 6),
                spread=round(max(std, 1e-12) / scale, 6),
                trust=round(trust, 6),
                trust_score=row.get("trust"),
                asset=row.get("asset"),
                relation=row.get("relation") or "own",
            )
        )
    return out


DIRECTIONS = ("rise", "fall", "oscillation", "any")
_EXPLAINS = 0.5  # a kind whose support reaches this is explained; at minus this, contradicted
_SIGNIFICANT = 0.25  # movement below this (a quarter of full strength) is not a symptom


def _clip(value: float) -> float:
    return max(-1.0, min(1.0, value))


def _level(s: Symptom, threshold: float) -> float:
    """The mean's shift, signed, in units of twice the threshold (1 = a full-strength move)."""
    return _clip(s.shift / (2 * threshold))


def _variability(s: Symptom) -> float:
    """The change of variability, signed, in doublings (1 = doubled, -1 = halved)."""
    return _clip(math.log2(max(s.spread, 1e-6)))


def support(s: Symptom, direction: str, *, threshold: float) -> float:
    """How far one symptom supports a pattern's direction, in [-1, 1], before trust.

    ``rise`` and ``fall`` read the signed shift of the mean: a move the other way is negative
    (evidence against). ``oscillation`` reads the change of variability: a steadier signal is
    negative. ``any`` reads the larger of both sizes and is never negative.
    """
    level, variability = _level(s, threshold), _variability(s)
    if direction == "rise":
        return level
    if direction == "fall":
        return -level
    if direction == "oscillation":
        return variability
    if direction == "any":
        return max(abs(level), abs(variability))
    raise ValueError(f"unknown symptom direction {direction!r}; expected one of {DIRECTIONS}")


def _signature(row: dict[str, Any]) -> dict[str, set[str]]:
    """Quantity kind → directions; a mode with kinds but no patterns shows in them either way."""
    out: dict[str, set[str]] = {}
    for item in row.get("signature") or []:
        if item and item.get("kind"):
            out.setdefault(item["kind"], set()).add(item.get("direction") or "any")
    if not out:
        out = {k: {"any"} for k in row.get("kinds") or []}
    return out


def _movement(s: Symptom, threshold: float) -> list[tuple[str, float]]:
    """The symptom's atoms of movement: its level (as rise or fall) and a rise of variability."""
    level, variability = _level(s, threshold), _variability(s)
    atoms = [("rise" if level > 0 else "fall", abs(level) * s.trust)]
    if variability > 0:
        atoms.append(("oscillation", variability * s.trust))
    return [(d, w) for d, w in atoms if w >= _SIGNIFICANT]


def _strongest(sig: dict[str, set[str]], found: Sequence[Symptom], threshold: float) -> float:
    """The largest move in a direction the signature expects, uncapped and trust-weighted."""
    best = 0.0
    for s in found:
        wanted = sig.get(s.quantity_kind, set())
        moves = {
            "rise": s.shift / (2 * threshold),
            "fall": -s.shift / (2 * threshold),
            "oscillation": math.log2(max(s.spread, 1e-6)),
        }
        moves["any"] = max(abs(moves["rise"]), abs(moves["oscillation"]))
        best = max([best, *(moves[d] * s.trust for d in wanted if d in moves)])
    return best


def _coverage(sig: dict[str, set[str]], found: Sequence[Symptom], threshold: float) -> float:
    """Share of the significant movement seen (trust-weighted) that the signature explains.

    Movement is counted per quantity kind and direction (the largest over its sensors), so
    redundant sensors of one kind do not count twice.
    """
    moved: dict[tuple[str, str], float] = {}
    for s in found:
        for direction, weight in _movement(s, threshold):
            key = (s.quantity_kind, direction)
            moved[key] = max(moved.get(key, 0.0), weight)
    total = sum(moved.values())
    explained = sum(
        w for (kind, d), w in moved.items() if d in sig.get(kind, ()) or "any" in sig.get(kind, ())
    )
    return explained / total if total else 0.0


def rank(
    modes: Sequence[dict[str, Any]],
    found: Sequence[Symptom],
    history: Sequence[dict[str, Any]],
    *,
    threshold: float,
) -> list[Hypothesis]:
    """Rank the failure modes by how well the symptoms match their signatures; best first.

    For each quantity kind of a mode's signature that a sensor watches, the kind's support is the
    best, over its sensors and the directions the signature allows for it, of the directional
    :func:`support` times the sensor's trust: in [-1, 1], negative when the readings moved the
    other way. The score is the mean over those kinds, floored at 0. Equal scores are separated
    by evidence only: more explained kinds, then a larger :func:`_coverage` of what moved, then the
    :func:`_strongest` move it expects (uncapped: 200 σ beats 5 σ), then more past events of the
    mode; modes equal on all of these are a tie (each lists the others in ``tied_with``), never
    broken by the modes' names.
    """
    by_kind: dict[str, list[Symptom]] = {}
    for s in found:
        by_kind.setdefault(s.quantity_kind, []).append(s)
    seen = {row["mode"]: int(row["events"]) for row in history}
    scored: list[tuple[tuple[float, int, float, float, int], Hypothesis]] = []
    for row in modes:
        if not row.get("mode"):
            continue
        sig = _signature(row)
        kinds = {
            kind: max(
                support(s, d, threshold=threshold) * s.trust
                for s in by_kind[kind]
                for d in directions
            )
            for kind, directions in sig.items()
            if kind in by_kind
        }
        if not kinds:
            continue
        score = round(max(0.0, sum(kinds.values()) / len(kinds)), 6)
        explained = sorted(k for k, v in kinds.items() if v >= _EXPLAINS)
        contradicted = sorted(k for k, v in kinds.items() if v <= -_EXPLAINS)
        coverage = round(_coverage(sig, found, threshold), 6)
        strongest = round(_strongest(sig, found, threshold), 6)
        key = (score, len(explained), coverage, strongest, seen.get(row["mode"], 0))
        hypothesis = Hypothesis(
            mode=row["mode"],
            code=row.get("code"),
            score=score,
            explained=explained,
            contradicted=contradicted,
            coverage=coverage,
            rank=0,
        )
        scored.append((key, hypothesis))
    # A stable sort on the evidence alone: tied modes keep the order they came in (the query's,
    # by IRI), which means nothing: each says so in tied_with.
    scored.sort(key=lambda item: tuple(-x for x in item[0]))
    groups: dict[tuple[float, int, float, float, int], list[str]] = {}
    for key, h in scored:
        groups.setdefault(key, []).append(h.mode)
    return [
        h.model_copy(update={"rank": i + 1, "tied_with": [m for m in groups[key] if m != h.mode]})
        for i, (key, h) in enumerate(scored)
    ]


def diagnose(state: AgentState, ctx: RunContext) -> dict[str, Any]:
    """Reason: traverse the asset's failure modes, sensors, neighbours and history; rank."""
    assert state.asset is not None  # the graph routes here only with a case
    gather = Gather(ctx, state)
    as_of = parse_time(state.as_of)
    modes = gather.rows(q.ASSET_PROFILE, asset=state.asset)
    # a new list: += would extend the recorded rows of ASSET_SENSORS in place (a replay differs)
    sensors = [
        *gather.rows(q.ASSET_SENSORS, asset=state.asset, as_of=state.as_of),
        *gather.rows(q.NEIGHBOUR_SENSORS, asset=state.asset, as_of=state.as_of),
    ]
    gather.rows(q.NEIGHBOURS, asset=state.asset, as_of=state.as_of)
    history = gather.rows(q.HISTORY, asset=state.asset, as_of=state.as_of)
    start, end = _span(state.findings, as_of)
    watched = list(dict.fromkeys(row["sensor"] for row in sensors))
    baseline = gather.window(watched, start - timedelta(seconds=ctx.settings.baseline_s), start)
    during = gather.window(watched, start, end)
    found = symptoms(sensors, baseline, during)
    hypotheses = rank(modes, found, history, threshold=ctx.settings.shift_threshold)
    if state.trigger is Trigger.RESTART_DUE:
        # a restart undoes a stop that already answered the failure; the data of a stopped
        # plant (frozen, or zero flows) diagnoses nothing: the symptoms still carry its trust
        hypotheses = []
    update = gather.update(state)
    update.update(symptoms=found, hypotheses=hypotheses)
    return update
