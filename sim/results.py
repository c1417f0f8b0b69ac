"""What a simulated run gives back: :class:`SimResult`, and the :data:`Progress` callback type.

Frozen data, so the CLI, the HTTP service, the MCP tool and the recorder all read the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twinkg.sim.kpi import KpiResult

Progress = Callable[[float], None]
"""Called with the fraction of the horizon simulated so far (0.0 .. 1.0)."""


@dataclass(frozen=True, slots=True)
class SimResult:
    """One run of one scenario under one policy and seed.

    ``status`` is ``"completed"`` or ``"failed"``; a failed run carries its ``reason`` and
    ``partial=True`` with the KPIs measured up to the failure. ``decisions`` are the IRIs of the
    agents' decisions the run made (empty for the baselines). ``simulated_s`` is how far the
    simulation got, ``wall_s`` how long it took.
    """

    run: str  # the tk:SimulationRun IRI
    scenario: str
    scenario_version: str
    scenario_hash: str
    policy: str
    seed: int
    status: str  # "completed" | "failed"
    reason: str | None
    partial: bool
    kpis: KpiResult | None
    decisions: tuple[str, ...]
    simulator: str
    simulator_version: str
    simulated_s: float
    wall_s: float
