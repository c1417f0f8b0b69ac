"""How one ingest batch commits to two stores, the telemetry log and Neo4j, as one unit.

The protocol (decision 0028): the log records the batch as pending in its journal, naming every
file it will write, and stages the files (flushed), in a thread while Neo4j writes the batch's
records in one transaction; the transaction commits only once staging is done. That commit (the
batch node with its content hash) is the decision. Then the log gives the files their names,
writes the manifest and drops the entry. A crash at any step leaves an entry that
``reasoner.ingest_recovery`` completes (Neo4j committed) or rolls back (it did not); a failure
reported during the commit is settled the same way at once. ``kg.crash_points`` marks each step
for the crash tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from twinkg.kg import telemetry_state
from twinkg.kg.crash_points import CrashPoint, reach
from twinkg.kg.ingest_journal import PendingBatch
from twinkg.kg.records import GraphRecords
from twinkg.kg.store import GraphStore, WriteSummary
from twinkg.kg.telemetry_log import BatchManifest, StagedBatch, TelemetryLog
from twinkg.ontology.errors import StoreError, TwinKGError
from twinkg.reasoner.ingest_recovery import batch_iri
from twinkg.reasoner.progress import IngestPhase, Progress, Tally


@dataclass(frozen=True, slots=True)
class Staging:
    """What the telemetry log stages for a batch."""

    manifest: BatchManifest
    points: pa.Table
    quarantine: pa.Table
    extra: tuple[tuple[Path, Callable[[Path], None]], ...]


def commit_batch(
    store: GraphStore,
    log: TelemetryLog,
    records: GraphRecords,
    *,
    staging: Staging,
    content_hash: str,
    report: Progress,
    seconds: dict[str, float],
) -> WriteSummary:
    """Record the batch as pending and stage the log's files (durably) while Neo4j writes
    ``records``; commit once both are done; then complete the log side (decision 0028)."""
    graph = Tally(report, IngestPhase.GRAPH, len(records.nodes) + len(records.rels))
    graph.start()
    rows = Tally(report, IngestPhase.LOG, staging.points.num_rows + staging.quarantine.num_rows)

    # Stage the log files (pyarrow, off the GIL) while Neo4j writes.
    def stage() -> StagedBatch:
        started = time.perf_counter()
        staged = log.stage(
            manifest=staging.manifest,
            points=staging.points,
            quarantine=staging.quarantine,
            extra=staging.extra,
            content_hash=content_hash,
        )
        seconds["log"] = time.perf_counter() - started
        return staged

    with ThreadPoolExecutor(max_workers=1) as pool:
        work = pool.submit(stage)

        def decide() -> None:  # the last step inside the transaction, before its commit
            rows.start()
            work.result()
            rows.advance(rows.total)
            reach(CrashPoint.STAGED)
            reach(CrashPoint.IN_TRANSACTION)

        try:
            written = store.write(records, progress=graph.advance, before_commit=decide)
        except BaseException as exc:
            if not _settle(store, log, work) or not isinstance(exc, Exception):
                raise
            # the commit went through although the driver reported a failure
            return WriteSummary(len(records.nodes), len(records.rels), 0, 0.0, 0.0, 0.0)
    reach(CrashPoint.COMMITTED)
    entry = work.result().entry
    assert entry is not None  # staged with a content hash
    _complete(log, entry)
    return written


def _settle(store: GraphStore, log: TelemetryLog, work: Future[StagedBatch]) -> bool:
    """The write failed: whether the batch committed anyway (a failure reported during the
    commit), which only Neo4j can tell; its log side is then completed, else rolled back."""
    if work.exception() is not None:  # waits for staging; it cleaned up after itself
        return False
    entry = work.result().entry
    assert entry is not None
    try:
        committed = telemetry_state.batch_decision(
            store, batch_iri(entry.batch_id), entry.content_hash
        )
    except TwinKGError:
        return False  # Neo4j cannot say: the entry stays for recovery
    if committed:
        _complete(log, entry)
    else:
        log.roll_back(entry)
    return committed


def _complete(log: TelemetryLog, entry: PendingBatch) -> None:
    """Make a committed batch visible in the log; if that fails, the entry stays and
    recovery finishes it (the batch is committed: nothing is lost)."""
    try:
        log.complete(entry)
    except OSError as exc:
        raise StoreError(
            f"batch {entry.batch_id[:12]} is committed in Neo4j but the telemetry log under "
            f"{log.root} could not show it yet ({exc}); the next start or ingest completes it"
        ) from exc
