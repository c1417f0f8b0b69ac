"""Plumbing every ``twinkg`` command shares: consoles, settings, the store, error handling.

Errors are one line on stderr, ``error[<code>]: <reason>``, and exit with the error's code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from twinkg.api.settings import Connection, Settings, connection, local_server_config, telemetry_dir
from twinkg.kg import local_server
from twinkg.kg.store import GraphStore, open_driver
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.errors import ConfigError, TwinKGError
from twinkg.reasoner.inference import reclassify
from twinkg.reasoner.ingest_recovery import recover

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


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "TWINKG_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(f"{field}: {first['msg']}") from None


def note(message: str) -> None:
    err.print(f"[dim]{message}[/dim]")


@contextmanager
def open_store(settings: Settings) -> Iterator[GraphStore]:
    """The graph store for this command; starts the local server when it is the target."""
    conn: Connection = connection(settings)
    if conn.local:
        local_server.start(
            local_server_config(settings), wait_s=settings.neo4j_start_timeout_s, log=note
        )
    driver = open_driver(conn.uri, conn.user, conn.password.get_secret_value())
    try:
        store = GraphStore(driver, database=conn.database)
        store.ping()
        recover_ingests(settings, store)
        yield store
    finally:
        driver.close()


def recover_ingests(settings: Settings, store: GraphStore) -> None:
    """Complete or roll back telemetry ingests a crash cut short (decision 0028); a note
    when there were any. Costs one folder listing when there were none."""
    log = TelemetryLog(telemetry_dir(settings))
    if log.journal.has_entries():
        done = recover(store, log)
        if done.completed or done.rolled_back:
            note(
                f"recovered telemetry batches a crash cut short: {len(done.completed)} "
                f"completed, {len(done.rolled_back)} rolled back"
            )


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
        err.print(f"classification skipped: {exc} (run `twinkg reason classify`)", markup=False)
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
