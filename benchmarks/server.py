"""The throwaway Neo4j every benchmark measures against.

The project's own launcher on a free loopback port, data in a temporary folder, heap 4g, page
cache 2g and 3g of transaction memory (so the figures of different benchmarks compare), stopped
when the benchmark ends or dies.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kg import local_server
from kg.store import GraphStore, open_driver


@contextmanager
def throwaway_store() -> Iterator[tuple[GraphStore, Path]]:
    """A store over a fresh Neo4j, and a temporary folder for the benchmark's other files."""
    with tempfile.TemporaryDirectory(prefix="twinkg-bench-") as tmp:
        home = Path(tmp)
        config = local_server.LocalServerConfig.throwaway(
            home / "neo4j", heap="4g", pagecache="2g", tx_memory="3g"
        )
        local_server.start(config, wait_s=300, parent_pid=os.getpid())
        driver = open_driver(config.bolt_uri, "neo4j", config.password)
        try:
            yield GraphStore(driver), home
        finally:
            driver.close()
            local_server.stop(config)
