"""Recovery of ingests a crash cut short: complete what Neo4j committed, roll back the rest.

From just before Neo4j commits a batch until the telemetry log has made it visible, the ingest
keeps a pending entry in the log's journal (decision 0028, :mod:`kg.ingest_journal`). A process
that died in between leaves the entry behind. :func:`recover` resolves each one by asking Neo4j
whether it committed the batch (its ``tk:IngestBatch`` node with the entry's content hash,
waiting for a transaction still writing it to end): committed → the log side is completed
(files renamed, manifest written), not → the staged files are deleted. Temporary files that no
entry names (a crash while staging) are deleted too.

It works only under the log's writer lock, so it never touches the batch of an ingest that is
still running. It runs whenever a process opens the store (``api/resources.py``: the API at
start, every CLI command), inside every ingest (which holds the lock), and before the twin reads
its log (``api/twin.py``) when an entry waits.
"""

from __future__ import annotations

from dataclasses import dataclass

from twinkg.kg import telemetry_state
from twinkg.kg.log_files import LogIssue
from twinkg.kg.store import GraphStore
from twinkg.kg.telemetry_log import TelemetryLog
from twinkg.ontology.namespaces import INGEST_BASE


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery did: batches completed and rolled back, stray temporary files deleted;
    ``busy`` when another writer held the lock (it resolves its own batch); ``issues`` for
    journal entries that could not be read (left in place)."""

    completed: tuple[str, ...] = ()
    rolled_back: tuple[str, ...] = ()
    swept: int = 0
    busy: bool = False
    issues: tuple[LogIssue, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether recovery changed anything."""
        return bool(self.completed or self.rolled_back or self.swept)


def batch_iri(batch_id: str) -> str:
    """The IRI of the ``tk:IngestBatch`` node of batch ``batch_id``."""
    return f"{INGEST_BASE}batch/{batch_id}"


def recover(store: GraphStore, log: TelemetryLog, *, wait: bool = False) -> RecoveryReport:
    """Resolve every batch a crash left half-done under ``log`` (see the module docstring).

    Takes the writer lock (waits for it only when ``wait``). A log that does not exist yet is
    left alone. :class:`~ontology.errors.StoreError` when Neo4j cannot answer: the entries
    then stay, invisible to readers, until the next recovery."""
    if not log.root.is_dir():
        return RecoveryReport()
    with log.writer(wait=wait) as held:
        if not held:
            return RecoveryReport(busy=True)
        return resolve(store, log)


def resolve(store: GraphStore, log: TelemetryLog) -> RecoveryReport:
    """:func:`recover` for a caller that holds the writer lock already (the ingest)."""
    entries = log.pending()
    issues = tuple(log.issues)
    completed: list[str] = []
    rolled_back: list[str] = []
    for entry in entries:
        if telemetry_state.batch_decision(store, batch_iri(entry.batch_id), entry.content_hash):
            log.complete(entry)
            completed.append(entry.batch_id)
        else:
            log.roll_back(entry)
            rolled_back.append(entry.batch_id)
    # a journal entry that did not read may still name a committed batch's files: keep them
    swept = 0 if issues else log.sweep()
    return RecoveryReport(tuple(completed), tuple(rolled_back), swept, issues=issues)
