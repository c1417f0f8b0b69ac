"""SKAB benchmark: the ingest's own detectors and alarm logic on the SKAB outlier protocol.

For each of the 34 labelled SKAB files (``../shared/data/skab/data/{valve1,valve2,other}``): fit
every equipment's detector on the file's first 400 rows, score the whole file, and judge the rows
after the 400th against the ``anomaly`` labels. The code is the ingest's: the rows of each
detector subject (the equipment and its sensors, from the skab-testbed seed by the rule of
``kg.telemetry_state.detector_subjects``) are aligned by ``reasoner.aggregates.wide``, fitted by
``reasoner.anomaly.fit`` and watched by ``reasoner.events.watch``; **a row is predicted anomalous
when any equipment's alarm logic is active at it** (the rows its ``tk:Anomaly`` episodes cover).
The critical alarms (``reasoner.events.raises_alarm`` with the ingest's default alarm policy)
are judged the same way, on the rows their episodes cover.

Printed: F1, FAR (false alarm rate: normal rows flagged / normal rows) and MAR (missed alarm
rate: anomalous rows not flagged / anomalous rows) pooled over all test rows of the 34 files,
beside the published leaderboard; false-alarm episodes per hour of normal test rows; each file's
detection delay (seconds from the labelled start to the first flagged row in the anomaly) and
whether a first alarm came before the labelled anomaly. Then a leave-one-group-out figure: for
each group (valve1, valve2, other) the settings are chosen on the two other groups from the small
grid :data:`GRID` (maximising F1 − FAR pooled over those groups) and judged on the held-out group;
the three held-out groups pooled give the figure. Last, the FAR on ``anomaly-free.csv`` (fit on
its first 400 rows, every later row normal).

    python -m benchmarks.skab [--data ../shared/data/skab/data] [--files]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from twinkg.connect.skab import SKAB_FIT_ROWS
from twinkg.graph_seed.registry import PLANTS_DIR
from twinkg.kg.telemetry_state import DetectorSubject
from twinkg.ontology.catalog import ONTOLOGY_DIR, ontology_files, parse_turtle
from twinkg.ontology.vocab import TK
from twinkg.reasoner import anomaly
from twinkg.reasoner.aggregates import SensorColumns, wide
from twinkg.reasoner.events import raises_alarm, watch
from twinkg.reasoner.ingest import IngestOptions

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skab" / "data"
GROUPS = ("valve1", "valve2", "other")
LABELS = ("datetime", "anomaly", "changepoint")
Bools = NDArray[np.bool_]

LEADERBOARD = (  # ../shared/data/skab/SOURCE.md: F1, FAR %, MAR %
    ("Conv-AE", 0.78, 13.55, 28.02),
    ("MSET", 0.78, 39.73, 14.13),
    ("PCA T²+Q", 0.76, 26.62, 24.92),
    ("LSTM-AE", 0.74, 29.96, 25.92),
    ("T²", 0.66, 19.21, 42.60),
    ("Isolation forest", 0.29, 2.56, 82.89),
)

GRID: dict[str, tuple[float, ...]] = {  # the settings a held-out group's figure may choose from
    "smoothing": (0.1, 2.0 / 11.0),
    "adaptation": (0.002, 0.005, 0.01),
    "margin": (4.0, 5.0, 6.0),
    "clear_after": (10, 30),
}

# The rule of kg.telemetry_state.DETECTOR_SUBJECTS, over the seed's Turtle (no database needed).
_SUBJECTS = """
PREFIX tk: <https://w3id.org/twinkg/ontology#>
PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
SELECT ?e ?tag (GROUP_CONCAT(STR(?s); separator=" ") AS ?sensors) WHERE {
  ?e a/rdfs:subClassOf* tk:Equipment .
  FILTER EXISTS { ?d a tk:Sensor ; tk:monitors ?e }
  ?s a tk:Sensor ; tk:monitors ?x .
  FILTER (?x = ?e || EXISTS { ?x tk:drives ?e } || EXISTS { ?e tk:partOf ?x })
  OPTIONAL { ?e tk:tag ?tag }
} GROUP BY ?e ?tag ORDER BY ?e
"""
_ACCURACY = """
PREFIX tk: <https://w3id.org/twinkg/ontology#>
SELECT ?s ?accuracy WHERE { ?s a tk:Sensor ; tk:accuracy ?accuracy }
"""


@dataclass(frozen=True, slots=True)
class Counts:
    """Confusion counts of predicted against labelled rows."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def f1(self) -> float:
        """2·TP / (2·TP + FP + FN) (0 when there is nothing to find and nothing flagged)."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 0.0

    @property
    def far(self) -> float:
        """False alarm rate: FP / (FP + TN), normal rows flagged."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        """Missed alarm rate: FN / (FN + TP), anomalous rows not flagged."""
        return self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0


def counts(predicted: Bools, labels: Bools) -> Counts:
    """The confusion counts of ``predicted`` against ``labels`` (same shape, booleans)."""
    p, y = np.asarray(predicted, dtype=bool), np.asarray(labels, dtype=bool)
    if p.shape != y.shape:
        raise ValueError(f"predicted {p.shape} and labels {y.shape} differ in shape")
    return Counts(
        int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum()), int((~p & ~y).sum())
    )


def runs_of(flags: Bools) -> list[tuple[int, int]]:
    """``(first, last)`` rows of each run of true values."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(np.int8), [0]])))
    return [(int(a), int(b) - 1) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


@dataclass(frozen=True, slots=True, eq=False)
class Run:
    """One SKAB file: its rows as the ingest sees them (sensor columns) and its labels."""

    name: str
    group: str
    columns: SensorColumns
    labels: Bools


@cache
def subjects() -> tuple[DetectorSubject, ...]:
    """The skab-testbed's detector subjects and the sensors' column names (``tk:externalId``)."""
    graph = parse_turtle([*ontology_files(ONTOLOGY_DIR), PLANTS_DIR / "skab-testbed.ttl"])
    accuracy = {str(r[0]): float(r[1]) for r in graph.query(_ACCURACY)}  # type: ignore[index,arg-type]
    found = []
    for row in graph.query(_SUBJECTS):
        asset, tag, names = row  # type: ignore[misc]
        sensors = tuple(sorted(str(names).split()))
        found.append(
            DetectorSubject(
                str(asset), str(tag), sensors, tuple(accuracy.get(s, 0.0) for s in sensors)
            )
        )
    return tuple(found)


@cache
def column_sensors() -> dict[str, str]:
    """``externalId → sensor IRI`` of the skab-testbed seed."""
    graph = parse_turtle([PLANTS_DIR / "skab-testbed.ttl"])
    return {str(o): str(s) for s, o in graph.subject_objects(TK.externalId)}


def load_run(path: Path) -> Run:
    """Read a SKAB file into the ingest's sensor columns (one sensor per mapped column)."""
    table = np.genfromtxt(path, delimiter=";", names=True, dtype=None, encoding="utf-8")
    header = path.read_text(encoding="utf-8").splitlines()[0].split(";")
    names = dict(zip(header, table.dtype.names or (), strict=True))
    mapping = column_sensors()
    time_ns = table["datetime"].astype("datetime64[ns]").astype(np.int64)
    sensors = tuple(sorted(mapping[c] for c in header if c in mapping))
    by_sensor = {mapping[c]: table[names[c]] for c in header if c in mapping}
    n = len(time_ns)
    code = np.repeat(np.arange(len(sensors), dtype=np.int64), n)
    value = np.concatenate([by_sensor[s].astype(np.float64) for s in sensors])
    labels = table["anomaly"].astype(np.float64) > 0 if "anomaly" in names else np.zeros(n, bool)
    columns = SensorColumns(sensors, code, np.tile(time_ns, len(sensors)), value)
    return Run(f"{path.parent.name}/{path.name}", path.parent.name, columns, labels)


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file's test rows judged: rows flagged by the alarm logic, and by critical alarms."""

    name: str
    group: str
    anomaly: Counts
    alarm: Counts
    false_episodes: int  # runs of flagged rows that touch no labelled anomalous row
    normal_hours: float  # hours of normal test rows (one row a second)
    delay_s: float | None  # labelled start → first flagged row inside the anomaly; None: missed
    early: bool  # a critical alarm before the labelled anomaly started


def evaluate_run(
    run: Run,
    settings: anomaly.Settings = anomaly.DEFAULTS,
    options: IngestOptions | None = None,
) -> FileResult:
    """Fit on the first 400 rows, watch the rest with every subject's detector; judge it."""
    options = options or IngestOptions()
    fit_rows = SKAB_FIT_ROWS
    labels = run.labels[fit_rows:]
    flagged = np.zeros(len(labels), dtype=bool)
    alarmed = np.zeros(len(labels), dtype=bool)
    for subject in subjects():
        times, matrix = wide(run.columns, subject.sensors)
        if len(times) != len(run.labels):
            raise ValueError(f"{run.name}: {len(times)} aligned rows, {len(run.labels)} labels")
        detector = anomaly.fit(
            matrix[:fit_rows],
            channels=subject.sensors,
            fitted_on=run.name,
            settings=settings,
            accuracy=np.array(subject.accuracy),
        )
        seen = watch(detector, times, matrix, skip=fit_rows)
        flagged |= seen.scored.active
        for ep in seen.episodes:
            if raises_alarm(
                ep, alarm_score=options.alarm_score, alarm_min_points=options.alarm_min_points
            ):
                alarmed[ep.first_row : ep.last_row + 1] = True
    false_episodes = sum(not labels[a : b + 1].any() for a, b in runs_of(flagged))
    inside = np.flatnonzero(labels)
    delay = None
    early = False
    if inside.size:
        start = int(inside[0])
        hits = np.flatnonzero(flagged[start:] & labels[start:])
        delay = float(hits[0]) if hits.size else None
        early = bool(alarmed[:start].any())
    return FileResult(
        run.name,
        run.group,
        counts(flagged, labels),
        counts(alarmed, labels),
        false_episodes,
        float((~labels).sum()) / 3600.0,
        delay,
        early,
    )


def evaluate(
    runs: Iterable[Run], settings: anomaly.Settings = anomaly.DEFAULTS
) -> list[FileResult]:
    """Every run judged with the same settings."""
    return [evaluate_run(run, settings) for run in runs]


def pooled(results: Iterable[FileResult]) -> Counts:
    """The rows flagged by the alarm logic, pooled over files."""
    return sum((r.anomaly for r in results), Counts())


def grid() -> list[anomaly.Settings]:
    """Every combination of :data:`GRID` over the shipped defaults."""
    return [
        replace(
            anomaly.DEFAULTS,
            smoothing=smoothing,
            adaptation=adaptation,
            margin=margin,
            clear_after=int(clear_after),
        )
        for smoothing, adaptation, margin, clear_after in itertools.product(*GRID.values())
    ]


def leave_one_group_out(runs: Sequence[Run]) -> list[tuple[str, anomaly.Settings, Counts]]:
    """For each group: the grid's settings that maximise F1 − FAR on the two other groups, and
    the held-out group judged with them."""
    table = {s: evaluate(runs, s) for s in grid()}
    out = []
    for held in GROUPS:

        def objective(s: anomaly.Settings, held: str = held) -> float:
            c = pooled(r for r in table[s] if r.group != held)
            return c.f1 - c.far

        best = max(table, key=objective)
        out.append((held, best, pooled(r for r in table[best] if r.group == held)))
    return out


def labelled_runs(data: Path = DATA) -> list[Run]:
    """The 34 labelled SKAB files, in name order."""
    return [load_run(p) for g in GROUPS for p in sorted((data / g).glob("*.csv"))]


def _row(name: str, c: Counts) -> str:
    return f"{name:44s} {c.f1:5.3f} {100 * c.far:6.2f} {100 * c.mar:6.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--files", action="store_true", help="print the per-file table")
    args = parser.parse_args(argv)
    if not (args.data / "valve1").is_dir():
        print(f"SKAB data not found at {args.data} (it lives in ../shared/data/skab)")
        return 2
    runs = labelled_runs(args.data)
    results = evaluate(runs)
    s = anomaly.DEFAULTS
    print(f"SKAB outlier protocol: {len(runs)} files, fit on the first {SKAB_FIT_ROWS} rows each")
    print(
        f"shipped defaults: smoothing {s.smoothing:.3g}, adaptation {s.adaptation}, margin "
        f"{s.margin}, raise after {s.raise_after}, clear after {s.clear_after}, skip {s.skip}, "
        f"relative floor {s.relative_floor}, trim {s.trim}; accuracy from the seed (tk:accuracy)"
    )
    print("a row is flagged when any equipment's alarm logic is active at it")
    print("subjects: " + ", ".join(f"{x.tag} ({len(x.sensors)} sensors)" for x in subjects()))
    print()
    print(f"{'':44s} {'F1':>5s} {'FAR %':>6s} {'MAR %':>6s}")
    everything = sum((counts(np.ones_like(r.labels[400:]), r.labels[400:]) for r in runs), Counts())
    print(_row("TwinKG: anomaly episodes (alarm logic active)", pooled(results)))
    print(_row("TwinKG: critical alarms", sum((r.alarm for r in results), Counts())))
    for name, f1, far, mar in LEADERBOARD:
        print(f"{name:44s} {f1:5.2f} {far:6.2f} {mar:6.2f}")
    print(_row("every point anomalous", everything))
    false_episodes = sum(r.false_episodes for r in results)
    hours = sum(r.normal_hours for r in results)
    print()
    print(
        f"false-alarm episodes: {false_episodes} in {hours:.2f} h of normal test rows "
        f"({false_episodes / hours:.2f} per hour)"
    )
    delays = [r.delay_s for r in results if r.delay_s is not None]
    print(
        f"detection delay: median {np.median(delays):.0f} s, max {max(delays):.0f} s over "
        f"{len(delays)} detected files; missed: {sum(r.delay_s is None for r in results)}; "
        f"critical alarm before the labelled anomaly: {sum(r.early for r in results)} files"
    )
    if args.files:
        print()
        print(f"{'file':16s} {'F1':>5s} {'FAR %':>6s} {'MAR %':>6s} {'false':>5s} {'delay s':>7s}")
        for r in results:
            delay = "missed" if r.delay_s is None else f"{r.delay_s:.0f}"
            print(
                f"{r.name:16s} {r.anomaly.f1:5.2f} {100 * r.anomaly.far:6.1f} "
                f"{100 * r.anomaly.mar:6.1f} {r.false_episodes:5d} {delay:>7s}"
                + ("  early alarm" if r.early else "")
            )
    print()
    print("leave one group out (settings chosen on the two other groups, max F1 − FAR):")
    total = Counts()
    for held, best, c in leave_one_group_out(runs):
        total += c
        chosen = (
            f"smoothing {best.smoothing:.3g}, adaptation {best.adaptation}, margin {best.margin}, "
            f"clear after {best.clear_after}"
        )
        print(_row(f"  held out {held}", c) + f"   chosen: {chosen}")
    print(_row("  pooled over the held-out groups", total))
    free = load_run(args.data / "anomaly-free" / "anomaly-free.csv")
    clean = evaluate_run(free)
    print()
    print(
        f"anomaly-free.csv: FAR {100 * clean.anomaly.far:.2f} % of "
        f"{clean.anomaly.tn + clean.anomaly.fp} rows, {clean.false_episodes} false-alarm episodes "
        f"({clean.false_episodes / clean.normal_hours:.2f} per hour)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
