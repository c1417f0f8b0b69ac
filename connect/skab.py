"""SKAB (the Skoltech Anomaly Benchmark) runs as a telemetry source.

https://github.com/waico/SKAB

A SKAB file is a wide CSV in :class:`connect.csv.CsvLayout`'s default layout (``;``-separated,
a ``datetime`` column, the ``anomaly`` and ``changepoint`` labels ignored). A run is a recording,
so it is replayed: freshness is judged at its newest point, and each detector is fitted on the
run's first :data:`SKAB_FIT_ROWS` rows (SKAB's protocol) before it scores the rest.
"""

from __future__ import annotations

from dataclasses import replace

from twinkg.connect.csv import CsvLayout, CsvSource, csv_source
from twinkg.connect.source import SourceRequest

SKAB_FIT_ROWS = 400  # SKAB's protocol: the first 400 s of a run are normal operation
SKAB = CsvLayout()  # SKAB's layout


def skab_source(request: SourceRequest) -> CsvSource:
    """A SKAB run from a request (the CSV options apply): replayed, detectors fitted on its
    first :data:`SKAB_FIT_ROWS` rows."""
    return replace(csv_source(request), replay=True, fit_rows=SKAB_FIT_ROWS)
