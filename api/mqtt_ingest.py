"""Telemetry over MQTT: a worker takes messages from its subscription and ingests each
through the telemetry contract, exactly as ``POST /telemetry`` would (decision 0056).

Per message, in order:

1. The topic must be a telemetry topic (``connect.mqtt.topics``); the payload a JSON batch
   whose sensors the graph places on the topic's site (``site_mismatch`` otherwise; the site's
   segment is its tag, as the events name it).
2. :meth:`api.twin.Twin.ingest` checks it against its contract and applies it all or nothing:
   bad points go to the quarantine with their reason, the rest to the log and the graph. A
   message delivered again (at-least-once: the broker resends what a worker did not
   acknowledge) has the same bytes, so the same content hash, and the ingest applies it once.
3. A message refused whole (unknown topic, not JSON, an unknown contract, over the limits,
   another site's sensors) is kept in the dead letters with its code and reason, logged, and
   its refusal published on the topic's ``refused`` twin so the producer hears why; then it is
   acknowledged, since sending it again would not change the answer.
4. A message on an edge's decision topic (``twinkg/v1/{site}/edge/{node}``) is a decision the
   edge took locally: it is appended to the provenance chain in the edge chain's order, once
   (``connect.edge.central``); refusals as in 3 (decision 0059).
5. A receipt naming the message's SHA-256 and its outcome is published (QoS 1, not waited for)
   on ``twinkg/v1/{site}/ack/{node}``, after the commit: an edge deletes from its buffer only
   what a receipt confirms, since a broker's acknowledgement does not mean the twin stored it.
6. Only then is the message acknowledged. A failure of the store or the log (Neo4j down) is not
   the message's fault: it is not acknowledged, the worker waits and tries it again, so nothing
   is lost while Neo4j is away.

Messages already waiting when a worker takes one are ingested with it as one batch, up to
``TWINKG_MQTT_GROUP_MAX`` messages and the points one batch may hold (decision 0067): each is
still checked on its own, gets its own receipt and outcome, and is recognised as a repeat on its
own; the group shares one Neo4j transaction, which is what a stream's throughput is bound by. A
group the ingest refuses whole is taken again message by message, so a refusal names the
message at fault. A message refused before the ingest (steps 1 and 3) is refused once, however
often the group is tried again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from twinkg.api.errors import InternalIngestError
from twinkg.api.reclassification import Reclassify
from twinkg.api.site_scope import (
    edge_targets_on_site,
    foreign,
    mismatch,
    named_sensors,
    sensor_places,
)
from twinkg.api.twin import Twin
from twinkg.connect.edge.central import EdgeDecisions
from twinkg.connect.json import JsonSource
from twinkg.connect.mqtt.client import Message, Subscriber, publish
from twinkg.connect.mqtt.topics import EdgeTopic, TelemetryTopic, is_edge_topic, receipt_topic
from twinkg.connect.source import Batch
from twinkg.kg.dead_letters import DeadLetters
from twinkg.ontology.errors import InvalidInputError, TwinKGError
from twinkg.reasoner.ingest import contract_of

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


_EDGE = Outcome("edge")  # marks an edge decision among the messages read


def _refusals(read: Sequence[Outcome | Batch]) -> list[Outcome | None]:
    """The outcomes known before anything is applied: the refusals of the read, in order."""
    return [r if isinstance(r, Outcome) and r is not _EDGE else None for r in read]


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
        group_max: int | None = None,
    ) -> None:
        self.twin = twin
        self.edge = EdgeDecisions(twin.store, target_check=edge_targets_on_site(twin.store))
        self.receipts = receipts
        self.subscriber = subscriber
        self.dead_letters = dead_letters
        self.publish_timeout_s = publish_timeout_s
        self.retry_s = retry_s
        self.stats = MqttIngestStats()
        self.group_max = twin.settings.mqtt_group_max if group_max is None else group_max
        twin.metrics.queue_depth.labels("mqtt").set_function(subscriber.pending)

    def handle(self, message: Message) -> Outcome:
        """Ingest or refuse ``message`` (infrastructure errors propagate: not acknowledged)."""
        return self.handle_all([message])[0]

    def handle_all(self, messages: Sequence[Message]) -> list[Outcome]:
        """Ingest or refuse ``messages``, the telemetry among them together as one batch;
        an outcome for each, in order (infrastructure errors propagate: none acknowledged)."""
        return self._apply(messages, self._on_their_sites(messages, self._read(messages)))

    def _read(self, messages: Sequence[Message]) -> list[Outcome | Batch]:
        """Each message's batch, or its refusal (kept, published and logged once here)."""
        read: list[Outcome | Batch] = []
        for message in messages:
            if is_edge_topic(message.topic):
                read.append(_EDGE)
                continue
            try:
                topic = TelemetryTopic.parse(message.topic)
                found = self.twin.read_batches(JsonSource(topic.name, body=message.payload))
                contract_of(found[0].contract)  # refused here, in order, not by its group
            except InvalidInputError as exc:
                read.append(self._refuse(message, exc))
            except TwinKGError:
                raise  # not the message's fault (the contracts cannot be read): tried again
            except Exception as exc:  # a defect a payload found: keep it, not a poison loop
                log.exception("a message on %r broke the parser", message.topic[:300])
                read.append(
                    self._refuse(message, InternalIngestError(f"the ingest failed: {exc!r}"))
                )
            else:
                read.append(found[0])
        return read

    def _on_their_sites(
        self, messages: Sequence[Message], read: list[Outcome | Batch]
    ) -> list[Outcome | Batch]:
        """``read`` with each batch that names a sensor of another site than its topic's
        refused (``site_mismatch``): the ACL binds a producer to its site's topics, this binds
        its payload to the site's sensors. A sensor's site is the nearest ``tk:Site`` up its
        ``tk:partOf`` chain, else up the chain of what it monitors (``kg.events.SENSOR_SITES``),
        named as the events name a site (its tag); one read for all the messages, none cached,
        so a sensor moved in the graph is judged where it is now. A sensor the graph does not
        know is left to the contract, which quarantines its points."""
        batches = [(i, r) for i, r in enumerate(read) if isinstance(r, Batch)]
        named = {i: named_sensors(b) for i, b in batches}
        places = sensor_places(self.twin.store, (s for n in named.values() for s in n))
        if not places:
            return read
        out = list(read)
        for i, _ in batches:
            topic_site = TelemetryTopic.parse(messages[i].topic).site
            outside = foreign(named[i], places, {topic_site})
            if outside:
                speaker = f"a message on site {topic_site!r}"
                out[i] = self._refuse(messages[i], mismatch(speaker, outside, places))
        return out

    def _apply(
        self,
        messages: Sequence[Message],
        read: Sequence[Outcome | Batch],
        done: list[Outcome | None] | None = None,
    ) -> list[Outcome]:
        """Edge decisions recorded, telemetry ingested in groups of one contract: the outcomes
        (refusals from :meth:`_read` as they were). ``done`` keeps the outcomes reached so far
        across tries: a try that fails part way does not take what it applied again."""
        if done is None:
            done = _refusals(read)
        for i, r in enumerate(read):
            if done[i] is None and r is _EDGE:
                done[i] = self._edge_decision(messages[i])
        batches = [(i, r) for i, r in enumerate(read) if isinstance(r, Batch) and done[i] is None]
        for group in self._groups(batches):
            for i, outcome in self._ingest(messages, group):
                done[i] = outcome
        final = [o for o in done if o is not None]
        assert len(final) == len(messages)
        return final

    def _groups(self, batches: list[tuple[int, Batch]]) -> Iterator[list[tuple[int, Batch]]]:
        """Batches of one contract (as resolved: ``telemetry`` and the version it names are one)
        and mode, in order, up to the points one batch may hold."""
        group: list[tuple[int, Batch]] = []
        points = 0
        limit = self.twin.settings.ingest_max_points
        first: tuple[str, bool, int | None] | None = None
        for i, batch in batches:
            key = (contract_of(batch.contract), batch.replay, batch.fit_rows)
            if group and (key != first or points + len(batch.points) > limit):
                yield group
                group, points = [], 0
            if not group:
                first = key
            group.append((i, batch))
            points += len(batch.points)
        if group:
            yield group

    def _ingest(
        self, messages: Sequence[Message], group: list[tuple[int, Batch]]
    ) -> list[tuple[int, Outcome]]:
        """One group ingested as one batch; refused whole, it is taken message by message."""
        try:
            result = self.twin.ingest_batches(
                [b for _, b in group], reclassify=Reclassify.BACKGROUND
            )
        except InvalidInputError as exc:
            if len(group) > 1:
                return [pair for one in group for pair in self._ingest(messages, [one])]
            return [(group[0][0], self._refuse(messages[group[0][0]], exc))]
        except TwinKGError:
            raise  # the store or the log: the messages are not at fault, they are tried again
        except Exception as exc:  # a defect a payload found: keep the payload, not a poison loop
            if len(group) > 1:
                return [pair for one in group for pair in self._ingest(messages, [one])]
            i = group[0][0]
            log.exception("a message on %r broke the ingest", messages[i].topic[:300])
            return [
                (i, self._refuse(messages[i], InternalIngestError(f"the ingest failed: {exc!r}")))
            ]
        report = result.report
        members = report.members or ()
        out: list[tuple[int, Outcome]] = []
        for (i, _), member in zip(group, members, strict=True):
            if member.duplicate:
                out.append((i, Outcome("duplicate")))
            else:
                out.append((i, Outcome("applied", member.accepted, member.rejected)))
        # the findings are the group's: the last message applied carries them to the agents
        last = max((k for k, (_, o) in enumerate(out) if o.kind == "applied"), default=None)
        if last is not None:
            i, outcome = out[last]
            out[last] = (
                i,
                dataclasses.replace(
                    outcome,
                    findings=len(report.anomalies) + report.alarms,
                    assets=report.finding_assets,
                ),
            )
        return out

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
            taken = [message, *self._waiting(max_messages)]
            outcomes = self._handle_until_done(taken, stop)
            if outcomes is None:
                break  # stopped while the store was away: the messages stay unacknowledged
            for each, outcome in zip(taken, outcomes, strict=True):
                if self.receipts:
                    self._receipt(each, outcome)
                self.subscriber.ack(each)
                self._count(outcome)
                if on_outcome is not None:
                    on_outcome(each, outcome)
        return self.stats

    def _waiting(self, max_messages: int | None) -> list[Message]:
        """Messages already received, to go with the one just taken (none are waited for)."""
        room = self.group_max - 1
        if max_messages is not None:
            room = min(room, max_messages - self.stats.messages - 1)
        more: list[Message] = []
        while len(more) < room:
            message = next(iter(self.subscriber.messages(idle_s=0)), None)
            if message is None:
                break
            more.append(message)
        return more

    def retire(self, *, idle_s: float = 1.0, stop: threading.Event | None = None) -> None:
        """Leave for good (scaling down): unsubscribe (no new messages come here), handle and
        acknowledge what the broker had already routed here until ``idle_s`` passes without
        one, then end the session. A worker that only stops (a restart) keeps its session
        instead, and the messages routed to it meanwhile wait for it."""
        self.subscriber.unsubscribe()
        self.run(idle_s=idle_s, stop=stop)
        self.subscriber.close(end_session=True)

    def _handle_until_done(
        self, messages: list[Message], stop: threading.Event
    ) -> list[Outcome] | None:
        read: list[Outcome | Batch] | None = None  # refusals once, whatever the retries
        sited: list[Outcome | Batch] | None = None
        done: list[Outcome | None] = []
        while True:
            try:
                if read is None:
                    read = self._read(messages)
                if sited is None:  # its read of the store comes before any refusal it makes
                    sited = self._on_their_sites(messages, read)
                    done = _refusals(sited)
                return self._apply(messages, sited, done)
            except TwinKGError as exc:
                self.stats.retries += 1
                log.warning(
                    "ingest of %d message(s) on %s failed, retrying: %s",
                    len(messages),
                    messages[0].topic,
                    exc,
                )
                if stop.wait(self.retry_s):
                    return None
