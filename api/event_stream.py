"""The twin's findings and decisions as MQTT events, published in the order they were committed.

Two streams, each with its own cursor file:

- **Decisions** follow the provenance chain (``kg.events``): every decision recorded after the
  cursor becomes a ``decision`` event; one waiting for a person is also an ``approval`` event,
  and one whose action was applied an ``action`` event.
- **Findings** follow the change log (``kg.outbox``): every committed transaction that created
  or changed an anomaly or an alarm, whichever way it came in (MQTT, HTTP, the CLI, a
  simulation), makes one ``finding`` event per finding with the finding as it stands when it is
  published. A finding that grows or closes later is published again, with the later entry's
  ``seq``.

Each event goes to ``twinkg/v1/{site}/evt/{kind}/{area}/{asset}`` (``connect.mqtt.topics``),
named by the tags of the asset and of its area and site in the graph, at QoS 1.

A cursor (the last chain index, or the last change log ``seq``, published) is written to its
file only after the broker has acknowledged every event of that decision or entry, so a
publisher that dies in between publishes them again: at least once. Each event carries a stable
``id`` (the decision's IRI and the event's kind; the finding's IRI and the entry's ``seq``), by
which a consumer drops the second copy. The graph is the record: an event is a notice, and its
IRIs lead back to the lineage and the evidence.

The change log keeps entries until the RDF projection has applied them and their retention has
passed (``kg.outbox.prune``). A findings publisher stopped for longer than that finds a gap: it
says so in the log (with the ``seq`` range) and goes on from the oldest entry kept. An entry
that touched more than ``kg.outbox.FULL_AT`` nodes (a seed) does not list them; it is skipped
with a warning, since no ingest transaction comes near that size.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twinkg.connect.mqtt.topics import EventKind, event_topic, work_topic
from twinkg.kg import outbox
from twinkg.kg.events import DECISIONS_AFTER, FINDINGS_AMONG, PLACES, DecisionEvent, FindingEvent
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import ConfigError

log = logging.getLogger(__name__)

UNPLACED = "unplaced"
"""The segment of a site, area or asset the graph does not give (a decision with no target)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

Publish = Callable[[str, bytes], None]


def _segment(tag: str | None, uri: str | None) -> str:
    """A topic segment for a thing: its tag, else its IRI's last part, made safe."""
    name = tag or (uri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1] if uri else "")
    name = _UNSAFE.sub("_", name)[:64].lstrip("_.-")
    return name or UNPLACED


def work_items(store: GraphStore, assets: list[str]) -> list[tuple[str, bytes]]:
    """The (topic, body) of a work item for each of ``assets``, named as events are."""
    made = []
    for row in store.read(PLACES, assets=assets):
        topic = work_topic(
            site=_segment(row["site_tag"], row["site"]),
            area=_segment(row["area_tag"], row["area"]),
            asset=_segment(row["asset_tag"], row["asset"]),
        )
        made.append((topic, json.dumps({"asset": row["asset"]}).encode()))
    return made


def events_of(decision: DecisionEvent) -> list[tuple[str, dict[str, object]]]:
    """The (topic, body) of every event a decision makes, in a fixed order."""
    kinds = [EventKind.DECISION]
    if decision.outcome == "awaiting_approval":
        kinds.append(EventKind.APPROVAL)
    elif decision.outcome == "applied" and decision.action is not None:
        kinds.append(EventKind.ACTION)
    site = _segment(decision.site_tag, decision.site)
    area = _segment(decision.area_tag, decision.area)
    asset = _segment(decision.asset_tag, decision.asset)
    made: list[tuple[str, dict[str, object]]] = []
    for kind in kinds:
        body: dict[str, object] = {
            "id": f"{decision.uri}#{kind}",
            "kind": str(kind),
            "decision": decision.uri,
            "chain_index": decision.chain_index,
            "outcome": decision.outcome,
            "reason": decision.reason,
            "planner": decision.planner,
            "at": decision.at,
            "action": decision.action,
            "action_kind": decision.action_kind,
            "asset": decision.asset,
            "area": decision.area,
            "site": decision.site,
        }
        made.append((event_topic(kind, site=site, area=area, asset=asset), body))
    return made


def finding_event(finding: FindingEvent) -> tuple[str, dict[str, object]]:
    """The (topic, body) of the ``finding`` event of a finding touched by change ``seq``."""
    topic = event_topic(
        EventKind.FINDING,
        site=_segment(finding.site_tag, finding.site),
        area=_segment(finding.area_tag, finding.area),
        asset=_segment(finding.asset_tag, finding.asset),
    )
    body: dict[str, object] = {
        "id": f"{finding.uri}#finding@{finding.seq}",
        "kind": str(EventKind.FINDING),
        "finding": finding.uri,
        "type": finding.type,
        "seq": finding.seq,
        "status": finding.status,
        "severity": finding.severity,
        "score": finding.score,
        "points": finding.points,
        "started": finding.started,
        "ended": finding.ended,
        "label": finding.label,
        "asset": finding.asset,
        "area": finding.area,
        "site": finding.site,
    }
    return topic, body


@dataclass(frozen=True, slots=True)
class CursorFile:
    """A position kept in a file, replaced whole so a reader sees the old or the new."""

    path: Path

    def read(self) -> int:
        """The position (0 when the file is absent)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            raise ConfigError(f"{self.path} holds no position: {text[:40]!r}")
        return int(text)

    def advance(self, position: int) -> None:
        """Write ``position``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(f"{position}\n", encoding="ascii")
        temporary.replace(self.path)


@dataclass(slots=True)
class EventPublisher:
    """Publishes the decisions recorded after the cursor kept in ``cursor_file`` and, when
    ``findings_cursor_file`` is given, the findings committed after the change log position
    kept there."""

    store: GraphStore
    publish: Publish
    cursor_file: Path
    findings_cursor_file: Path | None = None
    batch: int = 500

    def cursor(self) -> int:
        """The last chain index published (0 when none was)."""
        return CursorFile(self.cursor_file).read()

    def findings_cursor(self) -> int:
        """The last change log ``seq`` whose findings were published (0 when none was)."""
        if self.findings_cursor_file is None:
            return 0
        return CursorFile(self.findings_cursor_file).read()

    def publish_new(self) -> int:
        """Publish the events of every decision, then of every finding, committed since the
        cursors; the number of events published. A failed publish raises and leaves the cursor
        before that decision or change."""
        return self.publish_decisions() + self.publish_findings()

    def publish_decisions(self) -> int:
        """Publish the events of every decision recorded since the cursor; how many."""
        cursor = CursorFile(self.cursor_file)
        published = 0
        while True:
            rows = self.store.read(DECISIONS_AFTER, after=cursor.read(), limit=self.batch)
            if not rows:
                return published
            for row in rows:
                decision = DecisionEvent.from_row(row)
                for topic, body in events_of(decision):
                    self.publish(topic, json.dumps(body, ensure_ascii=False).encode())
                    published += 1
                cursor.advance(decision.chain_index)

    def publish_findings(self) -> int:
        """Publish a ``finding`` event for each anomaly and alarm touched by a change log entry
        since the cursor; how many (0 without ``findings_cursor_file``)."""
        if self.findings_cursor_file is None:
            return 0
        cursor = CursorFile(self.findings_cursor_file)
        published = 0
        while True:
            after = cursor.read()
            changes = outbox.changes_after(self.store, after, limit=self.batch)
            if not changes:
                return published
            if changes[0].seq > after + 1:
                log.warning(
                    "change log entries %d to %d were pruned before their findings were "
                    "published: findings committed then have no event",
                    after + 1,
                    changes[0].seq - 1,
                )
            among = sorted({uri for change in changes for uri in change.uris})
            rows = {r["uri"]: r for r in self.store.read(FINDINGS_AMONG, uris=among)}
            for change in changes:
                if change.full:
                    log.warning(
                        "change log entry %d touched more than %d nodes and does not list "
                        "them: its findings, if any, have no event",
                        change.seq,
                        outbox.FULL_AT,
                    )
                for uri in change.uris:
                    if uri in rows:
                        topic, body = finding_event(FindingEvent.from_row(change.seq, rows[uri]))
                        self.publish(topic, json.dumps(body, ensure_ascii=False).encode())
                        published += 1
                cursor.advance(change.seq)
