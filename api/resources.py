"""What a TwinKG process opens before it can build a :class:`~api.twin.Twin`: the graph store
(starting the local Neo4j when that is the target), the agents' checkpointer and the SPARQL
projection, each from the settings.

Every way in (the CLI, the HTTP app, benchmarks) opens them here, so none imports another to do
it; only ``api/`` reads settings and builds drivers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from twinkg.api.settings import (
    Connection,
    Settings,
    checkpoint_target,
    connection,
    local_server_config,
    projection_folder,
    telemetry_dir,
)
from twinkg.kg import local_server
from twinkg.kg.store import GraphStore, open_driver
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.reasoner.ingest_recovery import recover

if TYPE_CHECKING:  # LangGraph and the SPARQL workers load only where they are opened
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from twinkg.kg.projection import Projection


def _quiet(_: str) -> None:
    """Say nothing (the default ``note``)."""


@contextmanager
def open_store(settings: Settings, *, note: Callable[[str], None] = _quiet) -> Iterator[GraphStore]:
    """The graph store the settings name; starts the local server when it is the target, and
    completes or rolls back telemetry ingests a crash cut short (decision 0028) before
    yielding. ``note`` hears one line about each (the server starting, ingests recovered)."""
    conn: Connection = connection(settings)
    if conn.local:
        local_server.start(
            local_server_config(settings), wait_s=settings.neo4j_start_timeout_s, log=note
        )
    driver = open_driver(conn.uri, conn.user, conn.password.get_secret_value())
    try:
        store = GraphStore(driver, database=conn.database)
        store.ping()
        recover_ingests(settings, store, note=note)
        yield store
    finally:
        driver.close()


def recover_ingests(
    settings: Settings, store: GraphStore, *, note: Callable[[str], None] = _quiet
) -> None:
    """Complete or roll back telemetry ingests a crash cut short (decision 0028); a note when
    there were any. Costs one folder listing when there were none."""
    log = TelemetryLog(telemetry_dir(settings))
    if log.journal.has_entries():
        done = recover(store, log)
        if done.completed or done.rolled_back:
            note(
                f"recovered telemetry batches a crash cut short: {len(done.completed)} "
                f"completed, {len(done.rolled_back)} rolled back"
            )


@contextmanager
def open_checkpointer(settings: Settings) -> Iterator[BaseCheckpointSaver[Any]]:
    """The checkpointer the settings name (SQLite by default)."""
    from twinkg.agents.checkpoint import open_checkpointer as _open  # noqa: PLC0415

    with _open(checkpoint_target(settings)) as saver:
        yield saver


def build_projection(
    settings: Settings, store: GraphStore, *, workers: int | None = None
) -> Projection:
    """The persistent projection of ``store`` with the settings' SPARQL limits (``workers``
    instead of ``TWINKG_SPARQL_WORKERS`` when given); nothing opens before its first use."""
    from twinkg.kg.projection import Projection  # noqa: PLC0415
    from twinkg.kg.sparql_pool import PoolLimits  # noqa: PLC0415

    limits = PoolLimits(
        workers=workers or settings.sparql_workers,
        per_user=settings.sparql_user_concurrency,
        queue=settings.sparql_queue,
        queue_wait_s=settings.sparql_queue_wait_s,
        memory_bytes=settings.sparql_worker_memory_mb * 1024 * 1024,
        byte_cap=settings.sparql_result_max_bytes,
    )
    return Projection(store, path=projection_folder(settings), limits=limits)
