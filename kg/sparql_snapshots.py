"""Published snapshots of the projection: consistent read-only copies for the SPARQL workers.

``pyoxigraph.Store.backup`` makes a RocksDB checkpoint: a new folder of hard links to the
primary's immutable table files plus a copy of its small live files, usable on its own and
cheap on the same file system (https://pyoxigraph.readthedocs.io, ``Store.backup``;
https://github.com/facebook/rocksdb/wiki/Checkpoints). Workers open snapshots with
``Store.read_only``; they never open the primary, which another process writes (Oxigraph says
a read-only open of a store someone writes is undefined behaviour).

Layout of the folder: ``snap-<n>/`` (complete snapshots; ``n`` grows with each publication, the
greatest is the newest) and ``snap-<n>.lock``, which holds the change log ``seq`` the snapshot
had applied and that entry's commit time. A snapshot is made under ``.tmp-<n>`` and renamed
into place, so a reader never sees half of one. A reader holds a shared ``flock`` on the lock
file while it has the snapshot open; the writer deletes an older snapshot only when it gets
the lock exclusively, and renames it away before letting go, so a reader that gets the lock
afterwards finds the folder gone and takes the newest instead. Locks die with their process:
a crashed worker pins nothing. The newest snapshot is never deleted.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox

from twinkg.ontology.errors import ProjectionError

_PREFIX = "snap-"


@dataclass(frozen=True, slots=True)
class Pinned:
    """A snapshot a reader holds: its number, its folder and the open lock file."""

    number: int
    path: Path
    fd: int

    def release(self) -> None:
        """Let the writer delete it (once nobody else holds it)."""
        os.close(self.fd)


def numbers(root: Path) -> list[int]:
    """The numbers of the complete snapshots under ``root``, oldest first."""
    try:
        names = [entry.name for entry in root.iterdir()]
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        digits = name.removeprefix(_PREFIX)
        if name.startswith(_PREFIX) and digits.isdigit() and (root / name).is_dir():
            found.append(int(digits))
    return sorted(found)


def newest(root: Path) -> int | None:
    """The newest snapshot's number; ``None`` when none was published."""
    found = numbers(root)
    return found[-1] if found else None


def publish(store: ox.Store, root: Path, *, applied: int, applied_at: str = "") -> int:
    """Checkpoint ``store`` (which has applied the change log up to ``applied``, an entry
    committed at ``applied_at``) as the next snapshot and delete the older ones nobody reads;
    its number. Only the projection's writer calls this."""
    root.mkdir(parents=True, exist_ok=True)
    number = (newest(root) or 0) + 1
    staging = root / f".tmp-{number}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        store.backup(str(staging))
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ProjectionError(f"cannot publish a projection snapshot: {exc}") from exc
    _lock_file(root, number).write_text(f"{applied} {applied_at}".strip(), encoding="utf-8")
    staging.rename(root / f"{_PREFIX}{number}")
    sweep(root, keep=number)
    return number


def stamp(root: Path, number: int) -> tuple[int, str] | None:
    """The change log ``seq`` snapshot ``number`` had applied and that entry's commit time
    (its lock file says, so nobody need open it); ``None`` when it is gone."""
    try:
        seq, _, at = _lock_file(root, number).read_text(encoding="utf-8").strip().partition(" ")
        return int(seq or 0), at
    except (FileNotFoundError, ValueError):
        return None


def sweep(root: Path, *, keep: int | None) -> int:
    """Delete the snapshots older than ``keep`` (all when ``None``) that no reader holds, and
    leftovers of interrupted publications; how many snapshots went."""
    deleted = 0
    for number in numbers(root):
        if keep is not None and number >= keep:
            continue
        if _delete(root, number):
            deleted += 1
    for leftover in (*root.glob(".tmp-*"), *root.glob(".trash-*")):
        shutil.rmtree(leftover, ignore_errors=True)
    return deleted


def _delete(root: Path, number: int) -> bool:
    lock = _lock_file(root, number)
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # a reader has it open
        os.close(fd)
        return False
    trash = root / f".trash-{number}-{uuid.uuid4().hex}"
    try:
        (root / f"{_PREFIX}{number}").rename(trash)
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def pin(root: Path) -> Pinned | None:
    """The newest snapshot, held with a shared lock until :meth:`Pinned.release`; ``None`` when
    none was published."""
    while True:
        number = newest(root)
        if number is None:
            return None
        path = root / f"{_PREFIX}{number}"
        try:
            fd = os.open(_lock_file(root, number), os.O_RDONLY)
        except FileNotFoundError:
            if not path.is_dir():  # swept since the listing: a newer one exists
                continue
            fd = os.open(_lock_file(root, number), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # being deleted: only older snapshots are
            os.close(fd)
            time.sleep(0.001)
            continue
        if path.is_dir():
            return Pinned(number, path, fd)
        os.close(fd)


def _lock_file(root: Path, number: int) -> Path:
    return root / f"{_PREFIX}{number}.lock"
