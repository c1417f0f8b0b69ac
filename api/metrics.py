"""Prometheus metrics of one TwinKG process: what came in, what was decided, how fast, how far
behind the projection is, how much work waits.

Each process (the API server, an MQTT ingest worker) keeps its own :class:`Metrics` in its own
registry; the API serves it at ``GET /metrics``, a worker on ``--metrics-port``. Counters are
fed where the work passes through the twin (:meth:`api.twin.Twin.ingest`, the agents' runs), so
every way in is counted alike; gauges that describe state (projection lag, queue depth) are read
when scraped, never kept up to date by a thread. Names follow Prometheus' conventions
(``_total`` counters, base units: seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.parser import text_string_to_metric_families

from twinkg.ontology.errors import PortInUseError
from twinkg.reasoner.ingest import IngestReport

# Decisions take from milliseconds (a rule) to seconds (an LLM, a look-ahead).
_DECISION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_GUARD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
NodeListener = Callable[[str, str], None]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of :meth:`Metrics.render` (Prometheus' text exposition format)."""


class Metrics:
    """The metrics of one process, in their own registry (tests and processes never share)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.points_ingested = Counter(
            "twinkg_points_ingested_total",
            "Telemetry points accepted by the contract and stored",
            ["way"],
            registry=r,
        )
        self.points_quarantined = Counter(
            "twinkg_points_quarantined_total",
            "Telemetry points quarantined with their reason",
            ["way"],
            registry=r,
        )
        self.batches = Counter(
            "twinkg_ingest_batches_total",
            "Telemetry batches by result (applied, duplicate)",
            ["way", "result"],
            registry=r,
        )
        self.refused = Counter(
            "twinkg_messages_refused_total",
            "Messages refused whole (dead letters), by error code",
            ["way", "code"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "twinkg_ingest_seconds", "Seconds to ingest one batch", ["way"], registry=r
        )
        self.decisions = Counter(
            "twinkg_decisions_total",
            "Agent runs by how they ended (applied, refused, rejected, awaiting_approval, ...)",
            ["outcome"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "twinkg_decision_seconds",
            "Seconds from a run's start (observe) to its record",
            registry=r,
            buckets=_DECISION_BUCKETS,
        )
        self.node_seconds = Histogram(
            "twinkg_agent_node_seconds",
            "Seconds each agent node took",
            ["node"],
            registry=r,
            buckets=_DECISION_BUCKETS,
        )
        self.guard_seconds = Histogram(
            "twinkg_guard_seconds",
            "Seconds the guard took to judge an action",
            registry=r,
            buckets=_GUARD_BUCKETS,
        )
        self.projection_lag = Gauge(
            "twinkg_projection_lag_seconds",
            "How long the oldest change the SPARQL projection has not applied has waited",
            registry=r,
        )
        self.projection_pending = Gauge(
            "twinkg_projection_pending_changes",
            "Change-log entries the SPARQL projection has not applied",
            registry=r,
        )
        self.queue_depth = Gauge(
            "twinkg_queue_depth",
            "Work waiting in a process's queue (MQTT messages received, not yet handled)",
            ["queue"],
            registry=r,
        )

        self.loop_up = Gauge(
            "twinkg_service_loop_up",
            "1 while a loop of `twinkg run` (agents, ingest, events, opcua) runs",
            ["loop"],
            registry=r,
        )
        self.edge_buffer = Gauge(
            "twinkg_edge_buffer_depth",
            "What waits in the edge's store-and-forward buffer for the twin's receipt "
            "(entries, bytes, points, decisions)",
            ["unit"],
            registry=r,
        )
        self.edge_refused = Counter(
            "twinkg_edge_refused_total",
            "Telemetry batches the edge's full buffer refused (left at their source, retried)",
            registry=r,
        )
        self.edge_over_budget = Counter(
            "twinkg_edge_decisions_over_budget_total",
            "Local edge decisions that took longer than TWINKG_EDGE_BUDGET_MS (each logged)",
            registry=r,
        )
        self.guarded_again = Counter(
            "twinkg_guarded_again_total",
            "Runs guarded again because their action's context changed between the guard and "
            "the record (decision 0086)",
            registry=r,
        )
        self.service_failures = Counter(
            "twinkg_service_failures_total",
            "Failures a loop of `twinkg run` retried after (the store or the broker away)",
            ["loop"],
            registry=r,
        )

    def ingested(self, way: str, report: IngestReport, seconds: float) -> None:
        """Count one ingested batch (a duplicate stores nothing and counts as such)."""
        self.ingest_seconds.labels(way).observe(seconds)
        if report.duplicate:
            self.batches.labels(way, "duplicate").inc()
            return
        self.batches.labels(way, "applied").inc()
        self.points_ingested.labels(way).inc(report.accepted)
        self.points_quarantined.labels(way).inc(report.rejected)

    def decided(self, outcome: str) -> None:
        """Count a run that ended with ``outcome``."""
        self.decisions.labels(outcome).inc()

    def node_timer(self, inner: NodeListener | None = None) -> NodeListener:
        """A node listener that times each node (the time since the previous node finished,
        the first from now) and each run (start to ``record``), then calls ``inner``."""
        lock = threading.Lock()
        started: dict[str, float] = {}
        last = [time.monotonic()]

        def heard(run_id: str, node: str) -> None:
            now = time.monotonic()
            with lock:
                began = started.setdefault(run_id, last[0])
                took, last[0] = now - last[0], now
            self.node_seconds.labels(node).observe(took)
            if node == "guard":
                self.guard_seconds.observe(took)
            elif node == "record":
                self.decision_seconds.observe(now - began)
            if inner is not None:
                inner(run_id, node)

        return heard

    def serve(self, port: int) -> None:
        """Serve these metrics at ``http://127.0.0.1:PORT/metrics`` from a background thread
        (:class:`PortInUseError` when the port is taken)."""
        try:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)
        except OSError as exc:
            raise PortInUseError(f"metrics port {port}: {exc.strerror or exc}") from None

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def scrape(port: int, *, timeout_s: float = 2.0) -> dict[str, float] | None:
    """The metrics served on ``127.0.0.1:PORT`` as ``name{label=value,…}`` → value (labels
    sorted); ``None`` when nothing answers there."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s).text
    except httpx.HTTPError:
        return None
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def loops_up(values: dict[str, float]) -> dict[str, bool]:
    """Each service loop named in scraped ``values`` and whether it runs."""
    prefix = "twinkg_service_loop_up{loop="
    return {k[len(prefix) : -1]: v == 1.0 for k, v in values.items() if k.startswith(prefix)}
