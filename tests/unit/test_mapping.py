"""RDF → property graph → RDF is lossless, and data it cannot store is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import RDF, RDFS, XSD
from rdflib.term import Node

from twinkg.graph_seed.registry import PLANTS_DIR
from twinkg.kg.mapping import rdf_to_records, records_to_rdf
from twinkg.ontology.catalog import build_catalog, load_ontology, parse_turtle, projection
from twinkg.ontology.errors import MappingError, TurtleSyntaxError
from twinkg.ontology.vocab import TK, PropKey

SKAB = PLANTS_DIR / "skab-testbed.ttl"
PUMP = URIRef("https://w3id.org/twinkg/plant/test/pump")


def test_skab_seed_round_trips_without_loss() -> None:
    graph = parse_turtle([SKAB])
    assert isomorphic(records_to_rdf(rdf_to_records(graph)), graph)


def test_ontology_projection_round_trips_without_loss() -> None:
    ontology = load_ontology()
    projected = projection(ontology, build_catalog(ontology))
    assert len(projected) > 500
    assert isomorphic(records_to_rdf(rdf_to_records(projected)), projected)


def test_multi_valued_property_becomes_a_list_and_comes_back() -> None:
    graph = Graph()
    graph.add((PUMP, RDF.type, TK.CentrifugalPump))
    graph.add((PUMP, RDFS.label, Literal("pump")))
    graph.add((PUMP, RDFS.label, Literal("Pumpe")))
    records = rdf_to_records(graph)
    assert records.nodes[0].props[PropKey.RDFS_LABEL] == ["Pumpe", "pump"]
    assert isomorphic(records_to_rdf(records), graph)


def _one(s: Node, p: Node, o: Node) -> Graph:
    graph = Graph()
    graph.add((s, p, o))
    return graph


@pytest.mark.parametrize(
    ("graph", "message"),
    [
        (_one(Literal("x"), RDF.type, TK.Pump), "not an IRI"),
        (_one(PUMP, URIRef("http://example.org/colour"), Literal("red")), "not a property"),
        (_one(PUMP, RDF.type, URIRef("http://example.org/Widget")), "not a class"),
        (_one(PUMP, TK.ratedFlow, Literal("12", datatype=XSD.integer)), "declares"),
        (_one(PUMP, TK.ratedFlow, Literal("12", lang="de")), "language-tagged"),
        (_one(PUMP, TK.partOf, Literal("line 1")), "literal value"),
        (_one(PUMP, TK.ratedFlow, Literal("fast", datatype=XSD.double)), "not a valid"),
    ],
)
def test_unmappable_data_is_refused_with_the_reason(graph: Graph, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        rdf_to_records(graph)


def test_malformed_turtle_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ttl"
    bad.write_text(
        "@prefix tk: <https://w3id.org/twinkg/ontology#> .\ntk:a tk:b ", encoding="utf-8"
    )
    with pytest.raises(TurtleSyntaxError, match=r"bad\.ttl: malformed Turtle"):
        parse_turtle([bad])
