"""The audit log: every state-changing request, who made it, and what came of it.

Append-only JSON Lines, hash-chained like the provenance records (decision 0016): entry *n*
carries ``prev`` (entry *n-1*'s ``hash``, empty for the first) and ``hash`` = SHA-256 over
``prev`` and the canonical JSON of the entry without its ``hash``. Appends are serialised by a
lock within the process and ``flock`` across processes, and each is fsynced before it returns.

Write-ahead (decision 0029): a state-changing request gets two entries. The *intent*
(``phase: "intent"``, ``status: 0``: who presented which credentials, for which route, under
which request id) is fsynced before the request runs, so no change can commit that the log does
not announce; the *outcome* (``phase: "outcome"``, the status and error code, and ``intent``: the
index of its intent entry) follows when the response is known. An intent without an outcome is
a request that was killed or is still running: :meth:`AuditLog.verify` lists them. Entries
written before write-ahead have neither field.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from twinkg.ontology.errors import InvalidInputError, StoreError

_TAIL_CHUNK = 4096


class AuditPhase(StrEnum):
    """Which of a request's two entries: announced before it runs, or its outcome after."""

    INTENT = "intent"
    OUTCOME = "outcome"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened: one request, its caller and its outcome."""

    time: str  # ISO 8601, UTC
    request_id: str
    subject: str  # the caller's key id or token subject; "anonymous" when unauthenticated
    name: str
    roles: tuple[str, ...]
    person: str | None
    auth: str | None  # "api_key", "jwt", or None when unauthenticated
    client: str | None
    method: str
    path: str
    query: str
    status: int  # 0 on an intent: no response yet
    error_code: str | None
    phase: AuditPhase | None = None  # None on entries written before write-ahead
    intent: int | None = None  # on an outcome: the index of its intent entry


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An event as the log holds it: its place in the chain and its hash."""

    index: int
    event: AuditEvent
    prev: str
    hash: str

    def document(self) -> dict[str, Any]:
        """The entry as one JSON object (its line in the log)."""
        return {
            "index": self.index,
            **_event_json(self.event),
            "prev": self.prev,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class AuditVerifyReport:
    """The outcome of recomputing the chain: ``ok`` or the first line that does not fit (or the
    expectation kept elsewhere that the log no longer meets)."""

    ok: bool
    count: int  # entries that checked out before the first bad one (all of them when ok)
    first_bad_line: int | None  # 1-based
    reason: str | None
    head: str  # the last good hash: keep a copy elsewhere to detect a cut-off tail
    open_intents: tuple[str, ...] = ()  # request ids announced without an outcome


_OPTIONAL = ("phase", "intent")  # absent from entries written before write-ahead


def _event_json(event: AuditEvent) -> dict[str, Any]:
    document = asdict(event)
    document["roles"] = list(event.roles)
    for name in _OPTIONAL:
        if document[name] is None:
            del document[name]
    return document


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(index: int, event: AuditEvent, prev: str) -> str:
    """SHA-256 over ``prev`` and the canonical JSON of the entry without its hash."""
    body = {"index": index, **_event_json(event), "prev": prev}
    return hashlib.sha256(prev.encode() + _canonical(body)).hexdigest()


_EVENT_FIELDS = tuple(f.name for f in fields(AuditEvent))


def _parse(line: bytes) -> AuditEntry:
    """An entry from its line; :class:`ValueError` when it is not one."""
    document = json.loads(line)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    expected = {"index", "prev", "hash", *_EVENT_FIELDS}
    required = expected - set(_OPTIONAL)
    if not required <= set(document) <= expected:
        raise ValueError(f"fields differ: {sorted((set(document) ^ required) - set(_OPTIONAL))}")
    values: dict[str, Any] = {name: document.get(name) for name in _EVENT_FIELDS}
    values["roles"] = tuple(values["roles"])
    if not isinstance(document["index"], int) or not isinstance(values["status"], int):
        raise ValueError("index and status must be integers")
    if values["phase"] is not None:
        values["phase"] = AuditPhase(values["phase"])
    if values["intent"] is not None and not isinstance(values["intent"], int):
        raise ValueError("intent must be an integer")
    return AuditEntry(document["index"], AuditEvent(**values), document["prev"], document["hash"])


class AuditLog:
    """An append-only, hash-chained JSON Lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _chain_end(self, last: bytes | None) -> tuple[int, str]:
        """The index and hash the next entry chains to."""
        if last is None:
            return 0, ""
        try:
            previous = _parse(last)
        except (ValueError, TypeError) as exc:
            raise StoreError(
                f"audit log {self.path}: the last entry is unreadable ({exc}); "
                "run `twinkg audit verify`"
            ) from None
        return previous.index + 1, previous.hash

    def append(self, event: AuditEvent) -> AuditEntry:
        """Chain ``event`` to the last entry and write it durably."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock, self.path.open("a+b") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                index, prev = self._chain_end(_last_line(handle))
                entry = AuditEntry(index, event, prev, entry_hash(index, event, prev))
                handle.write(_canonical(entry.document()) + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise StoreError(f"cannot append to the audit log {self.path}: {exc}") from None
        return entry

    def entries(
        self, *, limit: int | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        """The entries (at ``since`` or later, the last ``limit``), newest last."""
        if since is not None and since.tzinfo is None:
            raise InvalidInputError(f"{since.isoformat()} has no time zone")
        kept: deque[AuditEntry] = deque(maxlen=limit)
        for number, line in self._lines():
            try:
                entry = _parse(line)
            except (ValueError, TypeError) as exc:
                raise InvalidInputError(
                    f"audit log {self.path} line {number} is not an entry ({exc}); "
                    "run `twinkg audit verify`"
                ) from None
            if since is None or datetime.fromisoformat(entry.event.time) >= since:
                kept.append(entry)
        return list(kept)

    def verify(
        self, *, expect_head: str | None = None, expect_count: int | None = None
    ) -> AuditVerifyReport:
        """Recompute the chain from the first line; report the first that does not fit.

        The log only grows, so what was kept elsewhere must still be in it: ``expect_head``
        (a head printed by an earlier verify) must be the hash of one of its entries, and the log
        must hold at least ``expect_count`` entries; otherwise its tail was cut off. Intents
        without an outcome are listed (``open_intents``), not refused.
        """
        prev, count = "", 0
        seen_head = expect_head is None
        open_intents: dict[int, str] = {}
        for number, line in self._lines():
            reason = _misfit(line, index=count, prev=prev)
            if reason is not None:
                return AuditVerifyReport(False, count, number, reason, prev)
            entry = _parse(line)
            if entry.event.phase is AuditPhase.INTENT:
                open_intents[entry.index] = entry.event.request_id
            elif entry.event.intent is not None:
                open_intents.pop(entry.event.intent, None)
            seen_head = seen_head or entry.hash == expect_head
            prev, count = entry.hash, count + 1
        pending = tuple(open_intents.values())
        if not seen_head:
            reason = f"no entry has the head {expect_head} kept elsewhere: the tail was cut off"
            return AuditVerifyReport(False, count, None, reason, prev, pending)
        if expect_count is not None and count < expect_count:
            reason = (
                f"{count} entries where at least {expect_count} were kept: the tail was cut off"
            )
            return AuditVerifyReport(False, count, None, reason, prev, pending)
        return AuditVerifyReport(True, count, None, None, prev, pending)

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        try:
            with self.path.open("rb") as handle:
                for number, line in enumerate(handle, start=1):
                    yield number, line.rstrip(b"\n")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot read the audit log {self.path}: {exc}") from None


def _misfit(line: bytes, *, index: int, prev: str) -> str | None:
    """Why ``line`` is not entry ``index`` chained to ``prev``; None when it is."""
    try:
        entry = _parse(line)
    except (ValueError, TypeError) as exc:
        return f"not an audit entry ({exc})"
    if entry.index != index:
        return f"index {entry.index} where {index} was expected (a line moved or gone)"
    if entry.prev != prev:
        return "its prev does not match the previous entry's hash"
    if entry.hash != entry_hash(entry.index, entry.event, entry.prev):
        return "its hash does not match its content (altered)"
    return None


def _last_line(handle: BinaryIO) -> bytes | None:
    """The file's last line (without its newline), read backwards from the end."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return None
    tail = b""
    position = end
    while position > 0:
        step = min(_TAIL_CHUNK, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
        if tail.rstrip(b"\n").count(b"\n") >= 1:
            break
    return tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
