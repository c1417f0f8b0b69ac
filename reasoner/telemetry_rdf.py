"""Telemetry points as RDF, for pySHACL: the reference against which the compiled checks are held.

The same point records that :func:`reasoner.points.from_records` turns into columns become here a
data graph: one ``tk:TelemetryPoint`` per record, its batch (with the latest acceptable time) and
the sensors of the table (type, physical range, unit, newest accepted reading). Each field is
first read by :func:`reasoner.points.contract_value`, the one place that decides what RDF would
otherwise lose or rewrite (decision 0037): a list is one ``rdf:JSON`` literal (an RDF graph would
collapse ``[5.0, 5.0]`` into one triple), so is a value of the wrong JSON type or a non-finite
number; only a time TwinKG keeps exactly is an ``xsd:dateTime`` (rdflib would read and rewrite
``2026-03-01 12:30:00Z`` or ``+0530``), any other time is the plain string as written; literals
keep their lexical form (``normalize=False``). pySHACL, not this module, judges them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rdflib import RDF, XSD, Graph, Literal, URIRef
from rdflib.term import Node

from twinkg.ontology.vocab import TK
from twinkg.reasoner.compiled import SensorTable
from twinkg.reasoner.points import Text, contract_record
from twinkg.reasoner.timestamps import read_datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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
    """The RDF term of a field as :func:`reasoner.points.contract_value` read it."""
    if key == "batch":
        return batch
    if isinstance(value, Text):  # never a value of the field's datatype, never an IRI
        return Literal(str(value), datatype=RDF.JSON, normalize=False)
    if key in ("sensor", "unit"):
        return URIRef(value)
    if key == "time":  # only a time TwinKG keeps is an xsd:dateTime; the text as written
        kept = read_datetime(value).kept
        return Literal(value, datatype=XSD.dateTime if kept else None, normalize=False)
    return Literal(value, datatype=_DATATYPES.get(key))


_DATATYPES = {"value": XSD.double, "sequence": XSD.integer}


def _moment(ns: int) -> Literal:
    """An instant of int64 nanoseconds as rdflib reads times: to the microsecond (floored)."""
    stamp = _EPOCH + timedelta(microseconds=ns // 1000)
    return Literal(stamp.isoformat(), datatype=XSD.dateTime)


def _bound(value: float, missing: float) -> Literal:
    """A physical bound; one the sensor does not have is infinite (decision 0037)."""
    return Literal(missing if math.isnan(value) else value, datatype=XSD.double)


def sensors_graph(sensors: SensorTable) -> Graph:
    """The sensors of the table as the contract's SPARQL constraints expect them."""
    graph = Graph()
    for i, uri in enumerate(sensors.uris.to_pylist()):
        node = URIRef(str(uri))
        graph.add((node, RDF.type, TK.Sensor))
        graph.add((node, TK.physicalMin, _bound(float(sensors.physical_min[i]), -math.inf)))
        graph.add((node, TK.physicalMax, _bound(float(sensors.physical_max[i]), math.inf)))
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
        fields, _ = contract_record(record)
        for key, value in fields.items():
            graph.add((point, _PREDICATES[key], _term(key, value, batch)))
    return graph, iris
