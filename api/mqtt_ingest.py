"""Telemetry over MQTT: a worker takes messages from its subscription and ingests each
through the telemetry contract, exactly as ``POST /telemetry`` would (decision 0056).

Per message, in order:

1. The topic must be a telemetry topic (``connect.mqtt.topics``); the payload a JSON batch.
2. :meth:`api.twin.Twin.ingest` checks it against its contract and applies it all or nothing:
   bad points go to the quarantine with their reason, the rest to the log and the graph. A
   message delivered again (at-least-once: the broker resends what a worker did not
   acknowledge) has the same bytes, so the same content hash, and the ingest applies it once.
3. A message refused whole (unknown topic, not JSON, an unknown contract, over the limits) is
   kept in the dead letters with its code and reason, logged, and its refusal published on the
   topic's ``refused`` twin so the producer hears why; then it is acknowledged, since sending it
   again would not change the answer.
4. A message on an edge's decision topic (``twinkg/v1/{site}/edge/{node}``) is a decision the
   edge took locally: it is appended to the provenance chain in the edge chain's order, once
   (``connect.edge.central``); refusals as in 3 (decision 0059).
5. A receipt naming the message's SHA-256 and its outcome is published (QoS 1, not waited for)
   on ``twinkg/v1/{site}/ack/{node}``, after the commit: an edge deletes from its buffer only
   what a receipt confirms, since a broker's acknowledgement does not mean the twin stored it.
6. Only then is the message acknowledged. A failure of the store or the log (Neo4j down) is not
   the message's fault: it is not acknowledged, the worker waits and tries it again, so nothing
   is lost while Neo4j is away.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from twinkg.api.errors import InternalIngestError
from twinkg.api.reclassification import Reclassify
from twinkg.api.twin import Twin
from twinkg.connect.edge.central import EdgeDecisions
from twinkg.connect.json import JsonSource
from twinkg.connect.mqtt.client import Message, Subscriber, publish
from twinkg.connect.mqtt.topics import EdgeTopic, TelemetryTopic, is_edge_topic, receipt_topic
from twinkg.kg.dead_letters import DeadLetters
from twinkg.ontology.errors import InvalidInputError, TwinKGError

log = logging.getLogger("twinkg.mqtt")


@dataclass(slots=True)
class MqttIngestStats:
    """What a worker did so far."""

    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    refused: int = 0
    retries: int = 0
    points_accepted: int = 0
    points_quarantined: int = 0
    refusal_codes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: ``applied``, ``duplicate`` or ``refused`` (with why)."""

    kind: str
    accepted: int = 0
    quarantined: int = 0
    code: str | None = None
    reason: str | None = None
    findings: int = 0  # anomalies and alarms the batch raised: work for the agents
    assets: tuple[str, ...] = ()  # the assets those findings concern (the work items)


class MqttIngest:
    """One ingest worker: a subscriber and the twin it ingests into."""

    def __init__(
        self,
        twin: Twin,
        subscriber: Subscriber,
        dead_letters: DeadLetters,
        *,
        publish_timeout_s: float = 10.0,
        retry_s: float = 1.0,
        receipts: bool = True,
    ) -> None:
        self.twin = twin
        self.edge = EdgeDecisions(twin.store)
        self.receipts = receipts
        self.subscriber = subscriber
        self.dead_letters = dead_letters
        self.publish_timeout_s = publish_timeout_s
        self.retry_s = retry_s
        self.stats = MqttIngestStats()
        twin.metrics.queue_depth.labels("mqtt").set_function(subscriber.pending)

    def handle(self, message: Message) -> Outcome:
        """Ingest or refuse ``message`` (infrastructure errors propagate: not acknowledged)."""
        if is_edge_topic(message.topic):
            return self._edge_decision(message)
        try:
            topic = TelemetryTopic.parse(message.topic)
            source = JsonSource(topic.name, body=message.payload)
            results = list(self.twin.ingest(source, reclassify=Reclassify.BACKGROUND))
        except InvalidInputError as exc:
            return self._refuse(message, exc)
        except TwinKGError:
            raise  # the store or the log: the message is not at fault, it is tried again
        except Exception as exc:  # a defect a payload found: keep the payload, not a poison loop
            log.exception("a message on %r broke the ingest", message.topic[:300])
            return self._refuse(message, InternalIngestError(f"the ingest failed: {exc!r}"))
        report = results[0].report
        if report.duplicate:
            return Outcome("duplicate")
        findings = len(report.anomalies) + report.alarms
        return Outcome(
            "applied",
            report.accepted,
            report.rejected,
            findings=findings,
            assets=report.finding_assets,
        )

    def _edge_decision(self, message: Message) -> Outcome:
        """Record an edge's forwarded decision in the provenance chain (decision 0059)."""
        try:
            recorded = self.edge.handle(EdgeTopic.parse(message.topic), message.payload)
        except InvalidInputError as exc:
            return self._refuse(message, exc)
        except TwinKGError:
            raise  # the store: tried again
        except Exception as exc:  # a defect a payload found: keep the payload, not a poison loop
            log.exception("an edge decision on %r broke the recorder", message.topic[:300])
            return self._refuse(message, InternalIngestError(f"the recorder failed: {exc!r}"))
        return Outcome("applied" if recorded.kind == "applied" else "duplicate")

    def _receipt(self, message: Message, outcome: Outcome) -> None:
        """Tell the sending node what became of ``message`` (not waited for: a lost receipt
        makes the edge send again, and the repeat is applied once and confirmed)."""
        try:
            if is_edge_topic(message.topic):
                edge = EdgeTopic.parse(message.topic)
                site, node = edge.site, edge.node
            else:
                tele = TelemetryTopic.parse(message.topic)
                site, node = tele.site, tele.node
        except InvalidInputError:
            return  # no node to tell
        body = {
            "sha256": hashlib.sha256(message.payload).hexdigest(),
            "outcome": outcome.kind,
            "accepted": outcome.accepted,
            "quarantined": outcome.quarantined,
            "code": outcome.code,
            "reason": outcome.reason,
        }
        info = self.subscriber.client.publish(
            receipt_topic(site=site, node=node), json.dumps(body).encode(), qos=1
        )
        if info.rc != 0:
            log.warning(
                "the receipt for a message on %s was not sent (rc %d)", message.topic, info.rc
            )

    def _refuse(self, message: Message, exc: InvalidInputError) -> Outcome:
        reason = " ".join(str(exc).split())
        self.twin.metrics.refused.labels("mqtt", exc.code).inc()
        letter = self.dead_letters.add(
            f"mqtt:{message.topic[:300]}", message.payload, code=exc.code, reason=reason
        )
        log.warning("refused a message on %r: %s (%s)", message.topic[:300], reason, exc.code)
        try:
            where = TelemetryTopic.parse(message.topic).refused
        except InvalidInputError:
            where = None  # an unknown topic has no refusal topic a producer could read
        if where is not None:
            body = {"code": exc.code, "reason": reason, "sha256": letter.sha256, "at": letter.at}
            try:
                publish(
                    self.subscriber.client,
                    where,
                    json.dumps(body).encode(),
                    timeout_s=self.publish_timeout_s,
                )
            except TwinKGError as failed:  # the dead letter holds it; the producer misses a note
                log.warning("the refusal could not be published on %s: %s", where, failed)
        return Outcome("refused", code=exc.code, reason=reason)

    def _count(self, outcome: Outcome) -> None:
        stats = self.stats
        stats.messages += 1
        if outcome.kind == "applied":
            stats.applied += 1
            stats.points_accepted += outcome.accepted
            stats.points_quarantined += outcome.quarantined
        elif outcome.kind == "duplicate":
            stats.duplicates += 1
        else:
            stats.refused += 1
            code = outcome.code or "invalid_input"
            stats.refusal_codes[code] = stats.refusal_codes.get(code, 0) + 1

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        idle_s: float | None = None,
        max_messages: int | None = None,
        on_outcome: Callable[[Message, Outcome], None] | None = None,
    ) -> MqttIngestStats:
        """Take messages until ``stop`` is set, none came for ``idle_s`` seconds, or
        ``max_messages`` were handled; a message is acknowledged once handled. A store failure
        is retried (every ``retry_s`` seconds, the message kept) until it succeeds or ``stop``."""
        stop = stop or threading.Event()
        wait = 0.5 if idle_s is None else min(0.5, idle_s)
        idle = 0.0
        while not stop.is_set():
            if max_messages is not None and self.stats.messages >= max_messages:
                break
            message = next(iter(self.subscriber.messages(idle_s=wait)), None)
            if message is None:
                idle += wait
                if idle_s is not None and idle >= idle_s:
                    break
                continue
            idle = 0.0
            outcome = self._handle_until_done(message, stop)
            if outcome is None:
                break  # stopped while the store was away: the message stays unacknowledged
            if self.receipts:
                self._receipt(message, outcome)
            self.subscriber.ack(message)
            self._count(outcome)
            if on_outcome is not None:
                on_outcome(message, outcome)
        return self.stats

    def retire(self, *, idle_s: float = 1.0, stop: threading.Event | None = None) -> None:
        """Leave for good (scaling down): unsubscribe (no new messages come here), handle and
        acknowledge what the broker had already routed here until ``idle_s`` passes without
        one, then end the session. A worker that only stops (a restart) keeps its session
        instead, and the messages routed to it meanwhile wait for it."""
        self.subscriber.unsubscribe()
        self.run(idle_s=idle_s, stop=stop)
        self.subscriber.close(end_session=True)

    def _handle_until_done(self, message: Message, stop: threading.Event) -> Outcome | None:
        while True:
            try:
                return self.handle(message)
            except TwinKGError as exc:
                self.stats.retries += 1
                log.warning("ingest of a message on %s failed, retrying: %s", message.topic, exc)
                if stop.wait(self.retry_s):
                    return None
