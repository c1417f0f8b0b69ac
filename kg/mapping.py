"""RDF ↔ property graph, without loss.

The rules (docs/decisions/0002-rdf-property-graph-mapping.md):

- every IRI becomes a node with ``uri``; blank nodes are refused (skolemise them first);
- ``rdf:type C`` is kept in the ``rdf_type`` list; the writer adds C's label and its ancestors';
- an object property becomes a relationship; an IRI that is only ever an object becomes a bare
  node (no types, no properties), which contributes nothing on the way back;
- a datatype property becomes a property; several values become a list. Strings, booleans,
  integers, doubles, dates and date-times are stored natively; any other datatype as its lexical
  form, so nothing is lost. A literal must carry its property's declared datatype.

Values come back in canonical lexical form (``"01"^^xsd:integer`` returns as ``"1"``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import RDF, XSD

from twinkg.kg.records import GraphRecords, NodeRecord, PropValue, RelRecord, Scalar
from twinkg.ontology.errors import MappingError
from twinkg.ontology.vocab import CLASS_LABELS, PROPERTIES, RELATIONSHIPS, PropKey, RelType

_NATIVE = {
    str(XSD.string),
    str(XSD.anyURI),
    str(XSD.boolean),
    str(XSD.integer),
    str(XSD.double),
    str(XSD.dateTime),
    str(XSD.date),
}
_STRING = str(XSD.string)
_PREDICATE_OF_KEY: Mapping[PropKey, tuple[URIRef, str]] = {
    key: (URIRef(iri), datatype) for iri, (key, datatype) in PROPERTIES.items()
}
_PREDICATE_OF_REL: Mapping[RelType, URIRef] = {
    rel: URIRef(iri) for iri, rel in RELATIONSHIPS.items()
}


def _to_value(subject: object, predicate: object, literal: Literal, datatype: str) -> Scalar:
    if literal.language is not None:
        raise MappingError(
            f"{subject} {predicate}: language-tagged literal {literal.n3()} "
            "is not supported; store the text as a plain string"
        )
    actual = _STRING if literal.datatype is None else str(literal.datatype)
    if actual != datatype:
        raise MappingError(
            f"{subject} {predicate}: literal {literal.n3()} has datatype {actual}, "
            f"the ontology declares {datatype}"
        )
    if datatype not in _NATIVE or datatype in (_STRING, str(XSD.anyURI)):
        return str(literal)
    value = literal.toPython()
    if isinstance(value, Literal) or not isinstance(value, (bool, int, float, datetime, date)):
        raise MappingError(f"{subject} {predicate}: {literal.n3()} is not a valid {datatype}")
    if datatype == str(XSD.double) and isinstance(value, (int, float)):
        return float(value)
    return value


def _from_value(value: Any, datatype: str) -> Literal:
    if datatype == _STRING:
        return Literal(str(value))
    if datatype not in _NATIVE or datatype == str(XSD.anyURI):
        return Literal(str(value), datatype=URIRef(datatype))
    if hasattr(value, "to_native"):  # neo4j.time types
        value = value.to_native()
    return Literal(value, datatype=URIRef(datatype))


def rdf_to_records(graph: Graph) -> GraphRecords:
    """Map an RDF graph of instance data to nodes and relationships.

    Raises :class:`MappingError` naming the first triple that cannot be stored without loss.
    """
    types: dict[str, list[str]] = defaultdict(list)
    props: dict[str, dict[PropKey, list[Scalar]]] = defaultdict(lambda: defaultdict(list))
    rels: list[RelRecord] = []
    objects: set[str] = set()
    for s, p, o in sorted(graph):
        if not isinstance(s, URIRef) or isinstance(o, BNode):
            raise MappingError(f"blank node in triple ({s.n3()} {p.n3()} {o.n3()}); use IRIs")
        subject = str(s)
        types.setdefault(subject, [])
        if p == RDF.type:
            if str(o) not in CLASS_LABELS:
                raise MappingError(f"{s} is typed {o}, which is not a class of the ontology")
            types[subject].append(str(o))
        elif str(p) in RELATIONSHIPS:
            if not isinstance(o, URIRef):
                raise MappingError(f"{s} {p}: object property with literal value {o.n3()}")
            rels.append(RelRecord(RELATIONSHIPS[str(p)], subject, str(o)))
            objects.add(str(o))
        elif str(p) in PROPERTIES:
            if not isinstance(o, Literal):
                raise MappingError(f"{s} {p}: datatype property with IRI value {o}")
            key, datatype = PROPERTIES[str(p)]
            props[subject][key].append(_to_value(s, p, o, datatype))
        else:
            raise MappingError(f"{s}: predicate {p} is not a property of the ontology")
    nodes = [NodeRecord(uri, tuple(t), _collapse(props.get(uri, {}))) for uri, t in types.items()]
    nodes += [NodeRecord(uri) for uri in sorted(objects - types.keys())]
    return GraphRecords(tuple(nodes), tuple(rels))


def _collapse(values: Mapping[PropKey, list[Scalar]]) -> dict[PropKey, PropValue]:
    out: dict[PropKey, PropValue] = {}
    for key, vals in values.items():
        if len({type(v) for v in vals}) > 1:
            raise MappingError(
                f"property {key} mixes value types {sorted({type(v).__name__ for v in vals})}"
            )
        out[key] = vals[0] if len(vals) == 1 else sorted(vals)  # type: ignore[assignment]
    return out


def node_triples(
    uri: str,
    types: Iterable[str],
    props: Mapping[str, Any] | Mapping[PropKey, Any],
    *,
    into: Graph | None = None,
) -> Graph:
    """The triples of one stored node (``props`` as read from Neo4j, ``uri``/``rdf_type`` aside),
    added to ``into`` when given (faster than merging a graph per node)."""
    graph = Graph() if into is None else into
    subject = URIRef(uri)
    for cls in types:
        graph.add((subject, RDF.type, URIRef(cls)))
    for key, value in props.items():
        try:
            predicate, datatype = _PREDICATE_OF_KEY[PropKey(key)]
        except (KeyError, ValueError):
            raise MappingError(f"{uri}: property {key!r} is not in the vocabulary") from None
        for item in value if isinstance(value, list) else [value]:
            graph.add((subject, predicate, _from_value(item, datatype)))
    return graph


def relationship_triple(start: str, rel_type: str, end: str) -> tuple[URIRef, URIRef, URIRef]:
    """The triple of one stored relationship."""
    try:
        predicate = _PREDICATE_OF_REL[RelType(rel_type)]
    except (KeyError, ValueError):
        raise MappingError(f"relationship type {rel_type!r} is not in the vocabulary") from None
    return URIRef(start), predicate, URIRef(end)


def records_to_rdf(records: GraphRecords) -> Graph:
    """Map nodes and relationships back to RDF (the inverse of :func:`rdf_to_records`)."""
    graph = Graph()
    for node in records.nodes:
        graph += node_triples(node.uri, node.types, node.props)
    for rel in records.rels:
        graph.add(relationship_triple(rel.start, rel.type, rel.end))
    return graph


_TIMES = (XSD.dateTime, XSD.date)


def canonical_times(graph: Graph) -> Graph:
    """Times in canonical form, in place: rows read from Neo4j carry its ISO text (nanoseconds,
    ``Z``), the writer's records carry native values; both must give the same triples."""
    for s, p, o in list(graph):
        if isinstance(o, Literal) and o.datatype in _TIMES and not o.ill_typed:
            graph.remove((s, p, o))
            graph.add((s, p, Literal(o.toPython(), datatype=o.datatype)))
    return graph
