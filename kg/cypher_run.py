"""Running untrusted Cypher once the guard has let it through: bounded and stopped for real.

Decision 0029. The query runs in ONE explicit read transaction (``session.begin_transaction``),
never in a managed one: the driver retries a managed transaction after a lost connection, so a
Neo4j restart would run the query again; an explicit transaction fails instead.

* **Time.** The transaction carries a tag in its metadata. At the deadline (``timeout_s``) a
  watchdog thread finds it in ``SHOW TRANSACTIONS`` and ends it with ``TERMINATE TRANSACTIONS``;
  the caller then waits (at most :data:`CONFIRM_S`) until Neo4j no longer lists it, and only
  then answers :class:`QueryTimeoutError`. Neo4j's own transaction timeout, ``timeout_s`` +
  :data:`SERVER_GRACE_S`, stops it if this process dies meanwhile.
* **Answer size.** Records are pulled :data:`FETCH_SIZE` at a time; each row is measured as the
  JSON the API sends, and pulling stops at ``row_cap`` rows or ``byte_cap`` bytes, whichever
  comes first (``truncated``); the rest is discarded, not computed. A single row can hold no
  more than :mod:`kg.cypher_cost` lets one row compute.
* **Memory** of what one row computes is bounded by :mod:`kg.cypher_cost` (Neo4j does not
  account for expression values); sorts and aggregations count against Neo4j's transaction
  memory pool (``TWINKG_NEO4J_TX_MEMORY``), and a query stopped by it is
  :class:`QueryUnboundedError`, not an outage.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import neo4j
from neo4j import Session
from neo4j.exceptions import ClientError, DriverError, Neo4jError

from twinkg.kg.queries import NamedQuery
from twinkg.ontology.errors import (
    QueryRejectedError,
    QueryTimeoutError,
    QueryUnboundedError,
    StoreError,
)

FETCH_SIZE = 20
"""Records per pull: what arrives beyond the caps is at most this many rows."""
SERVER_GRACE_S = 5.0
"""How much later than the client's deadline Neo4j's own timeout stops the transaction."""
CONFIRM_S = 15.0
"""How long the caller waits for Neo4j to stop listing a terminated query."""
TAG = "twinkg_untrusted"
"""The metadata key that marks an untrusted query's transaction."""

FIND = NamedQuery(
    "untrusted.find",
    "SHOW TRANSACTIONS YIELD transactionId, metaData, status "
    "WHERE metaData.twinkg_untrusted = $tag RETURN transactionId AS id, status",
)
"""The transactions of one untrusted query (none once it has ended)."""

TERMINATE = NamedQuery(
    "untrusted.terminate",
    "TERMINATE TRANSACTIONS $ids YIELD transactionId, message RETURN transactionId AS id, message",
)
"""End the given transactions, wherever they are in their work."""

_log = logging.getLogger("twinkg.cypher")
_STOPPED = ("TransactionTimedOut", "Transaction.Terminated")
_MEMORY = ("MemoryPoolOutOfMemoryError", "TransactionMemoryLimit", "MemoryLimitExceeded")

SessionFactory = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True, slots=True)
class Answer:
    """The rows pulled (plain values), the columns, and whether a cap cut them."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    truncated: bool


class Watchdog:
    """Terminates one tagged query at its deadline, from its own thread and session."""

    def __init__(self, sessions: SessionFactory, tag: str, timeout_s: float) -> None:
        self._sessions = sessions
        self.tag = tag
        self.deadline = time.monotonic() + timeout_s
        self.fired = threading.Event()
        self._timer = threading.Timer(timeout_s, self.fire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def passed(self) -> bool:
        """Whether the deadline has passed (or the watchdog fired)."""
        return self.fired.is_set() or time.monotonic() >= self.deadline

    def fire(self) -> None:
        """Terminate the query's transaction (idempotent; failures are logged, the server's own
        timeout is the backstop)."""
        if self.fired.is_set():
            return
        self.fired.set()
        try:
            ids = [row["id"] for row in self._find()]
            if ids:
                with self._sessions() as session:
                    session.run(TERMINATE.cypher, ids=ids).consume()
        except (Neo4jError, DriverError, StoreError, OSError) as exc:
            _log.warning("could not terminate untrusted query %s: %s", self.tag, exc)

    def wait_gone(self, wait_s: float = CONFIRM_S) -> bool:
        """Poll until Neo4j lists no transaction of this query; False if one is left."""
        end = time.monotonic() + wait_s
        pause = 0.02
        while True:
            try:
                if not self._find():
                    return True
            except (Neo4jError, DriverError, StoreError, OSError) as exc:
                _log.warning("could not list untrusted query %s: %s", self.tag, exc)
            if time.monotonic() >= end:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _find(self) -> list[dict[str, Any]]:
        with self._sessions() as session:
            return [record.data() for record in session.run(FIND.cypher, tag=self.tag)]


def run(
    query_session: AbstractContextManager[Session],
    sessions: SessionFactory,
    cypher: str,
    params: dict[str, Any],
    *,
    timeout_s: float,
    row_cap: int,
    byte_cap: int,
    plain: Callable[[Any], Any],
) -> Answer:
    """Run ``cypher`` in ``query_session`` (a read session pulling :data:`FETCH_SIZE` records at
    a time) within ``timeout_s``, and keep at most ``row_cap`` rows and ``byte_cap`` bytes of
    them; ``sessions`` opens the watchdog's sessions, ``plain`` turns driver values into JSON-like
    ones. Past the deadline: :class:`QueryTimeoutError`, once Neo4j has let go of the query;
    Neo4j refusing it: :class:`QueryRejectedError` with the first line of its reason."""
    tag = uuid.uuid4().hex
    with Watchdog(sessions, tag, timeout_s) as watchdog, query_session as session:
        try:
            tx = session.begin_transaction(metadata={TAG: tag}, timeout=timeout_s + SERVER_GRACE_S)
            try:
                return _pull(
                    tx,
                    cypher,
                    params,
                    watchdog,
                    row_cap=row_cap,
                    byte_cap=byte_cap,
                    plain=plain,
                )
            finally:
                _close(tx)
        except _LateError:
            raise _stopped(watchdog, timeout_s) from None
        except Neo4jError as exc:
            if watchdog.fired.is_set() or any(s in (exc.code or "") for s in _STOPPED):
                raise _stopped(watchdog, timeout_s) from exc
            if any(s in (exc.code or "") for s in _MEMORY):
                raise QueryUnboundedError(
                    "query stopped: it needs more memory than Neo4j grants transactions "
                    f"({_first_line(exc.message)})"
                ) from exc
            if isinstance(exc, ClientError):
                raise QueryRejectedError(f"query failed: {_first_line(exc.message)}") from exc
            raise


class _LateError(Exception):
    """The deadline passed between two records."""


def _pull(
    tx: neo4j.Transaction,
    cypher: str,
    params: dict[str, Any],
    watchdog: Watchdog,
    *,
    row_cap: int,
    byte_cap: int,
    plain: Callable[[Any], Any],
) -> Answer:
    result = tx.run(cypher, params)
    columns = tuple(result.keys())
    rows: list[tuple[Any, ...]] = []
    size = 2  # the brackets of the rows' JSON array
    for row in _rows(result, plain):
        if watchdog.passed():
            watchdog.fire()
            raise _LateError
        cost = (
            len(json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode())
            + 1
        )
        if len(rows) == row_cap or size + cost > byte_cap:
            return Answer(columns, tuple(rows), True)
        rows.append(row)
        size += cost
    if watchdog.fired.is_set():  # terminated while the last records arrived
        raise _LateError
    return Answer(columns, tuple(rows), False)


def _rows(result: neo4j.Result, plain: Callable[[Any], Any]) -> Iterator[tuple[Any, ...]]:
    for record in result:
        yield tuple(plain(value) for value in record.values())


def _close(tx: neo4j.Transaction) -> None:
    """Roll back; a transaction Neo4j has already ended cannot, and needs not."""
    try:
        tx.close()
    except (Neo4jError, DriverError) as exc:
        _log.debug("closing an untrusted query's transaction: %s", exc)


def _stopped(watchdog: Watchdog, timeout_s: float) -> QueryTimeoutError:
    watchdog.fire()
    if watchdog.wait_gone():
        return QueryTimeoutError(
            f"query stopped at its timeout of {timeout_s:g} s; Neo4j has ended it"
        )
    _log.error("untrusted query %s still runs in Neo4j after termination", watchdog.tag)
    return QueryTimeoutError(
        f"query stopped at its timeout of {timeout_s:g} s; Neo4j was told to end it but "
        f"still listed it after {CONFIRM_S:g} s"
    )


def _first_line(message: str | None) -> str:
    lines = (message or "").strip().splitlines()
    return lines[0] if lines else "no reason given"
