"""One edge runtime with its link, as ``twinkg edge run`` (and a test) runs it: the inbox
loop on one thread, the link on another, the buffer depth in the metrics."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twinkg.connect.edge.buffer import Depth, EdgeBuffer
from twinkg.connect.edge.bundle import EdgeBundles
from twinkg.connect.edge.chain import EdgeChain, EdgeRecord
from twinkg.connect.edge.link import EdgeLink
from twinkg.connect.edge.runtime import DEFAULT_BUDGET_MS, EdgeRuntime
from twinkg.connect.edge.signing import TrustStore
from twinkg.connect.mqtt.endpoint import MqttEndpoint

log = logging.getLogger("twinkg.edge")

LINK = "link"


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Where an edge keeps its state and how it reaches the twin (built from the settings)."""

    folder: Path
    site: str
    node: str
    area: str
    endpoint: MqttEndpoint
    inbox: Path
    max_entries: int = 100_000
    max_bytes: int = 1024 * 1024 * 1024
    trusted_key: Path | None = None
    resend_s: float = 120.0
    window: int = 64
    poll_s: float = 0.1
    budget_ms: float = DEFAULT_BUDGET_MS

    def trust(self) -> TrustStore:
        """The keys this edge trusts."""
        return TrustStore(self.folder / "trusted", self.trusted_key)

    def bundles(self) -> EdgeBundles:
        """This edge's bundles."""
        return EdgeBundles(self.folder, self.trust(), site=self.site)

    def buffer(self) -> EdgeBuffer:
        """This edge's buffer (``buffer.sqlite``)."""
        return EdgeBuffer(
            self.folder / "buffer.sqlite", max_entries=self.max_entries, max_bytes=self.max_bytes
        )

    @property
    def chain_file(self) -> Path:
        """This edge's decision records."""
        return self.folder / "decisions.jsonl"


class EdgeService:
    """The runtime and its link, started and stopped together."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        on_action: Callable[[EdgeRecord], None] | None = None,
        on_depth: Callable[[Depth], None] | None = None,
    ) -> None:
        self.config = config
        config.inbox.mkdir(parents=True, exist_ok=True)
        self.buffer = config.buffer()
        self.runtime = EdgeRuntime(
            site=config.site,
            node=config.node,
            area=config.area,
            bundles=config.bundles(),
            chain=EdgeChain(config.chain_file),
            buffer=self.buffer,
            on_action=on_action,
            budget_ms=config.budget_ms,
        )
        self.link = EdgeLink(
            config.endpoint,
            self.buffer,
            site=config.site,
            node=config.node,
            window=config.window,
            resend_s=config.resend_s,
        )
        self.on_depth = on_depth
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the inbox loop and the link."""
        for name, target in (("inbox", self._inbox_loop), (LINK, self._link_loop)):
            thread = threading.Thread(target=target, name=f"twinkg-edge-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Stop both loops (what is buffered stays for the next start) and close the buffer."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._write_status()
        self.buffer.close()

    def _inbox_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.runtime.poll_inbox(self.config.inbox)
                self._write_status()
            except Exception:  # a defect: logged; the edge goes on deciding
                log.exception("the edge inbox loop failed")
            self._stop.wait(self.config.poll_s)

    def _link_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.link.run(self._stop)
            except Exception:  # the broker's connection: a new link tries again
                log.exception("the edge link failed")
                self.link = EdgeLink(
                    self.config.endpoint,
                    self.buffer,
                    site=self.config.site,
                    node=self.config.node,
                    window=self.config.window,
                    resend_s=self.config.resend_s,
                )
                self._stop.wait(1.0)

    def _write_status(self) -> None:
        state = self.link.state
        depth = self.buffer.depth()
        if self.on_depth is not None:
            self.on_depth(depth)
        since = time.time() - (time.monotonic() - state.changed_at)
        self.buffer.set_meta(
            LINK,
            json.dumps({"up": state.up, "since": since, "connects": state.connects}),
        )
