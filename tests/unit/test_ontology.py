"""Hygiene of the ontology files: what every ontologist edit must keep true."""

from __future__ import annotations

from pathlib import Path

import owlready2
import pytest
from rdflib import Graph, URIRef
from rdflib.namespace import OWL, RDF, RDFS, XSD

from twinkg.ontology.catalog import build_catalog, load_ontology, ontology_files, parse_turtle
from twinkg.ontology.namespaces import TK

SUPPORTED_RANGES = {
    XSD.string,
    XSD.boolean,
    XSD.integer,
    XSD.double,
    XSD.dateTime,
    XSD.date,
    XSD.anyURI,
}


@pytest.fixture(scope="module")
def graph() -> Graph:
    return load_ontology()


def _tk_terms(graph: Graph) -> set[URIRef]:
    kinds = (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.NamedIndividual)
    return {
        s
        for k in kinds
        for s in graph.subjects(RDF.type, k)
        if isinstance(s, URIRef) and str(s).startswith(TK)
    }


def test_every_file_declares_its_ontology_and_version() -> None:
    for path in ontology_files():
        header = parse_turtle([path])
        ontologies = list(header.subjects(RDF.type, OWL.Ontology))
        if path.parent.name == "imports":
            assert ontologies and header.value(ontologies[0], OWL.versionInfo), path


def test_every_twinkg_term_has_a_label_and_a_comment(graph: Graph) -> None:
    missing = [
        t
        for t in _tk_terms(graph)
        if graph.value(t, RDFS.label) is None or graph.value(t, RDFS.comment) is None
    ]
    assert not missing


def test_every_twinkg_term_used_is_declared(graph: Graph) -> None:
    used = {
        t for triple in graph for t in triple if isinstance(t, URIRef) and str(t).startswith(TK)
    }
    assert used <= _tk_terms(graph)


def test_datatype_properties_have_one_supported_range(graph: Graph) -> None:
    for prop in graph.subjects(RDF.type, OWL.DatatypeProperty):
        if str(prop).startswith(TK):
            assert set(graph.objects(prop, RDFS.range)) <= SUPPORTED_RANGES, prop


def test_object_properties_range_over_classes(graph: Graph) -> None:
    classes = set(build_catalog(graph).classes)
    for prop in graph.subjects(RDF.type, OWL.ObjectProperty):
        for rng in graph.objects(prop, RDFS.range):
            assert str(rng) in classes, (prop, rng)


def test_no_term_is_both_object_and_datatype_property(graph: Graph) -> None:
    both = set(graph.subjects(RDF.type, OWL.ObjectProperty)) & set(
        graph.subjects(RDF.type, OWL.DatatypeProperty)
    )
    assert not both


def test_failure_modes_carry_iso_14224_codes(graph: Graph) -> None:
    codes = {
        str(graph.value(m, URIRef(TK + "iso14224Code")))
        for m in graph.subjects(RDF.type, URIRef(TK + "FailureMode"))
    }
    assert {"VIB", "OHE", "LOO", "ELP", "FTS", "INL", "NOI"} <= codes


def test_ontology_is_consistent_and_has_no_unsatisfiable_class(
    graph: Graph, tmp_path: Path
) -> None:
    """HermiT (shipped with owlready2, run on the machine's Java) finds no contradiction."""
    merged = Graph()
    merged += graph
    merged.remove((None, OWL.imports, None))  # the imports are already merged in; no download
    path = tmp_path / "twinkg.nt"
    merged.serialize(path, format="nt", encoding="utf-8")
    world = owlready2.World()
    world.get_ontology(path.as_uri()).load()
    owlready2.sync_reasoner(world, infer_property_values=False, debug=0)  # raises if inconsistent
    assert list(world.inconsistent_classes()) == []
    assert len(list(world.classes())) > 50
