"""The MCP server: the twin's tools for LLM clients, over streamable HTTP.

Model Context Protocol, https://modelcontextprotocol.io/specification (tools; the streamable
HTTP transport), served with the official SDK in stateless mode with JSON responses: every POST
stands alone, so it runs inside the API's uvicorn process without session affinity.

Seven tools as the app serves it, each behind one permission (least privilege,
``api/roles.py``). Five are each a thin translation to one :class:`~api.twin.Twin` operation:
``cypher`` and ``sparql`` (QUERY), ``asset_context`` (READ), ``lineage`` (AUDIT) and
``propose_action`` (PROPOSE, through the same guard and approval flow as every other proposal).
Given the simulation jobs (``sim_jobs``, as the app does), two more over
:class:`~api.sim_service.SimJobs`: ``start_what_if_run`` (RUN_AGENTS) and ``what_if_run``
(READ). Every HTTP request is authenticated from its
``Authorization`` / ``X-API-Key`` headers before the SDK sees it (401 with the API's JSON error
shape otherwise); the principal is left on ``scope["state"]["principal"]``, where the tools and
the audit middleware find it. A refused or failed call is an MCP tool error (``isError``) whose
text is ``{"error": {"code": …, "message": …}}`` with the stable code of :mod:`ontology.errors`
(or :mod:`api.errors`). It shares the error shape and statuses with the HTTP routes through
:mod:`api.errors`, never by importing them.

Wiring it into the FastAPI app (the session manager must run in the app's lifespan, because
Starlette does not run a mounted app's lifespan)::

    mcp = create_mcp_app(twin=lambda: app.state.twin, authenticator=lambda: app.state.authenticator)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ...  # open the twin, build the authenticator
        async with mcp.lifespan():
            yield

    app.mount("/mcp", mcp.app)

Clients connect to ``http://host:port/mcp/`` (``/mcp`` answers a 307 to it, which the official
client follows). One :class:`McpEndpoint` serves one lifespan: build a new one per app.
"""

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from twinkg.api.errors import error_document, error_headers, status_for
from twinkg.api.mcp.tools import INSTRUCTIONS, PRINCIPAL, register_tools
from twinkg.api.security import Authenticator
from twinkg.api.sim_service import SimJobs
from twinkg.api.twin import Twin
from twinkg.ontology.errors import TwinKGError


class McpEndpoint:
    """The MCP endpoint as an ASGI app: authenticates each request, then hands it to the SDK.

    Run :meth:`lifespan` around the app's lifetime (once); mount the endpoint itself.
    """

    def __init__(self, server: MCPServer, authenticator: Callable[[], Authenticator]) -> None:
        self.server = server
        self._authenticator = authenticator

    @property
    def app(self) -> ASGIApp:
        """The ASGI app to mount (the endpoint itself)."""
        return self

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """The SDK's session manager, to be entered in the hosting app's lifespan."""
        return self.server.session_manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request: 401 without valid credentials, else the MCP transport."""
        if scope["type"] != "http":
            raise RuntimeError(f"the MCP endpoint serves HTTP only, not {scope['type']!r}")
        headers = Headers(scope=scope)
        try:
            principal = await anyio.to_thread.run_sync(
                self._authenticator().authenticate,
                headers.get("authorization"),
                headers.get("x-api-key"),
            )
        except TwinKGError as exc:
            message = " ".join(str(exc).split())
            response = JSONResponse(
                error_document(exc.code, message),
                status_code=status_for(exc),
                headers=error_headers(exc),
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL] = principal
        await self.server.session_manager.handle_request(scope, receive, send)


def create_mcp_app(
    *,
    twin: Callable[[], Twin],
    authenticator: Callable[[], Authenticator],
    allowed_hosts: Sequence[str] | None = None,
    sim_jobs: Callable[[], SimJobs] | None = None,
) -> McpEndpoint:
    """The MCP endpoint over the twin ``twin()`` returns, for callers ``authenticator()`` admits.

    Both are called per request, so the endpoint can be built before the lifespan opens them.
    ``allowed_hosts`` (``"host:port"`` patterns, ``*`` for any port) turns on the SDK's
    Host/Origin checks against DNS rebinding; off by default, since every request must carry
    credentials in a header, which a rebound browser page cannot supply. ``sim_jobs`` adds
    the what-if simulation tools over those jobs.
    """
    server: MCPServer = MCPServer("twinkg", title="TwinKG", instructions=INSTRUCTIONS)
    register_tools(server, twin, sim_jobs)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=allowed_hosts is not None,
        allowed_hosts=list(allowed_hosts or []),
        allowed_origins=[f"http://{h}" for h in allowed_hosts or []]
        + [f"https://{h}" for h in allowed_hosts or []],
    )
    server.streamable_http_app(  # builds the session manager the endpoint hands requests to
        stateless_http=True, json_response=True, transport_security=security
    )
    return McpEndpoint(server, authenticator)
