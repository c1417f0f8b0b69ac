"""sim.plot: KPI timelines of compared policies drawn to PNG and SVG off-screen (synthetic
KPI results; no simulator)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from twinkg.ontology.errors import InvalidInputError
from twinkg.sim.kpi import KPI_UNITS, KpiResult, KpiTimeline
from twinkg.sim.plot import PANELS, plot_timelines

SVG = "{http://www.w3.org/2000/svg}"


def _result(seed: int, bins: int = 12, *, nan_energy: bool = False) -> KpiResult:
    t_h = tuple(24.0 + i for i in range(1, bins + 1))
    avail = tuple(1.0 - 0.01 * seed * i / bins for i in range(bins))
    down = tuple(0.1 * seed * i for i in range(bins))
    thr = tuple(0.9 + 0.01 * ((i + seed) % 3) for i in range(bins))
    energy = tuple(math.nan if nan_energy else 0.4 + 0.02 * seed for _ in range(bins))
    timeline = KpiTimeline(3600.0, t_h, avail, down, thr, energy)
    return KpiResult(
        availability=avail[-1],
        unplanned_downtime_h=down[-1],
        trips=0,
        throughput=thr[-1],
        energy_per_unit=energy[-1],
        maintenance_actions=0,
        maintenance_cost=0.0,
        envelope_excursion_h=0.0,
        refused_actions=0,
        unsafe_applied_actions=0,
        decisions=0,
        units=KPI_UNITS["epanet"],
        timeline=timeline,
    )


def _ids(svg: Path) -> list[str]:
    root = ET.parse(svg).getroot()
    assert root.tag == SVG + "svg"
    return [el.get("id", "") for el in root.iter(SVG + "g")]


def test_one_panel_per_kpi_one_line_and_band_per_policy(tmp_path: Path) -> None:
    results = {
        "run-to-failure": [_result(1), _result(2), _result(3, bins=10)],  # a shorter, partial run
        "twinkg": [_result(4, nan_energy=True)],  # one seed: no band; NaN energy: no crash
    }
    png, svg = plot_timelines(results, tmp_path / "plots", "cmp")
    assert png == tmp_path / "plots" / "cmp.png" and svg.suffix == ".svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    ids = _ids(svg)
    assert sorted(i for i in ids if i.startswith("panel-")) == sorted(
        f"panel-{k}" for k, _ in PANELS
    )
    lines = [i for i in ids if i.startswith("line-")]
    assert len(lines) == len(PANELS) * 2
    assert {f"line-{k}-{p}" for k, _ in PANELS for p in results} == set(lines)
    bands = [i for i in ids if i.startswith("band-")]
    assert sorted(bands) == sorted(f"band-{k}-run-to-failure" for k, _ in PANELS)


def test_the_svg_is_repeatable(tmp_path: Path) -> None:
    results = {"preventive": [_result(1), _result(2)], "reactive": [_result(3)]}
    _, first = plot_timelines(results, tmp_path / "a", "x", title="net1")
    _, second = plot_timelines(results, tmp_path / "b", "x", title="net1")
    assert first.read_bytes() == second.read_bytes()
    other = {"preventive": [_result(1), _result(5)], "reactive": [_result(3)]}
    _, third = plot_timelines(other, tmp_path / "c", "x", title="net1")
    assert third.read_bytes() != first.read_bytes()


@pytest.mark.parametrize(
    ("results", "stem", "match"),
    [
        ({}, "x", "nothing to plot"),
        ({"twinkg": []}, "x", "nothing to plot"),
        ({"twinkg": [_result(1)]}, "../x", "plain name"),
    ],
)
def test_bad_input_is_refused(
    tmp_path: Path, results: dict[str, list[KpiResult]], stem: str, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        plot_timelines(results, tmp_path, stem)
