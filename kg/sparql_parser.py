"""rdflib's SPARQL 1.1 grammar, one caller at a time.

rdflib parses SPARQL with pyparsing, whose parse actions are wrapped on first use by a helper
that finds out how many arguments each action takes by calling it and catching the
``TypeError`` (``pyparsing.core._trim_arity``). That trial is not thread-safe: two threads
parsing for the first time at once each see the other's half-made wrapper, both fail with a
``TypeError``, and the wrapper stays broken, so every later parse in the process fails too
(checked with rdflib 7.6 and pyparsing 3.3: eight threads parsing at once poisoned the process on
every try). Every use of the grammar in TwinKG therefore goes through :data:`LOCK`: the SPARQL
endpoint's check (:mod:`kg.sparql_query`) and the SHACL-SPARQL processor
(:mod:`reasoner.sparql_cache`). Parsing a query takes milliseconds, so one lock costs little;
:func:`warm` parses one query of each form ahead of the first request.
"""

from __future__ import annotations

import threading
from typing import Any

from rdflib.plugins.sparql import parser as _parser

LOCK = threading.Lock()
"""Held for every parse with rdflib's SPARQL grammar in this process."""

_WARM = (
    "PREFIX ex: <http://example.org/> SELECT DISTINCT ?s (COUNT(?o) AS ?n) WHERE { ?s ex:p/ex:q* "
    "?o OPTIONAL { ?o ex:r ?x } FILTER(isLiteral(?x) && ?x > 1) } GROUP BY ?s ORDER BY ?s LIMIT 1",
    "ASK { VALUES ?v { 1 'a' } ?s ?p ?v MINUS { ?s a ?t } }",
    "CONSTRUCT { ?s ?p ?o } WHERE { { ?s ?p ?o } UNION { GRAPH ?g { ?s ?p ?o } } }",
    "DESCRIBE <http://example.org/a>",
)


def parse_query(text: str) -> Any:
    """rdflib's parse tree of a SPARQL query (``pyparsing.ParseBaseException`` if none)."""
    with LOCK:
        return _parser.parseQuery(text)


def parse_update(text: str) -> Any:
    """rdflib's parse tree of a SPARQL update (``pyparsing.ParseBaseException`` if none)."""
    with LOCK:
        return _parser.parseUpdate(text)


def warm() -> None:
    """Parse one query of each form and an update, so the first requests find the grammar's
    actions already set up (the lock keeps them safe regardless)."""
    for text in _WARM:
        parse_query(text)
    parse_update("INSERT DATA { <http://example.org/a> <http://example.org/b> 1 }")
