"""The twin's decisions as MQTT events, published in the order they were recorded.

A publisher follows the provenance chain (``kg.events``): every decision recorded after its
cursor becomes a ``decision`` event; one waiting for a person is also an ``approval`` event,
and one whose action was applied an ``action`` event. Each goes to
``twinkg/v1/{site}/evt/{kind}/{area}/{asset}`` (``connect.mqtt.topics``), named by the tags of
the target asset and of its area and site in the graph, at QoS 1.

The cursor (the last chain index published) is written to a file only after the broker has
acknowledged every event of that decision, so a publisher that dies in between publishes them
again: at least once. Each event carries a stable ``id`` (the decision's IRI and the event's
kind), by which a consumer drops the second copy. The decisions themselves are the record:
an event is a notice of one, and ``chain_index`` and ``uri`` lead back to its lineage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twinkg.connect.mqtt.topics import EventKind, event_topic, work_topic
from twinkg.kg.events import DECISIONS_AFTER, PLACES, DecisionEvent
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import ConfigError

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


@dataclass(slots=True)
class EventPublisher:
    """Publishes what was recorded after the cursor kept in ``cursor_file``."""

    store: GraphStore
    publish: Publish
    cursor_file: Path
    batch: int = 500

    def cursor(self) -> int:
        """The last chain index published (0 when none was)."""
        try:
            text = self.cursor_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            raise ConfigError(f"{self.cursor_file} holds no chain index: {text[:40]!r}")
        return int(text)

    def _advance(self, index: int) -> None:
        self.cursor_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.cursor_file.with_suffix(".tmp")
        temporary.write_text(f"{index}\n", encoding="ascii")
        temporary.replace(self.cursor_file)  # a reader sees the old or the new, never half

    def publish_new(self) -> int:
        """Publish the events of every decision recorded since the cursor; the number of
        events published. A failed publish raises and leaves the cursor before that decision."""
        published = 0
        while True:
            rows = self.store.read(DECISIONS_AFTER, after=self.cursor(), limit=self.batch)
            if not rows:
                return published
            for row in rows:
                decision = DecisionEvent.from_row(row)
                for topic, body in events_of(decision):
                    self.publish(topic, json.dumps(body, ensure_ascii=False).encode())
                    published += 1
                self._advance(decision.chain_index)
