"""Is an exported provenance graph valid PROV-O? (W3C PROV-O §3.1 and §4.1, PROV-CONSTRAINTS).

The shapes in ``shapes/prov`` state as SHACL the domains and ranges of PROV-O's starting-point
terms (https://www.w3.org/TR/prov-o/#description-starting-point-terms, with their domains and
ranges in the §4.1 cross-reference), its axiom ``prov:Activity owl:disjointWith prov:Entity``, and
PROV-CONSTRAINTS' start-precedes-end (https://www.w3.org/TR/prov-constraints/#start-precedes-end),
plus one rule of TwinKG's own: every activity has a start time.

An RDF reasoner would *infer* the types a domain or range names, and then every such check
passes. So the check never does: a node's types are its ``rdf:type`` triples in the graph, closed
only under the ontology's ``rdfs:subClassOf`` hierarchy (a ``tk:Decision`` is a
``prov:Activity``). Schema triples inside the graph itself (``rdfs:domain``, ``rdfs:range``,
``rdfs:subClassOf``, ``rdfs:subPropertyOf``) are not read, so a record cannot redefine what
PROV-O means. Non-conformance is a :class:`ValidationOutcome`, not an exception.
"""

from __future__ import annotations

import functools
from pathlib import Path

from rdflib import RDFS, Graph, URIRef

from twinkg import shapes
from twinkg.ontology.catalog import load_ontology
from twinkg.reasoner.safety import load_shapes
from twinkg.reasoner.validation import ValidationOutcome, validate

__all__ = ["PROV_SHAPES_DIR", "check_prov", "prov_shapes"]

PROV_SHAPES_DIR = Path(shapes.__file__).resolve().parent / "prov"

# Under RDFS inference each of these would let the data mint types or properties of its own.
_SCHEMA_PREDICATES = (RDFS.domain, RDFS.range, RDFS.subClassOf, RDFS.subPropertyOf)


@functools.cache
def _prov_shapes() -> Graph:
    return load_shapes(PROV_SHAPES_DIR)


@functools.cache
def _hierarchy() -> Graph:
    """The named ``rdfs:subClassOf`` triples of the ontology and its imports, and nothing else."""
    hierarchy = Graph()
    for sub, sup in load_ontology().subject_objects(RDFS.subClassOf):
        if isinstance(sub, URIRef) and isinstance(sup, URIRef):
            hierarchy.add((sub, RDFS.subClassOf, sup))
    return hierarchy


def prov_shapes() -> Graph:
    """The PROV-O shapes (``shapes/prov/*.ttl``), meta-SHACL checked once; a copy to keep."""
    copy = Graph()
    for prefix, namespace in _prov_shapes().namespaces():
        copy.bind(prefix, namespace)
    copy += _prov_shapes()
    return copy


def check_prov(graph: Graph) -> ValidationOutcome:
    """Validate ``graph`` (an exported lineage) against the PROV-O shapes.

    Types come from the graph's ``rdf:type`` triples and the ontology's class hierarchy only;
    the graph is not modified. Raises :class:`ShapesError` only if the shapes are unusable.
    """
    data = Graph()
    for triple in graph:
        if triple[1] not in _SCHEMA_PREDICATES:
            data.add(triple)
    return validate(data, _prov_shapes(), ontology=_hierarchy())
