"""Turtle and TriG written by the project keep every double exactly (rdflib #1852 abbreviates
them to seven significant digits)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from rdflib import XSD, Dataset, Graph, Literal, URIRef

from twinkg.kg.rdf_text import serialize

A, P, G = URIRef("urn:x:a"), URIRef("urn:x:p"), URIRef("urn:x:g")


def test_rdflib_alone_loses_digits() -> None:
    graph = Graph()
    graph.add((A, P, Literal(0.8264919845768235)))
    back = Graph().parse(data=graph.serialize(format="turtle"), format="turtle")
    (got,) = back.objects()
    assert isinstance(got, Literal)
    assert got.toPython() != 0.8264919845768235  # the bug worked around


@settings(max_examples=300, derandomize=True)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5))
def test_every_double_comes_back_exactly(values: list[float]) -> None:
    graph = Graph()
    for i, value in enumerate(values):
        graph.add((URIRef(f"urn:x:s{i}"), P, Literal(value)))
    graph.add((A, P, Literal("text", lang="en")))
    graph.add((A, P, Literal(7)))
    for syntax in ("turtle", "nt", "json-ld", "n3"):
        back = Graph().parse(data=serialize(graph, syntax), format=syntax)
        assert set(back) == set(graph), syntax
    for i, value in enumerate(values):
        (got,) = back.objects(URIRef(f"urn:x:s{i}"), P)
        assert isinstance(got, Literal) and got.datatype == XSD.double
        assert got.toPython() == value


@settings(max_examples=100, derandomize=True)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_dataset_keeps_its_graphs_and_doubles(value: float) -> None:
    dataset = Dataset()
    dataset.graph(G).add((A, P, Literal(value)))
    dataset.add((A, P, Literal(value / 3)))
    for syntax in ("trig", "nquads"):
        back = Dataset()
        back.parse(data=serialize(dataset, syntax), format=syntax)
        assert set(back.graph(G)) == {(A, P, Literal(value))}
        (default,) = back.default_graph.objects(A, P)
        assert isinstance(default, Literal) and default.toPython() == value / 3
