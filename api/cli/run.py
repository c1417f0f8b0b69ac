"""``twinkg run``: the twin as a long-running, event-driven service (``api.service``)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

from twinkg.api.cli.common import errors_as_exit_codes, load_settings, note, open_store, out
from twinkg.api.event_stream import EventPublisher
from twinkg.api.mqtt_ingest import MqttIngest
from twinkg.api.service import TwinService
from twinkg.api.settings import dead_letter_dir, events_cursor, mqtt_endpoint
from twinkg.api.twin import agents_twin
from twinkg.connect.mqtt.client import Subscriber, connect, publish
from twinkg.connect.mqtt.topics import telemetry_filters
from twinkg.kg.dead_letters import DeadLetters


@errors_as_exit_codes
def run_command(  # noqa: PLR0917 - one parameter per command-line option
    mqtt: Annotated[bool, typer.Option(help="take telemetry from the MQTT broker")] = True,
    events: Annotated[bool, typer.Option(help="publish decisions as MQTT events")] = True,
    site: Annotated[
        list[str] | None, typer.Option(help="only this site's telemetry (repeatable)")
    ] = None,
    tick_s: Annotated[
        float, typer.Option(min=0.1, help="run the agents at least this often (silent sensors)")
    ] = 30.0,
    max_runs: Annotated[int, typer.Option(min=1, help="decisions per agents run at most")] = 20,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="serve metrics on 127.0.0.1:PORT")
    ] = None,
) -> None:
    """Run the twin until Ctrl-C or SIGTERM: ingest telemetry from MQTT, run the agents when
    a batch raises findings (and every --tick-s), publish their decisions as MQTT events."""
    settings = load_settings()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    endpoint = mqtt_endpoint(settings) if (mqtt or events) else None
    subscriber = None
    publisher_client = None
    with open_store(settings) as store, agents_twin(settings, store) as twin:
        try:
            ingest = None
            if mqtt and endpoint is not None:
                subscriber = Subscriber(
                    endpoint,
                    telemetry_filters(site or ()),
                    client_id=settings.mqtt_client_id,
                    receive_maximum=settings.mqtt_receive_maximum,
                )
                ingest = MqttIngest(twin, subscriber, DeadLetters(dead_letter_dir(settings)))
            publisher = None
            if events and endpoint is not None:
                publisher_client = connect(endpoint, f"{settings.mqtt_client_id}-events")
                client, timeout = publisher_client, settings.mqtt_timeout_s
                publisher = EventPublisher(
                    store,
                    lambda topic, body: publish(client, topic, body, timeout_s=timeout),
                    events_cursor(settings),
                )
            if metrics_port is not None:
                twin.metrics.serve(metrics_port)
            service = TwinService(
                twin, ingest=ingest, events=publisher, tick_s=tick_s, max_runs=max_runs
            )
            service.start()
            note(f"twinkg run: {', '.join(service.alive())} running; Ctrl-C or SIGTERM stops")
            stop.wait()
            note("stopping: finishing the message and the run in hand")
            clean = service.stop()
        finally:
            if subscriber is not None:
                subscriber.close()
            if publisher_client is not None:
                publisher_client.disconnect()
                publisher_client.loop_stop()
            twin.close()
    status = service.status
    ingest_stats = ingest.stats if ingest is not None else None
    taken = f"{ingest_stats.messages} messages, " if ingest_stats is not None else ""
    out.print(
        f"stopped{'' if clean else ' (a loop did not finish in time)'}: {taken}"
        f"{status.agent_runs} agent runs, {status.decisions} decisions, "
        f"{status.events} events published"
    )
