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
from dataclasses import dataclass
from pathlib import Path

from twinkg.kg import local_server
from twinkg.kg.store import GraphStore, open_driver


@dataclass(frozen=True)
class Throwaway:
    """A store over the fresh Neo4j, a temporary folder, and how a second process logs in."""

    store: GraphStore
    home: Path
    uri: str
    password: str


@contextmanager
def throwaway_server() -> Iterator[Throwaway]:
    """A fresh Neo4j with a store over it (for benchmarks that start a second process)."""
    with tempfile.TemporaryDirectory(prefix="twinkg-bench-") as tmp:
        home = Path(tmp)
        config = local_server.LocalServerConfig.throwaway(
            home / "neo4j", heap="4g", pagecache="2g", tx_memory="3g"
        )
        local_server.start(config, wait_s=300, parent_pid=os.getpid())
        driver = open_driver(config.bolt_uri, "neo4j", config.password)
        try:
            yield Throwaway(GraphStore(driver), home, config.bolt_uri, config.password)
        finally:
            driver.close()
            local_server.stop(config)


@contextmanager
def throwaway_store() -> Iterator[tuple[GraphStore, Path]]:
    """A store over a fresh Neo4j, and a temporary folder for the benchmark's other files."""
    with throwaway_server() as server:
        yield server.store, server.home
