"""Messages refused whole (a payload that is not a JSON batch, an unknown topic, a batch over the
limits), kept with the reason so nothing a plant sent disappears without a trace.

A refused message is one JSON line in ``<folder>/YYYY-MM-DD.jsonl`` (the day it was refused, UTC):
when, where from, the error's stable code and reason, the payload's size and SHA-256, and the
payload itself (base64) up to :data:`KEEP_BYTES`; past that only its first :data:`KEEP_BYTES`
bytes are kept and ``truncated`` says so, so a flood of huge refusals cannot fill the disk
faster than the broker's own packet limit allows. Lines are appended and flushed one at a time
under a lock; a reader skips a torn last line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

KEEP_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message."""

    at: str
    source: str
    code: str
    reason: str
    size: int
    sha256: str
    payload_b64: str
    truncated: bool

    @property
    def payload(self) -> bytes:
        """The kept bytes of the payload (all of it unless ``truncated``)."""
        return base64.b64decode(self.payload_b64)


class DeadLetters:
    """The refused messages kept under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def add(self, source: str, payload: bytes, *, code: str, reason: str) -> DeadLetter:
        """Keep ``payload`` from ``source`` with why it was refused; returns the record."""
        now = datetime.now(UTC)
        letter = DeadLetter(
            at=now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            source=source,
            code=code,
            reason=reason,
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            payload_b64=base64.b64encode(payload[:KEEP_BYTES]).decode("ascii"),
            truncated=len(payload) > KEEP_BYTES,
        )
        line = json.dumps(asdict(letter), ensure_ascii=True, separators=(",", ":")) + "\n"
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with (self.folder / f"{now:%Y-%m-%d}.jsonl").open("a", encoding="ascii") as handle:
                handle.write(line)
                handle.flush()
        return letter

    def read(self) -> Iterator[DeadLetter]:
        """Every refused message kept, oldest day first, in the order refused."""
        for path in sorted(self.folder.glob("*.jsonl")):
            for line in path.read_text(encoding="ascii", errors="replace").splitlines():
                try:
                    yield DeadLetter(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line torn by a crash mid-write
