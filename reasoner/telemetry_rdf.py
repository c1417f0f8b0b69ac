"""Telemetry points as RDF, for pySHACL: the reference against which the compiled checks are held.

The same point records that :func:`reasoner.points.from_records` turns into columns become here a
data graph: one ``tk:TelemetryPoint`` per record, its batch (with the latest acceptable time) and
the sensors of the table (type, physical range, unit, newest accepted reading). Values are written
the most literal way (a number as ``xsd:double``, a string as a plain literal, a time string as an
``xsd:dateTime`` literal even when ill-typed) so pySHACL, not this module, judges them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rdflib import RDF, XSD, Graph, Literal, URIRef
from rdflib.term import Node

from twinkg.ontology.vocab import TK
from twinkg.reasoner.compiled import SensorTable
from twinkg.reasoner.points import FIELDS

_PREDICATES = {
    "sensor": TK.observedBy,
    "value": TK.value,
    "unit": TK.hasUnit,
    "time": TK.occurredAt,
    "sequence": TK.sequence,
    "quality": TK.quality,
    "producer": TK.producer,
    "batch": TK.inBatch,
}


def _term(key: str, value: Any, batch: URIRef) -> Node:
    if key == "batch":
        return batch
    if key in ("sensor", "unit") and isinstance(value, str):
        return URIRef(value)
    if key == "value" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return Literal(float(value), datatype=XSD.double)
    if key == "time" and isinstance(value, str):
        return Literal(value, datatype=XSD.dateTime)
    if key == "sequence" and isinstance(value, int) and not isinstance(value, bool):
        return Literal(value, datatype=XSD.integer)
    return Literal(value)


def _moment(ns: int) -> Literal:
    stamp = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return Literal(stamp.isoformat(), datatype=XSD.dateTime)


def sensors_graph(sensors: SensorTable) -> Graph:
    """The sensors of the table as the contract's SPARQL constraints expect them."""
    graph = Graph()
    for i, uri in enumerate(sensors.uris.to_pylist()):
        node = URIRef(str(uri))
        graph.add((node, RDF.type, TK.Sensor))
        graph.add((node, TK.physicalMin, Literal(float(sensors.physical_min[i]))))
        graph.add((node, TK.physicalMax, Literal(float(sensors.physical_max[i]))))
        graph.add((node, TK.hasUnit, URIRef(str(sensors.units[i]))))
        if sensors.has_last[i]:
            graph.add((node, TK.lastObservedAt, _moment(int(sensors.last_ns[i]))))
    return graph


def points_graph(
    records: Sequence[Mapping[str, Any]],
    sensors: SensorTable,
    *,
    batch: URIRef,
    latest_acceptable_ns: int,
) -> tuple[Graph, list[URIRef]]:
    """The data graph of ``records`` and the IRI of each record's point, in order."""
    graph = sensors_graph(sensors)
    graph.add((batch, RDF.type, TK.IngestBatch))
    graph.add((batch, TK.latestAcceptableTime, _moment(latest_acceptable_ns)))
    iris = []
    for i, record in enumerate(records):
        point = URIRef(f"{batch}/point/{i}")
        iris.append(point)
        graph.add((point, RDF.type, TK.TelemetryPoint))
        for key in FIELDS:
            raw = record.get(key)
            for value in raw if isinstance(raw, list) else ([] if raw is None else [raw]):
                graph.add((point, _PREDICATES[key], _term(key, value, batch)))
    return graph, iris
