"""SPARQL 1.1 queries on the projection: which are allowed, and in which format they answer.

Specs: SPARQL 1.1 Query (https://www.w3.org/TR/sparql11-query/), its result formats (JSON, XML,
CSV/TSV) and the Protocol's content negotiation (https://www.w3.org/TR/sparql11-protocol/).

A request is judged by *parsing* it with rdflib's SPARQL grammar (through
:mod:`kg.sparql_parser`, one parse at a time), which applies the ``\\uXXXX`` escapes before
parsing and drops comments, as the spec says: an update (``INSERT``, ``LOAD``, ``CLEAR``, …) is
refused, and so is any query whose parse tree holds a ``SERVICE`` pattern (Oxigraph would fetch
it over HTTP). Oxigraph then runs the survivor in a worker process (:mod:`kg.sparql_pool`), which
serialises the answer (:mod:`kg.sparql_results`).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator
from typing import Any

import pyoxigraph as ox
from pyparsing import ParseBaseException
from rdflib.plugins.sparql.parserutils import CompValue

from twinkg.kg.sparql_parser import parse_query, parse_update
from twinkg.kg.sparql_results import Format
from twinkg.ontology.errors import NotAcceptableError, SparqlInvalidError, SparqlRefusedError


class QueryForm(enum.Enum):
    """The four SPARQL query forms."""

    SELECT = "SelectQuery"
    ASK = "AskQuery"
    CONSTRUCT = "ConstructQuery"
    DESCRIBE = "DescribeQuery"


_RESULTS: tuple[Format, ...] = (  # server preference order: the first is the default
    ox.QueryResultsFormat.JSON,
    ox.QueryResultsFormat.XML,
    ox.QueryResultsFormat.CSV,
    ox.QueryResultsFormat.TSV,
)
_GRAPHS: tuple[Format, ...] = (
    ox.RdfFormat.TURTLE,
    ox.RdfFormat.N_TRIPLES,
    ox.RdfFormat.RDF_XML,
    ox.RdfFormat.JSON_LD,
)
_ALIASES = {"application/json": "application/sparql-results+json", "text/xml": "application/xml"}


CACHED_CHARS = 8192
"""Accepted queries up to this many characters keep their verdict (:func:`check`)."""


def check(text: str) -> QueryForm:
    """The form of ``text`` if TwinKG runs it: :class:`SparqlRefusedError` for an update, LOAD or
    SERVICE, :class:`SparqlInvalidError` (one-line reason) when it does not parse.

    The verdict is a function of the text alone, so an accepted query of at most
    :data:`CACHED_CHARS` characters keeps it (the 512 most recently used): parsing takes
    milliseconds under a process-wide lock (:mod:`kg.sparql_parser`), and dashboards and agents
    ask the same queries again and again. A refusal is not kept; it is parsed again."""
    if len(text) <= CACHED_CHARS:
        return _accepted(text)
    return _judged(text)


@functools.lru_cache(maxsize=512)
def _accepted(text: str) -> QueryForm:
    return _judged(text)


def _judged(text: str) -> QueryForm:
    try:
        tree = parse_query(text)
    except RecursionError:  # pyparsing recurses per nesting level (about 100 deep is enough)
        raise SparqlInvalidError(
            "the query nests too deeply (or is too long) for the SPARQL checker; simplify it"
        ) from None
    except ParseBaseException as exc:
        if _is_update(text):
            raise SparqlRefusedError(
                "SPARQL updates (INSERT, DELETE, LOAD, CLEAR, CREATE, DROP, COPY, MOVE, ADD) "
                "are refused: this endpoint only answers queries"
            ) from None
        raise SparqlInvalidError(f"invalid SPARQL: {_one_line(exc)}") from None
    if any(node.name == "ServiceGraphPattern" for node in _nodes(tree)):
        raise SparqlRefusedError("SERVICE is refused: queries cannot reach other endpoints")
    body = tree[1]
    return QueryForm(body.name)


def _is_update(text: str) -> bool:
    """Whether ``text`` is an update with at least one operation (an empty one is no query)."""
    try:
        tree = parse_update(text)
    except (ParseBaseException, RecursionError):
        return False
    return "request" in tree


def _nodes(value: Any) -> Iterator[CompValue]:
    """Every grammar node of a parse tree (CompValues nest in lists, dicts and ParseResults)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, CompValue):
            yield item
            stack.extend(item.values())
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)) or hasattr(item, "asList"):
            stack.extend(list(item))


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def negotiate(form: QueryForm, accept: str | None) -> Format:
    """The result format for ``form`` that best matches an HTTP ``Accept`` header (quality
    values and wildcards honoured, ties to the server's order); the default for none or
    ``*/*``; :class:`NotAcceptableError` when nothing offered is acceptable."""
    offers: tuple[Format, ...]
    if form is QueryForm.ASK:
        offers = _RESULTS[:2]  # CSV and TSV define no boolean result
    elif form is QueryForm.SELECT:
        offers = _RESULTS
    else:
        offers = _GRAPHS
    if not accept or not accept.strip():
        return offers[0]
    ranges = _media_ranges(accept)
    best: tuple[float, int] | None = None
    chosen: Format | None = None
    for order, offer in enumerate(offers):
        quality = _quality(_base(offer.media_type), ranges)
        if quality > 0 and (best is None or (quality, -order) > best):
            best, chosen = (quality, -order), offer
    if chosen is None:
        names = ", ".join(_base(o.media_type) for o in offers)
        raise NotAcceptableError(f"no acceptable format for a {form.name} result; offered: {names}")
    return chosen


def _base(media_type: str) -> str:
    return media_type.split(";", maxsplit=1)[0].strip().lower()


def _media_ranges(accept: str) -> list[tuple[str, float, int]]:
    """(media range, q, specificity) for each entry of an Accept header."""
    ranges = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        media = _ALIASES.get(pieces[0].lower(), pieces[0].lower())
        if not media or "/" not in media:
            continue
        quality = 1.0
        for param in pieces[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(1.0, max(0.0, float(value)))
                except ValueError:
                    quality = 0.0
        kind, _, sub = media.partition("/")
        specificity = 0 if kind == "*" else 1 if sub == "*" else 2
        ranges.append((media, quality, specificity))
    return ranges


def _quality(media: str, ranges: list[tuple[str, float, int]]) -> float:
    """The q of the most specific range that covers ``media`` (RFC 9110, 12.5.1)."""
    kind = media.split("/", maxsplit=1)[0]
    found = [
        (specificity, quality)
        for rng, quality, specificity in ranges
        if rng in (media, f"{kind}/*", "*/*")
        or (rng == "application/xml" and media == "application/sparql-results+xml")
    ]
    return max(found)[1] if found else 0.0
