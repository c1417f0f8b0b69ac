"""The SPARQL 1.1 Protocol endpoint (https://www.w3.org/TR/sparql11-protocol/), queries only.

``GET /sparql?query=…``, ``POST`` with ``application/sparql-query`` or a form with ``query=``;
the result format follows the ``Accept`` header. Updates (``update=`` or
``application/sparql-update``), ``SERVICE`` and ``LOAD`` are refused. Every answer says how far
the projection lags behind the graph, in ``X-TwinKG-Projection-*`` headers.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.auth import requires
from api.routes_core import media_type, twin_of
from api.security import Permission, Principal
from ontology.errors import InvalidInputError, SparqlRefusedError, UnsupportedMediaTypeError

router = APIRouter(tags=["query"])

_RESULTS = {
    "application/sparql-results+json": {"schema": {"type": "object"}},
    "application/sparql-results+xml": {"schema": {"type": "string"}},
    "text/csv": {"schema": {"type": "string"}},
    "text/tab-separated-values": {"schema": {"type": "string"}},
    "text/turtle": {"schema": {"type": "string"}},
    "application/n-triples": {"schema": {"type": "string"}},
}
_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "the results, in the negotiated format", "content": _RESULTS}
}


async def _answer(request: Request, query: str, graphs: list[str]) -> Response:
    if graphs:
        raise InvalidInputError(
            "default-graph-uri and named-graph-uri are not supported: the projection is one graph"
        )
    twin = twin_of(request)
    accept = request.headers.get("accept")
    answer = await run_in_threadpool(twin.sparql, query, accept=accept)
    lag = answer.lag
    headers = {
        "X-TwinKG-Projection-Lag-Seconds": f"{lag.seconds:.3f}",
        "X-TwinKG-Projection-Pending": str(lag.pending),
        "X-TwinKG-Projection-Seq": str(lag.applied_seq),
        "X-TwinKG-Truncated": "true" if answer.truncated else "false",
        "Vary": "Accept",
    }
    return Response(answer.body, media_type=answer.media_type, headers=headers)


@router.get("/sparql", responses=_DOC, response_class=Response)
async def sparql_get(
    request: Request,
    _: Annotated[Principal, Depends(requires(Permission.QUERY))],
    query: Annotated[str, Query(min_length=1, max_length=100_000)],
    default_graph_uri: Annotated[list[str] | None, Query(alias="default-graph-uri")] = None,
    named_graph_uri: Annotated[list[str] | None, Query(alias="named-graph-uri")] = None,
) -> Response:
    """A SPARQL query in the URL (the protocol's query via GET)."""
    return await _answer(request, query, (default_graph_uri or []) + (named_graph_uri or []))


@router.post(
    "/sparql",
    responses=_DOC,
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/sparql-query": {"schema": {"type": "string"}},
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["query"],
                        "properties": {"query": {"type": "string"}},
                    }
                },
            },
        }
    },
)
async def sparql_post(
    request: Request,
    _: Annotated[Principal, Depends(requires(Permission.QUERY))],
) -> Response:
    """A SPARQL query in the body (the protocol's query via POST, direct or URL-encoded)."""
    kind = media_type(request)
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("the body is not UTF-8") from None
    if kind == "application/sparql-update":
        raise SparqlRefusedError("SPARQL updates are refused: the projection is read-only")
    if kind == "application/sparql-query":
        graphs = request.query_params.getlist("default-graph-uri")
        graphs += request.query_params.getlist("named-graph-uri")
        return await _answer(request, text, graphs)
    if kind == "application/x-www-form-urlencoded":
        form = parse_qs(text, keep_blank_values=True)
        if "update" in form:
            raise SparqlRefusedError("SPARQL updates are refused: the projection is read-only")
        queries = form.get("query", [])
        if len(queries) != 1 or not queries[0].strip():
            raise InvalidInputError("the form must carry exactly one non-empty query")
        graphs = form.get("default-graph-uri", []) + form.get("named-graph-uri", [])
        return await _answer(request, queries[0], graphs)
    raise UnsupportedMediaTypeError(
        "post application/sparql-query or application/x-www-form-urlencoded"
    )
