"""Reason: the diagnoser ranks the failure modes that could explain the monitor's findings.

The diagnoser reads the asset's failure modes and the quantity kinds each shows in
(``susceptibleTo``, ``manifestsAs``, ``manifestsIn``), the sensors on it with their trust scores,
the equipment up- and downstream, and past events; it reads the raw telemetry of the finding and
of the window before it from the log and measures how far each sensor moved. A failure mode's
score is the mean, over the quantity kinds it shows in that a sensor watches, of the symptom
strength weighted by the sensor's data trust (quality · freshness). The strength is the larger
of the mean's shift (in baseline standard deviations, against twice the threshold) and the
change of variability (``|ln(std / baseline std)|`` against ln 2: halved or doubled counts
fully), capped at 1. Ties go to the mode seen more often before.
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
from twinkg.agents.state import AgentState, Finding, Hypothesis, Symptom, parse_time
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
    """How far each sensor moved during the finding, against the baseline window."""
    out: list[Symptom] = []
    for row in sensors:
        if not row.get("quantity_kind"):
            continue
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
            )
        )
    return out


def rank(
    modes: Sequence[dict[str, Any]],
    found: Sequence[Symptom],
    history: Sequence[dict[str, Any]],
    *,
    threshold: float,
) -> list[Hypothesis]:
    """Score each failure mode by the trust-weighted symptoms it explains; best first."""
    strength: dict[str, float] = {}
    for s in found:
        spread = abs(math.log(max(s.spread, 1e-6))) / math.log(2)
        moved = max(abs(s.shift) / (2 * threshold), spread)
        value = min(1.0, moved) * s.trust
        strength[s.quantity_kind] = max(strength.get(s.quantity_kind, 0.0), value)
    seen = {row["mode"]: int(row["events"]) for row in history}
    scored: list[tuple[float, int, str, str | None, list[str]]] = []
    for row in modes:
        if not row.get("mode"):
            continue
        watched = [k for k in row["kinds"] if k in strength]
        if not watched:
            continue
        score = sum(strength[k] for k in watched) / len(watched)
        explained = sorted(k for k in watched if strength[k] >= 0.5)
        scored.append(
            (round(score, 6), seen.get(row["mode"], 0), row["mode"], row["code"], explained)
        )
    scored.sort(key=lambda t: (-t[0], -t[1], t[2]))
    return [
        Hypothesis(mode=mode, code=code, score=score, explained=explained, rank=i + 1)
        for i, (score, _, mode, code, explained) in enumerate(scored)
    ]


def diagnose(state: AgentState, ctx: RunContext) -> dict[str, Any]:
    """Reason: traverse the asset's failure modes, sensors, neighbours and history; rank."""
    assert state.asset is not None  # the graph routes here only with a case
    gather = Gather(ctx, state)
    as_of = parse_time(state.as_of)
    modes = gather.rows(q.ASSET_PROFILE, asset=state.asset)
    sensors = gather.rows(q.ASSET_SENSORS, asset=state.asset, as_of=state.as_of)
    gather.rows(q.NEIGHBOURS, asset=state.asset, as_of=state.as_of)
    history = gather.rows(q.HISTORY, asset=state.asset, as_of=state.as_of)
    start, end = _span(state.findings, as_of)
    watched = [row["sensor"] for row in sensors]
    baseline = gather.window(watched, start - timedelta(seconds=ctx.settings.baseline_s), start)
    during = gather.window(watched, start, end)
    found = symptoms(sensors, baseline, during)
    hypotheses = rank(modes, found, history, threshold=ctx.settings.shift_threshold)
    update = gather.update(state)
    update.update(symptoms=found, hypotheses=hypotheses)
    return update
