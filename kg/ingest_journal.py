"""The ingest journal: a durable note of every batch between its staging and its completion.

An ingest writes one batch to two stores, the telemetry log (files) and Neo4j, and the batch must
end up whole in both or in neither (decision 0028). Before Neo4j commits, the ingest writes a
*pending entry* ``journal/<batch>.json``, flushed to the device, that names the batch, its content
hash, the files it staged (temporary and final names) and the manifest that will make them
visible. Neo4j's commit of the batch (its ``tk:IngestBatch`` node with that content hash) is the
decision. Then the files get their final names, the manifest is written and the entry removed.

Whoever finds an entry left by a crash (``reasoner.ingest_recovery``) asks Neo4j: committed →
complete it; not → roll it back. Only the holder of the *writer lock* (an exclusive ``flock`` on
``journal/.lock``) may ingest or resolve entries, so recovery never touches the batch of an
ingest that is still running; the kernel drops the lock of a killed process.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinkg.kg import durable


@dataclass(frozen=True, slots=True)
class PendingBatch:
    """A batch staged but not known to be complete.

    ``finals`` are the staged files' final names, relative to the log's root (each waits under
    its final name plus ``.tmp``); ``manifest`` is the JSON the log writes on completion."""

    batch_id: str
    content_hash: str
    finals: tuple[str, ...]
    manifest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UnreadableEntry:
    """A journal entry that cannot be resolved: not one this code wrote, or damaged."""

    path: Path
    reason: str


class IngestJournal:
    """The pending entries of the telemetry log under ``root`` (in ``root/journal``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / "journal"

    def write_entry(
        self, batch_id: str, content_hash: str, finals: list[str], manifest: dict[str, Any]
    ) -> PendingBatch:
        """Record a batch as pending, durably (before any of its files is written)."""
        entry = PendingBatch(batch_id, content_hash, tuple(finals), manifest)
        document = {
            "batch_id": entry.batch_id,
            "content_hash": entry.content_hash,
            "finals": list(entry.finals),
            "manifest": entry.manifest,
        }
        data = json.dumps(document, indent=1).encode()
        durable.write_atomically(self.folder / f"{entry.batch_id}.json", data)
        return entry

    def remove(self, batch_id: str) -> None:
        """Forget the entry of ``batch_id`` durably (the batch is complete or rolled back)."""
        durable.remove(self.folder / f"{batch_id}.json")

    def has_entries(self) -> bool:
        """Whether any entry waits (one folder listing; no file is read)."""
        try:
            return any(p.suffix == ".json" for p in self.folder.iterdir())
        except OSError:
            return False

    def entries(self) -> tuple[list[PendingBatch], list[UnreadableEntry]]:
        """The pending entries, oldest name first, and the files that are not entries."""
        found: list[PendingBatch] = []
        bad: list[UnreadableEntry] = []
        try:
            paths = sorted(p for p in self.folder.iterdir() if p.suffix == ".json")
        except OSError:
            return [], []
        for path in paths:
            try:
                found.append(_entry(path))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                bad.append(UnreadableEntry(path, str(exc) or type(exc).__name__))
        return found, bad

    def path_of(self, relative: str) -> Path:
        """An entry's file name as a path (names are relative to the log's root)."""
        return self.root / relative

    @contextmanager
    def writer_lock(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the writer lock inside the block; yields ``False`` (and holds nothing) when
        ``wait`` is false and another ingest holds it."""
        durable.make_folders(self.folder)
        fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _entry(path: Path) -> PendingBatch:
    """Parse one entry; ``ValueError`` when it is not one this module wrote."""
    data = json.loads(path.read_text(encoding="utf-8"))
    batch_id, content_hash = str(data["batch_id"]), str(data["content_hash"])
    finals = tuple(str(f) for f in data["finals"])
    manifest = data["manifest"]
    if path.stem != batch_id or not isinstance(manifest, dict):
        raise ValueError("not a pending batch entry")
    for final in finals:
        # a damaged or foreign entry must not make recovery rename other files
        name = Path(final)
        own = name.suffix == ".parquet" and name.stem == batch_id
        if name.is_absolute() or not (own or name.suffix == ".npz"):
            raise ValueError(f"names a file the batch cannot have staged: {final!r}")
    return PendingBatch(batch_id, content_hash, finals, manifest)
