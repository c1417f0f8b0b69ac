"""RDF written as text without losing a value.

rdflib's Turtle, TriG and N3 writers abbreviate every ``xsd:double`` literal to a bare number
formatted with ``%e``: seven significant digits, whatever the literal holds (rdflib issue #1852,
open). A trust score of 0.8264919845768235 comes back as 0.826492, so an export seeded again no
longer matches the hashes of the decisions that used it. :func:`serialize` writes every double
with its full lexical form and its datatype instead; the other syntaxes are written as rdflib
writes them (N-Triples, N-Quads and JSON-LD keep the lexical form already).
"""

from __future__ import annotations

from collections.abc import Callable

from rdflib import XSD, Dataset, Graph, Literal, URIRef
from rdflib.term import Node

_ABBREVIATING = frozenset({"turtle", "ttl", "trig", "n3"})


class _ExactDouble(Literal):
    """An ``xsd:double`` that the Turtle family writes as ``"lexical"^^xsd:double``."""

    __slots__ = ()

    def _literal_n3(
        self,
        use_plain: bool = False,
        qname_callback: Callable[[URIRef], str | None] | None = None,
    ) -> str:
        del use_plain  # the abbreviated form is the lossy one
        return super()._literal_n3(False, qname_callback)


def _exact(node: Node) -> Node:
    if isinstance(node, Literal) and node.datatype == XSD.double:
        return _ExactDouble(str(node), datatype=XSD.double)
    return node


def serialize(graph: Graph, syntax: str) -> str:
    """``graph`` (a :class:`Graph` or a :class:`Dataset`) as text in ``syntax``, every double
    written in full."""
    if syntax not in _ABBREVIATING:
        return graph.serialize(format=syntax)
    if isinstance(graph, Dataset):
        exact_set = Dataset()
        for prefix, namespace in graph.namespaces():
            exact_set.bind(prefix, namespace, override=True)
        for name in [c.identifier for c in graph.graphs()]:
            target = exact_set.graph(name)
            for s, p, o in graph.graph(name):
                target.add((s, p, _exact(o)))
        return exact_set.serialize(format=syntax)
    exact = Graph()
    for prefix, namespace in graph.namespaces():
        exact.bind(prefix, namespace, override=True)
    for s, p, o in graph:
        exact.add((s, p, _exact(o)))
    return exact.serialize(format=syntax)
