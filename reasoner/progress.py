"""Progress of long work: ``(phase, done, total)`` reports, for a terminal's progress bars.

Long operations (ingest, replay) take an optional callback and call it as each of their phases
advances; the phases arrive in order and ``done`` never exceeds ``total``. The callback does no
work of its own: the CLI draws bars with it, tests record it, everything else passes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

Progress = Callable[[str, int, int], None]
"""``(phase, done, total)``, called as work advances; ``done`` never exceeds ``total``."""


class IngestPhase(StrEnum):
    """The phases of an ingest (``reasoner.ingest``), in the order they report, with units."""

    PARSE = "parse"  # by the reader that builds the batch: points (JSON) or columns (CSV)
    CONTRACT = "contract check"  # points
    DERIVE = "derive"  # steps: windows and latest state, events, trust, records
    GRAPH = "graph write"  # records (nodes and relationships) written to Neo4j
    LOG = "log staging"  # rows staged in the telemetry log (accepted and quarantined)


class ReplayPhase(StrEnum):
    """The phases of a replay (``agents.replay``), in the order they report, with units."""

    LOAD = "load records"  # decision records of the run read from Neo4j
    REPLAY = "replay steps"  # steps of the run executed again
    COMPARE = "compare"  # decision records compared field by field


def no_progress(phase: str, done: int, total: int) -> None:
    """The progress callback that reports nothing."""


@dataclass(slots=True)
class Tally:
    """The running count of one phase: reported at the start and after every advance, capped at
    its total (an advance past it is a caller's miscount, not a reason to draw a bar over 100%)."""

    report: Progress
    phase: str
    total: int
    done: int = 0

    def start(self) -> None:
        """Report the phase with nothing done yet."""
        self.report(self.phase, self.done, self.total)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done and report."""
        self.done = min(self.total, self.done + n)
        self.report(self.phase, self.done, self.total)
