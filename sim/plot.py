"""KPI timelines of compared policies as figures (PNG and SVG), drawn off-screen.

One panel per timeline KPI (:data:`PANELS`: availability and cumulative unplanned downtime,
throughput and energy per unit per bin), one line per policy: the mean over the seeds, with the
band between the lowest and the highest seed shaded. Seeds' timelines are cut to the shortest
(a failed, partial run ends early). Figures are built on :class:`matplotlib.figure.Figure` with
the Agg canvas, never through ``pyplot``: no display, no global figure state, safe in a server
thread. The SVG is byte-for-byte repeatable: a fixed ``svg.hashsalt``, a fixed ``svg.id`` and no
date in the metadata. Panels and lines carry SVG ids (``panel-<kpi>``, ``line-<kpi>-<policy>``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from twinkg.ontology.errors import InvalidInputError
from twinkg.sim.kpi import KpiResult, KpiTimeline

__all__ = ["PANELS", "plot_timelines"]

PANELS: tuple[tuple[str, str], ...] = (
    ("availability", "availability (cumulative)"),
    ("unplanned_downtime_h", "unplanned downtime, h (cumulative)"),
    ("throughput", "throughput (per bin)"),
    ("energy_per_unit", "energy per unit (per bin)"),
)
"""The timeline KPIs drawn, in panel order, with their axis titles."""


def _mean_band(
    rows: Sequence[Sequence[float]],
) -> tuple[list[float], list[float], list[float]]:
    """Per index: the mean, min and max of the finite values (NaN where none is)."""
    means, lows, highs = [], [], []
    for column in zip(*rows, strict=True):
        finite = [v for v in column if math.isfinite(v)]
        if finite:
            means.append(math.fsum(finite) / len(finite))
            lows.append(min(finite))
            highs.append(max(finite))
        else:
            means.append(math.nan)
            lows.append(math.nan)
            highs.append(math.nan)
    return means, lows, highs


def _series(timelines: Sequence[KpiTimeline], kpi: str) -> tuple[list[float], list[list[float]]]:
    n = min(len(t.t_h) for t in timelines)
    hours = list(timelines[0].t_h[:n])
    return hours, [list(getattr(t, kpi)[:n]) for t in timelines]


def plot_timelines(
    results: Mapping[str, Sequence[KpiResult]],
    out_dir: str | Path,
    stem: str,
    *,
    title: str = "",
) -> tuple[Path, Path]:
    """Draw the timelines of ``results`` (policy → its seeds' KPI results) into
    ``out_dir/stem.png`` and ``out_dir/stem.svg`` (the folder is created); both paths."""
    if not results or any(not runs for runs in results.values()):
        raise InvalidInputError("nothing to plot: every policy needs at least one result")
    if not stem or "/" in stem or stem.startswith("."):
        raise InvalidInputError(f"a plot's file stem is a plain name, not {stem!r}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with mpl.rc_context(
        {
            "svg.hashsalt": "twinkg",
            "svg.id": "twinkg-kpi",
            "svg.fonttype": "path",
            "path.simplify": False,
        }
    ):
        figure = Figure(figsize=(11.0, 7.5), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(2, 2, sharex=True).flatten()
        for ax, (kpi, label) in zip(axes, PANELS, strict=True):
            ax.set_gid(f"panel-{kpi}")
            ax.set_title(label, fontsize=10)
            for index, (policy, runs) in enumerate(results.items()):
                hours, rows = _series([r.timeline for r in runs], kpi)
                mean, low, high = _mean_band(rows)
                color = f"C{index % 10}"
                (line,) = ax.plot(hours, mean, color=color, label=policy, linewidth=1.4)
                line.set_gid(f"line-{kpi}-{policy}")
                if len(runs) > 1:
                    band = ax.fill_between(hours, low, high, color=color, alpha=0.18, linewidth=0)
                    band.set_gid(f"band-{kpi}-{policy}")
            ax.grid(visible=True, linewidth=0.4, alpha=0.5)
        for ax in axes[2:]:
            ax.set_xlabel("simulated time, h")
        axes[0].legend(fontsize=8, loc="best")
        if title:
            figure.suptitle(title, fontsize=11)
        png, svg = folder / f"{stem}.png", folder / f"{stem}.svg"
        figure.savefig(png, format="png", metadata={"Software": None})
        figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png, svg
