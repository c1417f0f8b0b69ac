"""The ``twinkg`` command line: one module per command group, composed in :mod:`.main`."""

from twinkg.api.cli.main import app, main

__all__ = ["app", "main"]
