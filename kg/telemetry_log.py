"""The telemetry log: raw points, append-only, partitioned by day, in Parquet; and the quarantine.

Raw points never go into Neo4j. Each ingest batch writes one Parquet file per day it covers under
``points/date=YYYY-MM-DD/`` and its rejected points under ``quarantine/date=YYYY-MM-DD/`` (the day
it was received), each with the violation that rejected it. A batch becomes visible only when its
manifest (``batches/<id>.json``) exists; readers see nothing else.

Writing a batch is one unit with Neo4j's commit of it (decision 0028): :meth:`~TelemetryLog.stage`
first records the batch as pending in the journal (:mod:`kg.ingest_journal`), naming its files,
then writes them under temporary names and flushes them; Neo4j commits (the decision);
:meth:`~TelemetryLog.complete` gives the files their names, writes the manifest and drops the
entry, each step durable. After a crash, recovery completes an entry whose batch Neo4j holds
and rolls back the others (:meth:`~TelemetryLog.roll_back`, :meth:`~TelemetryLog.sweep`).

Reading never fails on what the log holds (:mod:`kg.log_files`): what cannot be read is left out
and listed in :attr:`TelemetryLog.issues`. A window reads back deterministically: rows come
sorted by sensor, time, batch and position.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from twinkg.kg import durable, log_files
from twinkg.kg.crash_points import CrashPoint, reach
from twinkg.kg.ingest_journal import IngestJournal, PendingBatch
from twinkg.kg.log_files import IssueCode, LogIssue
from twinkg.ontology.errors import InvalidInputError, StoreError

POINTS_SCHEMA = pa.schema(
    [
        ("sensor", pa.string()),
        ("time", pa.timestamp("ns", tz="UTC")),
        ("value", pa.float64()),
        ("quality", pa.string()),
        ("producer", pa.string()),
        ("batch", pa.string()),
        ("seq", pa.int64()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("batch", pa.string()),
        ("seq", pa.int64()),
        ("received_at", pa.timestamp("ns", tz="UTC")),
        ("sensor", pa.string()),
        ("time", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("quality", pa.string()),
        ("producer", pa.string()),
        ("reason", pa.string()),
    ]
)
_DAY_NS = 86_400 * 10**9
_SORT = [
    ("sensor", "ascending"),
    ("time", "ascending"),
    ("batch", "ascending"),
    ("seq", "ascending"),
]
# the instants a nanosecond timestamp can hold (Arrow refuses bounds outside them)
_EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
_LATEST = datetime(2262, 4, 11, tzinfo=UTC)
_KINDS = ("points", "quarantine")


@dataclass(frozen=True, slots=True)
class BatchManifest:
    """What a committed batch wrote: its id, contract, counts and files (relative paths)."""

    batch_id: str
    contract: str
    received_at: str
    accepted: int
    rejected: int
    files: tuple[str, ...]


@dataclass(slots=True)
class StagedBatch:
    """Files written under temporary names (their final name plus ``.tmp``), waiting for
    :meth:`TelemetryLog.complete`; ``finals`` are relative to the log's root; ``entry`` is the
    batch's pending entry in the journal, when one was written."""

    manifest: BatchManifest
    finals: list[str] = field(default_factory=list)
    entry: PendingBatch | None = None


class TelemetryLog:
    """The append-only telemetry log and quarantine under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal = IngestJournal(root)
        self.issues: list[LogIssue] = []
        """What the last read left out, and why (empty when it read everything)."""
        # each manifest read so far, by file name, with the (inode, size, modification time) it
        # was read at: manifests are written once, atomically, so one unchanged since is not
        # read again (a rewritten one is); what could not be read is kept as its reason
        self._read: dict[str, tuple[tuple[int, int, int], BatchManifest | str]] = {}

    @property
    def _batches(self) -> Path:
        return self.root / "batches"

    # -- writing ----------------------------------------------------------------------------

    @contextmanager
    def writer(self, *, wait: bool = True) -> Iterator[bool]:
        """The writer lock (one ingest or recovery at a time, across processes); yields
        ``False`` without it when ``wait`` is false and another writer holds it."""
        try:
            with self.journal.writer_lock(wait=wait) as held:
                yield held
        except OSError as exc:
            raise StoreError(f"cannot write the telemetry log under {self.root}: {exc}") from exc

    def committed(self, batch_id: str) -> bool:
        """Whether batch ``batch_id`` was applied already."""
        return (self._batches / f"{batch_id}.json").exists()

    def stage(
        self,
        *,
        manifest: BatchManifest,
        points: pa.Table,
        quarantine: pa.Table,
        extra: Sequence[tuple[Path, Callable[[Path], None]]] = (),
        content_hash: str | None = None,
    ) -> StagedBatch:
        """Write the batch's files under temporary names and flush them; nothing is visible.

        With ``content_hash`` the batch is first recorded as pending in the journal, durably,
        naming every file it is about to write, so that a crash from here on leaves nothing
        that recovery cannot find. ``extra`` are further files that become visible with the
        batch (the detectors fitted on it), each as its final path and what writes it."""
        parts: list[tuple[Path, pa.Table]] = []
        for kind, table, column in (
            ("points", points, "time"),
            ("quarantine", quarantine, "received_at"),
        ):
            for day, part in _by_day(table, column):
                name = f"{manifest.batch_id}.parquet"
                parts.append((self.root / kind / f"date={day}" / name, part))
        files = tuple(str(path.relative_to(self.root)) for path, _ in parts)
        staged = StagedBatch(replace(manifest, files=files))
        staged.finals = [self._relative(p) for p, _ in parts]
        staged.finals += [self._relative(p) for p, _ in extra]
        try:
            if content_hash is not None:
                staged.entry = self.journal.write_entry(
                    staged.manifest.batch_id, content_hash, staged.finals, _asdict(staged.manifest)
                )
                reach(CrashPoint.JOURNALED)
            for final, part in parts:
                durable.make_folders(final.parent)
                with _temporary(final).open("wb") as handle:
                    pq.write_table(part, handle, compression="zstd")
                    handle.flush()
                    os.fsync(handle.fileno())
            for final, write in extra:
                durable.make_folders(final.parent)
                write(_temporary(final))
                durable.sync_file(_temporary(final))
            for folder in {self.journal.path_of(f).parent for f in staged.finals}:
                durable.sync_folder(folder)
        except OSError as exc:
            self.abort(staged)
            raise StoreError(f"cannot write the telemetry log under {self.root}: {exc}") from exc
        return staged

    def commit(self, staged: StagedBatch) -> BatchManifest:
        """Make a staged batch visible (its pending entry, if any, is dropped)."""
        self.complete(self._pending_of(staged))
        return staged.manifest

    @staticmethod
    def _pending_of(staged: StagedBatch) -> PendingBatch:
        """The pending entry that describes ``staged`` (written or not)."""
        if staged.entry is not None:
            return staged.entry
        return PendingBatch(
            staged.manifest.batch_id, "", tuple(staged.finals), _asdict(staged.manifest)
        )

    def complete(self, entry: PendingBatch) -> None:
        """Give the staged files their names, write the manifest, drop the entry; each step
        durable, each idempotent (recovery repeats what a crash cut short)."""
        for relative in entry.finals:
            final = self.journal.path_of(relative)
            temp = _temporary(final)
            if temp.exists():
                temp.replace(final)
        for folder in {self.journal.path_of(f).parent for f in entry.finals}:
            durable.sync_folder(folder)
        reach(CrashPoint.RENAMED)
        data = json.dumps(entry.manifest, indent=1).encode()
        durable.write_atomically(self._batches / f"{entry.batch_id}.json", data)
        reach(CrashPoint.MANIFESTED)
        self.journal.remove(entry.batch_id)
        reach(CrashPoint.CLEARED)

    def roll_back(self, entry: PendingBatch) -> None:
        """Delete what a batch that Neo4j never committed staged, then its entry."""
        for relative in entry.finals:
            durable.remove(_temporary(self.journal.path_of(relative)))
        self.journal.remove(entry.batch_id)

    def abort(self, staged: StagedBatch) -> None:
        """Remove what :meth:`stage` wrote (and its entry, if one was written)."""
        self.roll_back(self._pending_of(staged))
        staged.finals.clear()

    def pending(self) -> list[PendingBatch]:
        """Batches staged but not known to be complete (a crash left them); unreadable
        entries are listed in :attr:`issues`."""
        self.issues = []
        entries, bad = self.journal.entries()
        for entry in bad:
            log_files.report(
                self.issues, LogIssue(IssueCode.PENDING_UNREADABLE, str(entry.path), entry.reason)
            )
        return entries

    def sweep(self, keep: Sequence[PendingBatch] = ()) -> int:
        """Delete temporary files that no pending entry names (a crash while staging left
        them); how many. Only under the writer lock: a running ingest's files look the same."""
        named = {_temporary(self.journal.path_of(f)) for e in keep for f in e.finals}
        removed = 0
        for kind in ("points", "quarantine", "batches", "journal"):
            folder = self.root / kind
            if not folder.is_dir():
                continue
            for temp in folder.rglob("*.tmp"):
                if temp not in named and temp.is_file():
                    durable.remove(temp)
                    removed += 1
        return removed

    def _relative(self, path: Path) -> str:
        return os.path.relpath(path, self.root)

    # -- reading ----------------------------------------------------------------------------

    def manifests(self) -> list[BatchManifest]:
        """Every committed batch, oldest file name first (unreadable manifests are left out
        and listed in :attr:`issues`)."""
        self.issues = []
        return self._manifests()

    def _manifests(self) -> list[BatchManifest]:
        try:
            with os.scandir(self._batches) as entries:
                listed = sorted(
                    (e for e in entries if e.name.endswith(".json") and not e.name.startswith(".")),
                    key=lambda e: e.name,
                )
        except (FileNotFoundError, NotADirectoryError):
            self._read = {}
            return []
        found = []
        known: dict[str, tuple[tuple[int, int, int], BatchManifest | str]] = {}
        for entry in listed:
            name, path = entry.name, entry.path
            try:
                st = entry.stat()
            except OSError as exc:
                outcome: BatchManifest | str = str(exc)
            else:
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
                cached = self._read.get(name)
                outcome = cached[1] if cached is not None and cached[0] == stamp else _read(path)
                known[name] = (stamp, outcome)
            if isinstance(outcome, str):
                issue = LogIssue(IssueCode.MANIFEST_UNREADABLE, path, outcome)
                log_files.report(self.issues, issue)
            else:
                found.append(outcome)
        self._read = known
        return found

    def _files(self, kind: str, schema: pa.Schema) -> list[tuple[str, log_files.Zone]]:
        paths = []
        for manifest in self._manifests():
            for relative in manifest.files:
                placed = _placed(self.root, relative)
                if placed is None:
                    issue = LogIssue(IssueCode.FILE_FOREIGN, relative, "not a file of the log")
                    log_files.report(self.issues, issue)
                elif placed[0] == kind:
                    paths.append(placed[1])
        return log_files.readable(paths, schema, self.issues)

    def window(
        self,
        *,
        sensors: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pa.Table:
        """Accepted points with ``start <= time < end`` (of ``sensors``), in a stable order."""
        self.issues = []
        low, high = _bound(start), _bound(end)
        if (sensors is not None and not sensors) or low == "after" or high == "before":
            return POINTS_SCHEMA.empty_table()  # isin([]) is untyped: Arrow fails
        clauses = (
            None if sensors is None else ds.field("sensor").isin(list(sensors)),
            None if not isinstance(low, pa.TimestampScalar) else ds.field("time") >= low,
            None if not isinstance(high, pa.TimestampScalar) else ds.field("time") < high,
        )
        condition = None
        for clause in clauses:
            if clause is not None:
                condition = clause if condition is None else condition & clause
        # files whose footer shows they hold no row of the window are not opened: the same
        # rows as reading them all, whatever the log's length (decision 0051)
        wanted = None if sensors is None else sorted({s.encode() for s in sensors})
        least = low.value if isinstance(low, pa.TimestampScalar) else None
        beyond = high.value if isinstance(high, pa.TimestampScalar) else None
        files = [
            path
            for path, zone in self._files("points", POINTS_SCHEMA)
            if zone.may_hold(wanted, least, beyond)
        ]
        table = log_files.read_files(files, POINTS_SCHEMA, self.issues, condition=condition)
        return table.sort_by(_SORT)

    def quarantined(
        self, *, batch: str | None = None, sensor: str | None = None, limit: int | None = None
    ) -> pa.Table:
        """Quarantined points with their reasons, newest batch last, in a stable order."""
        self.issues = []
        files = [path for path, _ in self._files("quarantine", QUARANTINE_SCHEMA)]
        table = log_files.read_files(files, QUARANTINE_SCHEMA, self.issues)
        if batch is not None:
            table = table.filter(pc.equal(table["batch"], batch))
        if sensor is not None:
            table = table.filter(pc.equal(table["sensor"], sensor))
        table = table.sort_by(
            [("received_at", "ascending"), ("batch", "ascending"), ("seq", "ascending")]
        )
        return table if limit is None else table.slice(0, limit)


def _read(path: str) -> BatchManifest | str:
    """The manifest at ``path``, or why it cannot be read."""
    try:
        data = log_files.manifest_document(Path(path))
    except (OSError, ValueError) as exc:
        return str(exc)
    return BatchManifest(
        data["batch_id"],
        data["contract"],
        data["received_at"],
        data["accepted"],
        data["rejected"],
        tuple(data["files"]),
    )


@functools.lru_cache(maxsize=262_144)
def _placed(root: Path, relative: str) -> tuple[str, Path] | None:
    """Which kind of the log's files ``relative`` names, and its path; ``None`` for neither."""
    for kind in _KINDS:
        path = log_files.inside(root, relative, kind)
        if path is not None:
            return kind, path
    return None


def _temporary(final: Path) -> Path:
    return final.with_name(final.name + ".tmp")


def _asdict(manifest: BatchManifest) -> dict[str, object]:
    return {
        "batch_id": manifest.batch_id,
        "contract": manifest.contract,
        "received_at": manifest.received_at,
        "accepted": manifest.accepted,
        "rejected": manifest.rejected,
        "files": list(manifest.files),
    }


def _bound(moment: datetime | None) -> pa.TimestampScalar | str | None:
    """A window bound as Arrow compares it; "before"/"after" when it lies outside what a
    nanosecond timestamp can hold (no stored time is that early or late)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidInputError(f"{moment.isoformat()} has no time zone")
    if moment < _EARLIEST:
        return "before"
    if moment >= _LATEST:
        return "after"
    return pa.scalar(moment, type=pa.timestamp("ns", tz="UTC"))


def _by_day(table: pa.Table, column: str) -> list[tuple[str, pa.Table]]:
    if table.num_rows == 0:
        return []
    # whole days since the epoch, from the integers (formatting a million timestamps is slow)
    days = table[column].cast(pa.int64()).to_numpy() // _DAY_NS
    parts = []
    for day in np.unique(days):
        label = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=int(day))).strftime("%Y-%m-%d")
        parts.append((label, table.filter(pa.array(days == day))))
    return parts
