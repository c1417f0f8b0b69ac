"""One JSON error shape for every failure of the HTTP API, with a stable code.

Every error answers ``{"error": {"code": str, "message": str, "details": ...}}`` and carries the
code in the ``X-TwinKG-Error-Code`` header too (the audit log records it without reading
bodies). The HTTP status follows from the exception's class (the rule is
:func:`api.errors.status_for`, which the MCP endpoint shares); request bodies and parameters
that fail their pydantic models answer 422 ``invalid_request``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from twinkg.api.errors import ERROR_HEADER, error_document, error_headers, status_for
from twinkg.ontology.errors import TwinKGError

__all__ = ["ERROR_HEADER", "ERROR_RESPONSES", "error_response", "install", "status_for"]
_log = logging.getLogger("twinkg.api")


class ErrorBody(BaseModel):
    """What went wrong: a stable code, one line for people, and optional structured detail."""

    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "refused; `error.code` says why"},
    "5XX": {"model": ErrorResponse, "description": "a dependency (Neo4j, the audit log) failed"},
}
"""The error answers every route documents (FastAPI's own 422 shape is never sent)."""

STREAM_ERRORS: dict[int | str, dict[str, Any]] = {
    key: {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    }
    for key in ("4XX", "5XX")
}
"""The errors of an event-stream route: JSON, answered before any event is sent (FastAPI would
otherwise document them as event streams)."""


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error response (also used by middleware outside FastAPI's handlers)."""
    return JSONResponse(
        error_document(code, message, details),
        status_code=status,
        headers={ERROR_HEADER: code, **(headers or {})},
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


async def _twinkg_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TwinKGError)
    status = status_for(exc)
    message = _one_line(str(exc))
    if status >= 500:  # a dependency failed: the operator's log says which and why
        _log.warning(
            "%s %s answered %d %s: %s", request.method, request.url.path, status, exc.code, message
        )
    return error_response(status, exc.code, message, headers=error_headers(exc))


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in exc.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return error_response(422, "invalid_request", f"{where}: {first['msg']}", details)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 406: "not_acceptable"}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(
        exc.status_code, code, _one_line(str(exc.detail)), headers=dict(exc.headers or {})
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error; it has been logged")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(TwinKGError, _twinkg_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
