"""Failure-mode signatures in the ontology: a quantity kind and a direction per symptom."""

from __future__ import annotations

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF

from twinkg.agents.diagnose import DIRECTIONS
from twinkg.ontology.catalog import load_ontology
from twinkg.ontology.vocab import QUANTITYKIND, TK


@pytest.fixture(scope="module")
def onto() -> Graph:
    return load_ontology()


def _patterns(graph: Graph, mode: URIRef) -> set[tuple[URIRef, str]]:
    out = set()
    for p in graph.objects(mode, TK.hasSymptom):
        kind = graph.value(p, TK.inQuantityKind)
        direction = graph.value(p, TK.direction)
        assert isinstance(kind, URIRef) and isinstance(direction, Literal)
        out.add((kind, str(direction)))
    return out


def test_every_pattern_has_one_kind_and_a_known_direction(onto: Graph) -> None:
    patterns = set(onto.subjects(RDF.type, TK.SymptomPattern))
    assert len(patterns) >= 20
    for p in patterns:
        assert len(list(onto.objects(p, TK.inQuantityKind))) == 1, p
        directions = [str(d) for d in onto.objects(p, TK.direction)]
        assert len(directions) == 1 and directions[0] in DIRECTIONS, (p, directions)
        assert any(onto.subjects(TK.hasSymptom, p)), f"{p} belongs to no failure mode"


def test_manifests_in_names_exactly_the_kinds_of_the_patterns(onto: Graph) -> None:
    for mode in onto.subjects(RDF.type, TK.FailureMode):
        assert isinstance(mode, URIRef)
        kinds = set(onto.objects(mode, TK.manifestsIn))
        assert kinds == {k for k, _ in _patterns(onto, mode)}, mode


def test_signatures_carry_the_physics(onto: Graph) -> None:
    assert _patterns(onto, TK.Overheating) == {(QUANTITYKIND.Temperature, "rise")}
    plugged, leak = _patterns(onto, TK.Plugged), _patterns(onto, TK.ExternalLeakageProcessMedium)
    assert (QUANTITYKIND.Pressure, "rise") in plugged  # a restriction raises the pressure before it
    assert (QUANTITYKIND.Pressure, "fall") in leak  # a leak loses it
    assert (QUANTITYKIND.VolumeFlowRate, "fall") in plugged & leak
    assert (QUANTITYKIND.Acceleration, "oscillation") in _patterns(onto, TK.Cavitation)
