"""``twinkg connect opcua``: what the command does, apart from its options (decision 0058)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from twinkg.api.cli.common import load_settings, note, open_store, out
from twinkg.api.opcua_connect import ConnectReport, Secure, connect, opcua_url, securer
from twinkg.api.site_scope import mapping_on_site
from twinkg.api.twin import Twin
from twinkg.connect.opcua.browse import VariableInfo, browse_server, draft_mapping, read_nodeset
from twinkg.connect.opcua.ingest import Binding, bind
from twinkg.connect.opcua.mapping import OpcUaMapping, load_mapping
from twinkg.ontology.errors import InvalidInputError, OpcUaError, OpcUaUntrustedError


def run(
    url: str | None,
    *,
    mapping_file: Path | None,
    write_map: Path | None,
    nodeset: Path | None,
    write_back: bool,
    max_points: int | None,
    duration_s: float | None,
    server_cert: Path | None,
) -> None:
    """Draft a mapping, or connect by one; every refusal is one line and a non-zero exit."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    if write_map is not None:
        if mapping_file is not None or write_back:
            raise InvalidInputError("--write-map drafts a mapping: it takes no --map/--write-back")
        _draft(url, nodeset, write_map, server_cert)
        return
    if nodeset is not None:
        raise InvalidInputError("--nodeset drafts a mapping: give --write-map FILE too")
    if url is None or mapping_file is None:
        raise InvalidInputError("give the server URL and --map FILE (or --write-map FILE)")
    target = opcua_url(url)
    mapping = load_mapping(mapping_file)
    settings = load_settings()
    secure = securer(settings, server_cert)
    with open_store(settings) as store:
        bindings = bind(store, mapping)
        mapping_on_site(store, mapping, bindings)
        twin = Twin(settings, store)
        try:
            report = asyncio.run(_connect(target, twin, mapping, bindings, secure, write_back,
                                          max_points, duration_s))  # fmt: skip
        finally:
            twin.close()
    _say(report)


async def _connect(  # noqa: PLR0917 - passed through
    url: str,
    twin: Twin,
    mapping: OpcUaMapping,
    bindings: list[Binding],
    secure: Secure,
    write_back: bool,
    max_points: int | None,
    duration_s: float | None,
) -> ConnectReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    note(f"connecting to {url}: {len(bindings)} variables, {len(mapping.setpoints)} setpoints")
    return await connect(
        url,
        twin,
        mapping,
        bindings,
        secure=secure,
        write=write_back,
        stop=stop,
        max_points=max_points,
        duration_s=duration_s,
    )


def _say(report: ConnectReport) -> None:
    stats = report.ingest
    out.print(
        f"{stats.points} points in {stats.batches} batches: {stats.accepted} accepted, "
        f"{stats.quarantined} quarantined, {stats.refused_batches} batches refused; "
        f"{stats.repeats} repeated first values skipped; {stats.lost} connections lost",
        markup=False,
    )
    for write in report.writes:
        verdict = "written" if write.ok else "failed"
        out.print(
            f"{write.decision}: {write.node} = {write.value!r} {verdict} ({write.status})",
            markup=False,
        )


def _draft(url: str | None, nodeset: Path | None, target: Path, server_cert: Path | None) -> None:
    if nodeset is not None:
        if url is not None:
            raise InvalidInputError("give the server URL or --nodeset, not both")
        variables = read_nodeset(nodeset)
        origin = str(nodeset)
    else:
        if url is None:
            raise InvalidInputError("give the server URL or --nodeset to draft a mapping from")
        origin = opcua_url(url)
        secure = securer(load_settings(), server_cert)
        variables = asyncio.run(_browse(origin, secure))
    text, telemetry, setpoints = draft_mapping(variables, origin=origin)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{target}: cannot write the draft ({exc.strerror})") from None
    out.print(
        f"drafted {telemetry} telemetry and {setpoints} setpoint entries into {target}: "
        "review and fill in the blanks before using it",
        markup=False,
    )


async def _browse(url: str, secure: Secure) -> list[VariableInfo]:
    timeout = load_settings().opcua_timeout_s
    client = Client(url, timeout=timeout)
    try:
        await secure(client)
        async with client:
            namespaces = await client.get_namespace_array()
            return await browse_server(client.nodes.objects, namespaces)
    except UaStatusCodeError as exc:
        raise OpcUaUntrustedError(f"{url}: the server refused us ({exc})") from None
    except (OSError, TimeoutError, UaError) as exc:
        raise OpcUaError(f"{url}: cannot connect ({type(exc).__name__}: {exc})") from None
