"""The SPARQL 1.1 Protocol endpoint (https://www.w3.org/TR/sparql11-protocol/), queries only.

``GET /sparql?query=…``, ``POST`` with ``application/sparql-query`` or a form with ``query=``;
the result format follows the ``Accept`` header; ``OPTIONS`` lists the methods. Updates
(``update=`` in the URL or the form, alone or beside ``query=``, or
``application/sparql-update``), ``SERVICE`` and ``LOAD`` are refused. Queries run in the
projection's worker processes (decision 0026), at most so many per caller (the key's or token's
subject). Every answer says how far the projection lags behind the graph, in
``X-TwinKG-Projection-*`` headers.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from twinkg.api.errors import UnsupportedMediaTypeError
from twinkg.api.http.auth import requires
from twinkg.api.http.deps import media_type, twin_of
from twinkg.api.security import Permission, Principal
from twinkg.ontology.errors import InvalidInputError, SparqlRefusedError

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


_ALLOW = "GET, POST, OPTIONS"
_UPDATE_REFUSED = "SPARQL updates are refused: the projection is read-only"


def _no_update(request: Request) -> None:
    """Refuse ``update=`` in the URL before the query parameters are validated (so it is
    ``sparql_refused`` whether or not a ``query=`` comes with it)."""
    if "update" in request.query_params:
        raise SparqlRefusedError(_UPDATE_REFUSED)


async def _answer(request: Request, query: str, graphs: list[str], caller: str) -> Response:
    if graphs:
        raise InvalidInputError(
            "default-graph-uri and named-graph-uri are not supported: the projection is one graph"
        )
    twin = twin_of(request)
    accept = request.headers.get("accept")
    answer = await run_in_threadpool(twin.sparql, query, accept=accept, caller=caller)
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
    principal: Annotated[Principal, Depends(requires(Permission.QUERY))],
    _: Annotated[None, Depends(_no_update)],
    query: Annotated[str, Query(min_length=1, max_length=100_000)],
    default_graph_uri: Annotated[list[str] | None, Query(alias="default-graph-uri")] = None,
    named_graph_uri: Annotated[list[str] | None, Query(alias="named-graph-uri")] = None,
) -> Response:
    """A SPARQL query in the URL (the protocol's query via GET)."""
    graphs = (default_graph_uri or []) + (named_graph_uri or [])
    return await _answer(request, query, graphs, principal.subject)


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
    principal: Annotated[Principal, Depends(requires(Permission.QUERY))],
    _: Annotated[None, Depends(_no_update)],
) -> Response:
    """A SPARQL query in the body (the protocol's query via POST, direct or URL-encoded)."""
    kind = media_type(request)
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("the body is not UTF-8") from None
    if kind == "application/sparql-update":
        raise SparqlRefusedError(_UPDATE_REFUSED)
    if kind == "application/sparql-query":
        graphs = request.query_params.getlist("default-graph-uri")
        graphs += request.query_params.getlist("named-graph-uri")
        return await _answer(request, text, graphs, principal.subject)
    if kind == "application/x-www-form-urlencoded":
        form = parse_qs(text, keep_blank_values=True)
        if "update" in form:
            raise SparqlRefusedError(_UPDATE_REFUSED)
        queries = form.get("query", [])
        if len(queries) != 1 or not queries[0].strip():
            raise InvalidInputError("the form must carry exactly one non-empty query")
        graphs = form.get("default-graph-uri", []) + form.get("named-graph-uri", [])
        return await _answer(request, queries[0], graphs, principal.subject)
    raise UnsupportedMediaTypeError(
        "post application/sparql-query or application/x-www-form-urlencoded"
    )


@router.options("/sparql", include_in_schema=False)
def sparql_options() -> Response:
    """The methods the endpoint answers (no credentials needed, nothing else said)."""
    return Response(status_code=204, headers={"Allow": _ALLOW})
