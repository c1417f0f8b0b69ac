"""``twinkg run``: the twin as a long-running, event-driven service (``api.service``), and
``twinkg service start|stop|status``: the same in the background, ready when its metrics say
every loop is up."""

from __future__ import annotations

import dataclasses
import faulthandler
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from contextlib import ExitStack
from typing import Annotated

import typer

from twinkg.api import tracing
from twinkg.api.agent_worker import AgentWorker
from twinkg.api.background import Background
from twinkg.api.cli.common import errors_as_exit_codes, load_settings, note, open_store, out
from twinkg.api.event_stream import EventPublisher, work_items
from twinkg.api.metrics import loops_up, scrape
from twinkg.api.mqtt_ingest import MqttIngest
from twinkg.api.opcua_service import OpcUaLoop, load_servers, prepare
from twinkg.api.service import TwinService
from twinkg.api.settings import (
    Settings,
    dead_letter_dir,
    events_cursor,
    findings_cursor,
    mqtt_endpoint,
    service_dir,
)
from twinkg.api.twin import Twin, agents_twin
from twinkg.connect.mqtt.client import Subscriber, connect, publish
from twinkg.connect.mqtt.topics import (
    AGENT_GROUP,
    WORK_FILTER,
    shared,
    state_topic,
    telemetry_filters,
)
from twinkg.kg.dead_letters import DeadLetters
from twinkg.ontology.errors import ConfigError, ServerError

service_app = typer.Typer(help="`twinkg run` as a background service.", no_args_is_help=True)


@dataclasses.dataclass(frozen=True, slots=True)
class _Child:
    """An agent-only worker process, and the pipe on which it says it can be stopped."""

    process: subprocess.Popen[bytes]
    ready: int  # read end: one byte once its SIGTERM handler is in place; EOF if it exited

    def terminate(self, *, wait_s: float = 300.0) -> None:
        """SIGTERM it once it handles SIGTERM (stopping gracefully). A child still importing
        would die of the signal's default action, so it is waited for first (a byte on the
        pipe; EOF when it exited without one)."""
        try:
            readable, _, _ = select.select([self.ready], [], [], wait_s)
            if readable:
                os.read(self.ready, 1)
        finally:
            os.close(self.ready)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)


def _wait_for(stop: threading.Event) -> None:
    """Return once ``stop`` is set by a signal handler. A signal the kernel hands to another
    thread does not wake the main thread's untimed wait, and Python runs handlers only in the
    main thread; a bounded wait lets the handler run within a second."""
    while not stop.wait(1.0):
        pass


def _children(count: int, worker_id: str, tick_s: float, threads: int) -> list[_Child]:
    """``count`` agent-only worker processes (they share the work items and the leases)."""
    command = [sys.executable, "-m", "twinkg.api.cli", "run", "--no-ingest", "--no-events"]
    command += ["--agent-threads", str(threads)]
    children = []
    for k in range(2, count + 1):
        ready, write_end = os.pipe()
        process = subprocess.Popen(
            [
                *command,
                *("--worker-id", f"{worker_id}-{k}", "--tick-s", str(tick_s)),
                *("--ready-fd", str(write_end)),
            ],
            stdin=subprocess.DEVNULL,
            pass_fds=(write_end,),
            env={**os.environ, "TWINKG_OPCUA_SERVERS": "[]"},  # the main process ingests them
        )
        os.close(write_end)
        children.append(_Child(process, ready))
    return children


def _agent_workers(twin: Twin, me: str, threads: int) -> list[AgentWorker]:
    """This process's agent workers: ``me``, then ``me/2`` … (a lease name each). Only the first
    resumes every cut-off run at its first sweep (holding the twin's run lock alone); the others
    resume the cut-off runs of the assets they lease, as every worker does."""
    first = AgentWorker(twin, me)
    return [first, *(AgentWorker(twin, f"{me}/{k}", resumed=True) for k in range(2, threads + 1))]


def _shared_over_mqtt(*, mqtt: bool, workers: int, threads: int) -> None:
    """Work is shared among workers and threads by MQTT work items: without the broker, one."""
    if workers > 1 and not mqtt:
        raise ConfigError("--workers > 1 shares work over MQTT: it needs --mqtt")
    if threads > 1 and not mqtt:
        raise ConfigError(
            "more than one agent thread shares work items over MQTT: it needs --mqtt "
            "(or --agent-threads 1)"
        )


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
    agent_threads: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="assets each process decides on at once, a thread each, from work items "
            "over MQTT (default TWINKG_AGENT_THREADS, 8; 1 with --no-mqtt)",
        ),
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
    opcua: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL=MAPPING",
            help="subscribe to this OPC UA server by this reviewed mapping (repeatable; "
            "default TWINKG_OPCUA_SERVERS)",
        ),
    ] = None,
    opcua_write_back: Annotated[
        bool | None,
        typer.Option(
            help="write allowed, recorded actions back to the OPC UA servers (default "
            "TWINKG_OPCUA_WRITE_BACK, off)"
        ),
    ] = None,
    ready_fd: Annotated[
        int | None,
        typer.Option(hidden=True, help="write one byte here once SIGTERM stops this gracefully"),
    ] = None,
) -> None:
    """Run the twin until Ctrl-C or SIGTERM: ingest telemetry from MQTT, hand the assets with
    findings to the agent workers (MQTT shared subscription; a lease per asset), sweep for
    work every --tick-s, publish the decisions as MQTT events."""
    settings = load_settings()
    tracing.configure(settings)  # off unless TWINKG_OTLP_ENDPOINT is set
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("twinkg").setLevel(settings.log_level)  # the libraries stay at WARNING
    _shared_over_mqtt(mqtt=mqtt, workers=workers, threads=agent_threads or 1)
    # work items come over MQTT: without it, the one thread sweeps
    threads = (agent_threads or settings.agent_threads) if mqtt else 1
    servers = load_servers(opcua if opcua is not None else settings.opcua_servers)
    write_back = settings.opcua_write_back if opcua_write_back is None else opcua_write_back
    if servers:
        logging.getLogger("asyncua").setLevel(logging.ERROR)
    me = worker_id or f"{os.uname().nodename}-{os.getpid()}"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1`: every stack
    if ready_fd is not None:  # a parent's worker: it may stop this now (see _Child.stop)
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    endpoint = mqtt_endpoint(settings) if mqtt else None
    children: list[_Child] = []
    with ExitStack() as stack:
        store = stack.enter_context(open_store(settings))
        if ingest:  # the process that ingests; agent-only children need no schema change
            store.ensure_schema()  # an index added by a newer version exists before the stream
        twin = stack.enter_context(agents_twin(settings, store))
        stack.callback(twin.close)
        links = prepare(settings, store, servers)  # every mapping bound before any loop starts
        opcua_loop = OpcUaLoop(twin, links, write_back=write_back) if links else None
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
                    announce=state_topic(settings.mqtt_client_id),
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
            workers=_agent_workers(twin, me, threads),
            ingest=ingest_worker,
            events=publisher,
            work=work_in,
            dispatch=dispatch,
            tick_s=tick_s,
            opcua=opcua_loop,
        )
        service.start()
        children = _children(workers, me, tick_s, threads)
        loops = ", ".join(service.alive())
        note(
            f"twinkg run ({me}): {loops} running, {workers} agent worker(s) of {threads} "
            "thread(s); Ctrl-C stops"
        )
        _wait_for(stop)
        note("stopping: finishing the message and the run in hand")
        for child in children:
            child.terminate()
        clean = service.stop()
        for child in children:
            clean = child.process.wait() == 0 and clean
    status = service.status
    stats = ingest_worker.stats if ingest_worker is not None else None
    taken = f"{stats.messages} messages, " if stats is not None else ""
    out.print(
        f"stopped{'' if clean else ' (a loop or worker did not finish cleanly)'}: {taken}"
        f"{status.agent_runs} agent passes, {status.decisions} decisions, "
        f"{status.events} events published"
    )
    if opcua_loop is not None:
        done = opcua_loop.totals
        out.print(
            f"opcua: {len(links)} server(s), {done.points} points, {done.accepted} accepted, "
            f"{done.quarantined} quarantined, {done.lost} connections lost, "
            f"{done.writes} actions written back"
        )


def _background(settings: Settings) -> Background:
    return Background(service_dir(settings), "the service (twinkg run)", "service.log")


@service_app.command("start")
@errors_as_exit_codes
def service_start(
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="agent worker processes (sharing work by leases)")
    ] = 1,
    agent_threads: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="assets each process decides on at once (TWINKG_AGENT_THREADS)"
        ),
    ] = None,
    mqtt: Annotated[bool, typer.Option(help="use the broker (off: agents on a timer)")] = True,
    tick_s: Annotated[float, typer.Option(min=0.1, help="sweep for work this often")] = 30.0,
    wait_s: Annotated[float, typer.Option(min=1, help="how long to wait for it to be ready")] = 180,
) -> None:
    """Start `twinkg run` in the background, its metrics on TWINKG_SERVICE_METRICS_PORT, and
    wait until every loop is up."""
    settings = load_settings()
    background = _background(settings)
    port = settings.service_metrics_port
    if background.running() is None:
        command = [sys.executable, "-m", "twinkg.api.cli", "run", "--workers", str(workers)]
        command += ["--tick-s", str(tick_s), "--metrics-port", str(port)]
        command += [] if mqtt else ["--no-mqtt"]
        command += [] if agent_threads is None else ["--agent-threads", str(agent_threads)]

        def ready() -> bool:
            loops = loops_up(scrape(port) or {})
            return bool(loops) and all(loops.values())

        background.start(command, env=dict(os.environ), ready=ready, wait_s=wait_s)
    out.print(f"service: pid {background.running()}, log {background.log}")
    out.print(f"metrics: http://127.0.0.1:{port}/metrics")


@service_app.command("stop")
@errors_as_exit_codes
def service_stop(
    wait_s: Annotated[float, typer.Option(min=1, help="for the work in hand to finish")] = 120,
) -> None:
    """Stop the background service: the message and the agent run in hand finish first."""
    stopped = _background(load_settings()).stop(wait_s=wait_s)
    out.print("service stopped" if stopped else "no service was running")


@service_app.command("status")
@errors_as_exit_codes
def service_status() -> None:
    """Whether the background service runs, each loop's state and what it has done; exits 1
    when it does not run or a loop is down."""
    settings = load_settings()
    pid = _background(settings).running()
    if pid is None:
        raise ServerError("the service is not running (twinkg service start)")
    values = scrape(settings.service_metrics_port)
    if values is None:
        raise ServerError(f"the service (pid {pid}) does not answer on its metrics port")
    loops = loops_up(values)
    out.print(f"service: pid {pid}")
    agents = [up for loop, up in loops.items() if loop.split("-")[0] == "agents"]
    if agents:  # one line for the agent threads: how many are up
        threads = f" ({sum(agents)} of {len(agents)} threads up)" if len(agents) > 1 else ""
        out.print(f"  {'agents':<8} {'up' if all(agents) else 'DOWN'}{threads}")
    for loop, up in sorted(loops.items()):
        if loop.split("-")[0] != "agents":
            out.print(f"  {loop:<8} {'up' if up else 'DOWN'}")
    counted = {
        "points ingested": "twinkg_points_ingested_total{way=mqtt}",
        "points quarantined": "twinkg_points_quarantined_total{way=mqtt}",
    }
    if "opcua" in loops:  # the OPC UA servers' points (decision 0063)
        counted["points ingested (opcua)"] = "twinkg_points_ingested_total{way=opcua}"
        counted["points quarantined (opcua)"] = "twinkg_points_quarantined_total{way=opcua}"
    for name, key in counted.items():
        out.print(f"  {name}: {values.get(key, 0.0):.0f}")
    decisions = {
        k.split("outcome=", 1)[1].rstrip("}"): v
        for k, v in values.items()
        if k.startswith("twinkg_decisions_total{")
    }
    made = ", ".join(f"{k} {v:.0f}" for k, v in sorted(decisions.items()))
    out.print(f"  decisions: {made or 'none yet'}")
    if not all(loops.values()):
        raise ServerError("a loop of the service is down: see its log")
