"""The RDF projection: the graph, its ontology and its provenance in Oxigraph, for SPARQL.

An embedded ``pyoxigraph.Store`` (https://pyoxigraph.readthedocs.io) holds, in its default graph,
the ontology's Turtle files (modules and pinned imports, OWL axioms included) and the export of
Neo4j. It follows Neo4j through the change log (:mod:`kg.outbox`): :meth:`Projection.catch_up`
reads the entries past its cursor, re-reads the *current* state of the IRIs they name, and
replaces those subjects' triples. That is state-based, so applying an entry again, or late,
changes nothing; a node deleted in Neo4j loses its triples. A ``full`` entry or a gap (entries
pruned before this projection applied them) rebuilds the store whole (decision 0021).

Threads: one writer (the API's poller) calls :meth:`~Projection.catch_up`; request threads call
:meth:`~Projection.query`. Oxigraph gives every query a snapshot taken when it starts, and each
batch's delete-and-insert is one SPARQL Update, which Oxigraph applies as one transaction, so a
query sees a batch whole or not at all and never waits for the writer (nor the writer for a
query). A rebuild fills a new store and swaps it in. Queries run on daemon threads, at most
``query_workers`` at once: Oxigraph cannot interrupt a query inside one evaluation step (a sort,
an aggregate), so one past its deadline is abandoned to finish on its own, holding its slot,
and never keeps the process from exiting.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyoxigraph as ox
from rdflib import BNode, Literal, URIRef

from kg import outbox
from kg.sparql_query import Evaluated, check, evaluate, negotiate
from kg.store import GraphStore
from ontology.catalog import ontology_files
from ontology.errors import (
    ProjectionError,
    QueryTimeoutError,
    SparqlBusyError,
    SparqlInvalidError,
    StoreError,
)


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
    rebuilt the store, and the cursor after it."""

    entries: int
    subjects: int
    rebuilt: bool
    applied_seq: int


@dataclass(frozen=True, slots=True)
class SparqlAnswer:
    """A query's answer: the serialised ``body`` in ``media_type``, how many rows (solutions or
    triples; 1 for ASK), whether the row cap cut it, and the projection's lag when it ran."""

    body: bytes
    media_type: str
    rows: int
    truncated: bool
    lag: ProjectionLag


class Projection:
    """The SPARQL view of the graph, kept up to date from the change log."""

    def __init__(
        self,
        store: GraphStore,
        *,
        path: Path | None = None,
        batch: int = 2000,
        query_workers: int = 4,
    ) -> None:
        """A projection of ``store``, empty until :meth:`rebuild` or the first :meth:`catch_up`.

        In memory unless ``path`` names a folder (each rebuild fills a fresh subfolder there).
        ``batch`` bounds the IRIs re-read from Neo4j per statement; ``query_workers`` bounds the
        queries evaluating at once (those past their deadline included: see :meth:`query`).
        """
        self._graph = store
        self._path = path
        self._batch = batch
        self._generation = 0
        self._oxi = self._fresh()
        self._cursor: int | None = None
        self._writer = threading.Lock()  # one catch-up or rebuild at a time
        self._workers = query_workers
        self._slots = threading.BoundedSemaphore(query_workers)
        self._ontology = ox.Store()
        for file in ontology_files():
            self._ontology.load(path=file, format=ox.RdfFormat.TURTLE)
        self._last_lag = ProjectionLag(0, 0, 0, 0.0, datetime.now(UTC))

    @property
    def applied_seq(self) -> int | None:
        """The last change log entry applied; ``None`` before the first build."""
        return self._cursor

    def __len__(self) -> int:
        return len(self._oxi)

    def _fresh(self) -> ox.Store:
        if self._path is None:
            return ox.Store()
        self._generation += 1
        return ox.Store(self._path / f"generation-{self._generation}")

    def rebuild(self) -> int:
        """Load the ontology and a full export of Neo4j into a new store and swap it in; the
        number of triples. Entries committed meanwhile are applied by the next catch-up."""
        with self._writer:
            return self._rebuild()

    def _rebuild(self) -> int:
        head = outbox.state(self._graph, 0).head  # before the export: nothing is missed
        fresh = self._fresh()
        for quad in self._ontology:
            fresh.add(quad)
        exported = self._graph.export()
        data = exported.serialize(format="nt", encoding="utf-8")
        try:
            fresh.bulk_load(data, ox.RdfFormat.N_TRIPLES)
        except (SyntaxError, OSError) as exc:
            raise ProjectionError(f"cannot load the export into Oxigraph: {exc}") from exc
        self._oxi, self._cursor = fresh, head  # one reference swap: queries see old or new
        if self._path is not None:  # queries still reading the old one keep their open files
            for folder in self._path.glob("generation-*"):
                if folder.name != f"generation-{self._generation}":
                    shutil.rmtree(folder, ignore_errors=True)
        return len(fresh)

    def catch_up(self, *, limit: int = 10_000) -> CatchUpReport:
        """Apply the change log entries past the cursor (at most ``limit``), in ``seq`` order.

        Rebuilds first when there is no cursor yet, when an entry says ``full``, or when entries
        past the cursor are gone (pruned). Entries commit in ``seq`` order, so a missing ``seq``
        within a batch belongs to a transaction still committing: the batch stops before it.
        """
        with self._writer:
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
            subjects = sorted({uri for c in contiguous for uri in c.uris})
            for i in range(0, len(subjects), self._batch):
                self._apply(subjects[i : i + self._batch])
            if contiguous:
                self._cursor = contiguous[-1].seq
            return CatchUpReport(len(contiguous), len(subjects), False, self._require_cursor())

    def rewind(self, seq: int) -> None:
        """Set the cursor back to ``seq``: the next catch-up applies the entries after it again
        (harmless: applying is idempotent)."""
        with self._writer:
            if self._cursor is not None:
                self._cursor = min(self._cursor, seq)

    def _require_cursor(self) -> int:
        assert self._cursor is not None
        return self._cursor

    def _apply(self, subjects: list[str]) -> None:
        """Replace the triples of ``subjects`` by their current state in Neo4j (and, for
        ontology terms, their triples in the ontology's Turtle)."""
        fresh = [_quad(t) for t in self._graph.export(uris=subjects)]
        for uri in subjects:
            fresh.extend(self._ontology.quads_for_pattern(ox.NamedNode(uri), None, None))
        # One update, one Oxigraph transaction. Triples whose object is a blank node come only
        # from the ontology's Turtle (Neo4j holds none), which does not change while the process
        # runs: they stay as the rebuild loaded them, keeping their blank nodes' identity.
        values = " ".join(str(ox.NamedNode(uri)) for uri in subjects)
        inserts = " .\n".join(
            str(ox.Triple(q.subject, q.predicate, q.object))
            for q in fresh
            if not isinstance(q.object, ox.BlankNode)
        )
        self._oxi.update(
            f"DELETE {{ ?s ?p ?o }} WHERE {{ VALUES ?s {{ {values} }} ?s ?p ?o "
            "FILTER(!isBlank(?o)) } ;\n"
            f"INSERT DATA {{ {inserts} }}"
        )

    def lag(self) -> ProjectionLag:
        """The lag now (asks Neo4j; :class:`StoreError` when it cannot be reached)."""
        applied = self._cursor or 0
        found = outbox.state(self._graph, applied)
        pending = max(0, found.head - applied) if self._cursor is not None else found.head
        waited = found.waited_s if pending else 0.0
        self._last_lag = ProjectionLag(applied, found.head, pending, waited, datetime.now(UTC))
        return self._last_lag

    def prune(self, keep_s: float) -> int:
        """Delete change log entries this projection applied that are older than ``keep_s``
        seconds (the newest is always kept); how many went. Another projection behind this
        one then finds a gap and rebuilds."""
        if self._cursor is None:
            return 0
        return outbox.prune(self._graph, applied=self._cursor, keep_s=keep_s)

    def query(
        self,
        text: str,
        *,
        accept: str | None = None,
        timeout_s: float = 30.0,
        row_cap: int = 10_000,
    ) -> SparqlAnswer:
        """Answer a SPARQL 1.1 query, serialised in the format ``accept`` asks for.

        Refused: updates, LOAD and SERVICE (:class:`SparqlRefusedError`); a query that does not
        parse raises :class:`SparqlInvalidError`; an ``accept`` nothing matches,
        :class:`NotAcceptableError`. At most ``row_cap`` rows come back (``truncated`` says
        so). Past ``timeout_s`` it raises :class:`QueryTimeoutError`: rows stop being read, but
        Oxigraph cannot interrupt the step it is in (a sort, an aggregate), which finishes on
        its worker thread before the thread is free again.
        """
        form = check(text)
        fmt = negotiate(form, accept)
        if self._cursor is None:
            raise ProjectionError("the projection is not built yet")
        deadline = time.monotonic() + timeout_s
        if not self._slots.acquire(timeout=timeout_s):
            raise SparqlBusyError(
                f"all {self._workers} SPARQL workers are busy (queries that overran their limit "
                "finish on their own); try again later"
            )
        store = self._oxi
        cancelled, finished = threading.Event(), threading.Event()
        outcome: list[Evaluated | Exception] = []

        def work() -> None:
            try:
                try:
                    results = store.query(text)
                except SyntaxError as exc:  # rdflib's grammar took what Oxigraph's does not
                    reason = str(exc).splitlines()[0] if str(exc) else "syntax error"
                    raise SparqlInvalidError(f"invalid SPARQL: {reason}") from None
                outcome.append(
                    evaluate(results, fmt, row_cap=row_cap, deadline=deadline, cancelled=cancelled)
                )
            except Exception as exc:  # handed to the caller, which raises it
                # without its traceback: its frames hold the results, which pyoxigraph allows
                # to be dropped only on this thread
                outcome.append(exc.with_traceback(None))
            finally:
                self._slots.release()
                finished.set()

        threading.Thread(target=work, name="twinkg-sparql", daemon=True).start()
        if not finished.wait(timeout=max(0.0, deadline - time.monotonic())):
            cancelled.set()  # stops between rows; inside a step it runs on, abandoned
            raise QueryTimeoutError(
                f"the SPARQL query ran past its limit of {timeout_s:g} s and was stopped"
            )
        (done,) = outcome
        if isinstance(done, Exception):
            raise done
        return SparqlAnswer(done.body, done.media_type, done.rows, done.truncated, self._lag())

    def _lag(self) -> ProjectionLag:
        try:
            return self.lag()
        except StoreError:
            return self._last_lag


def _term(value: object) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    if isinstance(value, URIRef):
        return ox.NamedNode(str(value))
    if isinstance(value, BNode):
        return ox.BlankNode(str(value))
    assert isinstance(value, Literal)
    if value.language:
        return ox.Literal(str(value), language=value.language)
    if value.datatype is None:
        return ox.Literal(str(value))
    return ox.Literal(str(value), datatype=ox.NamedNode(str(value.datatype)))


def _quad(triple: tuple[object, object, object]) -> ox.Quad:
    s, p, o = (_term(x) for x in triple)
    assert isinstance(p, ox.NamedNode) and not isinstance(s, ox.Literal)
    return ox.Quad(s, p, o)
