"""An MQTT 5 client for the twin's workers (paho-mqtt): TLS with a client certificate, a
persistent session, QoS 1, acknowledgements sent only when the work is done, and flow control.

:class:`Subscriber` takes messages from a subscription. It acknowledges a message only
when :meth:`Subscriber.ack` is called, after the message's batch has been applied or refused, so a
worker that dies in between leaves it unacknowledged and the broker delivers it again: at least
once, and the ingest's content hash makes the second delivery a no-op. The broker sends at most
``receive_maximum`` unacknowledged messages (MQTT 5 flow control), so the worker's queue is
bounded and a slow worker holds the broker back instead of filling its memory. The session
survives a disconnect (``clean_start`` false, a session expiry), so messages published while the
worker was away wait on the broker, and paho reconnects by itself.
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as paho
from paho.mqtt.client import ConnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from twinkg.connect.mqtt.endpoint import MqttEndpoint
from twinkg.ontology.errors import ConfigError, ServerError


@dataclass(frozen=True, slots=True)
class Message:
    """One message as received: the topic, the bytes, and what :meth:`Subscriber.ack` needs."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    redelivered: bool


def connect(
    endpoint: MqttEndpoint,
    client_id: str,
    *,
    receive_maximum: int = 0,
    on_message: Callable[[paho.Client, object, paho.MQTTMessage], None] | None = None,
) -> paho.Client:
    """A connected client with its network loop running (:class:`ServerError` with the broker's
    reason when it cannot connect within the endpoint's timeout). ``on_message`` is in place
    before the connection opens: a resumed session's queued messages arrive at once."""
    return connect_session(
        endpoint, client_id, receive_maximum=receive_maximum, on_message=on_message
    )[0]


def connect_session(
    endpoint: MqttEndpoint,
    client_id: str,
    *,
    receive_maximum: int = 0,
    on_message: Callable[[paho.Client, object, paho.MQTTMessage], None] | None = None,
    will: tuple[str, bytes] | None = None,
) -> tuple[paho.Client, bool]:
    """:func:`connect`, and whether the broker resumed the client's earlier session. ``will``
    (topic, payload) is published retained at QoS 1 by the broker if the connection is lost
    without a DISCONNECT (the MQTT Will: a process killed, a cable pulled)."""
    host, port, tls = endpoint.address()
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5,
        manual_ack=receive_maximum > 0,
    )
    if tls and endpoint.credentials is not None:
        creds = endpoint.credentials
        for path in (creds.ca, creds.cert, creds.key):
            if not path.is_file():
                raise ConfigError(f"MQTT credentials: {path} does not exist")
        client.tls_set(
            ca_certs=str(creds.ca),
            certfile=str(creds.cert),
            keyfile=str(creds.key),
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    connected = threading.Event()
    refused: list[str] = []
    resumed: list[bool] = []

    def on_connect(
        _c: paho.Client, _u: object, flags: ConnectFlags, reason: ReasonCode, _p: object
    ) -> None:
        resumed.append(flags.session_present)
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    refusals: dict[int, str] = {}

    def on_publish(_c: paho.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        if reason.is_failure:  # MQTT 5 tells a publisher why (an ACL: "Not authorized")
            refusals[mid] = str(reason)

    client.on_publish = on_publish
    client.user_data_set(refusals)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = endpoint.session_expiry_s
    if receive_maximum > 0:
        properties.ReceiveMaximum = receive_maximum
    try:
        client.connect(
            host, port, keepalive=endpoint.keepalive_s, clean_start=False, properties=properties
        )
    except (OSError, ssl.SSLError) as exc:
        raise ServerError(f"MQTT broker {endpoint.url} cannot be reached: {exc}") from None
    client.loop_start()
    if not connected.wait(endpoint.timeout_s) or refused:
        client.loop_stop()
        client.disconnect()
        why = refused[0] if refused else f"no answer within {endpoint.timeout_s:g} s"
        raise ServerError(f"MQTT broker {endpoint.url} refused {client_id}: {why}")
    return client, bool(resumed and resumed[0])


def publish(client: paho.Client, topic: str, payload: bytes, *, timeout_s: float) -> None:
    """Publish at QoS 1 and wait for the broker's acknowledgement (:class:`ServerError` when it
    refuses, as its ACL does for a topic the client may not write, or does not answer)."""
    info = client.publish(topic, payload, qos=1)
    if info.rc != paho.MQTT_ERR_SUCCESS:
        raise ServerError(f"MQTT publish to {topic} failed: {paho.error_string(info.rc)}")
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError) as exc:
        raise ServerError(f"MQTT publish to {topic} failed: {exc}") from None
    if not info.is_published():
        raise ServerError(f"MQTT broker did not acknowledge {topic} within {timeout_s:g} s")
    refusals = client.user_data_get()
    refusal = refusals.pop(info.mid, None) if isinstance(refusals, dict) else None
    if refusal is not None:
        raise ServerError(f"MQTT broker refused {topic}: {refusal}")


class Subscriber:
    """Messages of one subscription, each acknowledged only when :meth:`ack` says so."""

    def __init__(
        self,
        endpoint: MqttEndpoint,
        topic_filters: Sequence[str],
        *,
        client_id: str,
        receive_maximum: int = 64,
        announce: str | None = None,
    ) -> None:
        """Subscribe ``client_id`` to ``topic_filters``. With ``announce`` (a
        :func:`~twinkg.connect.mqtt.topics.state_topic`), every subscription the broker grants,
        the first and each one made again after the broker lost the session, is announced
        there, retained: producers waiting on receipts then send again what may have been
        routed to no one. Its end is announced there too, retained, with ``online: false``: by
        :meth:`close` (``"reason": "stopped"``), or by the broker, as the connection's Will,
        when the connection is lost (``"reason": "connection lost"``), as a Sparkplug B primary
        host's ``STATE`` goes offline."""
        if isinstance(topic_filters, str):  # a str is a sequence of one-letter filters
            raise ConfigError(f"topic filters are a list, not the string {topic_filters!r}")
        self._queue: queue.Queue[Message] = queue.Queue()
        self._announce_to = announce
        self._timeout_s = endpoint.timeout_s
        will = None if announce is None else (announce, _state(client_id, "connection lost", None))
        self._client, resumed = connect_session(
            endpoint,
            client_id,
            receive_maximum=receive_maximum,
            on_message=self._received,
            will=will,
        )
        self.resumed = resumed
        self.client_id = client_id
        self._filters = list(topic_filters)
        # Subscribe even when the session was resumed, so a filter changed since holds; a
        # message queued for the session may then arrive twice, which the ingest applies once.
        granted = threading.Event()
        codes: list[ReasonCode] = []

        def on_subscribe(
            _c: paho.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: object
        ) -> None:
            codes.extend(reasons)
            granted.set()
            if announce is not None and not any(r.is_failure for r in reasons):
                self._announce(announce)

        self._client.on_subscribe = on_subscribe
        self._client.subscribe([(f, SubscribeOptions(qos=1)) for f in self._filters])
        self._client.on_connect = self._reconnected
        if not granted.wait(endpoint.timeout_s) or any(c.is_failure for c in codes):
            self.close()
            why = str(codes[0]) if codes else "no answer"
            raise ServerError(f"MQTT subscription to {', '.join(self._filters)} refused: {why}")

    def _reconnected(
        self, client: paho.Client, _u: object, flags: ConnectFlags, reason: ReasonCode, _p: object
    ) -> None:
        """After paho reconnected by itself: a broker that lost the session (restarted without
        its saved state) lost the subscriptions too, so they are made again (and announced once
        granted); a session the broker kept is announced at once, since the connection's Will
        said it was lost."""
        if reason.is_failure:
            return
        if not flags.session_present:
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in self._filters])
        elif self._announce_to is not None:
            self._announce(self._announce_to)

    def _announce(self, topic: str) -> None:
        """Say, retained at QoS 1, that this client's subscriptions are in place (from paho's
        thread: the publish is queued, not waited on)."""
        body = {
            "online": True,
            "client": self.client_id,
            "subscribed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        self._client.publish(topic, json.dumps(body).encode(), qos=1, retain=True)

    def _received(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        self._queue.put(
            Message(
                message.topic, bytes(message.payload), message.mid, message.qos, bool(message.dup)
            )
        )

    @property
    def client(self) -> paho.Client:
        """The connected client (to publish refusals and events on the same connection)."""
        return self._client

    def messages(self, *, idle_s: float | None = None) -> Iterator[Message]:
        """Messages as they arrive; ends after ``idle_s`` seconds with none (``None``: never)."""
        while True:
            try:
                yield self._queue.get(timeout=idle_s)
            except queue.Empty:
                return

    def pending(self) -> int:
        """Messages received and not yet taken (at most the receive maximum)."""
        return self._queue.qsize()

    def ack(self, message: Message) -> None:
        """Acknowledge ``message``: its work is done, the broker may forget it."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def unsubscribe(self, *, timeout_s: float = 10.0) -> None:
        """Stop the broker routing new messages here (a worker that retires drains first)."""
        done = threading.Event()
        self._client.on_unsubscribe = lambda *_: done.set()
        self._client.unsubscribe(self._filters)
        if not done.wait(timeout_s):
            raise ServerError(f"MQTT broker did not confirm leaving {', '.join(self._filters)}")

    def close(self, *, end_session: bool = False) -> None:
        """Disconnect. The session stays (unacknowledged and newly routed messages wait for the
        same client id) unless ``end_session``: a retired worker's session ends with it, and
        what it still held is dropped, so retire only after :meth:`unsubscribe` and a drain."""
        if self._announce_to is not None and self._client.is_connected():
            # said while still connected; a normal DISCONNECT then discards the Will
            info = self._client.publish(
                self._announce_to,
                _state(self.client_id, "stopped", datetime.now(UTC)),
                qos=1,
                retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(self._timeout_s)
        properties = None
        if end_session:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()


@dataclass(slots=True)
class _Taken:
    message: Message
    done: bool = False


class InOrderAcks:
    """One subscription's messages shared by several threads, each message acknowledged once
    its work is done and every message received before it has been acknowledged: MQTT 5 wants a
    client's PUBACKs in the order of the PUBLISHes they answer. A message whose work ends early
    waits, unacknowledged, for those before it, so the broker still holds (and would deliver
    again) every message whose work or whose predecessors' work has not ended."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self._take = threading.Lock()  # one taker at a time: taken in the order received
        self._ledger = threading.Lock()
        self._open: collections.deque[_Taken] = collections.deque()

    def take(self, *, idle_s: float) -> Message | None:
        """The next message, or ``None`` after ``idle_s`` seconds with none."""
        with self._take:
            message = next(iter(self.subscriber.messages(idle_s=idle_s)), None)
            if message is not None:
                with self._ledger:
                    self._open.append(_Taken(message))
        return message

    def done(self, message: Message) -> None:
        """``message``'s work has ended: acknowledge it and every message after it whose work
        ended, up to the first still in hand."""
        with self._ledger:
            for taken in self._open:
                if taken.message is message and not taken.done:
                    taken.done = True
                    break
            else:
                raise ValueError("a message not taken here, or already done")
            while self._open and self._open[0].done:
                self.subscriber.ack(self._open.popleft().message)

    def in_hand(self) -> int:
        """Messages taken and not yet acknowledged."""
        with self._ledger:
            return len(self._open)


def _state(client_id: str, reason: str, at: datetime | None) -> bytes:
    """The retained announcement that ``client_id`` no longer takes messages, why, and when
    (``None`` for the Will, made at connect time and published whenever the loss is seen)."""
    body: dict[str, object] = {"online": False, "client": client_id, "reason": reason}
    if at is not None:
        body["at"] = at.isoformat(timespec="milliseconds")
    return json.dumps(body).encode()
