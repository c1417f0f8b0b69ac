"""The ways in: the :class:`~twinkg.api.twin.Twin` façade and one folder per interface.

``twin.py`` offers every operation once; ``settings.py`` holds every setting; ``security.py``
keys, roles and the audit log; ``app.py`` composes the HTTP API and the MCP server into one
ASGI application. The interfaces only translate their protocol to :class:`Twin` calls and
back: ``cli/`` (the ``twinkg`` command), ``http/`` (FastAPI routes, ``deps.py`` for what
routes share), ``mcp/`` (tools for LLM clients).
"""
