"""The transactional outbox: a change log written in the same Neo4j transaction as the data.

The pattern: https://microservices.io/patterns/data/transactional-outbox.html (decision 0021).

Every write transaction of :mod:`kg.store` collects the IRIs of the nodes it touched (created or
changed nodes, and the start node of every relationship it added: a relationship projects as a
triple whose subject is its start) and, as its last statement before the commit, appends one
``(:Change {seq, at, uris})`` entry. ``seq`` comes from the one ``(:ChangeLog)`` counter,
incremented by that statement: the increment write-locks the counter until the commit, so entries
commit in ``seq`` order and a reader of ``seq > cursor`` never skips one that commits later. Past
:data:`FULL_AT` IRIs the entry says ``full: true`` instead of listing them (a reader rebuilds
whole). A transaction that touched nothing, or changed nothing, appends nothing: every statement's
result summary is noted (:meth:`Touched.note`), and only when one of them reports an update
(``summary.counters.contains_updates``) is there an entry, so seeding the same plant twice adds
none (the seed's merges set only properties that differ, since Neo4j counts a ``SET`` of an
unchanged value as an update). Neither label is ``:Resource``, so the RDF export and the ontology
mapping never see the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import neo4j

from twinkg.kg.queries import NamedQuery, token
from twinkg.ontology.vocab import Label, PropKey

if TYPE_CHECKING:
    from twinkg.kg.store import GraphStore

FULL_AT = 5000
"""Above this many IRIs an entry says ``full`` instead of listing them."""

_CHANGE, _LOG = token(Label.CHANGE), token(Label.CHANGE_LOG)
_SEQ, _AT, _URIS, _FULL = (token(k) for k in (PropKey.SEQ, PropKey.AT, PropKey.URIS, PropKey.FULL))

CHANGE_SEQ_CONSTRAINT = NamedQuery(
    "schema.change_seq_unique",
    f"CREATE CONSTRAINT change_seq_unique IF NOT EXISTS "
    f"FOR (c:{_CHANGE}) REQUIRE c.{_SEQ} IS UNIQUE",
)
"""One entry per ``seq``; its index serves the readers' ``seq > cursor`` scans."""

CHANGE_LOG_CONSTRAINT = NamedQuery(
    "schema.change_log_unique",
    f"CREATE CONSTRAINT change_log_unique IF NOT EXISTS FOR (h:{_LOG}) REQUIRE h.{_SEQ} IS UNIQUE",
)
"""Two counters created by racing first writes cannot both commit."""

APPEND = NamedQuery(
    "outbox.append",
    f"MERGE (h:{_LOG}) ON CREATE SET h.{_SEQ} = 0 "
    f"SET h.{_SEQ} = h.{_SEQ} + 1 "
    f"CREATE (c:{_CHANGE}) SET c.{_SEQ} = h.{_SEQ}, c.{_AT} = datetime.realtime(), "
    f"c.{_FULL} = $full, c.{_URIS} = $uris "
    f"RETURN c.{_SEQ} AS seq",
)
"""Take the next ``seq`` (the SET reads under the counter's write lock) and append the entry."""

CHANGES_AFTER = NamedQuery(
    "outbox.changes_after",
    f"MATCH (c:{_CHANGE}) WHERE c.{_SEQ} > $after "
    f"RETURN c.{_SEQ} AS seq, c.{_AT} AS at, c.{_FULL} AS full, c.{_URIS} AS uris "
    f"ORDER BY seq LIMIT $limit",
)

LOG_STATE = NamedQuery(
    "outbox.state",
    f"CALL () {{ OPTIONAL MATCH (h:{_LOG}) RETURN coalesce(max(h.{_SEQ}), 0) AS head }} "
    f"CALL () {{ OPTIONAL MATCH (o:{_CHANGE}) WHERE o.{_SEQ} IS NOT NULL "
    f"RETURN o.{_SEQ} AS oldest ORDER BY oldest LIMIT 1 }} "
    f"CALL () {{ OPTIONAL MATCH (f:{_CHANGE}) WHERE f.{_SEQ} > $after "
    f"RETURN f ORDER BY f.{_SEQ} LIMIT 1 }} "
    f"WITH head, oldest, f, duration.inSeconds(f.{_AT}, datetime.realtime()) AS d "
    f"RETURN head, oldest, f.{_SEQ} AS next_seq, "
    f"coalesce(d.seconds + d.nanosecondsOfSecond / 1e9, 0.0) AS waited",
)
"""The counter, the oldest entry kept, and how long the first entry after ``$after`` has waited
(on Neo4j's clock, the one that stamped it)."""

PRUNE = NamedQuery(
    "outbox.prune",
    f"MATCH (h:{_LOG}) WITH h.{_SEQ} AS head "
    f"MATCH (c:{_CHANGE}) WHERE c.{_SEQ} <= $applied AND c.{_SEQ} < head "
    f"AND c.{_AT} < datetime.realtime() - duration({{seconds: $keep_s}}) "
    f"WITH c LIMIT $limit DETACH DELETE c RETURN count(*) AS deleted",
)
"""Delete applied entries older than the retention, never the newest."""


class Touched:
    """The IRIs one write transaction touched, and whether its statements changed anything
    (collected until its commit)."""

    __slots__ = ("_noted", "_updated", "_uris")

    def __init__(self) -> None:
        self._uris: set[str] = set()
        self._noted = False
        self._updated = False

    def add(self, uris: Iterable[str]) -> None:
        """Note ``uris`` as touched."""
        self._uris.update(uris)

    def note(self, summary: neo4j.ResultSummary) -> None:
        """Note what one statement of the transaction did (its result's summary)."""
        self._noted = True
        self._updated = self._updated or summary.counters.contains_updates

    @property
    def changed(self) -> bool:
        """Whether a noted statement changed the graph (True when none was noted: unknown)."""
        return self._updated or not self._noted

    def __len__(self) -> int:
        return len(self._uris)

    def __iter__(self) -> Iterator[str]:
        return iter(self._uris)


def append(tx: neo4j.Transaction, touched: Touched, *, full_at: int = FULL_AT) -> int | None:
    """Append the entry for ``touched`` in the open transaction ``tx``: call it last, just before
    the commit (the counter stays locked until then). Its ``seq``; ``None`` when nothing was
    touched or the transaction changed nothing (no entry)."""
    if not touched or not touched.changed:
        return None
    full = len(touched) > full_at
    uris = [] if full else sorted(touched)
    record = tx.run(APPEND.cypher, full=full, uris=uris).single(strict=True)
    return int(record["seq"])


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the log: what one committed transaction touched."""

    seq: int
    at: datetime
    uris: tuple[str, ...]
    full: bool


@dataclass(frozen=True, slots=True)
class LogState:
    """The log as a reader at ``after`` sees it: the last ``seq`` taken, the oldest entry still
    kept (``None`` when none), the first entry past ``after`` and how long it has waited."""

    head: int
    oldest: int | None
    next_seq: int | None
    waited_s: float


def changes_after(store: GraphStore, after: int, *, limit: int) -> list[Change]:
    """The entries with ``seq > after``, in ``seq`` order, at most ``limit``."""
    rows = store.read(CHANGES_AFTER, after=after, limit=limit)
    return [
        Change(int(r["seq"]), _moment(r["at"]), tuple(r["uris"] or ()), bool(r["full"]))
        for r in rows
    ]


def state(store: GraphStore, after: int) -> LogState:
    """The counter, the oldest kept entry, and the wait of the first entry past ``after``."""
    row = store.read(LOG_STATE, after=after)[0]
    oldest, next_seq = row["oldest"], row["next_seq"]
    return LogState(
        int(row["head"]),
        None if oldest is None else int(oldest),
        None if next_seq is None else int(next_seq),
        max(0.0, float(row["waited"] or 0.0)),
    )


def prune(store: GraphStore, *, applied: int, keep_s: float, batch: int = 10_000) -> int:
    """Delete entries up to ``applied`` that are older than ``keep_s`` seconds (Neo4j's clock),
    always keeping the newest; how many went. The deletes touch no graph node, so they append
    no entry of their own."""
    deleted = 0
    while True:
        params: dict[str, Any] = {"applied": applied, "keep_s": keep_s, "limit": batch}
        rows = store.execute([(PRUNE, params)], touches=())
        count = int(rows[0][0]["deleted"]) if rows[0] else 0
        deleted += count
        if count < batch:
            return deleted


def _moment(value: Any) -> datetime:
    """An entry's ``at`` as read through :meth:`GraphStore.read` (ISO text with nanoseconds)."""
    if isinstance(value, datetime):
        return value
    text = str(value).replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python takes at most microseconds
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(text)
