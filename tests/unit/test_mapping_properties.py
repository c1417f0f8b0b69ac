"""Property: RDF → records → RDF gives back an isomorphic graph, for generated graphs with
language-tagged literals, literals of every declared datatype (odd ones included), several values
per property and chains of blank nodes shaped like OWL restrictions (decision 0038); and the same
graph, whatever its blank nodes are called, always maps to the same records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import RDF, XSD
from rdflib.term import Node

from twinkg.kg.mapping import GENID, canonical_values, rdf_to_records, records_to_rdf
from twinkg.kg.records import GraphRecords, NodeRecord, RelRecord
from twinkg.ontology.vocab import CLASS_LABELS, PROPERTIES, RELATIONSHIPS, PropKey, RelType

PLANT = "https://w3id.org/twinkg/plant/generated-h/"
CLASSES = sorted(CLASS_LABELS)
RELS = sorted(RELATIONSHIPS)
_BY_TYPE: dict[str, list[str]] = {}
for _iri, (_key, _datatype) in sorted(PROPERTIES.items()):
    _BY_TYPE.setdefault(_datatype, []).append(_iri)

TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=12)
LANG = st.sampled_from(["en", "de", "fr-ch", "pt-br", "zh-hant"])
ZONE = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=3))]
)
TIME = st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1), timezones=ZONE)

_LITERALS: dict[str, st.SearchStrategy[Literal]] = {
    str(XSD.string): st.one_of(
        TEXT.map(Literal), st.tuples(TEXT, LANG).map(lambda t: Literal(t[0], lang=t[1]))
    ),
    str(XSD.double): st.floats(allow_nan=False, allow_infinity=False).map(
        lambda f: Literal(f, datatype=XSD.double)
    ),
    str(XSD.integer): st.integers(-(2**63), 2**63 - 1).map(
        lambda i: Literal(i, datatype=XSD.integer)
    ),
    str(XSD.dateTime): TIME.map(lambda t: Literal(t, datatype=XSD.dateTime)),
    str(XSD.boolean): st.booleans().map(lambda b: Literal(b, datatype=XSD.boolean)),
    str(XSD.decimal): st.decimals(allow_nan=False, allow_infinity=False, places=4).map(
        lambda d: Literal(str(Decimal(d)), datatype=XSD.decimal)
    ),
    str(XSD.anyURI): TEXT.map(lambda t: Literal("urn:x:" + t.strip(), datatype=XSD.anyURI)),
}
DATATYPES = sorted(d for d in _BY_TYPE if d in _LITERALS)


@st.composite
def _describe(draw: st.DrawFn, graph: Graph, subject: Node) -> None:
    """Types and datatype properties (several values each) of one subject."""
    for cls in draw(st.lists(st.sampled_from(CLASSES), max_size=2)):
        graph.add((subject, RDF.type, URIRef(cls)))
    for datatype in draw(st.lists(st.sampled_from(DATATYPES), max_size=3)):
        prop = URIRef(draw(st.sampled_from(_BY_TYPE[datatype])))
        for value in draw(st.lists(_LITERALS[datatype], min_size=1, max_size=3)):
            graph.add((subject, prop, value))


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    """IRIs and blank nodes with types and values; each blank node hangs from the node before
    it (a chain, like ``[ a owl:Restriction ; owl:onProperty … ; owl:someValuesFrom [ … ] ]``)."""
    graph = Graph()
    iris = [URIRef(f"{PLANT}n{i}") for i in range(draw(st.integers(1, 3)))]
    for iri in iris:
        draw(_describe(graph, iri))
    previous: Node = iris[0]
    for _ in range(draw(st.integers(0, 4))):
        blank = BNode()
        graph.add((previous, URIRef(draw(st.sampled_from(RELS))), blank))
        draw(_describe(graph, blank))
        if draw(st.booleans()):  # a restriction names a named term
            graph.add((blank, URIRef(draw(st.sampled_from(RELS))), draw(st.sampled_from(iris))))
        previous = blank
    for _ in range(draw(st.integers(0, 3))):
        start, end = draw(st.sampled_from(iris)), draw(st.sampled_from(iris))
        graph.add((start, URIRef(draw(st.sampled_from(RELS))), end))
    return graph


def _relabelled(graph: Graph) -> Graph:
    """The same graph with fresh blank node names."""
    fresh: dict[Node, BNode] = {}
    out = Graph()
    for triple in graph:
        out.add(
            tuple(  # type: ignore[arg-type]
                fresh.setdefault(t, BNode()) if isinstance(t, BNode) else t for t in triple
            )
        )
    return out


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_mapping_round_trip_is_isomorphic(graph: Graph) -> None:
    records = rdf_to_records(graph)
    assert isomorphic(records_to_rdf(records), graph)
    blank = {n for t in graph for n in t if isinstance(n, BNode)}
    skolem = {n.uri for n in records.nodes if n.uri.startswith(GENID)}
    assert len(skolem) == len(blank)  # one node per blank node, none merged


@settings(max_examples=100, deadline=None)
@given(graphs())
def test_the_same_graph_always_maps_to_the_same_records(graph: Graph) -> None:
    first, second = rdf_to_records(graph), rdf_to_records(_relabelled(graph))
    assert sorted(first.nodes, key=lambda n: n.uri) == sorted(second.nodes, key=lambda n: n.uri)
    assert sorted(first.rels, key=repr) == sorted(second.rels, key=repr)


@settings(max_examples=100, deadline=None)
@given(graphs())
def test_canonical_values_are_what_rdf_gives_back(graph: Graph) -> None:
    records = rdf_to_records(graph)
    assert canonical_values(records) == records  # a mapped graph is already canonical


def test_canonical_values_take_the_form_an_export_gives_back() -> None:
    # What the provenance chain hashes must survive export → reseed (decision 0038).
    uri = PLANT + "d"
    node = NodeRecord(
        uri,
        (),
        {
            PropKey.RDFS_LABEL: ["b", "a", "b"],
            PropKey.RDFS_COMMENT: ["only"],
            PropKey.RATED_FLOW: 5,
            PropKey.TAG: [],
        },
    )
    [back] = canonical_values(GraphRecords((node,), ())).nodes
    assert back.props == {
        PropKey.RDFS_LABEL: ["a", "b"],
        PropKey.RDFS_COMMENT: "only",
        PropKey.RATED_FLOW: 5.0,
    }
    assert isinstance(back.props[PropKey.RATED_FLOW], float)
    again = rdf_to_records(records_to_rdf(GraphRecords((back,), ())))
    assert again.nodes == (back,)


def test_canonical_values_keep_each_relationship_once() -> None:
    # Neo4j can hold a relationship twice; RDF cannot, so the hashed form must not either.
    node = NodeRecord(PLANT + "d")
    rel = RelRecord(RelType.PART_OF, PLANT + "d", PLANT + "e")
    records = GraphRecords((node, NodeRecord(PLANT + "e")), (rel, rel))
    assert canonical_values(records).rels == (rel,)


def test_equal_numbers_of_two_lexical_forms_are_two_values() -> None:
    # -0.0 and 0.0 are equal numbers but two RDF literals: the graph holds both, and so must the
    # canonical form that the provenance chain hashes (a Hypothesis find)
    graph = Graph()
    node = URIRef(PLANT + "z")
    accuracy = next(URIRef(i) for i, (k, _) in PROPERTIES.items() if k is PropKey.ACCURACY)
    graph.add((node, accuracy, Literal(-0.0, datatype=XSD.double)))
    graph.add((node, accuracy, Literal(0.0, datatype=XSD.double)))
    records = rdf_to_records(graph)
    assert canonical_values(records) == records
    [back] = canonical_values(records).nodes
    assert len(back.props[PropKey.ACCURACY]) == 2  # type: ignore[arg-type]
    assert isomorphic(records_to_rdf(records), graph)
