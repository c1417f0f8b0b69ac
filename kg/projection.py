"""The RDF projection: the graph, its ontology and its provenance in Oxigraph, for SPARQL.

A persistent ``pyoxigraph.Store`` (RocksDB, https://pyoxigraph.readthedocs.io) holds, in its
default graph, the ontology's Turtle files (modules and pinned imports, OWL axioms included) and
the export of Neo4j. It follows Neo4j through the change log (:mod:`kg.outbox`):
:meth:`Projection.catch_up` reads the entries past its cursor, re-reads the *current* state of
the IRIs they name, and replaces those subjects' triples. That is state-based, so applying an
entry again, or late, changes nothing; a node deleted in Neo4j loses its triples. A ``full``
entry or a gap (entries pruned before this projection applied them) rebuilds the store whole
into a fresh folder, swapped in when done (decision 0021).

It survives restarts (decision 0026): the cursor lives inside the store, written in the same
update as the data (:mod:`kg.sparql_store`), so a new process reopens the store and only catches
up. It rebuilds when the store was made by other code or another ontology (its fingerprint
differs), or for another change log (a reset or another database).

One process writes it (:class:`~kg.sparql_store.WriterLock`); after each batch it publishes a
snapshot (:mod:`kg.sparql_snapshots`), and queries run on the newest snapshot in worker
processes (:mod:`kg.sparql_pool`), never in this one: a query that panics, runs out of memory or
runs past its deadline costs its worker, not the writer or the server. A process that cannot
take the writer role (the CLI beside a running API) still answers from the snapshots, with
their lag.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyoxigraph as ox

from twinkg.kg import outbox, sparql_snapshots
from twinkg.kg.sparql_build import fingerprint, ontology_store, to_quad
from twinkg.kg.sparql_pool import PoolLimits, PoolStatus, SparqlPool
from twinkg.kg.sparql_query import check, negotiate
from twinkg.kg.sparql_store import (
    StoreState,
    WriterLock,
    make_current,
    new_primary,
    open_primary,
    read_state,
    state_quads,
    state_update,
)
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import ProjectionBuildingError, ProjectionError, StoreError


@dataclass(frozen=True, slots=True)
class ProjectionLag:
    """How far the projection is behind Neo4j: the last entry applied, the last one committed,
    how many are pending, and how long the oldest pending one has waited (0 when caught up).
    ``as_of`` is when this was measured (an older one when Neo4j could not be asked)."""

    applied_seq: int
    head_seq: int
    pending: int
    seconds: float
    as_of: datetime


@dataclass(frozen=True, slots=True)
class CatchUpReport:
    """What one :meth:`Projection.catch_up` did: entries applied, subjects rewritten, whether it
    rebuilt the store, the cursor after it, and whether this process is the writer (when not,
    it did nothing: another process writes the projection)."""

    entries: int
    subjects: int
    rebuilt: bool
    applied_seq: int
    writer: bool = True


@dataclass(frozen=True, slots=True)
class SparqlAnswer:
    """A query's answer: the serialised ``body`` in ``media_type``, how many rows (solutions or
    triples; 1 for ASK), whether a cap (rows or bytes) cut it, and the lag of the snapshot it
    ran on."""

    body: bytes
    media_type: str
    rows: int
    truncated: bool
    lag: ProjectionLag


@dataclass(frozen=True, slots=True)
class SparqlStatus:
    """Whether SPARQL can answer (``building`` until a first snapshot exists), how busy its
    workers are, and how many times this process rebuilt the store (0 after a restart that
    reopened it)."""

    building: bool
    pool: PoolStatus
    rebuilds: int


class Projection:
    """The SPARQL view of the graph, kept up to date from the change log."""

    def __init__(
        self,
        store: GraphStore,
        *,
        path: Path | None = None,
        batch: int = 2000,
        limits: PoolLimits | None = None,
    ) -> None:
        """A projection of ``store`` in the folder ``path`` (a temporary one, deleted on
        :meth:`close`, when ``None``). Nothing is opened before :meth:`open`, :meth:`rebuild`
        or the first :meth:`catch_up`. ``batch`` bounds the IRIs re-read from Neo4j per
        statement; ``limits`` bound the SPARQL workers."""
        temporary = None if path is not None else Path(tempfile.mkdtemp(prefix="twinkg-sparql-"))
        root = path or temporary
        assert root is not None
        self._graph = store
        self._root = root
        self._snapshots = self._root / "snapshots"
        self._batch = batch
        self._lock = WriterLock(self._root)
        self._oxi: ox.Store | None = None
        self._cursor: int | None = None
        self._verified = False
        self._closing = False
        self._writer = threading.Lock()  # one open, catch-up or rebuild at a time
        self._published = threading.Event()
        self._fingerprint = fingerprint()
        self._ontology = ontology_store()
        self.pool = SparqlPool(self._snapshots, limits)
        self.rebuilds = 0
        """How many times this object rebuilt the store (a reopened one that caught up: 0)."""
        self._last_lag = ProjectionLag(0, 0, 0, 0.0, datetime.now(UTC))
        self._finalizer = weakref.finalize(self, _release, self.pool, self._lock, temporary)

    @property
    def applied_seq(self) -> int | None:
        """The last change log entry the store applied; ``None`` before it is open or built."""
        return self._cursor

    @property
    def writer(self) -> bool:
        """Whether this object writes the projection (else another process does)."""
        return self._lock.held

    def __len__(self) -> int:
        """Triples in the store (its state aside); 0 when this object has none open."""
        if self._oxi is None:
            return 0
        return len(self._oxi) - state_quads(self._oxi)

    # -- the writer -----------------------------------------------------------------------

    def open(self) -> bool:
        """Take the writer role if no other process holds it and reopen the store when it is
        still good (same fingerprint, same change log); whether this object is the writer."""
        with self._writer:
            return self._open()

    def _open(self) -> bool:
        if self._verified:
            return True
        if not self._lock.acquire():
            return False
        if self._oxi is None:
            self._oxi = open_primary(self._root)
        state = None if self._oxi is None else read_state(self._oxi)
        usable = state is not None and state.fingerprint == self._fingerprint
        if state is not None and usable and not self._same_log(state):
            usable = False  # another database, or a reset log: what was served is wrong
            sparql_snapshots.sweep(self._snapshots, keep=None)
        self._cursor = state.applied if state is not None and usable else None
        self._verified = True
        if state is not None and self._cursor is not None:
            self._publish(state.applied_at)
        return True

    def _same_log(self, state: StoreState) -> bool:
        """Whether the change log is the one the store followed: its head has not gone back,
        and the entry at the cursor, if still kept, was committed when the store says."""
        if state.applied == 0:
            return True
        if outbox.state(self._graph, state.applied).head < state.applied:
            return False
        kept = outbox.changes_after(self._graph, state.applied - 1, limit=1)
        if kept and kept[0].seq == state.applied:
            return kept[0].at.isoformat() == state.applied_at
        return True  # pruned: a gap shows in catch_up, which rebuilds

    def rebuild(self) -> int:
        """Load the ontology and a full export of Neo4j into a new store, swap it in and publish
        it; the number of triples. Entries committed meanwhile are applied by the next
        catch-up. :class:`ProjectionError` when another process writes the projection."""
        with self._writer:
            if not self._open():
                raise ProjectionError("another process writes this projection")
            return self._rebuild()

    def _rebuild(self) -> int:
        head = outbox.state(self._graph, 0).head  # before the export: nothing is missed
        name, fresh = new_primary(self._root)
        fresh.extend(self._ontology)
        data = self._graph.export().serialize(format="nt", encoding="utf-8")
        try:
            fresh.bulk_load(data, ox.RdfFormat.N_TRIPLES)
        except (SyntaxError, OSError) as exc:
            raise ProjectionError(f"cannot load the export into Oxigraph: {exc}") from exc
        committed_at = self._committed_at(head)
        fresh.update(state_update(StoreState(head, committed_at, self._fingerprint)))
        fresh.flush()
        if self._closing:
            raise ProjectionError("the projection closed during a rebuild")
        self._oxi, self._cursor = fresh, head  # the old store closes with its last reference
        make_current(self._root, name)
        self.rebuilds += 1
        self._publish(committed_at)
        return len(self)

    def _committed_at(self, seq: int) -> str:
        if seq == 0:
            return ""
        kept = outbox.changes_after(self._graph, seq - 1, limit=1)
        return kept[0].at.isoformat() if kept and kept[0].seq == seq else ""

    def _publish(self, applied_at: str) -> None:
        assert self._oxi is not None and self._cursor is not None
        sparql_snapshots.publish(
            self._oxi, self._snapshots, applied=self._cursor, applied_at=applied_at
        )
        self._published.set()

    def catch_up(self, *, limit: int = 10_000) -> CatchUpReport:
        """Apply the change log entries past the cursor (at most ``limit``), in ``seq`` order,
        and publish the result for the queries.

        Opens the store first (taking the writer role; when another process holds it, does
        nothing and says so). Rebuilds when there is no usable store yet, when an entry says
        ``full``, or when entries past the cursor are gone (pruned). Entries commit in ``seq``
        order, so a missing ``seq`` within a batch belongs to a transaction still committing:
        the batch stops before it.
        """
        with self._writer:
            if not self._open():
                return CatchUpReport(0, 0, False, self._served() or 0, writer=False)
            if self._cursor is None:
                self._rebuild()
                return CatchUpReport(0, 0, True, self._require_cursor())
            cursor = self._cursor
            changes = outbox.changes_after(self._graph, cursor, limit=limit)
            if changes and changes[0].seq != cursor + 1:
                oldest = outbox.state(self._graph, cursor).oldest
                if oldest is None or oldest > cursor + 1:  # pruned before we applied it
                    self._rebuild()
                    return CatchUpReport(0, 0, True, self._require_cursor())
                changes = []  # seq cursor+1 is committing now; next time
            contiguous: list[outbox.Change] = []
            for change in changes:
                if change.seq != cursor + 1 + len(contiguous):
                    break
                contiguous.append(change)
            if any(c.full for c in contiguous):
                self._rebuild()
                return CatchUpReport(len(contiguous), 0, True, self._require_cursor())
            subjects = self._apply_entries(contiguous)
            return CatchUpReport(len(contiguous), subjects, False, self._require_cursor())

    def _apply_entries(self, entries: list[outbox.Change]) -> int:
        """Apply ``entries`` (contiguous, none ``full``) in batches, the last one moving the
        stored cursor, and publish; how many subjects were rewritten."""
        if not entries:
            return 0
        subjects = sorted({uri for c in entries for uri in c.uris})
        last = entries[-1]
        state = StoreState(last.seq, last.at.isoformat(), self._fingerprint)
        size = self._batch
        parts = [subjects[i : i + size] for i in range(0, len(subjects), size)] or [[]]
        for i, part in enumerate(parts):
            self._apply(part, state if i == len(parts) - 1 else None)
        self._cursor = last.seq
        self._publish(state.applied_at)
        return len(subjects)

    def rewind(self, seq: int) -> None:
        """Set the cursor back to ``seq``: the next catch-up applies the entries after it again
        (harmless: applying is idempotent)."""
        with self._writer:
            if self._cursor is not None:
                self._cursor = min(self._cursor, seq)

    def _require_cursor(self) -> int:
        assert self._cursor is not None
        return self._cursor

    def _apply(self, subjects: list[str], state: StoreState | None) -> None:
        """Replace the triples of ``subjects`` by their current state in Neo4j (and, for
        ontology terms, their triples in the ontology's Turtle), and the stored state by
        ``state`` when given: one update, one Oxigraph transaction."""
        assert self._oxi is not None
        operations = []
        if subjects:
            fresh = [to_quad(t) for t in self._graph.export(uris=subjects)]
            for uri in subjects:
                fresh.extend(self._ontology.quads_for_pattern(ox.NamedNode(uri), None, None))
            # Triples whose object is a blank node come only from the ontology's Turtle (Neo4j
            # holds none), which does not change while the process runs: they stay as the
            # rebuild loaded them, keeping their blank nodes' identity.
            values = " ".join(str(ox.NamedNode(uri)) for uri in subjects)
            inserts = " .\n".join(
                str(ox.Triple(q.subject, q.predicate, q.object))
                for q in fresh
                if not isinstance(q.object, ox.BlankNode)
            )
            operations.append(
                f"DELETE {{ ?s ?p ?o }} WHERE {{ VALUES ?s {{ {values} }} ?s ?p ?o "
                "FILTER(!isBlank(?o)) }"
            )
            operations.append(f"INSERT DATA {{ {inserts} }}")
        if state is not None:
            operations.append(state_update(state))
        if operations:
            self._oxi.update(" ;\n".join(operations))

    def prune(self, keep_s: float) -> int:
        """Delete change log entries this projection applied that are older than ``keep_s``
        seconds (the newest is always kept); how many went. Another projection behind this
        one then finds a gap and rebuilds."""
        if self._cursor is None:
            return 0
        return outbox.prune(self._graph, applied=self._cursor, keep_s=keep_s)

    # -- what SPARQL serves ---------------------------------------------------------------

    def _served(self) -> int | None:
        """The change log ``seq`` of the newest published snapshot; ``None`` when none is."""
        stamp = self._stamp()
        return None if stamp is None else stamp[0]

    def _stamp(self) -> tuple[int, str] | None:
        newest = sparql_snapshots.newest(self._snapshots)
        return None if newest is None else sparql_snapshots.stamp(self._snapshots, newest)

    def follows_this_graph(self) -> bool:
        """Whether the newest published snapshot was made from this graph's change log (one
        written by a process on another database, sharing the folder, was not); ``True`` when
        none is published."""
        stamp = self._stamp()
        if stamp is None:
            return True
        return self._same_log(StoreState(stamp[0], stamp[1], self._fingerprint))

    def lag(self) -> ProjectionLag:
        """How far what SPARQL answers from (the newest snapshot) is behind Neo4j (asks Neo4j;
        :class:`StoreError` when it cannot be reached)."""
        return self._lag_at(self._served())

    def _lag_at(self, applied: int | None) -> ProjectionLag:
        found = outbox.state(self._graph, applied or 0)
        pending = max(0, found.head - (applied or 0))
        waited = found.waited_s if pending else 0.0
        self._last_lag = ProjectionLag(applied or 0, found.head, pending, waited, datetime.now(UTC))
        return self._last_lag

    def status(self) -> SparqlStatus:
        """Whether SPARQL can answer yet, and how busy its workers are."""
        building = sparql_snapshots.newest(self._snapshots) is None
        return SparqlStatus(building, self.pool.status(), self.rebuilds)

    def query(
        self,
        text: str,
        *,
        accept: str | None = None,
        timeout_s: float = 30.0,
        row_cap: int = 10_000,
        caller: str = "anonymous",
    ) -> SparqlAnswer:
        """Answer a SPARQL 1.1 query on the newest snapshot, serialised in the format
        ``accept`` asks for, in a worker process.

        Refused: updates, LOAD and SERVICE (:class:`SparqlRefusedError`); a query that does not
        parse raises :class:`SparqlInvalidError`; an ``accept`` nothing matches,
        :class:`NotAcceptableError`. At most ``row_cap`` rows and the pool's byte cap come back
        (``truncated`` says so). Past ``timeout_s`` its worker is killed and it raises
        :class:`QueryTimeoutError`; a worker that crashes raises
        :class:`SparqlWorkerFailedError`, one out of memory :class:`SparqlMemoryLimitError`;
        the pool's limits, :class:`SparqlBusyError` and :class:`SparqlUserLimitError` (per
        ``caller``). Before anything is published it waits for the first build as long as
        for a worker, then raises :class:`ProjectionBuildingError`.
        """
        fmt = negotiate(check(text), accept)
        self._await_first(min(timeout_s, self.pool.limits.queue_wait_s))
        done = self.pool.run(
            text, media_type=fmt.media_type, row_cap=row_cap, timeout_s=timeout_s, caller=caller
        )
        try:
            lag = self._lag_at(done.applied)
        except StoreError:
            lag = self._last_lag
        return SparqlAnswer(done.body, done.media_type, done.rows, done.truncated, lag)

    def _await_first(self, wait_s: float) -> None:
        """Return once a snapshot is published, waiting at most ``wait_s`` for the first one
        (a process that just started builds it): else :class:`ProjectionBuildingError`."""
        until = time.monotonic() + wait_s
        while sparql_snapshots.newest(self._snapshots) is None:
            left = until - time.monotonic()
            if left <= 0:
                raise ProjectionBuildingError(
                    "the SPARQL projection is being built for the first time; try again "
                    "shortly (/ready says when it serves)"
                )
            self._published.wait(min(left, 0.1))  # set by this process's writer; else poll

    def close(self, *, wait_s: float = 30.0) -> None:
        """Stop the workers, close the store (after the writer's current batch, waiting at most
        ``wait_s``), give the writer role up, and delete a temporary folder."""
        self._closing = True
        self.pool.close()
        if self._writer.acquire(timeout=wait_s):
            self._oxi = None  # the last reference: RocksDB closes and unlocks its folder
            self._writer.release()
        self._finalizer()


def _release(pool: SparqlPool, lock: WriterLock, temporary: Path | None) -> None:
    pool.close()
    lock.release()
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)
