"""``twinkg broker start|stop|status|issue`` (the local Mosquitto) and ``twinkg connect mqtt``
(an ingest worker on a partition of the telemetry topics) with ``twinkg connect refused``."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from twinkg.api import tracing
from twinkg.api.cli.common import errors_as_exit_codes, load_settings, note, open_store, out
from twinkg.api.event_stream import EventPublisher
from twinkg.api.mqtt_ingest import MqttIngest, Outcome
from twinkg.api.settings import (
    broker_config,
    dead_letter_dir,
    events_cursor,
    findings_cursor,
    mqtt_endpoint,
)
from twinkg.api.twin import Twin
from twinkg.connect.mqtt import broker
from twinkg.connect.mqtt.client import Message, Subscriber, connect, publish
from twinkg.connect.mqtt.topics import Role, state_topic, telemetry_filters
from twinkg.kg.dead_letters import DeadLetters
from twinkg.ontology.errors import ConfigError, PortInUseError

broker_app = typer.Typer(help="The local MQTT broker (Mosquitto, TLS with client certificates).")
connect_app = typer.Typer(help="Ways telemetry comes in from a plant over the network.")


def _local() -> broker.BrokerConfig:
    settings = load_settings()
    if settings.mqtt_url is not None:
        raise ConfigError("TWINKG_MQTT_URL is set, so TwinKG uses that broker and runs none")
    return broker_config(settings)


@broker_app.command("start")
@errors_as_exit_codes
def broker_start() -> None:
    """Start the local broker in the background (certificates and ACL made on first start).

    A broker started now also gets the default ingest worker's session (TWINKG_MQTT_CLIENT_ID,
    every site's telemetry), so telemetry published before the worker first runs waits for it
    instead of being dropped for want of a subscriber."""
    config = _local()
    settings = load_settings()
    was_running = broker.status(config).running
    state = broker.start(config)
    out.print(f"MQTT broker running (pid {state.pid}) at {state.url}")
    if not was_running:  # no worker can hold the session yet: taking it over disturbs no one
        Subscriber(
            mqtt_endpoint(settings), telemetry_filters(), client_id=settings.mqtt_client_id
        ).close()
        out.print(f"telemetry is held for the ingest worker {settings.mqtt_client_id}")
    out.print(f"CA {config.pki / 'ca.crt'}; clients in {config.pki / 'clients'}")


@broker_app.command("stop")
@errors_as_exit_codes
def broker_stop() -> None:
    """Stop the local broker (it saves its queued messages first)."""
    out.print("MQTT broker stopped" if broker.stop(_local()) else "MQTT broker was not running")


@broker_app.command("status")
@errors_as_exit_codes
def broker_status() -> None:
    """Whether the local broker runs (exit 3 when it does not)."""
    state = broker.status(_local())
    if not state.running:
        out.print(f"MQTT broker is not running (would listen at {state.url})")
        raise typer.Exit(3)
    out.print(f"MQTT broker running (pid {state.pid}) at {state.url}")


@broker_app.command("issue")
@errors_as_exit_codes
def broker_issue(
    name: Annotated[str, typer.Argument(help="the client's name: its certificate's common name")],
    role: Annotated[Role, typer.Option(help="what it may do")] = Role.PRODUCER,
    site: Annotated[
        str | None, typer.Option(help="a producer's site, by its tag (its only topics and sensors)")
    ] = None,
) -> None:
    """Issue a client certificate and grant its role's topics (a running broker restarts to
    apply them: sessions are kept and connected clients reconnect)."""
    config = _local()
    credentials = broker.issue(config, name, role, site=site)
    out.print(f"{name} ({role.value}{f' of {site}' if site else ''}):")
    out.print(f"  ca {credentials.ca}\n  cert {credentials.cert}\n  key {credentials.key}")


@connect_app.command("mqtt")
@errors_as_exit_codes
def connect_mqtt(  # noqa: PLR0917 - one parameter per command-line option
    site: Annotated[
        list[str] | None, typer.Option(help="only this site's telemetry (repeatable; default all)")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="this worker's client id (default TWINKG_MQTT_CLIENT_ID)")
    ] = None,
    idle_s: Annotated[
        float | None, typer.Option(min=0.1, help="stop after this long without a message")
    ] = None,
    max_messages: Annotated[
        int | None, typer.Option(min=1, help="stop after this many messages")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no line per message")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="serve Prometheus metrics on 127.0.0.1:PORT"),
    ] = None,
    retire: Annotated[
        bool,
        typer.Option(help="on stopping, drain and end this worker's session (scaling down)"),
    ] = False,
) -> None:
    """Ingest telemetry from the broker until stopped (Ctrl-C, SIGTERM).

    Each message on twinkg/v1/{site}/tele/{area}/{node} is a JSON batch, checked against its
    contract and applied all or nothing, then acknowledged. To spread the load run one worker
    per set of sites (--site, distinct client ids): each topic stays in order. A stopped worker
    keeps its session: the broker holds its messages until it is back (restart it with the
    same client id), unless it was stopped with --retire."""
    settings = load_settings()
    tracing.configure(settings)  # off unless TWINKG_OTLP_ENDPOINT is set
    # the per-message lines say what the log's warnings would; --quiet leaves only the log
    level = logging.WARNING if quiet else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    endpoint = mqtt_endpoint(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def said(message: Message, outcome: Outcome) -> None:
        if quiet:
            return
        if outcome.kind == "refused":
            line = f"{message.topic}: refused [{outcome.code}] {outcome.reason}"
            out.print(line, markup=False)
        elif outcome.kind == "duplicate":
            out.print(f"{message.topic}: duplicate, applied before", markup=False)
        else:
            what = f"{outcome.accepted} accepted, {outcome.quarantined} quarantined"
            out.print(f"{message.topic}: applied, {what}", markup=False)

    with open_store(settings) as store:
        twin = Twin(settings, store)
        filters = telemetry_filters(site or ())
        subscriber = Subscriber(
            endpoint,
            filters,
            client_id=client_id or settings.mqtt_client_id,
            receive_maximum=settings.mqtt_receive_maximum,
            announce=state_topic(client_id or settings.mqtt_client_id),
        )
        note(f"subscribed to {', '.join(filters)} at {endpoint.url}")
        worker = MqttIngest(twin, subscriber, DeadLetters(dead_letter_dir(settings)))
        if metrics_port is not None:
            try:
                twin.metrics.serve(metrics_port)
            except PortInUseError:
                subscriber.close()
                raise
            note(f"metrics at http://127.0.0.1:{metrics_port}/metrics")
        try:
            stats = worker.run(stop=stop, idle_s=idle_s, max_messages=max_messages, on_outcome=said)
            if retire:
                note("retiring: draining what the broker routed here, then ending the session")
                worker.retire()
        finally:
            subscriber.close()
            twin.close()
    out.print(
        f"{stats.messages} messages: {stats.applied} applied, {stats.duplicates} duplicates, "
        f"{stats.refused} refused; {stats.points_accepted} points accepted, "
        f"{stats.points_quarantined} quarantined"
    )


@connect_app.command("events")
@errors_as_exit_codes
def connect_events(
    follow: Annotated[bool, typer.Option(help="keep publishing as decisions are recorded")] = False,
    poll_s: Annotated[float, typer.Option(min=0.05, help="--follow: how often to look")] = 0.5,
    client_id: Annotated[str, typer.Option(help="the publisher's client id")] = "twinkg-events",
) -> None:
    """Publish every decision and finding committed since the last run as MQTT events (decision;
    approval when it waits for a person; action when its action was applied; finding for each
    anomaly or alarm a transaction created or changed), in commit order, at QoS 1.

    Topics: twinkg/v1/{site}/evt/{kind}/{area}/{asset}, named by the tags of the target asset,
    its area and its site. The last chain index published is kept, so a second run goes on
    where the first stopped; an event may come twice after a crash (drop it by its id)."""
    settings = load_settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    client = connect(mqtt_endpoint(settings), client_id)
    timeout = settings.mqtt_timeout_s
    total = 0
    try:
        with open_store(settings) as store:
            publisher = EventPublisher(
                store,
                lambda topic, body: publish(client, topic, body, timeout_s=timeout),
                events_cursor(settings),
                findings_cursor(settings),
            )
            while True:
                total += publisher.publish_new()
                if not follow or stop.wait(poll_s):
                    break
            cursor, seq = publisher.cursor(), publisher.findings_cursor()
    finally:
        client.disconnect()
        client.loop_stop()
    out.print(f"{total} events published; last chain index {cursor}; last change {seq}")


@connect_app.command("refused")
@errors_as_exit_codes
def connect_refused(
    limit: Annotated[int, typer.Option(min=1, help="the newest this many")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """List messages refused whole (dead letters) with their code and reason."""
    letters = list(DeadLetters(dead_letter_dir(load_settings())).read())[-limit:]
    for letter in letters:
        if as_json:
            out.print(json.dumps({k: getattr(letter, k) for k in letter.__slots__}), markup=False)
        else:
            out.print(
                f"{letter.at}  {letter.source}  [{letter.code}] {letter.reason}  "
                f"({letter.size} bytes, sha256 {letter.sha256[:12]})",
                markup=False,
            )
    if not as_json:
        out.print(f"{len(letters)} refused message(s) shown")


@connect_app.command("opcua")
@errors_as_exit_codes
def connect_opcua(  # noqa: PLR0917 - one parameter per command-line option
    url: Annotated[
        str | None, typer.Argument(help="the server: opc.tcp://host:port, a path after it allowed")
    ] = None,
    mapping_file: Annotated[
        Path | None, typer.Option("--map", help="the mapping file (TOML) to ingest and write by")
    ] = None,
    write_map: Annotated[
        Path | None, typer.Option(help="browse the server (or --nodeset) and write a draft here")
    ] = None,
    nodeset: Annotated[
        Path | None, typer.Option(help="draft the mapping from this NodeSet2 XML file")
    ] = None,
    write_back: Annotated[
        bool, typer.Option(help="write the setpoints of allowed, recorded actions to the server")
    ] = False,
    max_points: Annotated[
        int | None, typer.Option(min=1, help="stop after this many points")
    ] = None,
    duration_s: Annotated[float | None, typer.Option(min=0.1, help="stop after this long")] = None,
    server_cert: Annotated[
        Path | None,
        typer.Option(help="the server's certificate to pin (TWINKG_OPCUA_SERVER_CERT_FILE)"),
    ] = None,
) -> None:
    """Telemetry from an OPC UA server by subscription, and setpoints written back.

    With --map, the mapped variables' data changes are ingested through the telemetry contract
    (what does not conform is quarantined with its reason) until Ctrl-C, --duration-s or
    --max-points; with --write-back, every allowed and recorded action the mapping maps is
    written to its variable once, read back, and the result recorded. With --write-map, the
    server's address space (or --nodeset's) is browsed and a draft mapping written for a person
    to review. Only Basic256Sha256 SignAndEncrypt is spoken; the twin's certificate is made
    under HOME/opcua on first use (the server must trust it)."""
    from twinkg.api.cli import opcua as opcua_cli  # noqa: PLC0415 - asyncua only when used

    opcua_cli.run(
        url,
        mapping_file=mapping_file,
        write_map=write_map,
        nodeset=nodeset,
        write_back=write_back,
        max_points=max_points,
        duration_s=duration_s,
        server_cert=server_cert,
    )
