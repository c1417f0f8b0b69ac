"""Composition roots: settings, the CLI (and, later, the HTTP API and MCP server)."""
