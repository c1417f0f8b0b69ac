"""Plumbing every ``twinkg`` command shares: consoles, settings, the store, error handling.

Errors are one line on stderr, ``error[<code>]: <reason>``, and exit with the error's code.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from twinkg.api import resources
from twinkg.api.settings import Settings, load_settings, telemetry_dir
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import TwinKGError
from twinkg.reasoner.inference import ReclassifySummary, reclassify

__all__ = [
    "classify_and_report",
    "err",
    "errors_as_exit_codes",
    "load_settings",
    "note",
    "open_store",
    "out",
    "telemetry_log",
]
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
P = ParamSpec("P")
R = TypeVar("R")


def errors_as_exit_codes(command: Callable[P, R]) -> Callable[P, R]:
    """One line on stderr and the error's exit code instead of a traceback."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except TwinKGError as exc:
            one_line = " ".join(str(exc).split())  # driver messages can span lines
            err.print(f"error[{exc.code}]: {one_line}", markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return run


def note(message: str) -> None:
    err.print(f"[dim]{message}[/dim]")


def open_store(settings: Settings) -> AbstractContextManager[GraphStore]:
    """The graph store for this command; starts the local server when it is the target and
    resolves ingests a crash cut short, with a note on stderr about each."""
    return resources.open_store(settings, note=note)


def telemetry_log(settings: Settings) -> TelemetryLog:
    """The telemetry log for reading, with any ingest a crash cut short resolved first
    (Neo4j, which decides, is opened only then)."""
    log = TelemetryLog(telemetry_dir(settings))
    if log.journal.has_entries():
        with open_store(settings):  # recovers on opening
            pass
    return log


def classify_and_report(store: GraphStore) -> None:
    """Recompute the inferred labels and say in one line what was inferred."""
    try:
        summary = reclassify(store)
    except TwinKGError as exc:
        report_classification(None, str(exc))
        return
    report_classification(summary, None)


def report_classification(summary: ReclassifySummary | None, error: str | None) -> None:
    """Say in one line what a reclassification inferred, or why it was skipped (``error``: it
    failed; ``summary`` inconsistent: it wrote nothing). Nothing when neither is given."""
    if error is not None:
        err.print(f"classification skipped: {error} (run `twinkg reason classify`)", markup=False)
        return
    if summary is None:
        return
    if not summary.consistent:
        err.print(
            f"classification skipped: inconsistent facts: {summary.explanation}", markup=False
        )
        return
    named: list[str] = []
    others: dict[str, int] = {}
    for iri, classes in sorted(summary.inferred.items()):
        for cls in sorted(classes):
            name = cls.rsplit("#", 1)[-1]
            if iri in summary.tags:
                named.append(f"{summary.tags[iri]} is {name}")
            else:
                others[name] = others.get(name, 0) + 1
    named += [f"{n} × {name}" for name, n in sorted(others.items())]
    shown = ", ".join(named) or "nothing inferred"
    out.print(f"reasoner: {shown} (labels +{summary.added} -{summary.removed})")
