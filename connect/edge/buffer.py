"""The edge's store-and-forward buffer: SQLite in WAL mode under ``var/edge/``.

Everything the edge sends the central twin goes in here first: telemetry batches as taken in,
and decision records as appended to the chain. An entry leaves only when a receipt from the
twin names it (by the SHA-256 of its bytes): a broker's PUBACK is not enough, since a broker
killed outright loses messages it acknowledged but had not saved (decision 0056).

**Bound and overflow policy.** Telemetry is bounded by entries and by bytes. At the bound a new
batch is *refused*: :meth:`put` returns False, the refusal is logged (``edge_buffer_full``) and
counted, and the caller leaves the batch where it came from (the inbox file stays), to be taken
again once the link drains the buffer. Nothing is dropped. Decision records are never refused:
they are few and small, already durable in the chain, and the twin must get every one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from twinkg.connect.edge.bundle import sha256

log = logging.getLogger("twinkg.edge")

TELEMETRY, DECISION = "tele", "decision"
SEEN_KEPT_S = 86_400.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "kind TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, sha256 TEXT NOT NULL "
    "UNIQUE, bytes INTEGER NOT NULL, points INTEGER NOT NULL, created REAL NOT NULL, "
    "sent_at REAL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS decided (sha256 TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One buffered message."""

    id: int
    kind: str
    topic: str
    payload: bytes
    sha256: str
    points: int


@dataclass(frozen=True, slots=True)
class Depth:
    """How much waits in the buffer (telemetry and decisions together)."""

    entries: int
    bytes: int
    points: int
    decisions: int


class EdgeBuffer:
    """The buffer file; one connection shared by the edge's threads under a lock."""

    def __init__(self, path: Path, *, max_entries: int, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        for statement in _SCHEMA:
            self._db.execute(statement)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def _count(self, name: str, by: int = 1) -> None:
        self._db.execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def counters(self) -> dict[str, int]:
        """Counts kept across restarts: refused when full, confirmed, refused centrally."""
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())

    def depth(self) -> Depth:
        """Entries, bytes, telemetry points and decisions waiting."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(points), 0), "
                "coalesce(sum(kind = ?), 0) FROM entries",
                (DECISION,),
            ).fetchone()
        return Depth(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def put(self, kind: str, topic: str, payload: bytes, *, points: int = 0) -> bool:
        """Buffer ``payload`` for ``topic``. False (logged, counted) when telemetry meets the
        bound; a payload buffered already is not buffered twice (True)."""
        digest = sha256(payload)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if kind == TELEMETRY:
                    entries, size = self._db.execute(
                        "SELECT count(*), coalesce(sum(bytes), 0) FROM entries WHERE kind = ?",
                        (TELEMETRY,),
                    ).fetchone()
                    if entries + 1 > self.max_entries or size + len(payload) > self.max_bytes:
                        self._count("refused_full")
                        self._db.execute("COMMIT")
                        log.error(
                            "edge buffer full (%d entries, %d bytes; bounds %d, %d): batch "
                            "refused and left at its source (edge_buffer_full)",
                            entries,
                            size,
                            self.max_entries,
                            self.max_bytes,
                        )
                        return False
                self._db.execute(
                    "INSERT OR IGNORE INTO entries (kind, topic, payload, sha256, bytes, points,"
                    " created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (kind, topic, payload, digest, len(payload), points, time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return True

    def seen(self, digest: str) -> bool:
        """Whether the rules have seen batch ``digest`` already."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM decided WHERE sha256 = ?", (digest,)).fetchone()
        return row is not None

    def mark_seen(self, digest: str) -> None:
        """Note that the rules have seen batch ``digest`` (after its decisions are written);
        notes older than :data:`SEEN_KEPT_S` go, so the table stays small (a batch held in
        the inbox longer than that is decided on again: a second record, never a lost one)."""
        now = time.time()
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO decided VALUES (?, ?)", (digest, now))
            self._db.execute("DELETE FROM decided WHERE at < ?", (now - SEEN_KEPT_S,))

    def due(self, *, limit: int, resend_s: float) -> list[Entry]:
        """Up to ``limit`` entries, oldest first, never sent or sent over ``resend_s`` ago."""
        cutoff = time.time() - resend_s
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, topic, payload, sha256, points FROM entries "
                "WHERE sent_at IS NULL OR sent_at < ? ORDER BY id LIMIT ?",
                (cutoff, limit),
            ).fetchall()
        return [Entry(int(r[0]), r[1], r[2], bytes(r[3]), r[4], int(r[5])) for r in rows]

    def in_flight(self, *, resend_s: float) -> int:
        """Entries sent within ``resend_s`` and not confirmed yet."""
        with self._lock:
            row = self._db.execute(
                "SELECT count(*) FROM entries WHERE sent_at >= ?", (time.time() - resend_s,)
            ).fetchone()
        return int(row[0])

    def sent(self, ids: list[int]) -> None:
        """Note that entries ``ids`` were published just now."""
        with self._lock:
            self._db.executemany(
                "UPDATE entries SET sent_at = ? WHERE id = ?", [(time.time(), i) for i in ids]
            )

    def unsend(self) -> None:
        """Forget every send (a new connection: everything unconfirmed goes again)."""
        with self._lock:
            self._db.execute("UPDATE entries SET sent_at = NULL")

    def confirm(self, digest: str, *, counter: str = "confirmed") -> Entry | None:
        """Delete the entry ``digest`` (the twin has it); None when none waits (a repeat)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT id, kind, topic, payload, sha256, points FROM entries WHERE sha256 = ?",
                (digest,),
            ).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM entries WHERE id = ?", (row[0],))
                self._count(counter)
            self._db.execute("COMMIT")
        return None if row is None else Entry(int(row[0]), row[1], row[2], b"", row[4], int(row[5]))

    def meta(self, key: str) -> str | None:
        """A value kept with the buffer (the last decision buffered, the last forward)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO meta VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
