"""``twinkg run``: the twin as a long-running, event-driven service (``api.service``)."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack
from typing import Annotated

import typer

from twinkg.api import tracing
from twinkg.api.agent_worker import AgentWorker
from twinkg.api.cli.common import errors_as_exit_codes, load_settings, note, open_store, out
from twinkg.api.event_stream import EventPublisher, work_items
from twinkg.api.mqtt_ingest import MqttIngest
from twinkg.api.service import TwinService
from twinkg.api.settings import (
    dead_letter_dir,
    events_cursor,
    findings_cursor,
    mqtt_endpoint,
)
from twinkg.api.twin import agents_twin
from twinkg.connect.mqtt.client import Subscriber, connect, publish
from twinkg.connect.mqtt.topics import AGENT_GROUP, WORK_FILTER, shared, telemetry_filters
from twinkg.kg.dead_letters import DeadLetters
from twinkg.ontology.errors import ConfigError


def _children(count: int, worker_id: str, tick_s: float) -> list[subprocess.Popen[bytes]]:
    """``count`` agent-only worker processes (they share the work items and the leases)."""
    command = [sys.executable, "-m", "twinkg.api.cli", "run", "--no-ingest", "--no-events"]
    return [
        subprocess.Popen(
            [*command, "--worker-id", f"{worker_id}-{k}", "--tick-s", str(tick_s)],
            stdin=subprocess.DEVNULL,
        )
        for k in range(2, count + 1)
    ]


@errors_as_exit_codes
def run_command(  # noqa: PLR0917, PLR0915 - one parameter per command-line option
    ingest: Annotated[bool, typer.Option(help="take telemetry from the MQTT broker")] = True,
    events: Annotated[bool, typer.Option(help="publish decisions as MQTT events")] = True,
    mqtt: Annotated[
        bool, typer.Option(help="use the broker at all (off: agents on a timer, this process)")
    ] = True,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="agent worker processes (sharing work by leases)")
    ] = 1,
    worker_id: Annotated[
        str | None, typer.Option(help="this worker's name in leases (default: host and pid)")
    ] = None,
    site: Annotated[
        list[str] | None, typer.Option(help="only this site's telemetry (repeatable)")
    ] = None,
    tick_s: Annotated[
        float, typer.Option(min=0.1, help="sweep for work at least this often (silent sensors)")
    ] = 30.0,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="serve metrics on 127.0.0.1:PORT")
    ] = None,
) -> None:
    """Run the twin until Ctrl-C or SIGTERM: ingest telemetry from MQTT, hand the assets with
    findings to the agent workers (MQTT shared subscription; a lease per asset), sweep for
    work every --tick-s, publish the decisions as MQTT events."""
    settings = load_settings()
    tracing.configure(settings)  # off unless TWINKG_OTLP_ENDPOINT is set
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if workers > 1 and not mqtt:
        raise ConfigError("--workers > 1 shares work over MQTT: it needs --mqtt")
    me = worker_id or f"{os.uname().nodename}-{os.getpid()}"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    endpoint = mqtt_endpoint(settings) if mqtt else None
    children: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        store = stack.enter_context(open_store(settings))
        twin = stack.enter_context(agents_twin(settings, store))
        stack.callback(twin.close)
        work_in = None
        dispatch = None
        ingest_worker = None
        publisher = None
        if endpoint is not None:
            client = connect(endpoint, f"{me}-out")
            stack.callback(client.loop_stop)
            stack.callback(client.disconnect)
            timeout = settings.mqtt_timeout_s

            def send(topic: str, body: bytes) -> None:
                publish(client, topic, body, timeout_s=timeout)

            # agent work is a hint (a sweep finds it anyway): no session outlives the worker
            transient = dataclasses.replace(endpoint, session_expiry_s=0)
            work_in = Subscriber(transient, [shared(WORK_FILTER, AGENT_GROUP)], client_id=me)
            stack.callback(work_in.close, end_session=True)

            def dispatch(assets: list[str]) -> None:
                for topic, body in work_items(store, assets):
                    send(topic, body)

            if ingest:
                telemetry = Subscriber(
                    endpoint,
                    telemetry_filters(site or ()),
                    client_id=settings.mqtt_client_id,
                    receive_maximum=settings.mqtt_receive_maximum,
                )
                stack.callback(telemetry.close)
                dead = DeadLetters(dead_letter_dir(settings))
                ingest_worker = MqttIngest(twin, telemetry, dead)
            if events:
                publisher = EventPublisher(
                    store, send, events_cursor(settings), findings_cursor(settings)
                )
        if metrics_port is not None:
            twin.metrics.serve(metrics_port)
        service = TwinService(
            twin,
            worker=AgentWorker(twin, me),
            ingest=ingest_worker,
            events=publisher,
            work=work_in,
            dispatch=dispatch,
            tick_s=tick_s,
        )
        service.start()
        children = _children(workers, me, tick_s)
        loops = ", ".join(service.alive())
        note(f"twinkg run ({me}): {loops} running, {workers} agent worker(s); Ctrl-C stops")
        stop.wait()
        note("stopping: finishing the message and the run in hand")
        for child in children:
            child.send_signal(signal.SIGTERM)
        clean = service.stop()
        for child in children:
            clean = child.wait() == 0 and clean
    status = service.status
    stats = ingest_worker.stats if ingest_worker is not None else None
    taken = f"{stats.messages} messages, " if stats is not None else ""
    out.print(
        f"stopped{'' if clean else ' (a loop or worker did not finish cleanly)'}: {taken}"
        f"{status.agent_runs} agent passes, {status.decisions} decisions, "
        f"{status.events} events published"
    )
