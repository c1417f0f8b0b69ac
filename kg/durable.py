"""How a file or a folder entry survives a crash of the process or of the machine.

POSIX makes a write durable only once it is flushed to the device (``fsync``), and a new name (a
created file, a rename, a removal) only once the folder that holds it is flushed too; a new
folder needs its parent flushed as well. The telemetry log and its journal use these steps so
that what they call written is still there after ``kill -9`` or a power cut.
See https://man7.org/linux/man-pages/man2/fsync.2.html (NOTES).
"""

from __future__ import annotations

import os
from pathlib import Path


def sync_file(path: Path) -> None:
    """Flush ``path``'s data and metadata to the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(path: Path) -> None:
    """Flush ``path``'s entries (names created, renamed or removed in it) to the device."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the file syncs still hold
        pass
    finally:
        os.close(fd)


def make_folders(path: Path) -> None:
    """Create ``path`` and any missing parents, each one durably named in its parent."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    path.mkdir(parents=True, exist_ok=True)
    for folder in reversed(missing):
        sync_folder(folder.parent)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` so that a crash leaves the old content or the new, whole."""
    make_folders(path.parent)
    temp = path.with_name(path.name + ".tmp")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temp.replace(path)
    sync_folder(path.parent)


def remove(path: Path) -> None:
    """Remove ``path`` (if it exists) and make the removal durable."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    sync_folder(path.parent)
