"""Authentication and the audit trail in the HTTP app.

``requires(permission)`` is the dependency every route declares; it authenticates the caller
through ``app.state.authenticator`` (an :class:`~api.security.Authenticator`) and checks the
permission. :class:`AuditMiddleware` (pure ASGI, so it sees every response, errors included)
appends two entries to the audit log for each request that may change state: its intent before
it runs, its outcome after (decision 0029).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinkg.api.errors import ERROR_HEADER
from twinkg.api.security import Authenticator, Permission, Principal, single_header
from twinkg.kg.audit_log import AuditEvent, AuditLog, AuditPhase
from twinkg.ontology.errors import TwinKGError

REQUEST_ID_HEADER = "X-Request-ID"
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ERROR_BODY_CAP = 64 * 1024  # error bodies larger than this are passed on without their code
log = logging.getLogger("twinkg.audit")

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="a TwinKG API key")
bearer = HTTPBearer(auto_error=False, description="an OAuth2 bearer JWT, or an API key")


def requires(permission: Permission) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and demands ``permission``.

    Use as ``principal: Annotated[Principal, Depends(requires(Permission.QUERY))]``. The caller
    is also left on ``request.state.principal`` for the audit log.
    """

    def dependency(
        request: Request,
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        api_key: Annotated[str | None, Depends(api_key_header)],
    ) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        principal = authenticator.authenticate(  # the raw headers: an empty one counts too
            single_header(request.headers.getlist("authorization"), "Authorization"),
            single_header(request.headers.getlist("x-api-key"), "X-API-Key"),
        )
        request.state.principal = principal
        principal.require(permission)
        return principal

    dependency.__name__ = f"requires_{permission.value}"
    return dependency


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _error_code(headers: list[tuple[bytes, bytes]], body: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == ERROR_HEADER.lower().encode():
            return value.decode("latin-1")
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


class AuditMiddleware:
    """Echoes (or makes) an ``X-Request-ID`` on every response; audits every non-read request.

    Write-ahead: before a request that may change state runs, its *intent* entry (the caller
    its credentials name, if they verify; method, path, request id) is appended and fsynced;
    when that fails the request is refused with 503 ``audit_unavailable`` and never runs, so
    nothing commits that the log does not announce, even if the process is killed mid-request.
    The *outcome* entry (status, error code, the intent's index) is written before the response
    starts, so a caller never sees a success that was not audited; an error response is held
    back until its body names the error code. When the log fails between the two (the disk
    filled meanwhile), the caller gets a 500 ``audit_unavailable`` instead of the answer, and
    the server log has the event.
    """

    def __init__(self, app: ASGIApp, *, audit_log: AuditLog) -> None:
        self.app = app
        self.audit_log = audit_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.lower().encode())
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        audited = scope["method"] not in READ_ONLY_METHODS
        if audited:
            try:
                state["audit_intent"] = self._intent(scope)
            except TwinKGError as exc:
                log.error("request %s refused: %s", request_id, exc)
                for message in _audit_unavailable(
                    {"headers": [_id_header(request_id)]},
                    status=503,
                    message="the audit log cannot be written, so nothing was done; "
                    "see the server log",
                ):
                    await send(message)
                return
        held: list[Message] = []
        started = False
        replaced = False  # the response became a 500: what the app still sends is dropped

        async def respond(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", []), _id_header(request_id)]
                message = {**message, "headers": headers}
                if not audited:
                    await send(message)
                    return
                held.append(message)
                if message["status"] < 400:
                    replaced = not await self._flush(scope, held, send, error_code=None)
                return
            if message["type"] != "http.response.body" or not held:
                await send(message)
                return
            held.append(message)
            body = b"".join(m.get("body", b"") for m in held[1:])
            if not message.get("more_body", False) or len(body) > _ERROR_BODY_CAP:
                code = _error_code(held[0].get("headers", []), body)
                replaced = not await self._flush(scope, held, send, error_code=code)

        try:
            await self.app(scope, receive, respond)
        except Exception:
            if audited and (not started or held):  # no entry written yet
                self._record(scope, 500, "internal_error")
            raise

    async def _flush(
        self, scope: Scope, held: list[Message], send: Send, *, error_code: str | None
    ) -> bool:
        """Audit, then send what was held; False when the log failed and a 500 went instead."""
        audited = self._record(scope, int(held[0]["status"]), error_code)
        if not audited:
            held[:] = _audit_unavailable(held[0])
        for message in held:
            await send(message)
        held.clear()
        return audited

    def _intent(self, scope: Scope) -> int:
        """Append the request's intent entry (fsynced); its index."""
        event = _event(
            scope,
            _presented(scope),
            status=0,
            error_code=None,
            phase=AuditPhase.INTENT,
            intent=None,
        )
        return self.audit_log.append(event).index

    def _record(self, scope: Scope, status: int, error_code: str | None) -> bool:
        state: dict[str, Any] = scope.get("state", {})
        principal: Principal | None = state.get("principal")
        intent = state.get("audit_intent")
        event = _event(
            scope,
            principal,
            status=status,
            error_code=error_code,
            phase=AuditPhase.OUTCOME,
            intent=intent,
        )
        try:
            self.audit_log.append(event)
        except TwinKGError:
            log.exception("audit entry not written: %s", event)
            return False
        return True


def _presented(scope: Scope) -> Principal | None:
    """Who the request's credentials name, if they verify (the route checks them again, with
    its permission); ``None`` otherwise."""
    app = scope.get("app")
    authenticator: Authenticator | None = getattr(
        getattr(app, "state", None), "authenticator", None
    )
    if authenticator is None:
        return None
    headers = Headers(scope=scope)
    try:
        return authenticator.authenticate(
            single_header(headers.getlist("authorization"), "Authorization"),
            single_header(headers.getlist("x-api-key"), "X-API-Key"),
        )
    except TwinKGError:
        return None


def _event(
    scope: Scope,
    principal: Principal | None,
    *,
    status: int,
    error_code: str | None,
    phase: AuditPhase,
    intent: int | None,
) -> AuditEvent:
    """One entry's event: the request in ``scope``, the caller, and the phase's fields."""
    state: dict[str, Any] = scope.get("state", {})
    client = scope.get("client")
    return AuditEvent(
        time=datetime.now(UTC).isoformat(),
        request_id=str(state.get("request_id", "")),
        subject=principal.subject if principal else "anonymous",
        name=principal.name if principal else "anonymous",
        roles=tuple(sorted(role.value for role in principal.roles)) if principal else (),
        person=principal.person if principal else None,
        auth=principal.method if principal else None,
        client=str(client[0]) if client else None,
        method=str(scope["method"]),
        path=str(scope["path"]),
        query=bytes(scope.get("query_string", b"")).decode("latin-1"),
        status=status,
        error_code=error_code,
        phase=phase,
        intent=intent,
    )


def _id_header(request_id: str) -> tuple[bytes, bytes]:
    return REQUEST_ID_HEADER.lower().encode(), request_id.encode()


def _audit_unavailable(
    start: Message,
    *,
    status: int = 500,
    message: str = "the request was processed but could not be audited; see the server log",
) -> list[Message]:
    body = json.dumps(
        {"error": {"code": "audit_unavailable", "message": message, "details": None}}
    ).encode()
    request_id = [h for h in start.get("headers", []) if h[0] == b"x-request-id"]
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (ERROR_HEADER.lower().encode(), b"audit_unavailable"),
        *request_id,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]
