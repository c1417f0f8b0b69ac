"""Agent jobs started over HTTP: run in the background, watched by polling or as a stream.

A job is one call of the agents (resume crashed runs, then one run per open finding). It runs on
a single worker thread, since agent work is serialised anyway; its events (each node that
finished, each run that ended, the end of the job) are kept as data so a client that connects
late to the stream still sees them from the start. Jobs live in this process's memory (the
newest :data:`KEEP` of them): after a restart their decisions are still in the graph, but the
job ids are gone.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from twinkg.api.twin import Twin
from twinkg.ontology.errors import NotFoundError, TwinKGError

if TYPE_CHECKING:
    from twinkg.agents.runner import RunResult

KEEP = 200
_log = logging.getLogger("twinkg.api")


class JobState(enum.StrEnum):
    """Where a job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of a job, numbered from 1."""

    seq: int
    kind: str  # "node" | "run" | "end"
    data: dict[str, Any]


@dataclass
class Job:
    """A job's request, state, results and events."""

    job_id: str
    scope: str | None
    as_of: str | None
    max_runs: int
    started_by: str
    created_at: str
    state: JobState = JobState.QUEUED
    finished_at: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    events: list[JobEvent] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Done or failed: no more events will come."""
        return self.state in (JobState.DONE, JobState.FAILED)


def run_summary(result: RunResult) -> dict[str, Any]:
    """A run's outcome as plain data (what the API and MCP return)."""
    return {
        "run_id": result.run_id,
        "status": result.status,
        "steps": [
            {
                "decision": s.decision,
                "outcome": s.outcome.value,
                "reason": s.reason,
                "chain_index": s.chain_index,
                "record_hash": s.record_hash,
            }
            for s in result.steps
        ],
        "approval_request": result.request,
    }


class Jobs:
    """The jobs of this process."""

    def __init__(self, twin: Twin) -> None:
        self._twin = twin
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twinkg-agents")

    def start(self, *, scope: str | None, as_of: str | None, max_runs: int, by: str) -> Job:
        """Queue a job and return it at once."""
        now = datetime.now(UTC).isoformat()
        job = Job(uuid.uuid4().hex[:20], scope, as_of, max_runs, by, now)
        with self._lock:
            self._jobs[job.job_id] = job
            while len(self._jobs) > KEEP:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job:
        """A job by id; :class:`NotFoundError` when this process has none by that id."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no agent job {job_id!r} here (jobs are kept in memory)")
        return job

    def events_after(self, job_id: str, seq: int) -> tuple[list[JobEvent], bool]:
        """The job's events numbered above ``seq``, and whether the job has finished."""
        job = self.get(job_id)
        with self._lock:
            return [e for e in job.events if e.seq > seq], job.finished

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no job is queued or running; whether that happened within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                busy = any(not job.finished for job in self._jobs.values())
            if not busy:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        """Wait for the running job; queued ones are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _emit(self, job: Job, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            job.events.append(JobEvent(len(job.events) + 1, kind, data))

    def _run(self, job: Job) -> None:
        with self._lock:
            job.state = JobState.RUNNING

        def on_node(run_id: str, node: str) -> None:
            self._emit(job, "node", {"run_id": run_id, "node": node})

        try:
            results = self._twin.run_agents(
                scope=job.scope, as_of=job.as_of, max_runs=job.max_runs, on_node=on_node
            )
        except TwinKGError as exc:
            error = {"code": exc.code, "message": " ".join(str(exc).split())}
            self._finish(job, JobState.FAILED, error)
            return
        except Exception:  # a job must end visibly, whatever happened
            _log.exception("agent job %s failed", job.job_id)  # the pool would swallow it
            message = "an unexpected error; it has been logged"
            self._finish(job, JobState.FAILED, {"code": "internal_error", "message": message})
            return
        for result in results:
            summary = run_summary(result)
            with self._lock:
                job.runs.append(summary)
            self._emit(job, "run", summary)
        self._finish(job, JobState.DONE, None)

    def _finish(self, job: Job, state: JobState, error: dict[str, Any] | None) -> None:
        with self._lock:
            job.state, job.error = state, error
            job.finished_at = datetime.now(UTC).isoformat()
        self._emit(job, "end", {"state": state.value, "runs": len(job.runs), "error": error})
