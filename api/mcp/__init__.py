"""The MCP interface: the twin's tools for LLM clients, served over streamable HTTP."""
