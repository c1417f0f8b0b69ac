"""Serving the API (and MCP) with uvicorn: in the foreground, or as a background process.

``serve`` runs in the foreground (``twinkg serve``, a container's command). ``start`` launches
``twinkg serve`` detached, with its log under ``TWINKG_HOME/api``, and waits until ``/health``
answers; ``stop`` ends it. TLS, and mutual TLS for edge producers, come from the settings.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from twinkg.api.background import Background
from twinkg.api.http.tls import uvicorn_ssl_options
from twinkg.api.settings import Settings
from twinkg.kg.local_server import port_free
from twinkg.ontology.errors import PortInUseError


@dataclass(frozen=True, slots=True)
class ApiProcess:
    """Where a background API server runs and logs."""

    pid: int
    url: str
    log: Path


def base_url(settings: Settings) -> str:
    """The API's base URL for clients on this machine."""
    scheme = "https" if settings.tls_cert_file else "http"
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    return f"{scheme}://{host}:{settings.api_port}"


def check_port_free(settings: Settings) -> None:
    """:class:`PortInUseError` when another process listens on the API's address and port."""
    if not port_free(settings.api_host, settings.api_port):
        raise PortInUseError(
            f"port {settings.api_port} on {settings.api_host} is already in use; "
            "set TWINKG_API_PORT to another port"
        )


def serve(settings: Settings) -> None:
    """Serve the API in the foreground until interrupted."""
    from twinkg.api.app import create_app  # noqa: PLC0415 - FastAPI and the agents load only here

    check_port_free(settings)

    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        proxy_headers=False,
        server_header=False,
        **uvicorn_ssl_options(settings),
    )
    uvicorn.Server(config).run()


def _background(settings: Settings) -> Background:
    return Background(settings.home.resolve() / "api", "the API server")


def running(settings: Settings) -> ApiProcess | None:
    """The background server started from this home, if it still runs."""
    background = _background(settings)
    pid = background.running()
    return None if pid is None else ApiProcess(pid, base_url(settings), background.log)


def start(settings: Settings, *, wait_s: float = 120.0) -> ApiProcess:
    """Start ``twinkg serve`` in the background and wait until it is healthy."""
    already = running(settings)
    if already is not None:
        return already
    check_port_free(settings)  # else another server's /health could pass for this one's
    url = base_url(settings)
    verify: bool | str = str(settings.tls_cert_file) if settings.tls_cert_file else True
    background = _background(settings)
    pid = background.start(
        [sys.executable, "-m", "twinkg.api.cli.main", "serve"],
        env={**os.environ, "TWINKG_HOME": str(settings.home.resolve())},
        ready=lambda: _answers(settings, url, verify),
        wait_s=wait_s,
    )
    return ApiProcess(pid, url, background.log)


def _answers(settings: Settings, url: str, verify: bool | str) -> bool:
    """Whether the server is up: ``/health`` answers, or under mutual TLS (which this process
    has no client certificate for) the port accepts connections."""
    if settings.tls_client_ca_file is not None:
        try:
            with socket.create_connection((settings.api_host, settings.api_port), timeout=2.0):
                return True
        except OSError:
            return False
    try:
        return httpx.get(f"{url}/health", timeout=2.0, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


def stop(settings: Settings, *, wait_s: float = 30.0) -> bool:
    """Stop the background server; ``False`` when none was running."""
    return _background(settings).stop(wait_s=wait_s)
