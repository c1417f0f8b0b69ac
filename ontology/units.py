"""The closed unit lists: which QUDT units TwinKG accepts for each quantity kind.

The pinned QUDT import (``ontology/imports/qudt.ttl``) is the source: a quantity kind's
``qudt:applicableUnit`` values are its closed list, and every unit of the import is in exactly
one list (a test checks it). The sensor contract (2.0.0 and
later) carries the same pairs, so a sensor whose unit is not in its kind's list is refused; a unit
outside the import is in no list. See
docs/decisions/0039-closed-unit-lists-and-plant-files-checked-with-the-graph.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType

from rdflib import Graph, URIRef
from rdflib.namespace import RDF

from twinkg.ontology.catalog import ONTOLOGY_DIR, parse_turtle
from twinkg.ontology.namespaces import PREFIXES

QUDT_IMPORT = ONTOLOGY_DIR / "imports" / "qudt.ttl"
_QUDT = PREFIXES["qudt"]
_APPLICABLE_UNIT = URIRef(_QUDT + "applicableUnit")
_QUANTITY_KIND = URIRef(_QUDT + "QuantityKind")
_UNIT = URIRef(_QUDT + "Unit")


@cache
def _qudt() -> Graph:
    return parse_turtle([QUDT_IMPORT])


@cache
def closed_unit_lists() -> Mapping[URIRef, tuple[URIRef, ...]]:
    """Each quantity kind of the import → its applicable units (sorted by IRI); read-only."""
    graph = _qudt()
    kinds = sorted(k for k in graph.subjects(RDF.type, _QUANTITY_KIND) if isinstance(k, URIRef))
    return MappingProxyType(
        {
            kind: tuple(
                sorted(u for u in graph.objects(kind, _APPLICABLE_UNIT) if isinstance(u, URIRef))
            )
            for kind in kinds
        }
    )


@cache
def import_units() -> tuple[URIRef, ...]:
    """Every unit the import declares (``a qudt:Unit``), sorted by IRI."""
    return tuple(sorted(u for u in _qudt().subjects(RDF.type, _UNIT) if isinstance(u, URIRef)))


def allowed_units(kind: URIRef | str) -> tuple[URIRef, ...]:
    """The units a sensor of quantity kind ``kind`` may report in; empty for an unknown kind."""
    return closed_unit_lists().get(URIRef(str(kind)), ())


def is_allowed(kind: URIRef | str, unit: URIRef | str) -> bool:
    """Whether ``unit`` is in the closed list of quantity kind ``kind``."""
    return URIRef(str(unit)) in allowed_units(kind)


def curie(term: URIRef | str) -> str:
    """``unit:BAR`` or ``quantitykind:Pressure`` for a QUDT unit or kind; the full IRI otherwise."""
    text = str(term)
    for prefix in ("unit", "quantitykind"):
        if text.startswith(PREFIXES[prefix]):
            return f"{prefix}:{text[len(PREFIXES[prefix]) :]}"
    return text
