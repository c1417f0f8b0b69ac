"""The graph store: TwinKG's one door to Neo4j.

A :class:`GraphStore` wraps a driver that the composition root (CLI or API) created and will
close. It creates the schema, writes batches of records in one transaction (all or nothing),
exports the graph back to RDF, and runs untrusted Cypher read-only.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import neo4j
from neo4j import Driver, Session
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConfigurationError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    TransientError,
)
from opentelemetry import trace
from rdflib import Dataset, Graph, URIRef

from twinkg.kg import cypher_guard, cypher_run, outbox, queries
from twinkg.kg.mapping import (
    LANG_SUFFIX,
    ONTOLOGY_GRAPH,
    TWIN_GRAPH,
    node_triples,
    relationship_triple,
)
from twinkg.kg.records import GraphRecords, LangString, NodeRecord, RelRecord
from twinkg.ontology.errors import (
    ConfigError,
    InvalidInputError,
    QueryRejectedError,
    QueryTimeoutError,
    StoreError,
)
from twinkg.ontology.namespaces import PREFIXES
from twinkg.ontology.vocab import CLASS_LABELS, LABEL_ANCESTORS, Label, PropKey, RelType

DEFAULT_BATCH = 5000
PASSED_PLANS = 512
"""Untrusted Cypher texts whose passed plan check a store keeps (:meth:`GraphStore.read_only`)."""
PASSED_PLAN_CHARS = 8192
"""Longer texts are planned and judged on every request."""
DEFAULT_BYTE_CAP = 8 * 1024 * 1024
"""Largest answer of untrusted Cypher, in bytes of JSON (``TWINKG_QUERY_MAX_BYTES``)."""
_T = TypeVar("_T")

log = logging.getLogger("twinkg.store")

KEEP_PLAN = "CYPHER replan=skip "
"""The query option TwinKG's own named reads run with: a plan in Neo4j's cache is used as it
is, never planned again on the request that finds it stale. Under a stream of writes the
graph's counts change fast, every cached plan turns stale once ``min_replan_interval`` (10 s)
has passed, and the next request planned it again: some 15 reads of one decision took
100-380 ms each instead of 2-9 ms, and detection → decision p99 under load was 1.8-3.1 s.
With the option it was 0.60-0.65 s (two runs). A read's plan is made when it first runs after
Neo4j starts, on the graph as it is then, and kept while Neo4j runs; a restart plans afresh
(decision 0071)."""

TRANSIENT_TRIES = 6
"""How often a write transaction that Neo4j failed as transient (a deadlock between two writers,
a lock wait that timed out) is run in all: it rolled back whole, so it is run again, after a
short random back-off, as Neo4j's own managed transactions do."""


def _retried(name: str, attempt: Callable[[], _T]) -> _T:
    """``attempt()``, run again while Neo4j fails it as transient (up to the limit)."""
    tries = 1
    while True:
        try:
            return attempt()
        except StoreError as exc:
            if tries >= TRANSIENT_TRIES or not isinstance(exc.__cause__, TransientError):
                raise
            code = exc.__cause__.code
            log.info("%s: Neo4j failed it as transient (%s), try %d again", name, code, tries + 1)
            time.sleep(random.uniform(0.5, 1.0) * 0.02 * 2**tries)
            tries += 1


_BOLT_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")

_tracer = trace.get_tracer("twinkg.kg")


@dataclass(frozen=True, slots=True)
class GraphCounts:
    """How many nodes and relationships the graph holds (the change log's nodes aside)."""

    nodes: int
    relationships: int


@dataclass(frozen=True, slots=True)
class WriteSummary:
    """What one :meth:`GraphStore.write` call sent, in how many statements, and how long each
    phase took (node statements, relationship statements, commit)."""

    nodes: int
    relationships: int
    statements: int
    node_seconds: float
    relationship_seconds: float
    commit_seconds: float


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows of a read-only query as plain Python values; ``truncated`` when the cap cut it."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool


def _span(name: str) -> AbstractContextManager[Any]:
    """A span for one named statement or write (a no-op unless tracing is configured by
    ``api.tracing``): ``twinkg.store <name>``, with ``db.system`` neo4j."""
    return _tracer.start_as_current_span(
        f"twinkg.store {name}", attributes={"db.system": "neo4j", "db.operation.name": name}
    )


def open_driver(uri: str, user: str, password: str) -> Driver:
    """A driver for ``uri`` (connects lazily); the caller owns it and must close it."""
    scheme = uri.partition("://")[0]
    if scheme not in _BOLT_SCHEMES:
        raise ConfigError(f"{uri!r} is not a Bolt URI; use one of {', '.join(_BOLT_SCHEMES)}://")
    try:
        return neo4j.GraphDatabase.driver(
            uri,
            auth=(user, password),
            connection_timeout=5.0,
            connection_acquisition_timeout=30.0,
            # "property key does not exist" and the like are expected on a young graph.
            notifications_min_severity="OFF",
        )
    except (ValueError, ConfigurationError) as exc:
        raise ConfigError(f"{uri!r} is not a Neo4j URI: {exc}") from exc


def labels_for(types: Sequence[str]) -> tuple[Label, ...]:
    """The labels a node of the asserted ``types`` carries: each class and all its ancestors."""
    return _labels_for(tuple(types))


@functools.lru_cache(maxsize=4096)
def _labels_for(types: tuple[str, ...]) -> tuple[Label, ...]:
    labels: set[Label] = {Label.RESOURCE}
    for iri in types:
        label = CLASS_LABELS[iri]
        labels.add(label)
        labels.update(LABEL_ANCESTORS[label])
    return tuple(sorted(labels))


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _plain(value: Any) -> Any:  # noqa: PLR0911 - one case per driver type
    """Driver values as JSON-friendly Python (nodes and relationships as dicts)."""
    if type(value) in _SCALARS:  # most values: skip the class patterns' isinstance checks
        return value
    match value:
        case neo4j.graph.Node():
            return {"labels": sorted(value.labels), **{k: _plain(v) for k, v in value.items()}}
        case neo4j.graph.Relationship():
            return {"type": value.type, **{k: _plain(v) for k, v in value.items()}}
        case neo4j.graph.Path():
            return [_plain(n) for n in value.nodes]
        case list():
            return [_plain(v) for v in value]
        case dict():
            return {k: _plain(v) for k, v in value.items()}
        case _ if hasattr(value, "iso_format"):
            return value.iso_format()
    return value


def _temporal_kind(value: Any) -> queries.TemporalKind | None:
    """How Cypher rebuilds a temporal value sent as ISO text; ``None`` for other values.

    Text is ~3x faster than the driver's own datetime conversion, and the driver crashes the
    interpreter on some named zones (zoneinfo). A named zone is stored as its offset at that
    instant, which is all an RDF xsd:dateTime can say anyway.
    """
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, datetime):
        if first.tzinfo is None:
            return queries.TemporalKind.LOCAL_DATETIME
        return queries.TemporalKind.DATETIME
    if isinstance(first, date):
        return queries.TemporalKind.DATE
    return None


_PLAIN = frozenset((str, int, float, bool))


def _iso(value: Any) -> str:
    assert isinstance(value, (date, datetime))
    return value.isoformat()


def _lang_split(value: Any) -> tuple[Any, Any] | None:
    """A language-tagged value as (texts, tags) in the same shape; ``None`` for other values."""
    if isinstance(value, LangString):
        return value.text, value.lang
    if isinstance(value, list) and value and isinstance(value[0], LangString):
        return [v.text for v in value], [v.lang for v in value]
    return None


# new or existing, labels, temporal properties: the rows of one group share one statement
_NodeGroup = tuple[bool, tuple[Label, ...], tuple[queries.Temporal, ...]]


def _row(record: neo4j.Record) -> dict[str, Any]:
    return dict(zip(record.keys(), map(_plain, record.values()), strict=True))


def _rows(query: queries.NamedQuery, result: neo4j.Result) -> list[dict[str, Any]]:
    """A named read's rows: values as they come when the query says they are plain, else
    converted (:func:`_plain`)."""
    if query.plain:
        return [dict(zip(record.keys(), record.values(), strict=True)) for record in result]
    return [_row(record) for record in result]


class GraphStore:
    """Reads and writes the TwinKG graph through one injected driver."""

    def __init__(
        self, driver: Driver, *, database: str | None = None, outbox_full_at: int = outbox.FULL_AT
    ) -> None:
        self._driver = driver
        self._database = database
        self._full_at = outbox_full_at
        self._passed: collections.OrderedDict[tuple[str, tuple[str, ...]], None] = (
            collections.OrderedDict()
        )
        self._passed_lock = threading.Lock()

    @contextmanager
    def _session(self, *, read: bool = False, fetch_size: int | None = None) -> Iterator[Session]:
        mode = neo4j.READ_ACCESS if read else neo4j.WRITE_ACCESS
        config: dict[str, Any] = {} if fetch_size is None else {"fetch_size": fetch_size}
        try:
            with self._driver.session(
                database=self._database, default_access_mode=mode, **config
            ) as s:
                yield s
        except AuthError as exc:
            raise StoreError(f"Neo4j refused the credentials: {exc.message}") from exc
        except ServiceUnavailable as exc:
            raise StoreError(f"Neo4j is unreachable: {exc}") from exc
        except (QueryRejectedError, StoreError):
            raise
        except ClientError as exc:
            raise StoreError(f"Neo4j rejected a statement: {exc.message}") from exc
        except (Neo4jError, DriverError, OSError) as exc:
            raise StoreError(f"Neo4j failed: {exc}") from exc

    def ping(self) -> None:
        """Raise :class:`StoreError` unless Neo4j answers with the configured credentials."""
        with self._session(read=True) as session:
            session.run("RETURN 1").consume()

    def ensure_schema(self) -> None:
        """Create the ``uri`` uniqueness constraint, the change log's and the leases'
        constraints, and the indexes on decisions' chain position and hash, events' time and
        the content hash of ingest batches and messages; idempotent."""

        def attempt() -> None:  # a transient failure (a concurrent writer) is run again
            with self._session() as session:
                for query in self._SCHEMA:
                    session.run(query.cypher).consume()

        _retried("schema", attempt)

    _SCHEMA = (
        queries.URI_CONSTRAINT,
        outbox.CHANGE_SEQ_CONSTRAINT,
        outbox.CHANGE_LOG_CONSTRAINT,
        queries.DECISION_CHAIN_INDEX,
        queries.DECISION_HASH_INDEX,
        queries.EVENT_TIME_INDEX,
        queries.BATCH_HASH_INDEX,
        queries.MESSAGE_HASH_INDEX,
        queries.LEASE_CONSTRAINT,
    )

    def counts(self) -> GraphCounts:
        """Node and relationship totals."""
        with self._session(read=True) as session:
            record = session.run(queries.COUNTS.cypher).single(strict=True)
            return GraphCounts(record["nodes"], record["relationships"])

    def read(self, query: queries.NamedQuery, **params: Any) -> list[dict[str, Any]]:
        """Run one of TwinKG's own named read queries; rows as dicts of plain values. Its cached
        plan is kept (:data:`KEEP_PLAN`)."""
        with _span(query.name), self._session(read=True) as session:
            return _rows(query, session.run(KEEP_PLAN + query.cypher, params))

    def read_all(
        self, statements: Sequence[tuple[queries.NamedQuery, Mapping[str, Any]]]
    ) -> list[list[dict[str, Any]]]:
        """Run several of TwinKG's named reads in ONE read transaction, in order, and return
        each one's rows as :meth:`read` gives them: one session and one transaction instead of
        one per read. (Neo4j reads committed data: a write committed between two of the reads
        can be seen by the second; this saves round trips, it is not a snapshot.)"""
        names = "+".join(query.name for query, _ in statements)
        results: list[list[dict[str, Any]]] = []
        with _span(names), self._session(read=True) as session, session.begin_transaction() as tx:
            for query, params in statements:
                results.append(_rows(query, tx.run(KEEP_PLAN + query.cypher, dict(params))))
        return results

    def execute(
        self,
        statements: Sequence[tuple[queries.NamedQuery, Mapping[str, Any]]],
        *,
        touches: Iterable[str],
    ) -> list[list[dict[str, Any]]]:
        """Run named write statements in ONE transaction, in order; all apply or none do.

        ``touches`` names the nodes the statements create, change or delete, and the start nodes
        of the relationships they add or remove: they go into the change log entry committed
        with the statements (:mod:`kg.outbox`; none when empty). Returns each statement's rows
        (plain values). A transient failure (a deadlock) is run again, as in :meth:`transaction`.
        """
        names = "+".join(query.name for query, _ in statements)

        def attempt() -> list[list[dict[str, Any]]]:
            touched = outbox.Touched()
            touched.add(touches)
            results: list[list[dict[str, Any]]] = []
            with _span(names), self._session() as session, session.begin_transaction() as tx:
                for query, params in statements:
                    rows = tx.run(query.cypher, dict(params))
                    results.append([_row(r) for r in rows])
                    touched.note(rows.consume())
                outbox.append(tx, touched, full_at=self._full_at)
                tx.commit()
            return results

        return _retried(names, attempt)

    def write(
        self,
        records: GraphRecords,
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: Callable[[int], None] | None = None,
        before_commit: Callable[[], object] | None = None,
        statements: Sequence[tuple[queries.NamedQuery, Mapping[str, Any]]] = (),
    ) -> WriteSummary:
        """Write ``records`` in ONE transaction of batched ``UNWIND`` statements.

        Writing the same records twice changes nothing: nodes that already exist are merged by
        ``uri`` (new ones are created, which is much faster), and relationships are merged
        unless one of their ends is new. On any failure the transaction rolls back whole.
        ``progress`` is called with the number of records written by each statement;
        ``before_commit`` last, before the commit: if it raises, nothing is committed (the
        ingest uses it to commit only once the telemetry log is staged). ``statements`` run
        after the records, in the same transaction (the seed stores the ontology source so).
        The change log entry (:mod:`kg.outbox`) names every node written and every
        relationship's start.
        """
        touched = outbox.Touched()
        with _span("write"), self._session() as session, session.begin_transaction() as tx:
            summary = _write_records(
                tx, records, touched=touched, batch_size=batch_size, progress=progress
            )
            for query, params in statements:
                tx.run(query.cypher, dict(params)).consume()
            if before_commit is not None:
                before_commit()
            committing = time.perf_counter()
            outbox.append(tx, touched, full_at=self._full_at)
            tx.commit()
        return dataclasses.replace(summary, commit_seconds=time.perf_counter() - committing)

    def probe(
        self, query: queries.NamedQuery, *, timeout_s: float = 120.0, **params: Any
    ) -> list[dict[str, Any]]:
        """Run one named write statement in a transaction that is always rolled back, and
        return its rows: what it read under the write locks its clauses took. A ``MERGE`` on a
        unique key waits while another open transaction has created that key, and then sees
        that transaction's outcome (the ingest's recovery asks Neo4j this way whether a batch
        committed). Past ``timeout_s`` it fails with :class:`StoreError`; nothing is written."""
        with self._session() as session:
            tx = session.begin_transaction(timeout=timeout_s)
            try:
                return [_row(r) for r in tx.run(query.cypher, params)]
            finally:
                tx.close()  # rolls back

    def transaction(self, work: Callable[[StoreTx], _T]) -> _T:
        """Run ``work`` in ONE write transaction and commit when it returns.

        If ``work`` raises, nothing it wrote is committed. ``work`` runs named statements and
        record batches through the :class:`StoreTx` it is given; the provenance recorder uses
        this to read the chain head, write an action with its provenance, and move the head, all
        or nothing. What ``work`` touched (:meth:`StoreTx.touch`, :meth:`StoreTx.write`) goes into
        the change log entry committed with it. A transaction Neo4j fails as transient (a
        deadlock with another writer) rolled back whole and is run again, ``work`` included
        (:data:`TRANSIENT_TRIES`): ``work`` must act only through the transaction.
        """

        def attempt() -> _T:
            with (
                _span("transaction"),
                self._session() as session,
                session.begin_transaction() as tx,
            ):
                store_tx = StoreTx(tx)
                result = work(store_tx)
                outbox.append(tx, store_tx.touched, full_at=self._full_at)
                tx.commit()
            return result

        return _retried("transaction", attempt)

    def export(self, *, prefix: str = "", uris: Sequence[str] | None = None) -> Graph:
        """The stored graph as RDF: every node whose IRI starts with ``prefix``, and its edges
        (outgoing); only the nodes ``uris`` (those that exist) and their edges when given."""
        graph = Graph()
        nodes, rels = queries.EXPORT_NODES, queries.EXPORT_RELATIONSHIPS
        if uris is not None:
            nodes, rels = queries.EXPORT_NODES_OF, queries.EXPORT_RELATIONSHIPS_OF
        with self._session(read=True) as session:
            for record in session.run(nodes.cypher, prefix=prefix, uris=uris):
                props = {
                    k: v
                    for k, v in record["props"].items()
                    if k not in (PropKey.URI.value, PropKey.RDF_TYPE.value)
                }
                graph += node_triples(record["uri"], record["types"], props)
            for record in session.run(rels.cypher, prefix=prefix, uris=uris):
                graph.add(relationship_triple(record["start"], record["type"], record["end"]))
        return graph

    def export_dataset(self) -> Dataset:
        """Everything needed to rebuild the twin, as two named graphs (decision 0038):
        :data:`~kg.mapping.ONTOLOGY_GRAPH`, the ontology exactly as the seed stored it (language
        tags, blank-node axioms, imports, annotations), and :data:`~kg.mapping.TWIN_GRAPH`, every
        node of the graph (:meth:`export`: the ontology's projection, the plant, events,
        telemetry-derived nodes, decisions and their provenance)."""
        dataset = Dataset()
        for prefix, namespace in PREFIXES.items():
            dataset.bind(prefix, namespace)
        ontology = dataset.graph(URIRef(ONTOLOGY_GRAPH))
        for row in self.read(queries.ONTOLOGY_SOURCE):
            ontology.parse(data=row["ntriples"], format="nt")
        twin = dataset.graph(URIRef(TWIN_GRAPH))
        for triple in self.export():
            twin.add(triple)
        return dataset

    def read_only(
        self,
        cypher: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout_s: float = 30.0,
        row_cap: int = 1000,
        byte_cap: int = DEFAULT_BYTE_CAP,
        max_chars: int = cypher_guard.MAX_QUERY_CHARS,
    ) -> QueryResult:
        """Run untrusted Cypher that may only read (decisions 0022 and 0029).

        The text must pass :func:`kg.cypher_guard.check_text` (with the row-cost rule of
        :mod:`kg.cypher_cost`) and the parameters :func:`~kg.cypher_guard.check_params`; Neo4j
        then plans the query (``EXPLAIN``, in a read session) and
        :func:`~kg.cypher_guard.check_plan` judges the plan. The survivor runs in one explicit
        read transaction (:mod:`kg.cypher_run`: never retried, terminated at ``timeout_s`` and
        :class:`QueryTimeoutError` once Neo4j has let go of it); at most ``row_cap`` rows and
        ``byte_cap`` bytes of JSON come back (``truncated`` when a cap cut). Every refusal is a
        :class:`QueryRejectedError` with a one-line reason.
        """
        if timeout_s <= 0 or row_cap < 0 or byte_cap < 0:
            raise InvalidInputError("timeout_s must be positive, row_cap and byte_cap not negative")
        values = cypher_guard.check_params(params)
        cypher_guard.check_text(cypher, params=values, max_chars=max_chars)
        planned = (cypher, tuple(sorted(values)))
        if not self._plan_passed(planned):
            with self._session(read=True) as session:
                try:
                    explain = neo4j.Query(_EXPLAIN + cypher, timeout=timeout_s)
                    summary = session.run(explain, values).consume()
                except ClientError as exc:
                    raise _rejection(exc, "invalid Cypher", timeout_s, shifted=True) from exc
                cypher_guard.check_plan(summary.query_type, summary.plan)
            self._plan_passed(planned, passed=True)
        answer = cypher_run.run(
            self._session(read=True, fetch_size=cypher_run.FETCH_SIZE),
            self._session,
            cypher,
            values,
            timeout_s=timeout_s,
            row_cap=row_cap,
            byte_cap=byte_cap,
            plain=_plain,
        )
        return QueryResult(answer.columns, answer.rows, answer.truncated)

    def _plan_passed(self, planned: tuple[str, tuple[str, ...]], *, passed: bool = False) -> bool:
        """Whether the plan of this text (with these parameter names) already passed
        :func:`~kg.cypher_guard.check_plan` on this store; ``passed`` records that it did. The
        query type and the plan's operators follow from the text, so the verdict is kept for
        the :data:`PASSED_PLANS` most recent texts of at most :data:`PASSED_PLAN_CHARS`
        characters (decision 0080); the text layer runs on every request regardless."""
        if len(planned[0]) > PASSED_PLAN_CHARS:
            return False
        with self._passed_lock:
            if passed:
                self._passed[planned] = None
                if len(self._passed) > PASSED_PLANS:
                    self._passed.popitem(last=False)
                return True
            if planned in self._passed:
                self._passed.move_to_end(planned)
                return True
            return False


class StoreTx:
    """One open write transaction, as :meth:`GraphStore.transaction` hands it out."""

    def __init__(self, tx: neo4j.Transaction) -> None:
        self._tx = tx
        self.touched = outbox.Touched()
        """What this transaction touched so far (its change log entry)."""

    def touch(self, uris: Iterable[str]) -> None:
        """Note nodes that statements run here created, changed or deleted, and the start nodes
        of relationships they added or removed (:meth:`write` notes its own)."""
        self.touched.add(uris)

    def run(self, query: queries.NamedQuery, **params: Any) -> list[dict[str, Any]]:
        """Run one named statement in this transaction; its rows as dicts of plain values."""
        with _span(query.name):
            result = self._tx.run(query.cypher, params)
            rows = [_row(r) for r in result]
            self.touched.note(result.consume())
        return rows

    def write(self, records: GraphRecords, *, batch_size: int = DEFAULT_BATCH) -> WriteSummary:
        """Write ``records`` as :meth:`GraphStore.write` does, inside this transaction."""
        return _write_records(self._tx, records, touched=self.touched, batch_size=batch_size)


def _write_records(
    tx: neo4j.Transaction,
    records: GraphRecords,
    *,
    touched: outbox.Touched,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> WriteSummary:
    """Batched ``UNWIND`` statements for ``records`` in the open transaction ``tx``; its nodes
    and its relationships' start nodes go into ``touched``."""
    rels = tuple(dict.fromkeys(records.rels))
    touched.add(n.uri for n in records.nodes)
    touched.add(rel.start for rel in rels)
    statements = 0
    started = time.perf_counter()
    # Every IRI this write names: its nodes and the ends of its relationships.
    ends = {n.uri for n in records.nodes}
    ends.update(end for rel in rels for end in (rel.start, rel.end))
    names = sorted(ends)
    ids: dict[str, str] = {}
    for i in range(0, len(names), batch_size):  # bounded statements, whatever the batch size
        found = tx.run(queries.EXISTING_URIS.cypher, uris=names[i : i + batch_size])
        record = found.single(strict=True)
        ids.update(zip(record["uris"], record["ids"], strict=True))
    existing = set(ids)
    for query, rows in _node_batches(records.nodes, existing, batch_size):
        result = tx.run(query.cypher, rows=rows)
        written = result.single(strict=True)
        touched.note(result.consume())
        ids.update(zip(written["uris"], written["ids"], strict=True))
        statements += 1
        if progress:
            progress(len(rows))
    nodes_done = time.perf_counter()
    for query, rows in _rel_batches(rels, existing, ids, batch_size):
        result = tx.run(query.cypher, rows=rows)
        count = result.single(strict=True)["written"]
        touched.note(result.consume())
        if count != len(rows):
            raise StoreError(
                f"{len(rows) - count} relationships of a batch point at "
                "nodes that do not exist; nothing was written"
            )
        statements += 1
        if progress:
            progress(len(rows))
    return WriteSummary(
        len(records.nodes),
        len(rels),
        statements,
        nodes_done - started,
        time.perf_counter() - nodes_done,
        0.0,
    )


def _node_batches(
    nodes: Sequence[NodeRecord], existing: set[str], size: int
) -> Iterator[tuple[queries.NamedQuery, list[dict[str, Any]]]]:
    groups: dict[_NodeGroup, list[dict[str, Any]]] = defaultdict(list)
    for node in nodes:
        props: dict[str, Any] = {}
        texts: dict[str, Any] = {}
        temporal: list[queries.Temporal] = []
        for k, v in node.props.items():
            kind = None if type(v) in _PLAIN else _temporal_kind(v)
            tagged = _lang_split(v)
            if tagged is not None:  # texts under the key, tags beside them (decision 0038)
                props[k.value], props[k.value + LANG_SUFFIX] = tagged
            elif kind is None:
                props[k.value] = v
            else:
                texts[k.value] = [_iso(x) for x in v] if isinstance(v, list) else _iso(v)
                temporal.append(queries.Temporal(k, kind, isinstance(v, list)))
        if node.types:
            props[PropKey.RDF_TYPE.value] = sorted(node.types)
        key = (node.uri in existing, labels_for(node.types), tuple(sorted(temporal)))
        groups[key].append({"uri": node.uri, "props": props, "t": texts})
    for (old, labels, temporal_keys), rows in sorted(groups.items()):
        make = queries.merge_nodes if old else queries.create_nodes
        query = make(labels, temporal_keys)
        for i in range(0, len(rows), size):
            yield query, rows[i : i + size]


def _rel_batches(
    rels: Sequence[RelRecord], existing: set[str], ids: Mapping[str, str], size: int
) -> Iterator[tuple[queries.NamedQuery, list[dict[str, str]]]]:
    """Relationship rows by element id; an end that is neither in the graph nor in this
    write keeps its IRI, matches no element id, and so fails the count check."""
    groups: dict[tuple[bool, RelType], list[dict[str, str]]] = defaultdict(list)
    for rel in rels:
        old = rel.start in existing and rel.end in existing
        row = {"start": ids.get(rel.start, rel.start), "end": ids.get(rel.end, rel.end)}
        groups[(old, rel.type)].append(row)
    for (old, rel_type), rows in sorted(groups.items()):
        query = (
            queries.merge_relationships(rel_type) if old else queries.create_relationships(rel_type)
        )
        for i in range(0, len(rows), size):
            yield query, rows[i : i + size]


_EXPLAIN = "EXPLAIN\n"
_POSITION = re.compile(r"\(line (\d+), column (\d+) \(offset: (\d+)\)\)")


def _rejection(
    exc: Neo4jError, what: str, timeout_s: float, *, shifted: bool = False
) -> QueryRejectedError:
    """Neo4j's refusal as TwinKG's: a timeout as :class:`QueryTimeoutError`, anything else as
    :class:`QueryRejectedError` with the first line of Neo4j's message."""
    if "TransactionTimedOut" in (exc.code or ""):
        return QueryTimeoutError(f"query stopped by the server-side timeout of {timeout_s:g} s")
    reason = _first_line(exc.message)
    return QueryRejectedError(f"{what}: {_unshift_position(reason) if shifted else reason}")


def _unshift_position(message: str) -> str:
    """Report error positions in the user's query, not in ``EXPLAIN\n`` + query."""

    def shift(match: re.Match[str]) -> str:
        line, column, offset = (int(g) for g in match.groups())
        return f"(line {line - 1}, column {column} (offset: {offset - len(_EXPLAIN)}))"

    return _POSITION.sub(shift, message)


def _first_line(message: str | None) -> str:
    return (message or "").strip().splitlines()[0] if message else "no reason given"
