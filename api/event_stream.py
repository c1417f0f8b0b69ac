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

Reading is apart from publishing: :func:`decision_events` and :func:`finding_events` give the
events past a cursor, grouped by the decision or change log entry that made them, each group
with the cursor once it is out. :class:`EventPublisher` sends them to the broker; the HTTP
route ``GET /events`` (``api.http.events``) streams the same events as server-sent events.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from twinkg.connect.mqtt.topics import EventKind, event_topic, work_topic
from twinkg.kg import outbox
from twinkg.kg.events import (
    DECISIONS_AFTER,
    EVENT_HEADS,
    FINDINGS_AMONG,
    PLACES,
    DecisionEvent,
    FindingEvent,
)
from twinkg.kg.provenance import CHAIN_IRI
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


@dataclass(frozen=True, slots=True)
class Place:
    """A site, area or asset as an event names it: its IRI (``None`` when the graph gives none)
    and its topic segment (its tag, else its IRI's last part; :data:`UNPLACED` for none)."""

    uri: str | None
    segment: str

    @classmethod
    def of(cls, tag: str | None, uri: str | None) -> Place:
        """The place of the thing with ``tag`` and ``uri``."""
        return cls(uri, _segment(tag, uri))

    def named(self, names: frozenset[str]) -> bool:
        """Whether one of ``names`` is this place's IRI or its segment."""
        return self.segment in names or (self.uri is not None and self.uri in names)


@dataclass(frozen=True, slots=True)
class Event:
    """One event as it is published: its kind, MQTT topic and JSON body, and the area and asset
    it is about (what its topic names)."""

    kind: EventKind
    topic: str
    body: dict[str, object]
    area: Place
    asset: Place


@dataclass(frozen=True, slots=True)
class EventGroup:
    """The events one decision or one change log entry makes, in their fixed order (none for an
    entry that touched no finding), and ``cursor``: its chain index or ``seq``, the cursor once
    they are all out."""

    cursor: int
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Heads:
    """The newest decision's chain index and the change log's last ``seq`` (0 when none): where
    a reader that wants only what comes next starts."""

    decisions: int
    changes: int


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


def events_of(decision: DecisionEvent) -> list[Event]:
    """Every event a decision makes, in a fixed order: ``decision``, then ``approval`` when it
    waits for a person or ``action`` when its action was applied."""
    kinds = [EventKind.DECISION]
    if decision.outcome == "awaiting_approval":
        kinds.append(EventKind.APPROVAL)
    elif decision.outcome == "applied" and decision.action is not None:
        kinds.append(EventKind.ACTION)
    site = _segment(decision.site_tag, decision.site)
    area = Place.of(decision.area_tag, decision.area)
    asset = Place.of(decision.asset_tag, decision.asset)
    made: list[Event] = []
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
        topic = event_topic(kind, site=site, area=area.segment, asset=asset.segment)
        made.append(Event(kind, topic, body, area, asset))
    return made


def finding_event(finding: FindingEvent) -> Event:
    """The ``finding`` event of a finding touched by change ``seq``."""
    area = Place.of(finding.area_tag, finding.area)
    asset = Place.of(finding.asset_tag, finding.asset)
    topic = event_topic(
        EventKind.FINDING,
        site=_segment(finding.site_tag, finding.site),
        area=area.segment,
        asset=asset.segment,
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
    return Event(EventKind.FINDING, topic, body, area, asset)


def heads(store: GraphStore) -> Heads:
    """The newest decision's chain index and the change log's last ``seq``."""
    row = store.read(EVENT_HEADS, chain=CHAIN_IRI)[0]
    return Heads(int(row["decisions"]), int(row["changes"]))


def decision_events(store: GraphStore, after: int, *, limit: int) -> list[EventGroup]:
    """The events of the decisions recorded after chain index ``after``, at most ``limit``
    decisions, oldest first: one group per decision, its cursor the decision's chain index."""
    rows = store.read(DECISIONS_AFTER, after=after, limit=limit)
    decisions = [DecisionEvent.from_row(row) for row in rows]
    return [EventGroup(d.chain_index, tuple(events_of(d))) for d in decisions]


def finding_events(store: GraphStore, after: int, *, limit: int) -> list[EventGroup]:
    """The ``finding`` events of the change log entries after ``seq`` ``after``, at most
    ``limit`` entries, in ``seq`` order: one group per entry (empty when it touched no finding),
    its cursor the entry's ``seq``, each finding as it stands now. Entries pruned before they
    were read, and entries too large to list what they touched, are logged as warnings."""
    changes = outbox.changes_after(store, after, limit=limit)
    if not changes:
        return []
    if changes[0].seq > after + 1:
        log.warning(
            "change log entries %d to %d were pruned before their findings were "
            "published: findings committed then have no event",
            after + 1,
            changes[0].seq - 1,
        )
    among = sorted({uri for change in changes for uri in change.uris})
    rows = {r["uri"]: r for r in store.read(FINDINGS_AMONG, uris=among)}
    groups = []
    for change in changes:
        if change.full:
            log.warning(
                "change log entry %d touched more than %d nodes and does not list "
                "them: its findings, if any, have no event",
                change.seq,
                outbox.FULL_AT,
            )
        events = tuple(
            finding_event(FindingEvent.from_row(change.seq, rows[uri]))
            for uri in change.uris
            if uri in rows
        )
        groups.append(EventGroup(change.seq, events))
    return groups


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


class GroupReader(Protocol):
    """What reads event groups past a cursor: :func:`decision_events`, :func:`finding_events`."""

    def __call__(self, store: GraphStore, after: int, *, limit: int) -> list[EventGroup]: ...


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
        return self._drain(CursorFile(self.cursor_file), decision_events)

    def publish_findings(self) -> int:
        """Publish a ``finding`` event for each anomaly and alarm touched by a change log entry
        since the cursor; how many (0 without ``findings_cursor_file``)."""
        if self.findings_cursor_file is None:
            return 0
        return self._drain(CursorFile(self.findings_cursor_file), finding_events)

    def _drain(self, cursor: CursorFile, read: GroupReader) -> int:
        """Publish what ``read`` gives past ``cursor``, batch after batch, advancing the cursor
        after each group's events are all out; how many events."""
        published = 0
        while True:
            groups = read(self.store, cursor.read(), limit=self.batch)
            if not groups:
                return published
            for group in groups:
                for event in group.events:
                    self.publish(event.topic, json.dumps(event.body, ensure_ascii=False).encode())
                    published += 1
                cursor.advance(group.cursor)
