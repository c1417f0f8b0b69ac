"""Routes of the console: its page and its static files, each with a strict content policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page runs only its own script and style sheet and talks only to its own origin: no
inline script, no other host, never framed (clickjacking)."""

HEADERS = {
    "Content-Security-Policy": CONTENT_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""The headers of every console response."""

router = APIRouter(include_in_schema=False)


@router.get("/console")
def page() -> FileResponse:
    """The console's single page."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


@router.get("/console/")
def page_slash() -> RedirectResponse:
    """``/console/`` is ``/console``."""
    return RedirectResponse("/console", status_code=308)


class _Hardened:
    """The static files, with the console's headers on every answer (errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def mount(app: FastAPI) -> None:
    """Serve the console on ``app``: ``/console`` and ``/console/static/…``."""
    app.include_router(router)
    app.mount("/console/static", _Hardened(StaticFiles(directory=STATIC)), name="console")
