"""A SPARQL answer, serialised: SPARQL 1.1 Query Results JSON, XML, CSV/TSV, or an RDF graph.

Specs: https://www.w3.org/TR/sparql11-results-json/ (written here, so the caps can cut it) and
the other result formats and RDF syntaxes (written by pyoxigraph). This runs inside a SPARQL
worker process (:mod:`kg.sparql_worker`), so it imports neither rdflib nor the rest of TwinKG.

Evaluation is lazy: rows are read one by one, at most ``row_cap`` of them and at most
``byte_cap`` bytes of serialised answer; either cap sets ``truncated``. The deadline is checked
between rows; a step that yields no row for long (a sort, an aggregate) is stopped by the pool,
which kills the worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyoxigraph as ox

from twinkg.ontology.errors import QueryTimeoutError

Format = ox.QueryResultsFormat | ox.RdfFormat
"""A result format (solutions and booleans) or an RDF syntax (graphs)."""

_STRING = "http://www.w3.org/2001/XMLSchema#string"
_JSON_FRAME = 64  # the document's head and brackets, and then some


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A query's serialised answer: the body, its media type, how many rows (solutions or
    triples; 1 for ASK) it holds, and whether a cap (rows or bytes) cut it."""

    body: bytes
    media_type: str
    rows: int
    truncated: bool


def evaluate(
    results: ox.QuerySolutions | ox.QueryBoolean | ox.QueryTriples,
    fmt: Format,
    *,
    row_cap: int,
    byte_cap: int,
    deadline: float,
) -> Evaluated:
    """Drain ``results`` up to ``row_cap`` rows and ``byte_cap`` bytes and serialise them as
    ``fmt``; past ``deadline`` (``time.monotonic()``) stop between rows with
    :class:`QueryTimeoutError`."""
    if isinstance(results, ox.QueryBoolean):
        assert isinstance(fmt, ox.QueryResultsFormat)
        return Evaluated(_bytes(results.serialize(format=fmt)), fmt.media_type, 1, False)
    if isinstance(results, ox.QuerySolutions):
        assert isinstance(fmt, ox.QueryResultsFormat)
        names = [v.value for v in results.variables]
        head = json.dumps({"vars": names}, ensure_ascii=False, separators=(",", ":")).encode()
        rows, truncated = _drain(
            results,
            lambda s: _binding_json(names, s),
            row_cap=row_cap,
            byte_cap=byte_cap - len(head) - _JSON_FRAME,
            deadline=deadline,
        )
        return _fit(rows, truncated, byte_cap, lambda part: _solutions(head, part, fmt), fmt)
    assert isinstance(fmt, ox.RdfFormat)
    triples, truncated = _drain(
        results,
        lambda t: str(t).encode(),  # N-Triples-like: about what each syntax writes
        row_cap=row_cap,
        byte_cap=byte_cap,
        deadline=deadline,
    )
    return _fit(
        [t for t, _ in triples],
        truncated,
        byte_cap,
        lambda part: _bytes(ox.serialize(part, format=fmt)),
        fmt,
    )


def _drain(
    results: ox.QuerySolutions | ox.QueryTriples,
    encode: Callable[[Any], bytes],
    *,
    row_cap: int,
    byte_cap: int,
    deadline: float,
) -> tuple[list[Any], bool]:
    """Rows (with their encoding) while both caps allow; whether a cap cut them."""
    rows: list[Any] = []
    size = 0
    for row in results:
        if time.monotonic() > deadline:
            raise QueryTimeoutError("the SPARQL query ran past its time limit and was stopped")
        if len(rows) == row_cap:
            return rows, True
        encoded = encode(row)
        size += len(encoded) + 1
        if size > byte_cap:
            return rows, True
        rows.append((row, encoded))
    return rows, False


def _fit(
    rows: list[Any],
    truncated: bool,
    byte_cap: int,
    write: Callable[[list[Any]], bytes],
    fmt: Format,
) -> Evaluated:
    """Serialise ``rows``; while the body is over ``byte_cap`` (a format more verbose than the
    estimate), keep fewer rows."""
    body = write(rows)
    while len(body) > byte_cap and rows:
        keep = min(len(rows) - 1, int(len(rows) * byte_cap / len(body) * 0.9))
        rows, truncated = rows[: max(keep, 0)], True
        body = write(rows)
    return Evaluated(body, fmt.media_type, len(rows), truncated)


def _solutions(head: bytes, rows: list[tuple[Any, bytes]], fmt: Format) -> bytes:
    """SPARQL 1.1 Query Results JSON, converted by pyoxigraph when another format is asked."""
    body = b'{"head":' + head + b',"results":{"bindings":[' + b",".join(e for _, e in rows) + b"]}}"
    if fmt == ox.QueryResultsFormat.JSON:
        return body
    assert isinstance(fmt, ox.QueryResultsFormat)
    parsed = ox.parse_query_results(body, ox.QueryResultsFormat.JSON)
    return _bytes(parsed.serialize(format=fmt))


def _bytes(value: bytes | None) -> bytes:
    return value or b""


def _binding_json(variables: list[str], solution: ox.QuerySolution) -> bytes:
    binding = {}
    for name in variables:
        term = solution[name]
        if term is not None:
            binding[name] = _term_json(term)
    return json.dumps(binding, ensure_ascii=False, separators=(",", ":")).encode()


def _term_json(term: Any) -> dict[str, Any]:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Literal):
        out: dict[str, Any] = {"type": "literal", "value": term.value}
        if term.language:
            out["xml:lang"] = term.language
        elif term.datatype.value != _STRING:
            out["datatype"] = term.datatype.value
        return out
    assert isinstance(term, ox.Triple)  # RDF-star
    return {
        "type": "triple",
        "value": {
            "subject": _term_json(term.subject),
            "predicate": _term_json(term.predicate),
            "object": _term_json(term.object),
        },
    }
