"""How ontology terms are named in Neo4j.

One rule for every term, so that the graph can be read back to RDF without loss:

- a class becomes a node label: its local name for TwinKG terms
  (``tk:CentrifugalPump`` → ``CentrifugalPump``), ``<prefix>_<local>`` for foreign ones
  (``prov:Activity`` → ``prov_Activity``);
- an object property becomes a relationship type in UPPER_SNAKE case (``tk:partOf`` → ``PART_OF``,
  ``rdfs:subClassOf`` → ``RDFS_SUB_CLASS_OF``);
- a datatype or annotation property becomes a property key (``tk:ratedPower`` → ``ratedPower``,
  ``rdfs:label`` → ``rdfs_label``).
"""

from __future__ import annotations

import re

from twinkg.ontology.errors import OntologyError
from twinkg.ontology.namespaces import PREFIXES, TK

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def split_iri(iri: str) -> tuple[str, str]:
    """Split ``iri`` into (prefix, local name) using the longest known namespace."""
    best = ""
    for prefix, namespace in PREFIXES.items():
        if iri.startswith(namespace) and len(namespace) > len(PREFIXES.get(best, "")):
            best = prefix
    if not best:
        raise OntologyError(f"term {iri} is in no known namespace; add its prefix to namespaces.py")
    local = iri[len(PREFIXES[best]) :]
    if not _NAME.match(local):
        raise OntologyError(f"term {iri} has local name {local!r}, which cannot name a Neo4j token")
    return best, local


def _qualified(iri: str) -> tuple[bool, str, str]:
    prefix, local = split_iri(iri)
    return iri.startswith(TK), prefix, local


def label_for(iri: str) -> str:
    """The Neo4j label of class ``iri``."""
    own, prefix, local = _qualified(iri)
    return local if own else f"{prefix}_{local}"


def rel_type_for(iri: str) -> str:
    """The Neo4j relationship type of object property ``iri``."""
    own, prefix, local = _qualified(iri)
    snake = _CAMEL_BOUNDARY.sub("_", local).upper()
    return snake if own else f"{prefix.upper()}_{snake}"


def prop_key_for(iri: str) -> str:
    """The Neo4j property key of datatype or annotation property ``iri``."""
    own, prefix, local = _qualified(iri)
    return local if own else f"{prefix}_{local}"
