"""The MQTT topic scheme: where telemetry comes in, where the twin's events go out, and which
client may use which topic (decision 0056).

Topics name the plant the way Sparkplug B does, a namespace, then the group (the site), then the
message type, then the nodes, so one wildcard selects a site, a message type or an area::

    twinkg/v1/{site}/tele/{area}/{node}         telemetry in, a JSON batch per message
    twinkg/v1/{site}/refused/{area}/{node}      a telemetry message refused, with the reason
    twinkg/v1/{site}/evt/{kind}/{area}/{asset}  an event: finding, decision, approval, action
    twinkg/v1/{site}/work/{area}/{asset}        an asset with something for the agents to decide
    twinkg/v1/{site}/edge/{node}                an edge's decision records, in its chain's order
    twinkg/v1/{site}/ack/{node}                 receipts: what the twin stored from that node
    twinkg/v1/state/twin/{client}               an ingest worker's subscription is in place

Payloads are JSON, not Sparkplug's protobuf: the telemetry payload is the JSON batch contract of
``POST /telemetry`` (``connect.json``), so one contract holds on every way in. Every name segment
is at most 64 characters of letters, digits, ``_``, ``.`` and ``-`` and starts with a letter or
digit, so no segment is a wildcard, a ``$`` system topic or empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from twinkg.ontology.errors import ConfigError, InvalidInputError

ROOT = "twinkg/v1"

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class EventKind(StrEnum):
    """What the twin publishes about its own work."""

    FINDING = "finding"
    DECISION = "decision"
    APPROVAL = "approval"
    ACTION = "action"


class Role(StrEnum):
    """What an MQTT client may do; the ACL file grants topics per role."""

    SERVICE = "service"  # the twin's workers: take telemetry, publish events and refusals
    PRODUCER = "producer"  # a plant's gateway or edge: publish one site's telemetry
    OBSERVER = "observer"  # a dashboard or historian: read events and refusals


def segment(value: str, what: str) -> str:
    """``value`` as a topic segment, or :class:`InvalidInputError` saying why it cannot be."""
    if not _SEGMENT.fullmatch(value):
        raise InvalidInputError(
            f"{what} {value[:80]!r} is not a topic segment (1-64 of A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit)"
        )
    return value


@dataclass(frozen=True, slots=True)
class TelemetryTopic:
    """Where one telemetry message came from: its site, area and node."""

    site: str
    area: str
    node: str

    @classmethod
    def parse(cls, topic: str) -> TelemetryTopic:
        """The telemetry topic ``topic`` (:class:`InvalidInputError` naming what is wrong)."""
        parts = topic.split("/")
        if len(parts) != 6 or "/".join(parts[:2]) != ROOT or parts[3] != "tele":
            raise InvalidInputError(
                f"topic {topic[:200]!r} is not {ROOT}/{{site}}/tele/{{area}}/{{node}}"
            )
        return cls(segment(parts[2], "site"), segment(parts[4], "area"), segment(parts[5], "node"))

    @property
    def topic(self) -> str:
        """The topic a producer publishes this telemetry on."""
        return f"{ROOT}/{self.site}/tele/{self.area}/{self.node}"

    @property
    def refused(self) -> str:
        """Where a refusal of a message from this topic is published."""
        return f"{ROOT}/{self.site}/refused/{self.area}/{self.node}"

    @property
    def name(self) -> str:
        """The batch's name in messages and in the telemetry log."""
        return f"mqtt:{self.site}/{self.area}/{self.node}"


def event_topic(kind: EventKind, *, site: str, area: str, asset: str) -> str:
    """The topic an event of ``kind`` about ``asset`` is published on."""
    where = "/".join((segment(area, "area"), segment(asset, "asset")))
    return f"{ROOT}/{segment(site, 'site')}/evt/{kind}/{where}"


AGENT_GROUP = "twinkg-agents"
"""The shared-subscription group of the agent workers: each work item goes to one of them."""

WORK_FILTER = f"{ROOT}/+/work/#"
"""Every work item (what agent workers share)."""


def work_topic(*, site: str, area: str, asset: str) -> str:
    """Where the work item of ``asset`` is published."""
    where = "/".join((segment(area, "area"), segment(asset, "asset")))
    return f"{ROOT}/{segment(site, 'site')}/work/{where}"


def shared(topic_filter: str, group: str) -> str:
    """``topic_filter`` as an MQTT 5 shared subscription of ``group`` (one member gets each
    message): for work whose order does not matter, since a lease orders each asset's."""
    return f"$share/{segment(group, 'share group')}/{topic_filter}"


def telemetry_filters(sites: Sequence[str] = ()) -> list[str]:
    """What an ingest worker subscribes to: every topic under the telemetry tree of ``sites``
    (all sites when none is named). Wider than the telemetry topics, so a message on a
    malformed one is refused, not unheard.

    Not a shared subscription: a shared group deals one topic's messages to several workers,
    which then apply them out of order, and the telemetry contract quarantines a reading that
    is not after its sensor's newest. Ingest scales by site instead (one worker per set of
    sites keeps each topic in order); decision 0056. The sites' edge decision trees come with
    them (decision 0059): one worker records an edge's decisions in its chain's order."""
    tele = [f"{ROOT}/{segment(site, 'site')}/tele/#" for site in sites] or [f"{ROOT}/+/tele/#"]
    return tele + edge_filters(sites)


@dataclass(frozen=True, slots=True)
class EdgeTopic:
    """Where an edge runtime forwards its decision records: its site and node (decision 0059)."""

    site: str
    node: str

    @classmethod
    def parse(cls, topic: str) -> EdgeTopic:
        """The edge decision topic ``topic`` (:class:`InvalidInputError` naming what is wrong)."""
        parts = topic.split("/")
        if len(parts) != 5 or "/".join(parts[:2]) != ROOT or parts[3] != "edge":
            raise InvalidInputError(f"topic {topic[:200]!r} is not {ROOT}/{{site}}/edge/{{node}}")
        return cls(segment(parts[2], "site"), segment(parts[4], "node"))

    @property
    def topic(self) -> str:
        """The topic the edge publishes its decision records on."""
        return f"{ROOT}/{self.site}/edge/{self.node}"


def is_edge_topic(topic: str) -> bool:
    """Whether ``topic`` lies in an edge decision tree (parse it to know it is well formed)."""
    parts = topic.split("/", 4)
    return len(parts) >= 4 and "/".join(parts[:2]) == ROOT and parts[3] == "edge"


def receipt_topic(*, site: str, node: str) -> str:
    """Where the twin confirms to ``node`` of ``site`` what it stored (telemetry batches and
    edge decisions, by the SHA-256 of the message): an edge deletes from its buffer only what
    a receipt names, since a broker's acknowledgement does not mean the twin has it."""
    return f"{ROOT}/{segment(site, 'site')}/ack/{segment(node, 'node')}"


STATE_FILTER = f"{ROOT}/state/twin/+"
"""Every ingest worker's state announcement (what an edge link subscribes to). Five levels,
the fourth ``twin``, which no message type is: a telemetry, edge or work filter such as
``twinkg/v1/+/tele/#`` also matches ``twinkg/v1/state/tele``, so a worker whose client id were
``tele`` would otherwise announce into the telemetry tree of a site called ``state``."""


def state_topic(client_id: str) -> str:
    """Where the ingest worker ``client_id`` announces, retained, that its subscription is in
    place, as a Sparkplug B primary host publishes its ``STATE``. A broker restarted without
    its saved sessions drops what producers publish before the worker subscribes again; the
    announcement tells an edge to send again what the twin has not confirmed (decision 0065)."""
    return f"{ROOT}/state/twin/{segment(client_id, 'client id')}"


def edge_filters(sites: Sequence[str] = ()) -> list[str]:
    """The edge decision trees of ``sites`` (all sites when none is named)."""
    return [f"{ROOT}/{segment(site, 'site')}/edge/#" for site in sites] or [f"{ROOT}/+/edge/#"]


def acl_lines(user: str, role: Role, site: str | None) -> list[str]:
    """The Mosquitto ACL entries of ``user`` (its certificate's common name) in ``role``.

    A producer is bound to one site: it can publish that site's telemetry and read its refusals
    and the ingest workers' state announcements. As an edge it is also bound to one node, its
    own name: it publishes only ``edge/{user}`` and reads only ``ack/{user}``, so one edge of a
    site can neither forward decision records as another nor read another's receipts (its name
    must be a topic segment). Nothing else is open to it (another site's topics, the events,
    the ``$SYS`` tree)."""
    if role is Role.PRODUCER:
        if site is None:
            raise ConfigError("a producer is bound to one site")
        site, node = segment(site, "site"), segment(user, "producer name")
        grants = [f"topic write {ROOT}/{site}/tele/#", f"topic read {ROOT}/{site}/refused/#"]
        grants += [f"topic write {ROOT}/{site}/edge/{node}", f"topic read {ROOT}/{site}/ack/{node}"]
        grants += [f"topic read {STATE_FILTER}"]
    elif role is Role.SERVICE:
        grants = [
            f"topic read {ROOT}/+/tele/#",
            f"topic write {ROOT}/+/evt/#",
            f"topic write {ROOT}/+/refused/#",
            f"topic readwrite {ROOT}/+/work/#",
            f"topic read {ROOT}/+/edge/#",
            f"topic write {ROOT}/+/ack/#",
            f"topic write {STATE_FILTER}",
        ]
    else:
        grants = [f"topic read {ROOT}/+/evt/#", f"topic read {ROOT}/+/refused/#"]
        grants += [f"topic read {STATE_FILTER}"]
    return [f"user {user}", *grants, ""]
