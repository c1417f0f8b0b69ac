"""The HTTP interface: routes, their shared dependencies, error mapping, the server."""
