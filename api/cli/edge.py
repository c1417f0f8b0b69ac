"""``twinkg edge``: the edge runtime beside a plant and its policy bundles (decision 0059).

Central side: ``bundle`` exports the safety shapes, the policies and the local rules as a
signed bundle. Edge side: ``trust`` a signing key, ``apply`` a bundle, ``run`` the runtime,
``status`` and ``verify`` its local decision chain.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from twinkg.api.cli.common import errors_as_exit_codes, load_settings, note, open_store, out
from twinkg.api.metrics import Metrics
from twinkg.api.settings import Settings, edge_dir, edge_endpoint
from twinkg.connect.edge import bundle as bundles
from twinkg.connect.edge.buffer import Depth
from twinkg.connect.edge.chain import verify
from twinkg.connect.edge.rules import parse_rules
from twinkg.connect.edge.runtime import BUFFERED_SEQ
from twinkg.connect.edge.service import LINK, EdgeConfig, EdgeService
from twinkg.connect.edge.signing import SigningKey, TrustStore, parse_public
from twinkg.connect.mqtt.topics import segment
from twinkg.ontology.errors import ConfigError, EdgeChainTamperedError, InvalidInputError

app = typer.Typer(help="The edge runtime: signed policy bundles, local rules, store-and-forward.")


def edge_config(settings: Settings, inbox: Path | None = None) -> EdgeConfig:
    """The edge's configuration from the settings (``TWINKG_EDGE_SITE`` is required)."""
    if settings.edge_site is None:
        raise ConfigError("TWINKG_EDGE_SITE is not set: which site does this edge serve?")
    folder = edge_dir(settings)
    return EdgeConfig(
        folder=folder,
        site=segment(settings.edge_site, "TWINKG_EDGE_SITE"),
        node=settings.edge_node,
        area=settings.edge_area,
        endpoint=edge_endpoint(settings),
        inbox=inbox or settings.edge_inbox or folder / "inbox",
        max_entries=settings.edge_buffer_max_entries,
        max_bytes=settings.edge_buffer_max_bytes,
        trusted_key=settings.edge_trusted_key,
        resend_s=settings.edge_resend_s,
        window=settings.edge_window,
        budget_ms=settings.edge_budget_ms,
    )


@app.command("bundle")
@errors_as_exit_codes
def edge_bundle(
    site: Annotated[str, typer.Option(help="the site the bundle is for")],
    rules: Annotated[Path, typer.Option(help='the local rules, JSON {"rules": [...]}')],
    out_file: Annotated[Path, typer.Option("--out", help="where to write the bundle")],
) -> None:
    """Export the safety shapes, the policies of the rules' targets and the rules as a bundle
    signed with this twin's key (made under var/edge on first use)."""
    settings = load_settings()
    segment(site, "site")
    try:
        parsed = parse_rules(json.loads(rules.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{rules}: {exc}") from None
    folder = edge_dir(settings)
    key = SigningKey(folder)
    with open_store(settings) as store:
        version = bundles.next_version(folder / "central", site)
        made = bundles.build(store, site=site, version=version, rules=parsed, key=key)
    data = made.to_bytes()
    out_file.write_bytes(data)
    out.print(f"bundle v{version} for site {site}: {out_file} (sha256 {bundles.sha256(data)})")
    out.print(f"signed by {key.public().text} (key id {key.public().key_id})")


@app.command("trust")
@errors_as_exit_codes
def edge_trust(
    pubkey: Annotated[str, typer.Argument(help="ed25519:<base64>, or a file holding it")],
) -> None:
    """Trust a bundle signing key on this edge."""
    settings = load_settings()
    path = Path(pubkey)
    text = path.read_text(encoding="utf-8") if path.is_file() else pubkey
    key = parse_public(text)
    kept = TrustStore(edge_dir(settings) / "trusted", settings.edge_trusted_key).add(key)
    out.print(f"trusting key {key.key_id} ({kept})")


@app.command("apply")
@errors_as_exit_codes
def edge_apply(bundle_file: Annotated[Path, typer.Argument(help="the bundle to apply")]) -> None:
    """Verify and apply a bundle atomically; a refused one leaves the bundle in force."""
    settings = load_settings()
    site = None if settings.edge_site is None else segment(settings.edge_site, "TWINKG_EDGE_SITE")
    edge = bundles.EdgeBundles(
        edge_dir(settings),
        TrustStore(edge_dir(settings) / "trusted", settings.edge_trusted_key),
        site=site,
    )
    try:
        data = bundle_file.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"{bundle_file}: {exc}") from None
    applied = edge.apply(data)
    out.print(
        f"bundle v{applied.bundle.version} applied: {len(applied.contents.rules)} rules, "
        f"shapes {applied.contents.shapes_version}, sha256 {applied.sha256}"
    )


@app.command("run")
@errors_as_exit_codes
def edge_run(
    inbox: Annotated[Path | None, typer.Option(help="folder of JSON batches to take in")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve the edge's metrics on 127.0.0.1:PORT/metrics")
    ] = None,
) -> None:
    """Take telemetry from the inbox, decide locally, buffer and forward until SIGTERM."""
    settings = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    metrics = Metrics()
    refused, over = [0], [0]

    def depth(d: Depth) -> None:
        for unit, value in (("entries", d.entries), ("bytes", d.bytes), ("points", d.points)):
            metrics.edge_buffer.labels(unit).set(value)
        metrics.edge_buffer.labels("decisions").set(d.decisions)
        held = service.runtime.stats.held
        metrics.edge_refused.inc(held - refused[0])
        refused[0] = held
        late = service.runtime.stats.over_budget
        metrics.edge_over_budget.inc(late - over[0])
        over[0] = late

    service = EdgeService(edge_config(settings, inbox), on_depth=depth)
    if metrics_port is not None:
        metrics.serve(metrics_port)
        note(f"metrics at http://127.0.0.1:{metrics_port}/metrics")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    service.start()
    note(f"edge {service.config.node} of {service.config.site} reads {service.config.inbox}")
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()


@app.command("status")
@errors_as_exit_codes
def edge_status() -> None:
    """The bundle in force, the buffer's depth, the link's state and the last forward."""
    config = edge_config(load_settings())
    current = config.bundles().current()
    buffer = config.buffer()
    try:
        depth, counters = buffer.depth(), buffer.counters()
        link = json.loads(buffer.meta(LINK) or "{}")
        last = buffer.meta("last_forwarded")
    finally:
        buffer.close()
    version = "none" if current is None else f"v{current.bundle.version}"
    out.print(f"bundle: {version}")
    out.print(
        f"buffer: {depth.entries} entries, {depth.bytes} bytes, {depth.points} points, "
        f"{depth.decisions} decisions waiting"
    )
    if link:
        since = datetime.fromtimestamp(float(link["since"]), UTC).isoformat(timespec="seconds")
        out.print(f"link: {'up' if link['up'] else 'down'} since {since}")
    else:
        out.print("link: never run")
    out.print(f"last forwarded: {last or 'never'}")
    out.print("counters: " + (", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "-"))


@app.command("verify")
@errors_as_exit_codes
def edge_verify() -> None:
    """Verify the local decision chain (exit 24 when a record was altered or dropped)."""
    config = edge_config(load_settings())
    buffer = config.buffer()
    try:
        buffered = int(buffer.meta(BUFFERED_SEQ) or 0)
    finally:
        buffer.close()
    started = time.perf_counter()
    report = verify(config.chain_file, expect_length=buffered)
    took = time.perf_counter() - started
    if not report.ok:
        raise EdgeChainTamperedError("; ".join(report.problems[:5]))
    out.print(f"edge chain intact: {report.records} records, head {report.head} ({took:.2f} s)")
