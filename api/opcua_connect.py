"""The twin's OPC UA connection (decision 0058): its credentials from the settings, the sink
that ingests a batch through the twin exactly as ``POST /telemetry`` does, the write-back
loop, and one run of ``twinkg connect opcua`` putting them together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError

from twinkg.api.reclassification import Reclassify
from twinkg.api.settings import Settings
from twinkg.api.twin import Twin
from twinkg.connect.json import JsonSource
from twinkg.connect.opcua.ingest import (
    Binding,
    IngestOptions,
    IngestStats,
    OpcUaIngest,
    SinkOutcome,
)
from twinkg.connect.opcua.mapping import OpcUaMapping
from twinkg.connect.opcua.security import (
    OpcUaCredentials,
    ensure_credentials,
    local_hostnames,
    secure_client,
)
from twinkg.connect.opcua.writeback import WriteResult, write_back
from twinkg.kg.store import GraphStore
from twinkg.ontology.errors import ConfigError, InvalidInputError, OpcUaError, TwinKGError
from twinkg.reasoner.ingest import IngestReport

log = logging.getLogger(__name__)

Secure = Callable[[Client], Awaitable[None]]


def opcua_url(text: str) -> str:
    """``text`` if it is an ``opc.tcp://host:port[/path]`` URL; :class:`InvalidInputError`
    with the reason otherwise."""
    try:
        parsed = urlparse(text)
        port = parsed.port
    except ValueError as exc:
        raise InvalidInputError(f"{text[:200]!r} is not a URL ({exc})") from None
    if parsed.scheme != "opc.tcp" or not parsed.hostname or port is None:
        raise InvalidInputError(f"{text[:200]!r} is not an opc.tcp://host:port URL")
    if any(c.isspace() for c in text) or parsed.query or parsed.fragment:
        raise InvalidInputError(f"{text[:200]!r}: an OPC UA endpoint URL has no spaces or query")
    return text


def credentials(settings: Settings) -> OpcUaCredentials:
    """The twin's OPC UA credentials: the configured files, or ones made (once) under
    ``HOME/opcua`` for ``TWINKG_OPCUA_APPLICATION_URI``."""
    cert, key = settings.opcua_cert_file, settings.opcua_key_file
    if (cert is None) != (key is None):
        raise ConfigError("set both TWINKG_OPCUA_CERT_FILE and TWINKG_OPCUA_KEY_FILE, or neither")
    if cert is not None and key is not None:
        return OpcUaCredentials(cert, key, settings.opcua_application_uri)
    folder = settings.home.resolve() / "opcua"
    return ensure_credentials(folder, "twinkg", settings.opcua_application_uri, local_hostnames())


def securer(settings: Settings, server_cert: Path | None = None) -> Secure:
    """What makes a client speak Basic256Sha256 SignAndEncrypt with the twin's credentials to
    the pinned server certificate (``server_cert``, else ``TWINKG_OPCUA_SERVER_CERT_FILE``)."""
    creds = credentials(settings)
    pinned = server_cert or settings.opcua_server_cert_file
    if pinned is None:
        log.warning("no OPC UA server certificate pinned: the one the server lists is trusted")

    async def secure(client: Client) -> None:
        await secure_client(client, creds, pinned)

    return secure


def twin_sink(
    twin: Twin,
    url: str,
    *,
    reclassify: Reclassify = Reclassify.BACKGROUND,
    on_findings: Callable[[IngestReport], None] | None = None,
) -> Callable[[bytes], SinkOutcome]:
    """A batch into ``twin`` through the telemetry contract (as ``POST /telemetry``): refused
    whole only for a malformed envelope (a stable code, logged); points judged one by one.
    ``reclassify``: what each applied batch asks of the reclassification (as MQTT: in the
    background). ``on_findings`` hears the report of each applied batch that raised anomalies
    or alarms (``twinkg run`` hands its agents work so)."""
    name = f"opcua:{url}"

    def sink(body: bytes) -> SinkOutcome:
        try:
            results = list(twin.ingest(JsonSource(name, body=body), reclassify=reclassify))
        except InvalidInputError as exc:
            twin.metrics.refused.labels("opcua", exc.code).inc()
            return SinkOutcome(code=exc.code, reason=" ".join(str(exc).split()))
        report = results[0].report
        if report.duplicate:
            return SinkOutcome(duplicate=True)
        if (report.anomalies or report.alarms) and on_findings is not None:
            on_findings(report)
        return SinkOutcome(report.accepted, report.rejected)

    return sink


@dataclass
class ConnectReport:
    """What one ``twinkg connect opcua`` run did."""

    ingest: IngestStats
    writes: list[WriteResult] = field(default_factory=list)


async def write_back_loop(
    url: str,
    store: GraphStore,
    mapping: OpcUaMapping,
    *,
    secure: Secure,
    stop: asyncio.Event,
    poll_s: float,
    timeout_s: float,
    reconnect_max_s: float,
    max_age_s: float = 600.0,
) -> list[WriteResult]:
    """Write due actions back every ``poll_s`` until ``stop``; reconnect with back-off. Only
    actions applied in the last ``max_age_s`` seconds are written."""
    results: list[WriteResult] = []
    delay = 1.0
    while not stop.is_set():
        client = Client(url, timeout=timeout_s)
        try:
            await secure(client)
            async with client:
                delay = 1.0
                while not stop.is_set():
                    results += await write_back(client, store, mapping, max_age_s=max_age_s)
                    await _wait(stop, poll_s)
        except (OSError, TimeoutError, UaError, OpcUaError) as exc:
            log.warning("opcua write-back connection failed (%r); next try in %.0f s", exc, delay)
            await _wait(stop, delay)
            delay = min(delay * 2, reconnect_max_s)
        except TwinKGError as exc:  # the store: the next poll tries again
            log.warning("opcua write-back could not read or record: %s (%s)", exc, exc.code)
            await _wait(stop, delay)
        except Exception:  # a defect: logged with its trace; a dead writer would write nothing
            log.exception("opcua write-back failed; next try in %.0f s", delay)
            await _wait(stop, delay)
            delay = min(delay * 2, reconnect_max_s)
    return results


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return


async def connect(
    url: str,
    twin: Twin,
    mapping: OpcUaMapping,
    bindings: list[Binding],
    *,
    secure: Secure,
    write: bool,
    stop: asyncio.Event,
    max_points: int | None = None,
    duration_s: float | None = None,
    on_findings: Callable[[IngestReport], None] | None = None,
) -> ConnectReport:
    """Ingest the mapped variables of ``url`` (and, with ``write``, write allowed actions back)
    until ``stop``, ``duration_s`` or ``max_points``; ``on_findings`` as for
    :func:`twin_sink`. Sets ``stop`` when it ends."""
    settings = twin.settings
    options = IngestOptions(
        publishing_interval_ms=settings.opcua_publishing_interval_ms,
        batch_points=settings.opcua_batch_points,
        batch_ms=settings.opcua_batch_ms,
        timeout_s=settings.opcua_timeout_s,
        reconnect_max_s=settings.opcua_reconnect_max_s,
    )
    ingest = OpcUaIngest(
        url,
        bindings,
        secure=secure,
        sink=twin_sink(twin, url, on_findings=on_findings),
        options=options,
    )
    writer: asyncio.Task[list[WriteResult]] | None = None
    if write and mapping.setpoints:
        writer = asyncio.create_task(
            write_back_loop(
                url,
                twin.store,
                mapping,
                secure=secure,
                stop=stop,
                poll_s=settings.opcua_writeback_poll_s,
                timeout_s=settings.opcua_timeout_s,
                reconnect_max_s=settings.opcua_reconnect_max_s,
                max_age_s=settings.opcua_writeback_max_age_s,
            )
        )
    try:
        if bindings:
            stats = await ingest.run(stop=stop, max_points=max_points, duration_s=duration_s)
        else:  # a write-back only mapping: run for the duration (or until stopped)
            stats = IngestStats()
            await _wait(stop, duration_s if duration_s is not None else _FOREVER)
    finally:
        stop.set()
        writes = await writer if writer is not None else []
    return ConnectReport(stats, writes)


_FOREVER = 10.0 * 365 * 24 * 3600
