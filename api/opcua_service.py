"""OPC UA in ``twinkg run`` (decision 0063): the servers the service subscribes to, checked
before any loop starts, and the loop that runs ``twinkg connect opcua``'s :func:`connect` for
each of them on one asyncio event loop of its own.

A server is given as ``URL=MAPPING`` (``--opcua``, or ``TWINKG_OPCUA_SERVERS``): the endpoint
URL and the reviewed TOML mapping. :func:`parse_server` refuses a bad form, URL or mapping file
with one line; :func:`prepare` checks each mapping against the graph (:func:`bind`) and makes
the twin's credentials, so that every refusal comes before the service starts. The loop
(:class:`OpcUaLoop`) turns the service's stop (a :class:`threading.Event`) into each
connection's asyncio stop. A lost connection is made again by the ingest itself (back-off up to
``TWINKG_OPCUA_RECONNECT_MAX_S``); a connection that fails or breaks is reported and tried again
after ``retry_s``, never ending the service.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from twinkg.api.opcua_connect import ConnectReport, Secure, connect, opcua_url, securer
from twinkg.api.settings import Settings
from twinkg.api.site_scope import mapping_on_site
from twinkg.api.twin import Twin
from twinkg.connect.opcua.ingest import Binding, IngestStats, bind
from twinkg.connect.opcua.mapping import OpcUaMapping, load_mapping
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import InvalidInputError, OpcUaMappingError, TwinKGError
from twinkg.reasoner.ingest import IngestReport

log = logging.getLogger(__name__)

STOP_POLL_S: Final = 0.25
"""How often the event loop looks at the service's stop (the longest a stop waits for it)."""


@dataclass(frozen=True, slots=True)
class OpcUaServer:
    """One server as the operator named it: its endpoint URL and its mapping file."""

    url: str
    mapping_file: Path


@dataclass(frozen=True, slots=True)
class OpcUaLink:
    """A server ready to connect to: its mapping loaded and bound to the graph's sensors."""

    url: str
    mapping: OpcUaMapping
    bindings: tuple[Binding, ...]
    secure: Secure


def parse_server(text: str) -> OpcUaServer:
    """``URL=MAPPING`` (split at the first ``=``: an endpoint URL has none) as a server, its
    URL an ``opc.tcp://host:port`` one; :class:`InvalidInputError` with the reason otherwise.
    The mapping file is not read here (:func:`load_servers`)."""
    url, equals, path = text.partition("=")
    if not equals or not url.strip() or not path.strip():
        raise InvalidInputError(
            f"{text[:200]!r}: give an OPC UA server as URL=MAPPING (the endpoint URL and the "
            "reviewed mapping file)"
        )
    return OpcUaServer(opcua_url(url.strip()), Path(path.strip()))


def load_servers(texts: Sequence[str]) -> list[tuple[OpcUaServer, OpcUaMapping]]:
    """Each ``URL=MAPPING`` parsed and its mapping file loaded and checked; a server named
    twice is refused (:class:`InvalidInputError`, :class:`OpcUaMappingError`)."""
    loaded: list[tuple[OpcUaServer, OpcUaMapping]] = []
    for text in texts:
        server = parse_server(text)
        if any(server.url == seen.url for seen, _ in loaded):
            raise InvalidInputError(f"{server.url}: named twice; give one mapping per server")
        loaded.append((server, load_mapping(server.mapping_file)))
    return loaded


def prepare(
    settings: Settings, store: GraphStore, loaded: Sequence[tuple[OpcUaServer, OpcUaMapping]]
) -> list[OpcUaLink]:
    """Each server's mapping bound to the graph (a sensor missing or in another unit is
    refused, and so is a sensor two servers feed, or a thing off the mapping's ``site``) with the
    twin's credentials."""
    if not loaded:
        return []
    secure = securer(settings)  # one set of credentials (and one pinned certificate) for all
    links: list[OpcUaLink] = []
    fed: dict[str, str] = {}
    for server, mapping in loaded:
        bindings = tuple(bind(store, mapping))
        mapping_on_site(store, mapping, bindings)
        for binding in bindings:
            other = fed.setdefault(binding.sensor, server.url)
            if other != server.url:
                raise OpcUaMappingError(
                    f"{server.mapping_file}: sensor {binding.sensor} is fed by {other} too"
                )
        links.append(OpcUaLink(server.url, mapping, bindings, secure))
    return links


@dataclass
class OpcUaTotals:
    """What the OPC UA connections of one service run did (the ended ones)."""

    points: int = 0
    accepted: int = 0
    quarantined: int = 0
    lost: int = 0
    writes: int = 0

    def add(self, report: ConnectReport) -> None:
        """Count one ended connection."""
        stats: IngestStats = report.ingest
        self.points += stats.points
        self.accepted += stats.accepted
        self.quarantined += stats.quarantined
        self.lost += stats.lost
        self.writes += len(report.writes)


class OpcUaLoop:
    """Every configured server's ingest (and write-back), on one asyncio event loop."""

    def __init__(self, twin: Twin, links: Sequence[OpcUaLink], *, write_back: bool) -> None:
        self.twin = twin
        self.links = list(links)
        self.write_back = write_back
        self.totals = OpcUaTotals()

    def run(
        self,
        stop: Callable[[float], bool],
        *,
        heard: Callable[[IngestReport], None],
        failed: Callable[[Exception], None],
        retry_s: float,
    ) -> None:
        """Serve every server until ``stop(timeout)`` (``threading.Event.wait``) says so.
        ``heard`` is given the report of each batch that raised findings (on a worker thread;
        it must not raise); ``failed`` each connection that failed or broke (tried again after
        ``retry_s``)."""
        asyncio.run(self._main(stop, heard, failed, retry_s))

    async def _main(
        self,
        stop: Callable[[float], bool],
        heard: Callable[[IngestReport], None],
        failed: Callable[[Exception], None],
        retry_s: float,
    ) -> None:
        stopped = asyncio.Event()
        servers = [self._serve(link, stopped, heard, failed, retry_s) for link in self.links]
        tasks = [asyncio.create_task(serve) for serve in servers]
        while not await asyncio.to_thread(stop, STOP_POLL_S):
            if all(task.done() for task in tasks):
                break  # nothing to serve (no server configured)
        stopped.set()
        await asyncio.gather(*tasks)

    async def _serve(
        self,
        link: OpcUaLink,
        stopped: asyncio.Event,
        heard: Callable[[IngestReport], None],
        failed: Callable[[Exception], None],
        retry_s: float,
    ) -> None:
        while not stopped.is_set():
            attempt = asyncio.Event()  # connect() sets its stop when it ends: one per attempt
            relay = asyncio.create_task(_relay(stopped, attempt))
            try:
                report = await connect(
                    link.url,
                    self.twin,
                    link.mapping,
                    list(link.bindings),
                    secure=link.secure,
                    write=self.write_back,
                    stop=attempt,
                    on_findings=heard,
                )
            except TwinKGError as exc:  # unreachable, untrusted, a namespace it lacks, the store
                failed(exc)
            except Exception as exc:  # a defect: logged with its trace; the service goes on
                log.exception("the OPC UA connection to %s failed unexpectedly", link.url)
                failed(exc)
            else:
                self.totals.add(report)
                if stopped.is_set():
                    return
            finally:
                relay.cancel()
            await _wait(stopped, retry_s)


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
