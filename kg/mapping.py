"""RDF ↔ property graph, without loss.

The rules (docs/decisions/0002-rdf-property-graph-mapping.md):

- every IRI becomes a node with ``uri``; a blank node becomes a node whose ``uri`` is a stable
  skolem IRI (:data:`GENID` + its canonical label, so loading the same graph twice writes the
  same nodes), and comes back as a blank node (decision 0038);
- ``rdf:type C`` is kept in the ``rdf_type`` list; the writer adds C's label and its ancestors';
- an object property becomes a relationship; an IRI that is only ever an object becomes a bare
  node (no types, no properties), which contributes nothing on the way back;
- a datatype property becomes a property; several values become a list. Strings, booleans,
  integers, doubles, dates and date-times are stored natively; any other datatype as its lexical
  form, so nothing is lost. A literal must carry its property's declared datatype; a
  language-tagged literal of a string property keeps its tag (:class:`LangString`: the text
  under the key, the tag under ``<key>__lang``).

Values come back in canonical lexical form (``"01"^^xsd:integer`` returns as ``"1"``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.compare import to_canonical_graph
from rdflib.namespace import RDF, XSD
from rdflib.term import Node

from twinkg.kg.records import GraphRecords, LangString, NodeRecord, PropValue, RelRecord, Scalar
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
_LANG_STRING = str(RDF.langString)
GENID = "https://w3id.org/twinkg/.well-known/genid/"
"""Where the skolem IRIs of blank nodes live (RDF 1.1 section 3.5); never an IRI of the twin."""
LANG_SUFFIX = "__lang"
"""Suffix of the property that holds the language tags of a property's values."""
ONTOLOGY_GRAPH = "https://w3id.org/twinkg/graph/ontology"
"""Name of the export's graph that holds the ontology exactly as loaded."""
TWIN_GRAPH = "https://w3id.org/twinkg/graph/twin"
"""Name of the export's graph that holds every node of the twin (plant, events, provenance)."""
_PREDICATE_OF_KEY: Mapping[PropKey, tuple[URIRef, str]] = {
    key: (URIRef(iri), datatype) for iri, (key, datatype) in PROPERTIES.items()
}
_PREDICATE_OF_REL: Mapping[RelType, URIRef] = {
    rel: URIRef(iri) for iri, rel in RELATIONSHIPS.items()
}


def _to_value(subject: object, predicate: object, literal: Literal, datatype: str) -> Scalar:
    if literal.language is not None:
        if datatype not in (_STRING, _LANG_STRING):
            raise MappingError(
                f"{subject} {predicate}: language-tagged literal {literal.n3()}, "
                f"the ontology declares {datatype}"
            )
        return LangString(str(literal), literal.language)
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


def _from_value(value: Any, datatype: str, lang: str | None = None) -> Literal:
    if isinstance(value, LangString):
        value, lang = value.text, value.lang
    if lang:
        return Literal(str(value), lang=lang)
    if datatype in (_STRING, _LANG_STRING):
        return Literal(str(value))
    if datatype not in _NATIVE or datatype == str(XSD.anyURI):
        return Literal(str(value), datatype=URIRef(datatype))
    if hasattr(value, "to_native"):  # neo4j.time types
        value = value.to_native()
    return Literal(value, datatype=URIRef(datatype))


def rdf_to_records(graph: Graph) -> GraphRecords:
    """Map an RDF graph of instance data to nodes and relationships.

    Blank nodes get stable skolem IRIs (:func:`skolemized`). Raises :class:`MappingError` naming
    the first triple that cannot be stored without loss.
    """
    graph = skolemized(graph)
    types: dict[str, list[str]] = defaultdict(list)
    props: dict[str, dict[PropKey, list[Scalar]]] = defaultdict(lambda: defaultdict(list))
    rels: list[RelRecord] = []
    objects: set[str] = set()
    for s, p, o in sorted(graph):
        if not isinstance(s, URIRef):
            raise MappingError(f"subject {s.n3()} of ({s.n3()} {p.n3()} {o.n3()}) is not an IRI")
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


def skolemized(graph: Graph) -> Graph:
    """``graph`` with each blank node replaced by a skolem IRI under :data:`GENID`, named by its
    canonical label (rdflib's canonical labelling), so the same graph always gets the same IRIs;
    ``graph`` itself when it has no blank node."""
    if not any(isinstance(t, BNode) for triple in graph for t in triple):
        return graph
    out = Graph()
    for triple in to_canonical_graph(graph):
        out.add(tuple(_skolem(t) for t in triple))  # type: ignore[arg-type]
    return out


def _skolem(term: Node) -> Node:
    return URIRef(GENID + str(term)) if isinstance(term, BNode) else term


def _term(uri: str) -> URIRef | BNode:
    """A stored node's IRI as RDF: a skolem IRI becomes its blank node again."""
    return BNode(uri[len(GENID) :]) if uri.startswith(GENID) else URIRef(uri)


def _collapse(values: Mapping[PropKey, list[Scalar]]) -> dict[PropKey, PropValue]:
    out: dict[PropKey, PropValue] = {}
    for key, given in values.items():
        vals = given
        if any(isinstance(v, LangString) for v in vals):  # a plain text beside tagged ones
            vals = [LangString(v, "") if isinstance(v, str) else v for v in vals]
        if len({type(v) for v in vals}) > 1:
            raise MappingError(
                f"property {key} mixes value types {sorted({type(v).__name__ for v in vals})}"
            )
        out[key] = vals[0] if len(vals) == 1 else sorted(vals)  # type: ignore[assignment]
    return out


def canonical_values(records: GraphRecords) -> GraphRecords:
    """``records`` with every property value as it comes back from RDF: a one-element list as
    its value, lists sorted and without repeats, numbers of the declared type, empty lists
    gone; and each relationship once (RDF holds a triple once). What is hashed before a write
    (the provenance chain) must be what an export and a reseed give back, or a reseeded chain
    would not verify (decision 0038)."""
    nodes = []
    for node in records.nodes:
        values: dict[PropKey, list[Scalar]] = {}
        for key, value in node.props.items():
            _, datatype = _PREDICATE_OF_KEY[key]
            items = value if isinstance(value, list) else [value]
            # repeats are repeats of the RDF term, as a graph holds each triple once: -0.0 and
            # 0.0 are equal numbers but two literals ("-0.0", "0.0"), and both come back
            terms: dict[Literal | str, Scalar] = {}
            for v in items:
                if datatype == _STRING and type(v) is str:  # a plain text is its own term
                    terms.setdefault(v, v)
                    continue
                term = _from_value(v, datatype)
                terms.setdefault(term, _to_value(node.uri, key, term, datatype))
            if terms:
                values[key] = list(terms.values())
        nodes.append(NodeRecord(node.uri, node.types, _collapse(values)))
    return GraphRecords(tuple(nodes), tuple(dict.fromkeys(records.rels)))


def node_triples(
    uri: str,
    types: Iterable[str],
    props: Mapping[str, Any] | Mapping[PropKey, Any],
    *,
    into: Graph | None = None,
) -> Graph:
    """The triples of one stored node (``props`` as read from Neo4j, ``uri``/``rdf_type`` aside,
    or as a :class:`NodeRecord` holds them), added to ``into`` when given (faster than merging a
    graph per node). A ``<key>__lang`` property gives the language tags of ``<key>``'s values."""
    graph = Graph() if into is None else into
    subject = _term(uri)
    for cls in types:
        graph.add((subject, RDF.type, URIRef(cls)))
    names = {(k.value if isinstance(k, PropKey) else str(k)): v for k, v in props.items()}
    for name, value in names.items():
        if name.endswith(LANG_SUFFIX):
            continue
        try:
            predicate, datatype = _PREDICATE_OF_KEY[PropKey(name)]
        except (KeyError, ValueError):
            raise MappingError(f"{uri}: property {name!r} is not in the vocabulary") from None
        items = value if isinstance(value, list) else [value]
        tags = names.get(name + LANG_SUFFIX)
        langs = tags if isinstance(tags, list) else [tags] * len(items)
        if len(langs) != len(items):
            raise MappingError(f"{uri}: {name} has {len(items)} values and {len(langs)} tags")
        for item, lang in zip(items, langs, strict=True):
            graph.add((subject, predicate, _from_value(item, datatype, lang)))
    return graph


def relationship_triple(
    start: str, rel_type: str, end: str
) -> tuple[URIRef | BNode, URIRef, URIRef | BNode]:
    """The triple of one stored relationship."""
    try:
        predicate = _PREDICATE_OF_REL[RelType(rel_type)]
    except (KeyError, ValueError):
        raise MappingError(f"relationship type {rel_type!r} is not in the vocabulary") from None
    return _term(start), predicate, _term(end)


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
