"""``twinkg run``: the twin as a service that works on its own, driven by events.

Loops on their own threads, sharing one :class:`api.twin.Twin`:

* **ingest** (``api.mqtt_ingest``): telemetry from the broker, message by message. A batch
  that raised anomalies or alarms is turned into one *work item* per asset with something to
  decide (``twinkg/v1/{site}/work/{area}/{asset}``), or, without a broker, a local wake;
* **agents** (``api.agent_worker``): each worker process takes work items from the MQTT 5
  shared subscription of the agent group (one worker gets each) and decides on that asset
  under its lease; every ``tick_s`` seconds, and at start, it *sweeps*: every asset with
  something to decide that no other worker holds (a sensor that falls silent sends no message,
  and a work item lost with a dead worker is found so). Local wakes are coalesced: the queue
  holds one, and a pending sweep covers every wake after it. A process may run several agent
  threads (``agents``, ``agents-2``, …), each a worker with a lease name of its own, taking
  work items from the one subscription, acknowledged in the order received (decision 0084);
* **events** (``api.event_stream``): every decision recorded is published as MQTT events;
* **opcua** (``api.opcua_service``, decision 0063): the data changes of OPC UA servers by their
  mapping, heard as the MQTT ingest's are (and, with write-back, allowed actions written back).

A failure of the store or the broker is logged, counted (``twinkg_service_failures_total``)
and retried after ``retry_s``; it never ends the service. :meth:`TwinService.stop` (SIGTERM,
Ctrl-C) lets the message and the run in hand finish (a run cut off by a kill is resumed from its
checkpoint by the next start), then stops; the telemetry session is kept, so telemetry sent
meanwhile waits for the next start. Decision 0057.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from twinkg.api.agent_worker import AgentWorker
from twinkg.api.event_stream import EventPublisher
from twinkg.api.mqtt_ingest import MqttIngest, Outcome
from twinkg.api.opcua_service import OpcUaLoop
from twinkg.api.twin import Twin
from twinkg.connect.mqtt.client import InOrderAcks, Message, Subscriber
from twinkg.ontology.errors import TwinKGError
from twinkg.reasoner.ingest import IngestReport

log = logging.getLogger("twinkg.service")


@dataclass(slots=True)
class ServiceStatus:
    """What the service has done so far (read by ``--status-file`` and the metrics)."""

    started_at: str
    wakes: int = 0
    agent_runs: int = 0
    decisions: int = 0
    events: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    last_run_at: str | None = None


def _alive(thread: threading.Thread) -> Callable[[], float]:
    return lambda: float(thread.is_alive())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class TwinService:
    """The loops of ``twinkg run`` over one twin (ingest and events may be absent; a worker
    process of ``--workers`` runs the agents only); one agents loop per worker of ``workers``,
    each on a thread of its own."""

    def __init__(
        self,
        twin: Twin,
        *,
        workers: Sequence[AgentWorker],
        ingest: MqttIngest | None = None,
        events: EventPublisher | None = None,
        work: Subscriber | None = None,
        dispatch: Callable[[list[str]], None] | None = None,
        tick_s: float = 30.0,
        retry_s: float = 2.0,
        events_poll_s: float = 0.5,
        opcua: OpcUaLoop | None = None,
    ) -> None:
        if not workers:
            raise ValueError("the service needs at least one agent worker")
        if len({w.worker_id for w in workers}) != len(workers):
            raise ValueError("each agent worker needs a lease name of its own")
        self.twin = twin
        self.workers = tuple(workers)
        self.ingest = ingest
        self.events = events
        self.work = work
        self._acks = None if work is None else InOrderAcks(work)
        self.dispatch = dispatch
        self.tick_s = tick_s
        self.retry_s = retry_s
        self.events_poll_s = events_poll_s
        self.opcua = opcua
        self.status = ServiceStatus(started_at=_now())
        self._stop = threading.Event()
        self._counting = threading.Lock()  # the status, from every loop
        self._wakes: queue.Queue[str] = queue.Queue(maxsize=1)  # one pending wake covers all
        self._threads: list[threading.Thread] = []
        depth = self._wakes.qsize if work is None else work.pending
        twin.metrics.queue_depth.labels("agents").set_function(depth)

    def wake(self, reason: str) -> None:
        """Ask for a sweep of every asset with work; a wake already waiting covers this one."""
        # a pending wake's sweep starts after this moment, so it sees the new findings too
        with contextlib.suppress(queue.Full):
            self._wakes.put_nowait(reason)

    def start(self) -> None:
        """Start the loops; the agents sweep once at once (findings from before the start):
        the first worker that has not yet resumed the cut-off runs does, until it has."""
        loops: list[tuple[str, Callable[[], None]]] = [
            (f"agents-{k}" if k > 1 else "agents", self._agents_loop_of(worker))
            for k, worker in enumerate(self.workers, start=1)
        ]
        if self.ingest is not None:
            loops.append(("ingest", self._ingest_loop))
        if self.events is not None:
            loops.append(("events", self._events_loop))
        if self.opcua is not None:
            loops.append(("opcua", self._opcua_loop))
        for name, loop in loops:
            thread = threading.Thread(target=loop, name=f"twinkg-{name}", daemon=True)
            self._threads.append(thread)
            self.twin.metrics.loop_up.labels(name).set_function(_alive(thread))
            thread.start()
        if all(worker.resumed for worker in self.workers):
            self.wake("startup")

    def stop(self, *, timeout_s: float = 120.0) -> bool:
        """Let the work in hand finish and stop every loop; False if one did not in time."""
        self._stop.set()
        self.wake("stop")  # wakes the agents loop so it sees the stop
        for thread in self._threads:
            thread.join(timeout_s)
        return not any(thread.is_alive() for thread in self._threads)

    def alive(self) -> dict[str, bool]:
        """Whether each loop still runs."""
        return {t.name.removeprefix("twinkg-"): t.is_alive() for t in self._threads}

    def _failed(self, where: str, exc: Exception) -> None:
        with self._counting:
            self.status.failures[where] = self.status.failures.get(where, 0) + 1
        self.twin.metrics.service_failures.labels(where).inc()
        log.warning("%s failed, retrying in %g s: %s", where, self.retry_s, exc)

    def _guarded(self, where: str, work: Callable[[], int]) -> bool:
        """Run ``work`` (it returns decisions made); a failure is logged and counted, and the
        loop waits ``retry_s``. Whether it succeeded."""
        try:
            decided = work()
        except TwinKGError as exc:
            self._failed(where, exc)
        except Exception as exc:  # a defect: logged with its trace; the service goes on
            log.exception("%s failed unexpectedly", where)
            self._failed(where, exc)
        else:
            with self._counting:
                self.status.agent_runs += 1
                self.status.decisions += decided
                self.status.last_run_at = _now()
            return True
        self._stop.wait(self.retry_s)
        return False

    def _agents_loop_of(self, worker: AgentWorker) -> Callable[[], None]:
        return lambda: self._agents_loop(worker)

    def _agents_loop(self, worker: AgentWorker) -> None:
        # the first worker keeps the tick (one sweep a tick per process); any takes a wake
        ticks = worker is self.workers[0]
        next_tick = time.monotonic() + self.tick_s if ticks else math.inf
        while not self._stop.is_set():
            swept = not worker.resumed  # its first sweep resumes every cut-off run: at once
            if not swept:
                with contextlib.suppress(queue.Empty):  # a wake (startup, findings) or the tick
                    if self._acks is not None:  # looked at between work items: no wait
                        self._wakes.get_nowait()
                    else:  # (a worker without the tick waits for a wake alone)
                        idle = None if not ticks else max(0.0, next_tick - time.monotonic())
                        self._wakes.get(timeout=idle)
                    swept = True
            if self._stop.is_set():
                self.wake("stop")  # the one pending wake: passed on to the next agents loop
                return
            if swept or time.monotonic() >= next_tick:
                with self._counting:
                    self.status.wakes += 1
                if not self._guarded("agents", worker.sweep) and worker.resumed:
                    self.wake("retry")  # (one that has not resumed tries again by itself)
                if ticks:
                    next_tick = time.monotonic() + self.tick_s  # silence shows only with time
                continue
            if self._acks is not None:
                self._take_work(self._acks, worker)

    def _take_work(self, acks: InOrderAcks, worker: AgentWorker) -> None:
        message = acks.take(idle_s=0.3)
        if message is None:
            return
        try:
            asset = json.loads(message.payload)["asset"]
            if not isinstance(asset, str):
                raise TypeError(f"asset is {type(asset).__name__}")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("a work item on %s is not {asset}: %s", message.topic[:200], exc)
            acks.done(message)
            return
        try:
            if not self._guarded("agents", lambda: worker.decide_on(asset) or 0):
                # the store or a defect: a sweep takes it up (it wakes itself again while it
                # fails), since an unacknowledged item comes back only when the connection does
                self.wake("retry")
        finally:
            acks.done(message)

    def _findings(self, assets: tuple[str, ...]) -> None:
        """A committed batch raised findings on ``assets``: a work item for each of them (the
        agent workers share them), or, with no broker, a wake of this process's worker."""
        if self.dispatch is None:
            self.wake("findings")
            return
        try:  # only the assets this batch concerns: the sweeps cover anything else
            self.dispatch(list(assets) or self.twin.case_assets())
        except TwinKGError as exc:
            self._failed("dispatch", exc)
            self.wake("findings")  # this process's worker sweeps instead

    def _ingest_loop(self) -> None:
        assert self.ingest is not None

        def heard(_message: Message, outcome: Outcome) -> None:
            if outcome.findings:
                self._findings(outcome.assets)

        while not self._stop.is_set():
            try:
                self.ingest.run(stop=self._stop, on_outcome=heard)
            except Exception as exc:  # the broker's connection: paho reconnects by itself
                log.exception("the ingest loop failed")
                self._failed("ingest", exc)
                self._stop.wait(self.retry_s)

    def _events_loop(self) -> None:
        assert self.events is not None
        while not self._stop.is_set():
            try:
                self.status.events += self.events.publish_new()
            except Exception as exc:  # the broker or the store: the cursor holds the place
                self._failed("events", exc)
                self._stop.wait(self.retry_s)
                continue
            self._stop.wait(self.events_poll_s)

    def _opcua_loop(self) -> None:
        """OPC UA servers' data changes through the contract (decision 0063); a batch with
        findings is heard as the MQTT ingest's are."""
        assert self.opcua is not None

        def heard(report: IngestReport) -> None:
            self._findings(report.finding_assets)

        def failed(exc: Exception) -> None:
            self._failed("opcua", exc)

        while not self._stop.is_set():
            try:
                self.opcua.run(self._stop.wait, heard=heard, failed=failed, retry_s=self.retry_s)
            except Exception as exc:  # a defect of the loop itself: it starts again
                log.exception("the opcua loop failed")
                self._failed("opcua", exc)
                self._stop.wait(self.retry_s)
