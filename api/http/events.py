"""Route: the twin's findings, decisions, approval requests and applied actions as they happen,
as server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html).

The events are the MQTT events of :mod:`api.event_stream`, read the same way (decisions by chain
index, findings by the change log), with the same bodies; each carries its MQTT topic too.

An event's ``id`` is where the stream stands in both sources, ``D.C``: the decisions by chain
index and the change log by ``seq``. A part is ``N`` (all the events of decision or entry ``N``
and those before it were sent) or ``N:K`` (those before ``N`` and the first ``K`` events of
``N``, in their fixed order: a decision's ``decision`` event, then its ``approval`` or
``action``; an entry's findings by IRI). Given back (``Last-Event-ID``, or ``since``), it
resumes the stream after that event, with nothing repeated and nothing left out.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool

from twinkg.api import event_stream
from twinkg.api.event_stream import Event, EventGroup, GroupReader
from twinkg.api.http.auth import requires
from twinkg.api.http.deps import TwinDep
from twinkg.api.http.errors import STREAM_ERRORS
from twinkg.api.security import Permission, Principal
from twinkg.connect.mqtt.topics import EventKind
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import InvalidInputError, TwinKGError

router = APIRouter(tags=["events"])
_log = logging.getLogger(__name__)

BATCH = 200
"""Most decisions, and most change log entries, read at once."""
START = "start"
"""The ``since`` that replays from the first decision and the oldest change log entry kept."""
_PART = r"([0-9]{1,18})(?::([0-9]{1,6}))?"
_CURSOR = re.compile(rf"{_PART}\.{_PART}")
_KINDS = ", ".join(kind.value for kind in EventKind)
MAX_NAMES = 256
"""Most areas, and most assets, one stream may name."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
"""An area or asset in a filter: its IRI or its tag."""


@dataclass(frozen=True, slots=True)
class Mark:
    """Where a stream stands in one source: every event of ``index`` and before sent, or, with
    ``part``, those before ``index`` and the first ``part`` events of ``index``."""

    index: int
    part: int | None = None

    @property
    def after(self) -> int:
        """The cursor to read the source from."""
        return self.index if self.part is None else self.index - 1

    def __str__(self) -> str:
        return str(self.index) if self.part is None else f"{self.index}:{self.part}"


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a stream stands in both sources: an event's ``id``."""

    decisions: Mark
    changes: Mark

    def __str__(self) -> str:
        return f"{self.decisions}.{self.changes}"


def parse_cursor(text: str, *, what: str) -> Cursor:
    """The cursor ``text`` names (``D.C``, each part ``N`` or ``N:K``, K ≥ 1), or
    :class:`InvalidInputError` saying what ``what`` should look like."""
    found = _CURSOR.fullmatch(text)
    if found is None:
        raise InvalidInputError(
            f"{what} must be an event id such as '12.340' or '12:1.340' (or {START!r} for "
            f"since), not {text[:40]!r}"
        )
    marks = []
    for index, part in (found.group(1, 2), found.group(3, 4)):
        mark = Mark(int(index), None if part is None else int(part))
        if mark.part is not None and (mark.part < 1 or mark.index < 1):
            raise InvalidInputError(
                f"{what} {text!r} is not an event id: in a part N:K, N and K are at least 1"
            )
        marks.append(mark)
    return Cursor(*marks)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a stream sends: those of ``kinds`` about one of ``areas`` and one of
    ``assets`` (each an IRI or a topic segment); an empty set asks nothing of that part."""

    kinds: frozenset[EventKind]
    areas: frozenset[str]
    assets: frozenset[str]

    def keeps(self, event: Event) -> bool:
        """Whether ``event`` passes."""
        return (
            (not self.kinds or event.kind in self.kinds)
            and (not self.areas or event.area.named(self.areas))
            and (not self.assets or event.asset.named(self.assets))
        )


def event_filter(
    kind: Annotated[
        list[str] | None,
        Query(
            max_length=len(EventKind),
            description=f"only events of these kinds ({_KINDS}); repeatable",
        ),
    ] = None,
    area: Annotated[
        list[Name] | None,
        Query(
            max_length=MAX_NAMES,
            description="only events about these areas: an area's IRI or its tag (the topic "
            "segment; `unplaced` for events about no area); repeatable",
        ),
    ] = None,
    asset: Annotated[
        list[Name] | None,
        Query(
            max_length=MAX_NAMES,
            description="only events about these assets: an asset's IRI or its tag; repeatable",
        ),
    ] = None,
) -> EventFilter:
    """The filter the query asks for; 400 for a kind that is not one."""
    kinds = set()
    for name in kind or ():
        try:
            kinds.add(EventKind(name))
        except ValueError:
            raise InvalidInputError(f"kind must be one of {_KINDS}, not {name[:40]!r}") from None
    return EventFilter(frozenset(kinds), frozenset(area or ()), frozenset(asset or ()))


def start_cursor(
    twin: TwinDep,
    since: Annotated[
        str | None,
        Query(
            description="the id of the last event seen, or `start` for every event from the "
            "first; absent: only events from now on"
        ),
    ] = None,
    last_event: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="resume after this event (what an EventSource sends on reconnecting); "
            "wins over `since`",
        ),
    ] = None,
) -> Cursor:
    """Where the stream starts, fixed before the response starts (so an event committed once
    the caller has the headers is sent); 400 for a malformed id or one past the newest event."""
    heads = event_stream.heads(twin.store)
    header = (last_event or "").strip()
    text, what = (header, "Last-Event-ID") if header else (since, "since")
    if text is None:
        return Cursor(Mark(heads.decisions), Mark(heads.changes))
    if what == "since" and text == START:
        return Cursor(Mark(0), Mark(0))
    cursor = parse_cursor(text, what=what)
    if cursor.decisions.index > heads.decisions or cursor.changes.index > heads.changes:
        raise InvalidInputError(
            f"{what} {text!r} is past the newest event ({heads.decisions}.{heads.changes}): "
            "it was not given by this twin's graph"
        )
    return cursor


def kept(groups: list[EventGroup], start: Mark, keep: EventFilter) -> list[tuple[Event, Mark]]:
    """The events of ``groups`` (read past ``start``) that ``keep`` passes, each with the mark
    once it is sent: ``N`` when no later event of its group passes, else ``N:K``."""
    chosen: list[tuple[Event, Mark]] = []
    for group in groups:
        skip = start.part if start.part is not None and group.cursor == start.index else 0
        passing = [
            (number, event)
            for number, event in enumerate(group.events, 1)
            if number > skip and keep.keeps(event)
        ]
        for place, (number, event) in enumerate(passing, 1):
            last = place == len(passing)
            chosen.append((event, Mark(group.cursor, None if last else number)))
    return chosen


@router.get("/events", response_class=EventSourceResponse, responses=STREAM_ERRORS)
async def events(
    _: Annotated[Principal, Depends(requires(Permission.READ))],
    twin: TwinDep,
    keep: Annotated[EventFilter, Depends(event_filter)],
    start: Annotated[Cursor, Depends(start_cursor)],
    request: Request,
) -> AsyncIterator[ServerSentEvent]:
    """Findings, decisions, approval requests and applied actions as they are committed, as
    server-sent events: ``event`` is the kind (``finding``, ``decision``, ``approval``,
    ``action``), ``data`` the JSON body the MQTT event carries plus its ``topic``, ``id`` a
    cursor to resume after it (``Last-Event-ID`` or ``since``). Decisions come before findings
    read in the same poll. An idle stream sends a comment now and then. When Neo4j cannot be
    read, the stream sends one ``error`` event (its code, and the id to resume after) and ends."""
    store, settings = twin.store, twin.settings
    position, quiet_since = start, time.monotonic()
    while not await request.is_disconnected():
        try:
            heads = await run_in_threadpool(event_stream.heads, store)
            decisions = await _poll(
                store, event_stream.decision_events, position.decisions, heads.decisions, keep
            )
            changes = await _poll(
                store, event_stream.finding_events, position.changes, heads.changes, keep
            )
        except TwinKGError as exc:  # Neo4j went away: say so, end; the client resumes later
            _log.warning("event stream ended at %s: %s", position, exc)
            yield ServerSentEvent(
                data={"code": exc.code, "message": str(exc), "resume_after": str(position)},
                event="error",
            )
            return
        for event, mark in decisions.events:
            position = Cursor(mark, position.changes)
            yield _sent(event, position)
        position = Cursor(decisions.end, position.changes)
        for event, mark in changes.events:
            position = Cursor(position.decisions, mark)
            yield _sent(event, position)
        position = Cursor(position.decisions, changes.end)
        if decisions.events or changes.events:
            quiet_since = time.monotonic()
        if decisions.full or changes.full:
            continue  # more to read at once
        if time.monotonic() - quiet_since >= settings.events_keepalive_s:
            quiet_since = time.monotonic()
            yield ServerSentEvent(comment="keep-alive")
        await asyncio.sleep(settings.events_poll_s)


@dataclass(frozen=True, slots=True)
class _Poll:
    """What one read of a source gave: the events to send with their marks, the mark once all
    groups read are done, and whether the read was a full batch (more may wait)."""

    events: list[tuple[Event, Mark]]
    end: Mark
    full: bool


async def _poll(
    store: GraphStore, read: GroupReader, mark: Mark, head: int, keep: EventFilter
) -> _Poll:
    """Read a source past ``mark`` (not at all when its head says nothing is new)."""
    if head <= mark.after:
        return _Poll([], mark, full=False)
    groups = await run_in_threadpool(lambda: read(store, mark.after, limit=BATCH))
    end = Mark(groups[-1].cursor) if groups else mark
    return _Poll(kept(groups, mark, keep), end, full=len(groups) == BATCH)


def _sent(event: Event, position: Cursor) -> ServerSentEvent:
    """The server-sent event of ``event``, which leaves the stream at ``position``."""
    data = {**event.body, "topic": event.topic}
    return ServerSentEvent(data=data, event=event.kind.value, id=str(position))
