"""Which sites a producer may speak for: the sensors a batch names, checked against them.

An MQTT producer speaks for the site of its topic (decision 0083), and an edge's decisions act
on its site's assets only; an API key or token bound to sites speaks for those (decision 0085).
A thing's site is the nearest ``tk:Site`` up its own ``tk:partOf`` chain, else up the chain of
what it monitors (``kg.events.SENSOR_SITES``), named as the events name a site: by its tag
(``api.event_stream.Place``). A sensor on no site is no producer's. A sensor the graph does not
know is left to the telemetry contract, which quarantines its points. Nothing is cached: a
sensor moved in the graph is judged where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from twinkg.api.event_stream import Place
from twinkg.connect.mqtt.topics import EdgeTopic
from twinkg.connect.source import Batch
from twinkg.kg.events import SENSOR_SITES
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import OpcUaMappingError, SiteMismatchError

if TYPE_CHECKING:  # asyncua loads only where OPC UA is used
    from twinkg.connect.opcua.ingest import Binding
    from twinkg.connect.opcua.mapping import OpcUaMapping

NAMED_AT_MOST = 3  # sensors a refusal names, then a count


def named_sensors(batch: Batch) -> list[str]:
    """The distinct sensor IRIs ``batch`` names, in a fixed order (a point whose sensor is not
    an IRI string names none)."""
    column = batch.points.sensor.filter(pa.array(batch.points.ok["sensor"]))
    return sorted(s for s in pc.unique(column).to_pylist() if isinstance(s, str))


def sensor_places(store: GraphStore, sensors: Iterable[str]) -> dict[str, Place]:
    """The site of each of ``sensors`` the graph holds (one read for all of them)."""
    wanted = sorted(set(sensors))
    if not wanted:
        return {}
    return {
        str(row["sensor"]): Place.of(row["site_tag"], row["site"])
        for row in store.read(SENSOR_SITES, sensors=wanted)
    }


def foreign(sensors: Iterable[str], places: dict[str, Place], sites: Collection[str]) -> list[str]:
    """Those of ``sensors`` the graph places on no site or on a site none of ``sites`` names (by
    its tag's segment or its IRI), in their order."""
    allowed = frozenset(sites)
    return [
        s
        for s in sensors
        if s in places and (places[s].uri is None or not places[s].named(allowed))
    ]


def mismatch(
    speaker: str, sensors: list[str], places: dict[str, Place], *, what: str = "names sensors"
) -> SiteMismatchError:
    """The refusal of a batch from ``speaker`` (who may speak for which sites) that names
    ``sensors`` (from :func:`foreign`; ``what`` it does with them): the first few of them and
    their sites, then a count."""
    where = ", ".join(
        f"{s} ({'site ' + repr(places[s].segment) if places[s].uri else 'no site'})"
        for s in sensors[:NAMED_AT_MOST]
    )
    more = f" and {len(sensors) - NAMED_AT_MOST} more" if len(sensors) > NAMED_AT_MOST else ""
    return SiteMismatchError(f"{speaker} {what} of another site: {where}{more}")


@dataclass(frozen=True, slots=True)
class SiteBound:
    """A producer that may speak only for ``sites`` (each a site's tag or IRI): an API key or a
    token bound to sites (decision 0085)."""

    who: str
    sites: frozenset[str]

    def check(self, store: GraphStore, batch: Batch) -> None:
        """:class:`SiteMismatchError` when ``batch`` names a sensor of another site or of none;
        nothing is read from the batch otherwise."""
        named = named_sensors(batch)
        places = sensor_places(store, named)
        outside = foreign(named, places, self.sites)
        if outside:
            bound = ", ".join(sorted(self.sites))
            raise mismatch(f"{self.who} (bound to site {bound})", outside, places)


def edge_targets_on_site(store: GraphStore) -> Callable[[EdgeTopic, str], None]:
    """The check of a forwarded edge decision's target (``EdgeDecisions(target_check=...)``):
    an edge acts only on its own site's assets, so a target on another site than the edge
    topic's, or on none, is refused with :class:`SiteMismatchError` before anything is
    recorded (decision 0085)."""

    def check(topic: EdgeTopic, target: str) -> None:
        places = sensor_places(store, [target])
        outside = foreign([target], places, {topic.site})
        if outside:
            speaker = f"a decision of edge {topic.node!r} on site {topic.site!r}"
            raise mismatch(speaker, outside, places, what="acts on an asset")

    return check


def mapping_on_site(store: GraphStore, mapping: OpcUaMapping, bindings: Sequence[Binding]) -> None:
    """An OPC UA mapping with a ``site`` feeds and writes only that site's things:
    :class:`OpcUaMappingError`, naming the file, the entry and the thing's site, for a sensor it
    feeds or an asset it writes that is on another site, or on none (decision 0085). A mapping
    without a site is bound to none."""
    if mapping.site is None:
        return
    things = [(f"telemetry[{i}] ({b.entry.node})", b.sensor) for i, b in enumerate(bindings)]
    things += [(f"setpoint[{i}] ({e.node})", e.asset) for i, e in enumerate(mapping.setpoints)]
    places = sensor_places(store, (thing for _, thing in things))
    for where, thing in things:
        place = places.get(thing)
        if place is None or foreign([thing], places, {mapping.site}):
            found = (
                "is not in the graph"
                if place is None
                else (f"is on site {place.segment!r}" if place.uri else "is on no site")
            )
            raise OpcUaMappingError(
                f"{mapping.source}: {where}: {thing} {found}, not on the mapping's site "
                f"{mapping.site!r}"
            )
