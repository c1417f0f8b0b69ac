"""The HTTP API's composition root: FastAPI app, lifespan, middleware, routers, MCP mount.

The lifespan opens the one Neo4j driver (or takes the store it is given), the checkpointer,
the SPARQL projection (persisted under ``TWINKG_HOME/projection``; a background thread reopens or
builds it, then feeds it from the change log, so start-up never waits for it), the
authenticator and the audit log, and closes them in reverse order. Routes reach them through
``app.state``. OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI

from twinkg.api import tracing
from twinkg.api.console import routes as console
from twinkg.api.http import agents as routes_agents
from twinkg.api.http import core as routes_core
from twinkg.api.http import decisions as routes_decisions
from twinkg.api.http import errors as http_errors
from twinkg.api.http import events as routes_events
from twinkg.api.http import sim as routes_sim
from twinkg.api.http import sparql as routes_sparql
from twinkg.api.http import sso as routes_sso
from twinkg.api.http.auth import AuditMiddleware
from twinkg.api.http.body_limit import BodyLimitMiddleware
from twinkg.api.http.jobs import Jobs
from twinkg.api.resources import build_projection, open_checkpointer, open_store
from twinkg.api.security import build_authenticator
from twinkg.api.settings import Settings, audit_log_path
from twinkg.api.sim_service import SimJobs, SimService
from twinkg.api.twin import Twin
from twinkg.kg.audit_log import AuditLog
from twinkg.kg.projection import Projection
from twinkg.kg.sparql_parser import warm as warm_sparql_parser
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import TwinKGError

_log = logging.getLogger("twinkg.api")
VERSION = version("twinkg")
"""The installed package's version, shown in the OpenAPI document."""


def _note(message: str) -> None:
    """A line on stderr about opening the store (the local server starting, ingests recovered)."""
    print(message, file=sys.stderr, flush=True)


class _Follower:
    """Opens (or builds) the projection, then keeps it caught up with the change log, in a
    daemon thread; the first round starts at once."""

    def __init__(self, projection: Projection, every_s: float) -> None:
        self._projection = projection
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="twinkg-projection", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self._projection.catch_up()
            except TwinKGError as exc:  # Neo4j away for a moment: the lag shows it; retry
                _log.warning("projection catch-up failed: %s", exc)
            except Exception:  # a bug must not end the thread: the lag would grow unseen
                _log.exception("projection catch-up failed unexpectedly; retrying")
            if self._stop.wait(self._every_s):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextmanager
def open_services(app: FastAPI, settings: Settings, store: GraphStore | None) -> Iterator[None]:
    """Open what the routes use and put it on ``app.state``; close it all on exit."""
    with ExitStack() as stack:
        if store is None:  # starts the local server when it is the target
            store = stack.enter_context(open_store(settings, note=_note))
        store.ensure_schema()
        saver = stack.enter_context(open_checkpointer(settings))
        warm_sparql_parser()  # before the first request: its grammar is shared by threads
        projection = build_projection(settings, store)
        stack.callback(projection.close)
        follower = _Follower(projection, settings.projection_poll_s)
        follower.start()
        stack.callback(follower.stop)
        twin = Twin(settings, store, checkpointer=saver, projection=projection)
        stack.callback(twin.close)  # the reclassification ingests asked for, before the store
        recovered = twin.recover_ingests()  # before any request: batches a crash cut short
        if recovered.changed:
            _log.warning("telemetry ingest recovery at start: %s", recovered)
        jobs = Jobs(twin)
        stack.callback(jobs.close)
        sim_jobs = SimJobs(SimService(settings, store, checkpointer=saver))
        stack.callback(sim_jobs.close)
        app.state.sim_jobs = sim_jobs
        app.state.settings = settings
        app.state.twin = twin
        app.state.jobs = jobs
        app.state.authenticator = build_authenticator(settings)
        yield


def create_app(settings: Settings, *, store: GraphStore | None = None) -> FastAPI:
    """The API for ``settings``; ``store`` (tests, benchmarks) instead of opening a driver."""
    from twinkg.api.mcp.server import create_mcp_app  # noqa: PLC0415

    holder: dict[str, Any] = {}
    mcp = create_mcp_app(
        twin=lambda: holder["app"].state.twin,
        authenticator=lambda: holder["app"].state.authenticator,
        sim_jobs=lambda: holder["app"].state.sim_jobs,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracing.configure(settings)  # off unless TWINKG_OTLP_ENDPOINT is set
        with open_services(app, settings, store):
            async with mcp.lifespan():
                yield

    app = FastAPI(
        title="TwinKG",
        version=VERSION,
        summary="A knowledge graph for agentic digital twins: ontology in Neo4j, SHACL "
        "guardrails, PROV-O provenance.",
        lifespan=lifespan,
    )
    holder["app"] = app
    audit_log = AuditLog(audit_log_path(settings))
    app.state.audit_log = audit_log
    http_errors.install(app)
    for router in (
        routes_core.router,
        routes_sparql.router,
        routes_agents.router,
        routes_decisions.router,
        routes_events.router,
        routes_sim.router,
        routes_sso.router,
    ):
        app.include_router(router, responses=http_errors.ERROR_RESPONSES)
    app.mount("/mcp", mcp.app)
    console.mount(app)
    app.add_middleware(AuditMiddleware, audit_log=audit_log)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    return app
