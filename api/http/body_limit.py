"""Refuse request bodies over a size limit before any route reads them (HTTP 413).

A pure ASGI middleware: a declared ``Content-Length`` over the limit is refused at once (one
that is not plain digits answers 400); a body sent without one (chunked) is counted as it streams
and refused as soon as it passes the limit, so a route never sees a partial body and nothing is
written.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twinkg.api.http.errors import error_response


class _TooLargeError(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 ``payload_too_large`` for bodies over ``max_bytes``."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count what arrives."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None:
            # digits only (int() would take "+5", " 5", "5_0" and thousands of digits)
            if not declared.isdigit():
                await self._refuse(scope, receive, send, "Content-Length is not a number", 400)
                return
            digits = declared.lstrip(b"0") or b"0"
            if len(digits) > len(str(self.max_bytes)) or int(digits) > self.max_bytes:
                await self._refuse(scope, receive, send, self._message(), 413)
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLargeError
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLargeError:
            if started:  # the route already answered; nothing more can be said
                raise
            await self._refuse(scope, receive, send, self._message(), 413)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, message: str, status: int
    ) -> None:
        code = "payload_too_large" if status == 413 else "invalid_request"
        response = error_response(status, code, message, headers={"Connection": "close"})
        await response(scope, receive, send)
