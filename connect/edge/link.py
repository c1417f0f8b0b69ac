"""The edge's link to the central broker: forward what the buffer holds, in order, and delete
what the twin's receipts confirm.

The link connects as the site's producer (its certificate from ``twinkg broker issue``) with a
persistent session, subscribes to its receipt topic (``twinkg/v1/{site}/ack/{node}``), and
publishes buffered entries oldest first at QoS 1, at most ``window`` unconfirmed at a time.
On every new connection everything unconfirmed goes again (what a broker killed outright had
acknowledged but not saved is lost with it), and an entry still unconfirmed ``resend_s`` after
it was sent goes again as a last resort: the twin applies a repeat once (telemetry by its
content hash, decisions by their IRI), so repeats cost time, never data. A receipt names the
SHA-256 of what was stored; a refusal (kept centrally in the dead letters with its reason) is
logged and counted, and ends the entry too, except ``edge_out_of_order``, which waits for its
predecessor. While the broker cannot be reached the link retries every ``retry_s`` and the
buffer fills.

A broker restarted without its saved sessions routes what the edge sends before the twin's
ingest worker has subscribed again to no one, though the broker acknowledges it. So the link
also follows the ingest workers' retained state announcements (``twinkg/v1/state/twin/+``): each one
says a subscription is (again) in place, and everything unconfirmed goes again at once instead
of after ``resend_s`` (decision 0065).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho

from twinkg.connect.edge.buffer import EdgeBuffer
from twinkg.connect.mqtt.client import Message, Subscriber
from twinkg.connect.mqtt.endpoint import MqttEndpoint
from twinkg.connect.mqtt.topics import STATE_FILTER, receipt_topic
from twinkg.ontology.errors import TwinKGError

log = logging.getLogger("twinkg.edge")

RETRY_LATER = "edge_out_of_order"


@dataclass(slots=True)
class LinkState:
    """What the link knows: up or down, since when, and the last receipt."""

    up: bool = False
    changed_at: float = 0.0
    last_forwarded: str | None = None
    confirmed: int = 0
    refused: int = 0
    connects: int = 0
    announcements: int = 0  # ingest workers that said their subscription is (again) in place


class EdgeLink:
    """Forwards one edge's buffer to the central broker (run it on its own thread)."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        buffer: EdgeBuffer,
        *,
        site: str,
        node: str,
        window: int = 64,
        resend_s: float = 120.0,
        retry_s: float = 1.0,
    ) -> None:
        self.endpoint = endpoint
        self.buffer = buffer
        self.site, self.node = site, node
        self.window, self.resend_s, self.retry_s = window, resend_s, retry_s
        self.state = LinkState(changed_at=time.monotonic())
        self._subscriber: Subscriber | None = None
        self._connected = threading.Event()  # set by every (re)connection paho makes

    def _set_up(self, up: bool) -> None:
        if self._connected.is_set():  # a new connection, however briefly the old one was gone
            self._connected.clear()
            self.state.connects += 1
            self.buffer.unsend()  # what was in flight may be lost: all of it goes again
        if up != self.state.up:
            self.state.up, self.state.changed_at = up, time.monotonic()
            log.warning("edge link %s", "up" if up else "down")

    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop`` is set."""
        try:
            while not stop.is_set():
                if self._subscriber is None and not self._connect():
                    stop.wait(self.retry_s)
                    continue
                assert self._subscriber is not None
                client = self._subscriber.client
                self._set_up(client.is_connected())
                busy = self._receipts() + (self._forward(client) if self.state.up else 0)
                if not busy:
                    self._wait_for_receipt(stop)
        finally:
            if self._subscriber is not None:
                self._subscriber.close()

    def _connect(self) -> bool:
        try:
            self._subscriber = Subscriber(
                self.endpoint,
                [receipt_topic(site=self.site, node=self.node), STATE_FILTER],
                client_id=f"{self.node}-edge",
                receive_maximum=1024,
            )
        except TwinKGError as exc:
            log.warning("edge link cannot connect: %s", exc)
            self._set_up(False)
            return False
        client = self._subscriber.client
        # a link that is down costs buffer space: try again every 2 s at most, not every 5
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        resubscribe = client.on_connect

        def on_connect(*args: Any) -> None:
            if resubscribe is not None:
                resubscribe(*args)
            if not args[3].is_failure:
                self._connected.set()

        client.on_connect = on_connect
        self._connected.set()
        return True

    def _wait_for_receipt(self, stop: threading.Event) -> None:
        assert self._subscriber is not None
        message = next(iter(self._subscriber.messages(idle_s=0.05)), None)
        if message is not None:
            self._receipt(message)
        elif not self.state.up:
            stop.wait(0.05)

    def _receipts(self) -> int:
        assert self._subscriber is not None
        handled = 0
        while self._subscriber.pending() and handled < 4096:
            message = next(iter(self._subscriber.messages(idle_s=0)), None)
            if message is None:
                break
            self._receipt(message)
            handled += 1
        return handled

    def _receipt(self, message: Message) -> None:
        assert self._subscriber is not None
        if message.topic.startswith(STATE_FILTER[:-1]):
            self._twin_state(message)
            return
        try:
            body = json.loads(message.payload)
            digest, outcome = str(body["sha256"]), str(body["outcome"])
        except (ValueError, KeyError, TypeError):
            log.warning("a receipt that is not one on %s", message.topic)
            self._subscriber.ack(message)
            return
        code = body.get("code")
        if outcome == "refused" and code == RETRY_LATER:
            self._subscriber.ack(message)  # sent again after its predecessor
            return
        counter = "refused_centrally" if outcome == "refused" else "confirmed"
        entry = self.buffer.confirm(digest, counter=counter)
        if entry is not None:
            self.state.last_forwarded = datetime.now(UTC).isoformat(timespec="milliseconds")
            self.buffer.set_meta("last_forwarded", self.state.last_forwarded)
            if outcome == "refused":
                self.state.refused += 1
                log.error(
                    "the twin refused %s entry %s (%s): %s; it is in the twin's dead letters",
                    entry.kind,
                    digest[:12],
                    code,
                    body.get("reason", ""),
                )
            else:
                self.state.confirmed += 1
        self._subscriber.ack(message)

    def _twin_state(self, message: Message) -> None:
        """An ingest worker announced its subscription: what it may have missed goes again."""
        assert self._subscriber is not None
        try:
            online = json.loads(message.payload).get("online") is True
        except (ValueError, AttributeError):
            online = False
            log.warning("a state announcement that is not one on %s", message.topic)
        if online:
            self.buffer.unsend()
            self.state.announcements += 1
            log.info("%s subscribed: every unconfirmed entry goes again", message.topic)
        self._subscriber.ack(message)

    def _forward(self, client: paho.Client) -> int:
        room = self.window - self.buffer.in_flight(resend_s=self.resend_s)
        if room <= 0:
            return 0
        entries = self.buffer.due(limit=room, resend_s=self.resend_s)
        published = []
        for entry in entries:
            info = client.publish(entry.topic, entry.payload, qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                break  # the connection went: sent again once it is back
            published.append(entry.id)
        self.buffer.sent(published)
        return len(published)
