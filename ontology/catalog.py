"""The ontology as TwinKG reads it: its files, its terms, and the part of it that goes into Neo4j.

The Turtle files under ``ontology/modules`` and ``ontology/imports`` are the source of truth. The
*catalog* lists the named classes (with their superclass closure) and properties (with the Neo4j
name and the datatype they carry) that the storage mapping and the vocabulary generator need.
The *projection* is the subset of the ontology's triples that is stored in Neo4j: named terms,
their hierarchy, domains, ranges, labels and comments, and the named individuals (OWL axioms
built from blank nodes stay in Turtle; see docs/decisions/0003-ontology-projection.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import OWL, RDF, RDFS, XSD

from twinkg.ontology.errors import OntologyError, TurtleSyntaxError
from twinkg.ontology.namespaces import ONTOLOGY_IRI, TK
from twinkg.ontology.naming import label_for, prop_key_for, rel_type_for

ONTOLOGY_DIR = Path(__file__).resolve().parent


class TermKind(StrEnum):
    """What a property becomes in the property graph."""

    RELATIONSHIP = "relationship"
    PROPERTY = "property"


@dataclass(frozen=True, slots=True)
class ClassTerm:
    """A named class: its IRI, its Neo4j label and the labels of all its named superclasses."""

    iri: str
    label: str
    ancestors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PropertyTerm:
    """A named property: relationship type or property key, and the datatype of its values."""

    iri: str
    kind: TermKind
    name: str
    datatype: str | None


@dataclass(frozen=True, slots=True)
class Catalog:
    """The named terms of the ontology, keyed by IRI."""

    version: str
    classes: Mapping[str, ClassTerm]
    properties: Mapping[str, PropertyTerm]


# Terms that describe the ontology itself; they are mapped like any other term.
META_CLASSES = (
    OWL.Class,
    RDFS.Class,
    OWL.ObjectProperty,
    OWL.DatatypeProperty,
    OWL.AnnotationProperty,
    OWL.Ontology,
)
STRUCTURAL_RELATIONSHIPS = (
    RDFS.subClassOf,
    RDFS.subPropertyOf,
    RDFS.domain,
    RDFS.range,
    OWL.inverseOf,
    OWL.versionIRI,
)
STRING_ANNOTATIONS = (RDFS.label, RDFS.comment, OWL.versionInfo)
_PROPERTY_TYPES = {
    OWL.ObjectProperty: TermKind.RELATIONSHIP,
    OWL.DatatypeProperty: TermKind.PROPERTY,
    OWL.AnnotationProperty: TermKind.PROPERTY,
}


def ontology_files(root: Path = ONTOLOGY_DIR) -> list[Path]:
    """The Turtle files of the ontology: its modules, then its pinned imports."""
    files = sorted((root / "modules").glob("*.ttl")) + sorted((root / "imports").glob("*.ttl"))
    if not files:
        raise OntologyError(f"no ontology files under {root}/modules or {root}/imports")
    return files


def parse_turtle(paths: Iterable[Path]) -> Graph:
    """Parse Turtle files into one graph; a syntax error names the file and the problem."""
    graph = Graph()
    for path in paths:
        try:
            graph.parse(path, format="turtle")
        except Exception as exc:  # rdflib raises several unrelated types for bad syntax
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TurtleSyntaxError(f"{path}: malformed Turtle: {reason}") from exc
    return graph


def load_ontology(root: Path = ONTOLOGY_DIR) -> Graph:
    """The merged ontology graph (modules and imports)."""
    return parse_turtle(ontology_files(root))


def _named(nodes: Iterable[object]) -> list[URIRef]:
    return sorted(n for n in nodes if isinstance(n, URIRef))


def _classes(graph: Graph) -> set[URIRef]:
    found = {c for t in (OWL.Class, RDFS.Class) for c in _named(graph.subjects(RDF.type, t))}
    found.update(_named(graph.objects(None, RDFS.subClassOf)))
    found.update(URIRef(str(c)) for c in META_CLASSES)
    return {c for c in found if c not in (OWL.Thing, RDFS.Resource)}


def _ancestors(graph: Graph, cls: URIRef, classes: set[URIRef]) -> tuple[str, ...]:
    seen: set[URIRef] = set()
    todo = [cls]
    while todo:
        for parent in _named(graph.objects(todo.pop(), RDFS.subClassOf)):
            if parent in classes and parent not in seen and parent != cls:
                seen.add(parent)
                todo.append(parent)
    return tuple(sorted(label_for(str(p)) for p in seen))


def _property_terms(graph: Graph) -> dict[str, PropertyTerm]:
    terms: dict[str, PropertyTerm] = {}
    for rdf_type, kind in _PROPERTY_TYPES.items():
        for prop in _named(graph.subjects(RDF.type, rdf_type)):
            iri = str(prop)
            if iri in terms and terms[iri].kind != kind:
                raise OntologyError(f"{iri} is declared both an object and a datatype property")
            if iri in terms:
                continue
            terms[iri] = _property_term(graph, prop, kind)
    for prop in STRUCTURAL_RELATIONSHIPS:
        terms[str(prop)] = PropertyTerm(str(prop), TermKind.RELATIONSHIP, rel_type_for(prop), None)
    for prop in STRING_ANNOTATIONS:
        terms[str(prop)] = PropertyTerm(
            str(prop), TermKind.PROPERTY, prop_key_for(prop), str(XSD.string)
        )
    return terms


def _property_term(graph: Graph, prop: URIRef, kind: TermKind) -> PropertyTerm:
    iri = str(prop)
    if kind is TermKind.RELATIONSHIP:
        return PropertyTerm(iri, kind, rel_type_for(iri), None)
    ranges = _named(graph.objects(prop, RDFS.range))
    if iri.startswith(TK) and len(ranges) != 1:
        raise OntologyError(
            f"datatype property {iri} needs exactly one rdfs:range, has {len(ranges)}"
        )
    datatype = str(ranges[0]) if ranges and str(ranges[0]) != str(RDFS.Literal) else str(XSD.string)
    return PropertyTerm(iri, kind, prop_key_for(iri), datatype)


def _check_unique(names: Iterable[tuple[str, str]], what: str) -> None:
    owners: dict[str, str] = {}
    for iri, name in names:
        other = owners.setdefault(name.lower(), iri)
        if other != iri:
            raise OntologyError(f"{what} {name!r} would name both {other} and {iri}")


def build_catalog(graph: Graph) -> Catalog:
    """List the named classes and properties of ``graph`` with their Neo4j names."""
    classes = _classes(graph)
    class_terms = {
        str(c): ClassTerm(str(c), label_for(str(c)), _ancestors(graph, c, classes)) for c in classes
    }
    properties = _property_terms(graph)
    _check_unique(((t.iri, t.label) for t in class_terms.values()), "label")
    _check_unique(
        ((t.iri, t.name) for t in properties.values() if t.kind is TermKind.RELATIONSHIP),
        "relationship type",
    )
    _check_unique(
        ((t.iri, t.name) for t in properties.values() if t.kind is TermKind.PROPERTY),
        "property key",
    )
    version = graph.value(URIRef(ONTOLOGY_IRI), OWL.versionInfo)
    if version is None:
        raise OntologyError(f"the ontology {ONTOLOGY_IRI} has no owl:versionInfo")
    return Catalog(str(version), class_terms, properties)


def projection(graph: Graph, catalog: Catalog) -> Graph:
    """The triples of the ontology that are stored in Neo4j.

    Kept: triples whose subject is a named term or individual, whose predicate is in the catalog
    (or rdf:type with a cataloged class), and whose object is an IRI or a literal. Language tags
    are kept (decision 0038); blank-node axioms are left out (the whole ontology, axioms
    included, is stored beside the projection exactly as loaded).
    """
    out = Graph()
    for s, p, o in graph:
        if not isinstance(s, URIRef) or isinstance(o, BNode):
            continue
        if p == RDF.type:
            if str(o) in catalog.classes:
                out.add((s, p, o))
            continue
        term = catalog.properties.get(str(p))
        if term is None:
            continue
        if term.kind is TermKind.RELATIONSHIP and isinstance(o, URIRef):
            out.add((s, p, o))
        elif term.kind is TermKind.PROPERTY and isinstance(o, Literal):
            out.add((s, p, _as_declared(o, term.datatype)))
    return out


def _as_declared(literal: Literal, datatype: str | None) -> Literal:
    # Strings are stored plain (RDF 1.1: a simple literal is an xsd:string), with their tag.
    if datatype in (None, str(XSD.string)):
        return Literal(str(literal), lang=literal.language)
    if literal.datatype is None:
        return Literal(str(literal), datatype=URIRef(datatype))
    return literal
