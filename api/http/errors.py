"""One JSON error shape for every failure of the HTTP API, with a stable code.

Every error answers ``{"error": {"code": str, "message": str, "details": ...}}`` and carries the
code in the ``X-TwinKG-Error-Code`` header too (the audit log records it without reading
bodies). The HTTP status follows from the exception's class in :mod:`ontology.errors`; request
bodies and parameters that fail their pydantic models answer 422 ``invalid_request``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from twinkg.api.http.auth import error_headers
from twinkg.ontology import errors as e

ERROR_HEADER = "X-TwinKG-Error-Code"
_log = logging.getLogger("twinkg.api")

# Most specific first: the first class an error is an instance of decides its status.
_STATUS: tuple[tuple[type[e.TwinKGError], int], ...] = (
    (e.AuthenticationError, 401),
    (e.PermissionDeniedError, 403),
    (e.ApproverRoleError, 403),
    (e.NotFoundError, 404),
    (e.NotAcceptableError, 406),
    (e.ApprovalError, 409),
    (e.ReplayInputsMissingError, 409),
    (e.UnsafeActionError, 409),
    (e.PayloadTooLargeError, 413),
    (e.UnsupportedMediaTypeError, 415),
    (e.ContractViolationError, 422),
    (e.QueryTimeoutError, 422),
    (e.SparqlMemoryLimitError, 422),
    (e.SparqlUserLimitError, 429),
    (e.QueryRejectedError, 400),
    (e.InvalidInputError, 400),
    (e.StoreError, 503),
    (e.ServerError, 503),
    (e.ConfigError, 503),
)


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


def status_for(exc: e.TwinKGError) -> int:
    """The HTTP status of a TwinKG error."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error response (also used by middleware outside FastAPI's handlers)."""
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=status,
        headers={ERROR_HEADER: code, **(headers or {})},
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


async def _twinkg_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.TwinKGError)
    status = status_for(exc)
    return error_response(status, exc.code, _one_line(str(exc)), headers=error_headers(exc))


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
    app.add_exception_handler(e.TwinKGError, _twinkg_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
