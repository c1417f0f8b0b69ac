"""The edge's decision records: a local, append-only, hash-chained file (JSON Lines).

Record *n* is ``{"seq": n, "prev": <hash of n-1, "" for the first>, "hash": h, "body": {...}}``
with ``h`` = SHA-256 over ``prev``, a newline and the body's canonical JSON. Each record is
appended and synced before the decision counts as taken, so a record cannot be altered,
reordered or dropped from the middle unseen (:func:`verify` recomputes every hash and link).
Dropping records from the end shows against a head kept elsewhere: the buffer keeps the last
sequence number it took, and the central twin holds every forwarded record.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinkg.connect.edge.bundle import canonical, sha256


def record_hash(prev: str, body: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash, a newline and the body's canonical JSON."""
    return sha256(prev.encode() + b"\n" + canonical(dict(body)))


@dataclass(frozen=True, slots=True)
class EdgeRecord:
    """One decision record as written."""

    seq: int
    prev: str
    hash: str
    body: Mapping[str, Any]

    def line(self) -> bytes:
        """The record as one canonical JSON line (also what is forwarded)."""
        return canonical({"seq": self.seq, "prev": self.prev, "hash": self.hash, "body": self.body})


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What :func:`verify` found: the records, the head, and the problems (none: intact)."""

    records: int
    head: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every record's hash and link check out."""
        return not self.problems


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    if not path.is_file():
        return
    with path.open("rb") as handle:
        yield from enumerate(handle, start=1)


def verify(path: Path, *, expect_length: int | None = None) -> ChainReport:
    """Recompute every record's hash and link in ``path``; ``expect_length`` (a count kept
    elsewhere) also shows records cut off the end."""
    problems: list[str] = []
    prev, count = "", 0
    for number, line in _lines(path):
        try:
            row = json.loads(line)
            seq, body = int(row["seq"]), row["body"]
            stated_prev, stated = str(row["prev"]), str(row["hash"])
        except (ValueError, KeyError, TypeError):
            problems.append(f"line {number}: not a decision record")
            continue
        if seq != count + 1:
            problems.append(f"line {number}: record {seq} where {count + 1} was due")
        if stated_prev != prev:
            problems.append(f"record {seq}: its previous hash is not the hash before it")
        if not isinstance(body, dict) or record_hash(stated_prev, body) != stated:
            problems.append(f"record {seq}: its content no longer matches its hash")
        prev, count = stated, seq
    if expect_length is not None and count < expect_length:
        problems.append(f"the chain holds {count} records, {expect_length} were written")
    return ChainReport(count, prev, tuple(problems))


class EdgeChain:
    """The append-only decision file of one edge."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        report = verify(path)
        self.length, self.head = report.records, report.head

    def append(self, body: Mapping[str, Any]) -> EdgeRecord:
        """Append the next record with ``body`` and sync it to disk."""
        with self._lock:
            seq = self.length + 1
            record = EdgeRecord(seq, self.head, record_hash(self.head, body), dict(body))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as handle:
                handle.write(record.line() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            self.length, self.head = seq, record.hash
            return record

    def records(self, *, after: int = 0) -> Iterator[EdgeRecord]:
        """The records with a sequence number above ``after``, in order."""
        for _, line in _lines(self.path):
            row = json.loads(line)
            if int(row["seq"]) > after:
                yield EdgeRecord(int(row["seq"]), row["prev"], row["hash"], row["body"])
