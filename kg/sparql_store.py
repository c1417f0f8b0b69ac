"""The projection's folder on disk: the primary store, what it has applied, and who writes it.

Layout of the folder (``TWINKG_HOME/projection`` by default)::

    writer.lock     held (``flock``) by the one process that writes the projection
    CURRENT         names the primary's folder; replaced atomically when a rebuild is done
    store-<token>/  the primary, a RocksDB store opened read-write by the writer only
    snapshots/      published read-only checkpoints (:mod:`kg.sparql_snapshots`)

What the primary has applied lives *inside* it, in the private named graph :data:`STATE`: the
last change log ``seq`` applied, that entry's commit time (so a log that was reset or belongs to
another database is noticed), and the fingerprint of the code and ontology that built it. Every
catch-up writes it in the same SPARQL Update as the data it describes, which Oxigraph applies as
one transaction, so the two can never disagree, even after a crash. Queries run with no named
graph (``named_graphs=[]``), so ``GRAPH ?g`` never sees the state.

This module imports only pyoxigraph: the SPARQL workers read :func:`read_state` too.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyoxigraph as ox

from twinkg.ontology.errors import ProjectionError

STATE = ox.NamedNode("urn:twinkg:projection")
"""The private graph (and subject) of the projection's state: a URN, not a term of the
ontology, and never exported."""
_APPLIED = ox.NamedNode("urn:twinkg:projection:applied")
_APPLIED_AT = ox.NamedNode("urn:twinkg:projection:applied-at")
_FINGERPRINT = ox.NamedNode("urn:twinkg:projection:fingerprint")
_XSD_INTEGER = ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer")


@dataclass(frozen=True, slots=True)
class StoreState:
    """What a store holds: the last change log entry applied (``applied``; 0 for none), that
    entry's commit time as ISO text (empty for none), and the fingerprint that built it."""

    applied: int
    applied_at: str
    fingerprint: str


def read_state(store: ox.Store) -> StoreState | None:
    """The state written into ``store``; ``None`` when it holds none (never finished)."""
    found: dict[str, str] = {}
    for quad in store.quads_for_pattern(STATE, None, None, STATE):
        if isinstance(quad.object, ox.Literal):
            found[quad.predicate.value] = quad.object.value
    try:
        return StoreState(
            int(found[_APPLIED.value]), found[_APPLIED_AT.value], found[_FINGERPRINT.value]
        )
    except (KeyError, ValueError):
        return None


def state_update(state: StoreState) -> str:
    """SPARQL Update operations that replace the stored state by ``state`` (to be joined with
    ``;`` to the data's operations, so they commit together)."""
    triples = " ".join(
        str(ox.Triple(STATE, predicate, value)) + " ."
        for predicate, value in (
            (_APPLIED, ox.Literal(str(state.applied), datatype=_XSD_INTEGER)),
            (_APPLIED_AT, ox.Literal(state.applied_at)),
            (_FINGERPRINT, ox.Literal(state.fingerprint)),
        )
    )
    return (
        f"DELETE WHERE {{ GRAPH {STATE} {{ {STATE} ?p ?o }} }} ;\n"
        f"INSERT DATA {{ GRAPH {STATE} {{ {triples} }} }}"
    )


def state_quads(store: ox.Store) -> int:
    """How many quads the state takes (a store's size without them is its data)."""
    return len(list(store.quads_for_pattern(None, None, None, STATE)))


class WriterLock:
    """The projection folder's writer role: at most one process (and one object in it) holds
    it at a time; the operating system releases it when the process ends."""

    def __init__(self, root: Path) -> None:
        """The lock of the projection in ``root`` (not taken yet)."""
        self._path = root / "writer.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the role."""
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the role if nobody holds it; whether this object holds it now."""
        if self._fd is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the role up."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_primary(root: Path) -> ox.Store | None:
    """The current primary, opened read-write; ``None`` when there is none (or it cannot be
    opened: the caller rebuilds). Other stores' folders (a rebuild a crash interrupted) are
    deleted. Call only while holding the :class:`WriterLock`."""
    try:
        name = (root / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        name = ""
    for folder in root.glob("store-*"):
        if folder.name != name:
            shutil.rmtree(folder, ignore_errors=True)
    if not name.startswith("store-") or not (root / name).is_dir():
        return None
    try:
        return ox.Store(str(root / name))
    except OSError:
        return None


def new_primary(root: Path) -> tuple[str, ox.Store]:
    """A fresh, empty store beside the current one: its folder's name and the store."""
    name = f"store-{uuid.uuid4().hex[:12]}"
    try:
        return name, ox.Store(str(root / name))
    except OSError as exc:
        raise ProjectionError(f"cannot create the projection store: {exc}") from exc


def make_current(root: Path, name: str) -> None:
    """Make ``name`` the primary (an atomic rename of the ``CURRENT`` file) and delete the
    other stores' folders."""
    staging = root / "CURRENT.tmp"
    with staging.open("w", encoding="utf-8") as out:
        out.write(name)
        out.flush()
        os.fsync(out.fileno())
    staging.replace(root / "CURRENT")
    for folder in root.glob("store-*"):
        if folder.name != name:
            shutil.rmtree(folder, ignore_errors=True)
