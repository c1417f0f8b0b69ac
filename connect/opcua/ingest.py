"""Telemetry from an OPC UA server by subscription (OPC 10000-4 §5.13 Subscriptions, §5.12
MonitoredItems), as JSON batches of the telemetry contract (decision 0058).

:func:`bind` checks a mapping against the graph: every mapped sensor exists (an asset and
quantity kind name exactly one) and reports in the unit the entry gives. :class:`OpcUaIngest`
connects securely, resolves the mapped NodeIds, subscribes to their data changes (a queue per
item, so no change between two publishes is lost) and turns each DataChangeNotification into a
point: the sensor and unit from the mapping, the value as the server gave it, the *source*
timestamp, and the StatusCode's severity as the quality. A batch goes to ``sink`` every
``batch_points`` points or ``batch_ms`` milliseconds: the sink is the same way in as
``POST /telemetry`` (``api/opcua_ingest.py``), so a value of the wrong type, out of range or
out of order is quarantined by the contract with its reason. A lost connection is retried with
exponential back-off and the subscription made again; nothing stops the loop but ``stop``,
the duration or the point limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from twinkg.connect.opcua.mapping import OpcUaMapping, TelemetryEntry
from twinkg.kg import actuation, telemetry_state
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import OpcUaError, OpcUaMappingError, OpcUaUntrustedError, TwinKGError

log = logging.getLogger(__name__)

CONTRACT: Final = "telemetry@1.0.0"
QUEUE_SIZE: Final = 100
"""Changes the server keeps per monitored item between two publishes."""

Secure = Callable[[Client], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Binding:
    """A telemetry entry with its sensor resolved in the graph."""

    entry: TelemetryEntry
    sensor: str
    last_observed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """How the subscription runs and batches are cut."""

    publishing_interval_ms: float = 500.0
    batch_points: int = 500
    batch_ms: float = 1000.0
    timeout_s: float = 10.0
    reconnect_max_s: float = 30.0
    reconnect_min_s: float = 1.0  # the first back-off, doubled on each failed try
    producer: str = "opcua"


@dataclass(frozen=True, slots=True)
class SinkOutcome:
    """What the twin did with one batch: applied (with counts), a duplicate, or refused whole
    with a stable code."""

    accepted: int = 0
    quarantined: int = 0
    duplicate: bool = False
    code: str | None = None
    reason: str | None = None


Sink = Callable[[bytes], SinkOutcome]


@dataclass
class IngestStats:
    """Counts of one run."""

    notifications: int = 0
    points: int = 0
    batches: int = 0
    accepted: int = 0
    quarantined: int = 0
    refused_batches: int = 0
    repeats: int = 0  # a subscription's first value, already stored before
    not_good: int = 0  # values whose StatusCode was Uncertain or Bad (logged)
    connects: int = 0
    lost: int = 0
    codes: dict[str, int] = field(default_factory=dict)


def bind(store: GraphStore, mapping: OpcUaMapping) -> list[Binding]:
    """Each telemetry entry with its sensor; :class:`OpcUaMappingError` naming the entry when a
    sensor is not in the graph, an asset and quantity kind name none or several, or the
    sensor reports in another unit."""
    pairs = [(e.asset, e.quantity_kind) for e in mapping.telemetry if e.sensor is None]
    found = actuation.sensors_of(store, [(a, k) for a, k in pairs if a and k]) if pairs else {}
    chosen: list[tuple[TelemetryEntry, str]] = []
    for i, entry in enumerate(mapping.telemetry):
        where = f"{mapping.source}: telemetry[{i}] ({entry.node})"
        if entry.sensor is not None:
            chosen.append((entry, entry.sensor))
            continue
        sensors = found.get((entry.asset or "", entry.quantity_kind or ""), [])
        if len(sensors) != 1:
            many = f"{len(sensors)} sensors" if sensors else "no sensor"
            raise OpcUaMappingError(f"{where}: {many} of {entry.names} in the graph; name one")
        chosen.append((entry, sensors[0]))
    rows = {r.uri: r for r in telemetry_state.sensors(store, [s for _, s in chosen])}
    bindings: list[Binding] = []
    for i, (entry, sensor) in enumerate(chosen):
        where = f"{mapping.source}: telemetry[{i}] ({entry.node})"
        row = rows.get(sensor)
        if row is None:
            raise OpcUaMappingError(f"{where}: sensor {sensor} is not in the graph")
        if row.unit is not None and row.unit != entry.unit:
            raise OpcUaMappingError(
                f"{where}: unit {entry.unit} is not the sensor's unit {row.unit}"
            )
        bindings.append(Binding(entry, sensor, row.last_observed_at))
    if len({b.sensor for b in bindings}) != len(bindings):
        raise OpcUaMappingError(f"{mapping.source}: two entries feed the same sensor")
    return bindings


async def resolve_node(client: Client, text: str) -> Node:
    """The client's node for a mapping's NodeId text (a namespace URI looked up in the
    server's NamespaceArray); :class:`OpcUaMappingError` when the server lacks the namespace."""
    parsed = ua.NodeId.from_string(text)
    uri = getattr(parsed, "NamespaceUri", None)
    if not uri:
        return client.get_node(parsed)
    try:
        index = await client.get_namespace_index(uri)
    except ValueError:
        raise OpcUaMappingError(f"{text}: the server has no namespace {uri!r}") from None
    return client.get_node(ua.NodeId.from_string(f"ns={index};{text.split(';', 1)[1]}"))


def _quality(status: ua.StatusCode | None) -> str:
    if status is None or status.is_good():
        return "good"
    return "uncertain" if status.is_uncertain() else "bad"


def _json_value(variant: ua.Variant | None) -> Any:
    """The value as JSON: a finite number as is; anything else as text, which the contract
    quarantines as not a number (never dropped, never coerced)."""
    value = None if variant is None else variant.Value
    if isinstance(value, bool):
        return value  # the contract says "a boolean, not a number"
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None:
        return None
    return value if isinstance(value, str) else repr(value)


def _time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Collector:
    """The subscription's handler: each data change becomes a point waiting for the next
    flush."""

    def __init__(self, ingest: OpcUaIngest, by_node: dict[ua.NodeId, Binding]) -> None:
        self.ingest = ingest
        self.by_node = by_node
        self.first: set[ua.NodeId] = set(by_node)  # each item's first value is the current one

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        """One data change of a mapped variable (asyncua calls this in the event loop)."""
        del val
        binding = self.by_node.get(node.nodeid)
        if binding is None:
            return
        first = node.nodeid in self.first
        self.first.discard(node.nodeid)
        self.ingest.take(binding, data.monitored_item.Value, first=first)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        """The server ended the subscription (asyncua calls this on a lost connection too)."""
        log.warning("opcua subscription status: %s", status.Status)
        self.ingest.lost.set()


class OpcUaIngest:
    """Subscribes to the mapped variables of one server and ingests their changes."""

    def __init__(
        self,
        url: str,
        bindings: Sequence[Binding],
        *,
        secure: Secure,
        sink: Sink,
        options: IngestOptions | None = None,
    ) -> None:
        self.url = url
        self.bindings = list(bindings)
        self.secure = secure
        self.sink = sink
        self.options = options or IngestOptions()
        self.stats = IngestStats()
        self.pending: list[dict[str, Any]] = []
        self.oldest: float | None = None
        self.lost = asyncio.Event()
        self.changed = asyncio.Event()
        self.last_seen = {b.sensor: b.last_observed_at for b in self.bindings}

    # -- points ---------------------------------------------------------------------------

    def take(self, binding: Binding, value: ua.DataValue, *, first: bool) -> None:
        """Queue the point of one data change."""
        self.stats.notifications += 1
        moment = value.SourceTimestamp or value.ServerTimestamp
        seen = self.last_seen.get(binding.sensor)
        if first and moment is not None and seen is not None and _aware(moment) <= seen:
            self.stats.repeats += 1  # the current value a new subscription sends, stored before
            return
        status = value.StatusCode
        if status is not None and not status.is_good():
            self.stats.not_good += 1
            node, sensor = binding.entry.node, binding.sensor
            log.warning("opcua_status_not_good: %s on %s (%s)", status.name, node, sensor)
        point = {
            "sensor": binding.sensor,
            "unit": binding.entry.unit,
            "time": _time(moment),
            "value": _json_value(value.Value),
            "quality": _quality(status),
        }
        self.pending.append({k: v for k, v in point.items() if v is not None})
        if moment is not None:
            self.last_seen[binding.sensor] = max(_aware(moment), seen or _aware(moment))
        if self.oldest is None:
            self.oldest = time.monotonic()
        if len(self.pending) >= self.options.batch_points:
            self.changed.set()

    def _due(self) -> bool:
        if not self.pending:
            return False
        if len(self.pending) >= self.options.batch_points:
            return True
        waited = time.monotonic() - (self.oldest or time.monotonic())
        return waited * 1000 >= self.options.batch_ms

    async def flush(self) -> None:
        """Send what is pending as batches of at most ``batch_points`` points; a batch the
        store could not take stays pending for the next flush."""
        while self.pending:
            points = self.pending[: self.options.batch_points]
            body = json.dumps(
                {"contract": CONTRACT, "producer": self.options.producer, "points": points},
                ensure_ascii=True,
                separators=(",", ":"),
            ).encode()
            try:
                outcome = await asyncio.to_thread(self.sink, body)
            except TwinKGError as exc:  # the store or the log: keep the points, try again
                log.warning("opcua batch not stored, kept for retry: %s (%s)", exc, exc.code)
                self.oldest = time.monotonic()
                return
            del self.pending[: len(points)]
            self.oldest = time.monotonic() if self.pending else None
            self._count(outcome, len(points))

    def _count(self, outcome: SinkOutcome, points: int) -> None:
        self.stats.batches += 1
        self.stats.points += points
        if outcome.code is not None:
            self.stats.refused_batches += 1
            self.stats.codes[outcome.code] = self.stats.codes.get(outcome.code, 0) + 1
            log.warning("opcua batch refused: %s (%s)", outcome.reason, outcome.code)
            return
        self.stats.accepted += outcome.accepted
        self.stats.quarantined += outcome.quarantined

    # -- the connection -------------------------------------------------------------------

    async def _connect(self) -> tuple[Client, Subscription]:
        client = Client(self.url, timeout=self.options.timeout_s)
        client.session_timeout = 60_000
        await self.secure(client)
        self.lost.clear()

        async def on_lost(exc: Exception) -> None:
            log.warning("opcua connection to %s lost: %r", self.url, exc)
            self.lost.set()

        client.connection_lost_callback = on_lost
        await client.connect()
        try:
            subscription = await self._subscribe(client)
        except BaseException:
            await _quietly(client.disconnect())
            raise
        self.stats.connects += 1
        return client, subscription

    async def _subscribe(self, client: Client) -> Subscription:
        nodes = [await resolve_node(client, b.entry.node) for b in self.bindings]
        by_node = {n.nodeid: b for n, b in zip(nodes, self.bindings, strict=True)}
        handler = _Collector(self, by_node)
        subscription = await client.create_subscription(
            self.options.publishing_interval_ms, handler
        )
        results = await subscription.subscribe_data_change(
            nodes, queuesize=QUEUE_SIZE, sampling_interval=ua.Double(0.0)
        )
        for binding, result in zip(self.bindings, results, strict=True):
            if isinstance(result, ua.StatusCode):
                raise OpcUaMappingError(
                    f"{binding.entry.node}: the server refused to monitor it ({result.name})"
                )
        return subscription

    async def run(
        self,
        *,
        stop: asyncio.Event | None = None,
        max_points: int | None = None,
        duration_s: float | None = None,
    ) -> IngestStats:
        """Ingest until ``stop`` is set, ``duration_s`` passed or ``max_points`` points were
        sent. The first connection failing is an error (:class:`OpcUaError`, or
        :class:`OpcUaUntrustedError` for a refused certificate); later losses are retried
        with back-off."""
        stop = stop or asyncio.Event()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        first, _ = await self._first_connect()
        client: Client | None = first
        delay = self.options.reconnect_min_s
        try:
            while not self._finished(stop, deadline, max_points):
                if self.lost.is_set() or client is None:
                    if client is not None:
                        self.stats.lost += 1
                        await _quietly(client.disconnect())
                        client = None
                    try:
                        client, _ = await self._connect()
                        delay = self.options.reconnect_min_s
                        log.warning("opcua reconnected to %s and subscribed again", self.url)
                    except (OSError, TimeoutError, UaError, OpcUaError) as exc:
                        log.warning("opcua reconnect failed (%r); next try in %.0f s", exc, delay)
                        await _wait(stop, min(delay, _left(deadline)))
                        delay = min(delay * 2, self.options.reconnect_max_s)
                        continue
                await self._tick(stop, deadline)
                if self._due() or (max_points is not None and self._enough(max_points)):
                    await self.flush()
        finally:
            await self.flush()
            if client is not None:
                await _quietly(client.disconnect())
        return self.stats

    async def _first_connect(self) -> tuple[Client, Subscription]:
        try:
            return await self._connect()
        except (OpcUaError, OpcUaMappingError):
            raise
        except UaStatusCodeError as exc:
            name = ua.StatusCode(exc.code).name
            if "Certificate" in name or "Security" in name or "UserAccessDenied" in name:
                raise OpcUaUntrustedError(f"{self.url}: the server refused us ({name})") from None
            raise OpcUaError(f"{self.url}: {name}") from None
        except TimeoutError:
            raise OpcUaError(
                f"{self.url}: no answer within {self.options.timeout_s:g} s (the server is "
                "unreachable, or its certificate is not the one pinned)"
            ) from None
        except (OSError, UaError) as exc:
            raise OpcUaError(f"{self.url}: cannot connect ({_said(exc)})") from None

    async def _tick(self, stop: asyncio.Event, deadline: float | None) -> None:
        """Wait until points may be due, the connection is lost, or it is time to stop."""
        wait_s = min(self.options.batch_ms / 1000, 0.25, _left(deadline))
        self.changed.clear()
        waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self.lost, self.changed)]
        try:
            await asyncio.wait(
                waiters, timeout=max(wait_s, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _enough(self, max_points: int) -> bool:
        return self.stats.points + len(self.pending) >= max_points

    def _finished(
        self, stop: asyncio.Event, deadline: float | None, max_points: int | None
    ) -> bool:
        if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
            return True
        return max_points is not None and self.stats.points >= max_points


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _left(deadline: float | None) -> float:
    return 3600.0 if deadline is None else max(deadline - time.monotonic(), 0.0)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception as exc:  # a connection already gone: nothing more to close
        log.debug("opcua disconnect: %r", exc)


def _said(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
