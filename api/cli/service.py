"""``twinkg serve`` and ``twinkg api start|stop|status``: the HTTP API and MCP server."""

from __future__ import annotations

import typer

from twinkg.api import server
from twinkg.api.cli.common import errors_as_exit_codes, load_settings, out

app = typer.Typer(help="The HTTP API (with MCP at /mcp) as a background server.")


@errors_as_exit_codes
def serve_command() -> None:
    """Serve the HTTP API, its docs at /docs and the MCP server at /mcp, in the foreground."""
    server.serve(load_settings())


@app.command("start")
@errors_as_exit_codes
def start_command() -> None:
    """Start the API server in the background and wait until it answers."""
    process = server.start(load_settings())
    out.print(
        f"API: {process.url}  (docs {process.url}/docs, console {process.url}/console, "
        f"MCP {process.url}/mcp/)"
    )
    out.print(f"pid {process.pid}, log {process.log}")


@app.command("stop")
@errors_as_exit_codes
def stop_command() -> None:
    """Stop the background API server."""
    out.print("API stopped" if server.stop(load_settings()) else "API was not running")


@app.command("status")
@errors_as_exit_codes
def status_command() -> None:
    """Whether the background API server runs; exit 1 when it does not."""
    process = server.running(load_settings())
    if process is None:
        out.print("API is not running")
        raise typer.Exit(1)
    out.print(f"API running: {process.url} (pid {process.pid})")
