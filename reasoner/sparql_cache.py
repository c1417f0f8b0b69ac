"""Parsed SPARQL queries, kept: rdflib's SPARQL processor with a cache of translated queries.

pySHACL hands rdflib the text of every SHACL-SPARQL constraint on every validation, and rdflib
parses it again each time (pyparsing; about 40 ms a query, most of a guard's time). A translated
query is reusable with other bindings (that is what ``rdflib.plugins.sparql.prepareQuery`` is
for), so this processor keeps the last translations by text, base and prefixes. It is registered
as rdflib's ``sparql`` processor (rdflib's documented plugin mechanism) when :func:`install` runs.
Parsing goes through :mod:`kg.sparql_parser`'s lock: rdflib's grammar is not safe for two threads
parsing at once for the first time, and the SPARQL endpoint's check uses the same grammar.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from rdflib import plugin
from rdflib.plugins.sparql.algebra import translateQuery
from rdflib.plugins.sparql.processor import SPARQLProcessor
from rdflib.plugins.sparql.sparql import Query
from rdflib.query import Processor

from twinkg.kg.sparql_parser import parse_query

CACHE_SIZE = 512


@functools.lru_cache(maxsize=CACHE_SIZE)
def _translated(text: str, base: str | None, prefixes: tuple[tuple[str, str], ...]) -> Query:
    return translateQuery(parse_query(text), base, dict(prefixes) or None)


class CachingSPARQLProcessor(SPARQLProcessor):
    """rdflib's SPARQL processor, translating each distinct query text once."""

    def query(  # type: ignore[override]
        self,
        strOrQuery: str | Query,  # noqa: N803 - rdflib's parameter names
        initBindings: Mapping[str, Any] | None = None,  # noqa: N803
        initNs: Mapping[str, Any] | None = None,  # noqa: N803
        base: str | None = None,
        DEBUG: bool = False,  # noqa: N803
    ) -> Mapping[str, Any]:
        """Evaluate the query, translating its text only the first time it is seen."""
        query = strOrQuery
        if isinstance(query, str):
            prefixes = tuple(sorted((k, str(v)) for k, v in (initNs or {}).items()))
            query = _translated(query, base, prefixes)
        return super().query(query, initBindings, initNs, base, DEBUG)


@functools.cache
def install() -> None:
    """Make the caching processor rdflib's ``sparql`` processor (once per process)."""
    plugin.register("sparql", Processor, __name__, CachingSPARQLProcessor.__name__)
