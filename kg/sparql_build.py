"""What the SPARQL projection is built from: the ontology's triples, Neo4j's export as Oxigraph
quads, and the fingerprint of the code and files that decide its content.

A projection persists across restarts (decision 0026) only while its fingerprint matches: the
layout version :data:`FORMAT`, the ontology's Turtle files (modules and pinned imports) and the
mapping between the property graph and RDF (``kg/mapping.py``, the generated vocabulary). Any
change to them rebuilds the store rather than serve triples another version would not make.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyoxigraph as ox
from rdflib import BNode, Literal, URIRef

from twinkg.kg import mapping
from twinkg.ontology import vocab
from twinkg.ontology.catalog import ontology_files

FORMAT = 1
"""The projection's layout version: bump it when what a store holds changes shape."""


def fingerprint() -> str:
    """What the projection's content depends on besides the graph: the layout version, the
    ontology's Turtle files and the mapping code. A store with another fingerprint rebuilds."""
    digest = hashlib.sha256(f"twinkg-projection/{FORMAT}".encode())
    files = [*sorted(ontology_files()), Path(mapping.__file__), Path(vocab.__file__)]
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def ontology_store() -> ox.Store:
    """The ontology's Turtle files in an in-memory store (OWL axioms and blank nodes kept)."""
    store = ox.Store()
    for file in ontology_files():
        store.load(path=file, format=ox.RdfFormat.TURTLE)
    return store


def to_quad(triple: tuple[object, object, object]) -> ox.Quad:
    """An exported rdflib triple as an Oxigraph quad in the default graph."""
    s, p, o = (_term(x) for x in triple)
    assert isinstance(p, ox.NamedNode) and not isinstance(s, ox.Literal)
    return ox.Quad(s, p, o)


def _term(value: object) -> ox.NamedNode | ox.BlankNode | ox.Literal:
    if isinstance(value, URIRef):
        return ox.NamedNode(str(value))
    if isinstance(value, BNode):
        return ox.BlankNode(str(value))
    assert isinstance(value, Literal)
    if value.language:
        return ox.Literal(str(value), language=value.language)
    if value.datatype is None:
        return ox.Literal(str(value))
    return ox.Literal(str(value), datatype=ox.NamedNode(str(value.datatype)))
