"""``twinkg edge run``: take telemetry in, decide locally, buffer, forward (decision 0059).

The runtime reads JSON telemetry batches (the ``telemetry@1.0.0`` batch contract) from an
inbox folder, oldest file name first. For each batch:

1. The rules of the bundle in force see its readings (once per batch, by content hash); each
   trip is judged by the local guard and written to the decision chain (synced) and the buffer.
   This happens whether or not the link is up and whether or not the buffer has room: the
   edge keeps deciding when the twin is out of reach.
2. The batch goes into the buffer and its file is deleted. When the buffer is full the file is
   left in the inbox (logged, counted) and taken again later: nothing is dropped.

The link (``connect.edge.link``) forwards the buffer on its own thread. A bundle applied while
the runtime runs (``twinkg edge apply``) takes effect at the next batch.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twinkg.connect.edge.buffer import DECISION, TELEMETRY, EdgeBuffer
from twinkg.connect.edge.bundle import Applied, EdgeBundles, sha256
from twinkg.connect.edge.chain import EdgeChain, EdgeRecord
from twinkg.connect.edge.guard import LocalGuard
from twinkg.connect.edge.rules import Reading, RuleBook, Trip
from twinkg.connect.mqtt.topics import EdgeTopic, TelemetryTopic
from twinkg.ontology.errors import TwinKGError
from twinkg.ontology.namespaces import DECISION_BASE

log = logging.getLogger("twinkg.edge")

BUFFERED_SEQ = "buffered_seq"

DEFAULT_BUDGET_MS = 1000.0
"""A local decision's budget: a batch taken in to its decision record synced to disk. The
runtime counts and logs every decision over it; it never drops or delays one for it."""


def decision_iri(site: str, node: str, seq: int) -> str:
    """The IRI an edge decision is recorded under, on the edge and centrally."""
    return f"{DECISION_BASE}edge/{site}/{node}/{seq}"


@dataclass(slots=True)
class EdgeStats:
    """What the runtime did since it started."""

    batches: int = 0
    points: int = 0
    decisions: int = 0
    held: int = 0  # batch takes refused by a full buffer (the file stayed)
    unreadable: int = 0
    over_budget: int = 0  # decisions that took longer than the budget (each logged)
    decide_ms: list[float] = field(default_factory=list)


def readings_of(body: Any) -> list[Reading]:
    """The readings of a batch body, in time order (points that are not readings skipped:
    the contract quarantines them centrally)."""
    points = body.get("points") if isinstance(body, dict) else None
    found = []
    for point in points if isinstance(points, list) else []:
        if not isinstance(point, dict):
            continue
        sensor, moment, value = point.get("sensor"), point.get("time"), point.get("value")
        if isinstance(sensor, str) and isinstance(moment, str) and isinstance(value, int | float):
            found.append(Reading(sensor, moment, float(value)))
    return sorted(found, key=lambda r: r.time)


class EdgeRuntime:
    """One edge: its bundle, rules, guard, chain and buffer."""

    def __init__(
        self,
        *,
        site: str,
        node: str,
        area: str,
        bundles: EdgeBundles,
        chain: EdgeChain,
        buffer: EdgeBuffer,
        on_action: Callable[[EdgeRecord], None] | None = None,
        budget_ms: float = DEFAULT_BUDGET_MS,
    ) -> None:
        self.site, self.node = site, node
        self.budget_ms = budget_ms
        self.telemetry_topic = TelemetryTopic(site, area, node).topic
        self.decision_topic = EdgeTopic(site, node).topic
        self.bundles, self.chain, self.buffer = bundles, chain, buffer
        self.on_action = on_action
        self.stats = EdgeStats()
        self.applied: Applied | None = None
        self.rules = RuleBook(())
        self.guard: LocalGuard | None = None
        self._lock = threading.Lock()
        self._stamp = ""
        self.reload()
        self._buffer_missing_decisions()

    def reload(self) -> None:
        """Take up the bundle in force, if it changed (a bad one on disk keeps the old)."""
        pointer = self.bundles.pointer
        try:
            stamp = pointer.read_bytes() if pointer.is_file() else b""
        except OSError:
            return
        if self.applied is not None and sha256(stamp) == self._stamp:
            return
        try:
            applied = self.bundles.current()
        except TwinKGError as exc:
            log.error("the bundle in force cannot be read, keeping the one loaded: %s", exc)
            return
        self._stamp = sha256(stamp)
        if applied is not None and (self.applied is None or applied.sha256 != self.applied.sha256):
            self.applied = applied
            self.rules.replace(applied.contents.rules)
            self.guard = LocalGuard(applied.contents)
            self.guard.warm()
            log.info("edge runs bundle v%d", applied.bundle.version)

    def _buffer_missing_decisions(self) -> None:
        """Decisions in the chain the buffer never took (a crash between the two writes)."""
        done = int(self.buffer.meta(BUFFERED_SEQ) or 0)
        for record in self.chain.records(after=done):
            self.buffer.put(DECISION, self.decision_topic, record.line())
            self.buffer.set_meta(BUFFERED_SEQ, str(record.seq))

    def take(self, payload: bytes, *, taken_at: float | None = None) -> bool:
        """Decide on and buffer one batch; False when the buffer refused it (keep it)."""
        taken_at = time.perf_counter() if taken_at is None else taken_at
        with self._lock:
            body = _loads(payload)
            readings = readings_of(body)
            digest = sha256(payload)
            if not self.buffer.seen(digest):  # the rules see a batch once, however often taken
                self.stats.unreadable += body is None  # refused centrally with its reason
                self.stats.points += len(readings)
                for trip in self.rules.observe(readings):
                    self._decide(trip, taken_at)
                self.buffer.mark_seen(digest)
            if not self.buffer.put(TELEMETRY, self.telemetry_topic, payload, points=len(readings)):
                self.stats.held += 1
                return False
            self.stats.batches += 1
            return True

    def _decide(self, trip: Trip, taken_at: float) -> EdgeRecord:
        applied, guard = self.applied, self.guard
        assert applied is not None and guard is not None  # no rules without a bundle
        seq = self.chain.length + 1
        at = datetime.now(UTC)
        judgement = guard.judge(trip, decision_iri(self.site, self.node, seq) + "/action", at)
        body = {
            "site": self.site,
            "edge": self.node,
            "at": at.isoformat(timespec="microseconds"),
            "rule": trip.rule.as_json(),
            "readings": [[r.time, r.value] for r in trip.readings],
            "outcome": judgement.outcome,
            "verdict": judgement.verdict,
            "reason": judgement.reason,
            "conforms": judgement.conforms,
            "messages": list(judgement.messages),
            "bundle": {
                "version": applied.bundle.version,
                "sha256": applied.sha256,
                "shapes_version": applied.contents.shapes_version,
                "graph_version": str(applied.bundle.manifest["graph_version"]),
            },
            "guard_ms": round(judgement.guard_ms, 3),
        }
        record = self.chain.append(body)
        took_ms = (time.perf_counter() - taken_at) * 1000.0
        self.stats.decide_ms.append(took_ms)
        if took_ms > self.budget_ms:
            self.stats.over_budget += 1
            log.warning(
                "edge decision %d took %.0f ms, over its %.0f ms budget (edge_over_budget)",
                record.seq,
                took_ms,
                self.budget_ms,
            )
        self.stats.decisions += 1
        log.warning(
            "edge decision %d: rule %s -> %s on %s (%s)",
            record.seq,
            trip.rule.id,
            judgement.outcome,
            trip.rule.target,
            judgement.reason,
        )
        if self.on_action is not None and judgement.outcome in ("applied", "alarm", "escalated"):
            self.on_action(record)
        self.buffer.put(DECISION, self.decision_topic, record.line())
        self.buffer.set_meta(BUFFERED_SEQ, str(record.seq))
        return record

    def poll_inbox(self, inbox: Path) -> int:
        """Take every batch file in ``inbox`` (name order); the number taken. Files the full
        buffer refused stay, later files are still decided on but wait their turn."""
        self.reload()
        taken, held = 0, False
        for path in sorted(inbox.glob("*.json")):
            started = time.perf_counter()
            try:
                payload = path.read_bytes()
            except OSError:
                continue
            if held:  # keep the order: decide now, buffer once the earlier ones are in
                self._decide_only(payload, started)
                continue
            if self.take(payload, taken_at=started):
                path.unlink()
                taken += 1
            else:
                held = True
        return taken

    def _decide_only(self, payload: bytes, started: float) -> None:
        digest = sha256(payload)
        with self._lock:
            if not self.buffer.seen(digest):
                for trip in self.rules.observe(readings_of(_loads(payload))):
                    self._decide(trip, started)
                self.buffer.mark_seen(digest)


def _loads(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None
