"""The supervised pool of SPARQL worker processes: admission, fair share, deadlines, failures.

Each query runs in a worker process (:mod:`kg.sparql_worker`) so that nothing a query does can
take the caller's process down. The pool:

- **admits** at most ``workers`` queries at once. A caller (an API key's or a token's subject)
  may have at most ``per_user`` queries running, never all the workers (when there are two or
  more), so one user cannot shut the others out; its further requests wait for its own to end,
  and past ``per_user`` waiting as well it is told so at once (``sparql_user_limit``). Up to
  ``queue`` requests in all wait, at most ``queue_wait_s`` and never past their deadline; a
  freed worker goes to the waiting caller with the fewest queries running (fair share), ties to
  the oldest request. A full queue or a wait that runs out is ``sparql_busy``: requests never
  pile up on the server's threads.
- **kills** a worker whose query reaches its deadline (``SIGKILL``: Oxigraph cannot be
  interrupted inside a sort or an aggregate, a process can), so the slot is free again at once
  and nothing runs on after the deadline (``query_timeout``).
- **reports** a worker that died mid-query (a panic, an abort) as ``sparql_worker_failed``, or
  as ``sparql_memory_limit`` when it ran out of its memory limit (an allocation, or a thread
  that could not map its stack), and replaces it; what the workers write on stderr goes to the
  ``twinkg.sparql`` log.

Workers start on first use and are kept; a replacement starts in the background. Status
(:meth:`SparqlPool.status`) says how many are busy, how many requests wait, and whether SPARQL is
saturated, for ``/ready``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from twinkg.kg.sparql_worker import ProtocolError, receive, send
from twinkg.ontology import errors
from twinkg.ontology.errors import (
    ProjectionError,
    QueryTimeoutError,
    SparqlBusyError,
    SparqlMemoryLimitError,
    SparqlUserLimitError,
    SparqlWorkerFailedError,
    TwinKGError,
)

_log = logging.getLogger("twinkg.sparql")
_CODES: dict[str, type[TwinKGError]] = {
    cls.code: cls
    for cls in (
        errors.SparqlInvalidError,
        errors.QueryTimeoutError,
        errors.ProjectionError,
        errors.ProjectionBuildingError,
        errors.SparqlMemoryLimitError,
        errors.SparqlWorkerFailedError,
    )
}
_OUT_OF_MEMORY = ("memory allocation of", "MemoryError", "out of memory", "Cannot allocate")
_NO_THREAD = "Resource temporarily unavailable"
"""What a C++ thread that could not start leaves on stderr (``std::system_error``, ``EAGAIN``).
Under an address-space limit that is the limit: the new thread's stack could not be mapped."""


def died_of_memory(tail: Iterable[str], *, limited: bool) -> bool:
    """Whether a worker's last lines on stderr say it ran out of memory: an allocation that
    failed, or, when it ran under a memory limit, a thread that could not get its stack."""
    markers = (*_OUT_OF_MEMORY, _NO_THREAD) if limited else _OUT_OF_MEMORY
    return any(marker in line for line in tail for marker in markers)


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """How much SPARQL may take: worker processes, queries per caller, requests that may wait
    and for how long, each worker's address-space limit (0: none), the largest answer."""

    workers: int = 4
    per_user: int = 2
    queue: int = 8
    queue_wait_s: float = 10.0
    memory_bytes: int = 2 << 30
    byte_cap: int = 32 << 20


@dataclass(frozen=True, slots=True)
class PoolStatus:
    """The pool now: workers it may run (``capacity``), queries running (``busy``) and waiting
    (``queued``), whether every worker is taken, and counts since it started of workers
    killed at a deadline and of workers lost to a crash or the memory limit."""

    capacity: int
    busy: int
    queued: int
    saturated: bool
    timeouts: int
    crashes: int


@dataclass(frozen=True, slots=True)
class WorkAnswer:
    """A worker's answer: the body, its media type, rows, whether a cap cut it, and the
    snapshot it ran on (its number and the change log ``seq`` it had applied)."""

    body: bytes
    media_type: str
    rows: int
    truncated: bool
    snapshot: int
    applied: int


class _DiedError(Exception):
    """The worker process ended (or its pipe broke) during a request."""


WORKER_ENV = {"RUST_BACKTRACE": "0", "PYTHONUNBUFFERED": "1", "MALLOC_ARENA_MAX": "2"}
"""A worker's environment over the server's. ``MALLOC_ARENA_MAX``: glibc reserves 64 MiB of
address space for each malloc arena it adds when threads contend, and the memory limit
(``RLIMIT_AS``) counts reservations. A worker answering a COUNT peaked at 606 MB of address
space with 36 MB resident; with two arenas, 279 MB. On a busy machine more arenas were made, and
a worker under a 1 GiB limit died on its first COUNT as if the query had used the memory."""


class _Worker:
    """One worker process, its pipes and the tail of what it wrote on stderr."""

    def __init__(self, snapshots: Path, memory: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "twinkg.kg.sparql_worker", str(snapshots), str(memory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            env={**os.environ, **WORKER_ENV},
        )
        self.pid = self.process.pid
        self.limited = memory > 0
        assert self.process.stdin is not None
        self._stdin = io.BufferedWriter(self.process.stdin)  # whole frames, however large
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        assert self.process.stderr is not None
        self._stderr = threading.Thread(
            target=self._drain, args=(self.process.stderr,), name="twinkg-sparql-stderr"
        )
        self._stderr.daemon = True
        self._stderr.start()
        self.started = False

    def _drain(self, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip()
                if line:
                    self._tail.append(line)
                    _log.warning("SPARQL worker %d: %s", self.pid, line)

    def exchange(self, header: dict[str, Any], body: bytes, deadline: float, *, limit: int) -> Any:
        """Send a request (or nothing, to await the greeting) and read the reply before
        ``deadline``: :class:`QueryTimeoutError` when it is late, :class:`_DiedError` when the
        process ends first."""
        stdout = self.process.stdout
        assert stdout is not None
        if header:
            try:
                send(self._stdin, header, body)
            except (BrokenPipeError, ValueError, OSError) as exc:
                raise _DiedError(str(exc)) from None
        fd = stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QueryTimeoutError("the SPARQL query ran past its time limit and was stopped")
            if poller.poll(min(left, 3600.0) * 1000):
                break
        try:
            return receive(lambda n: _read_fd(fd, n), max_body=limit)
        except (ProtocolError, ValueError, OSError) as exc:
            raise _DiedError(str(exc)) from None

    def kill(self) -> None:
        """End the process for sure and collect it."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # stuck in the kernel: the reaper collects it
            threading.Thread(target=self.process.wait, daemon=True).start()
        for stream in (self._stdin, self.process.stdout):
            with contextlib.suppress(OSError, ValueError):  # a frame left unsent: the pipe broke
                if stream is not None:
                    stream.close()

    def failure(self) -> TwinKGError:
        """What the death of this worker during a query tells its caller."""
        self.kill()
        self._stderr.join(timeout=10)  # the pipe closed with the process: it reads to the end
        tail = list(self._tail)
        code = self.process.returncode
        if died_of_memory(tail, limited=self.limited):
            return SparqlMemoryLimitError(
                "the SPARQL query needed more memory than a worker may use and was stopped; "
                "narrow it (fewer variables, LIMIT, no ORDER BY over everything)"
            )
        how = f"signal {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
        panic = next(
            (tail[i + 1] for i, line in enumerate(tail[:-1]) if "panicked at" in line),
            tail[-1] if tail else "no message",
        )
        return SparqlWorkerFailedError(
            f"the SPARQL query crashed the worker that ran it ({how}: {panic[:200]}); "
            "the worker was replaced and nothing else was affected"
        )


def _read_fd(fd: int, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, min(size - got, 1 << 20))
        if not chunk:
            raise ProtocolError("the pipe closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class SparqlPool:
    """Worker processes that answer SPARQL on the snapshots published under one folder."""

    def __init__(self, snapshots: Path, limits: PoolLimits | None = None) -> None:
        """A pool for the snapshots in ``snapshots``; no process starts before the first
        query."""
        self._snapshots = snapshots
        self._limits = limits or PoolLimits()
        self._capacity = self._limits.workers
        self._per_user = max(1, min(self._limits.per_user, self._capacity - 1))
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._busy = 0
        self._assigned: dict[int, str] = {}  # worker pid -> the caller whose query it runs
        self._running: collections.Counter[str] = collections.Counter()
        self._waiting: list[tuple[int, str]] = []
        self._arrivals = itertools.count()
        self._timeouts = self._crashes = 0
        self._closed = False

    @property
    def limits(self) -> PoolLimits:
        """The limits this pool enforces."""
        return self._limits

    def status(self) -> PoolStatus:
        """How busy the pool is now."""
        with self._cond:
            return PoolStatus(
                self._capacity,
                self._busy,
                len(self._waiting),
                self._busy >= self._capacity,
                self._timeouts,
                self._crashes,
            )

    def pids(self) -> list[int]:
        """The worker processes alive now."""
        with self._cond:
            return sorted(w.pid for w in self._all)

    def running(self) -> dict[int, str]:
        """The workers running a query now (process id) and whose query each runs."""
        with self._cond:
            return dict(self._assigned)

    def run(
        self,
        text: str,
        *,
        media_type: str,
        row_cap: int,
        timeout_s: float,
        caller: str = "anonymous",
    ) -> WorkAnswer:
        """Answer ``text`` (already checked) in a worker, in ``media_type``, within
        ``timeout_s`` (waiting for a worker included)."""
        deadline = time.monotonic() + timeout_s
        self._admit(caller, deadline)
        worker: _Worker | None = None
        try:
            worker = self._take(deadline)
            with self._cond:
                self._assigned[worker.pid] = caller
            request = {
                "format": media_type,
                "row_cap": row_cap,
                "byte_cap": self._limits.byte_cap,
                "timeout_s": max(0.0, deadline - time.monotonic()),
            }
            try:
                header, body = worker.exchange(
                    request, text.encode("utf-8"), deadline, limit=self._limits.byte_cap + 4096
                )
            except QueryTimeoutError:
                self._lose(worker, timeout=True)
                worker.kill()
                raise QueryTimeoutError(
                    f"the SPARQL query ran past its limit of {timeout_s:g} s; its worker was "
                    "stopped"
                ) from None
            except _DiedError:
                self._lose(worker, timeout=False)
                raise worker.failure() from None
            return self._answer(worker, header, body)
        finally:
            self._leave(caller, worker)

    def _answer(self, worker: _Worker, header: dict[str, Any], body: bytes) -> WorkAnswer:
        if header.get("ok"):
            self._give_back(worker)
            return WorkAnswer(
                body,
                str(header["media_type"]),
                int(header["rows"]),
                bool(header["truncated"]),
                int(header["snapshot"]),
                int(header["applied"]),
            )
        code = str(header.get("code"))
        if code == SparqlMemoryLimitError.code:  # it exits: not trusted with another query
            self._lose(worker, timeout=False)
            worker.kill()
        else:
            self._give_back(worker)
        raise _CODES.get(code, SparqlWorkerFailedError)(str(header.get("message")))

    # -- admission ------------------------------------------------------------------------

    def _admit(self, caller: str, deadline: float) -> None:
        with self._cond:
            if self._closed:
                raise ProjectionError("the SPARQL workers are shut down")
            waiting = sum(1 for _, c in self._waiting if c == caller)
            if self._running[caller] + waiting >= 2 * self._per_user:
                raise SparqlUserLimitError(
                    f"you already have {self._running[caller]} SPARQL queries running and "
                    f"{waiting} waiting (one caller may run {self._per_user} and queue as many); "
                    "wait for one to finish"
                )
            if self._free_for(caller) and self._next() is None:
                self._enter(caller)
                return
            if len(self._waiting) >= self._limits.queue:
                raise SparqlBusyError(
                    f"all {self._capacity} SPARQL workers are busy and {len(self._waiting)} "
                    "requests wait; try again shortly"
                )
            ticket = (next(self._arrivals), caller)
            self._waiting.append(ticket)
            until = min(deadline, time.monotonic() + self._limits.queue_wait_s)
            try:
                while not (self._free_for(caller) and self._next() == ticket):
                    left = until - time.monotonic()
                    if left <= 0 or self._closed:
                        raise SparqlBusyError(
                            "no SPARQL worker became free for this request while it waited "
                            f"(all {self._capacity} busy, or {self._per_user} running for this "
                            "caller); try again shortly"
                        )
                    self._cond.wait(left)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            self._enter(caller)

    def _free_for(self, caller: str) -> bool:
        """Whether a worker is free and ``caller`` may take one (under its share)."""
        return self._busy < self._capacity and self._running[caller] < self._per_user

    def _next(self) -> tuple[int, str] | None:
        """The waiting request served first, among those whose caller is under its share:
        its caller runs the fewest queries, then the oldest request."""
        eligible = [t for t in self._waiting if self._running[t[1]] < self._per_user]
        return min(eligible, key=lambda t: (self._running[t[1]], t[0])) if eligible else None

    def _enter(self, caller: str) -> None:
        self._busy += 1
        self._running[caller] += 1

    def _leave(self, caller: str, worker: _Worker | None) -> None:
        with self._cond:
            if worker is not None:
                self._assigned.pop(worker.pid, None)
            self._busy -= 1
            self._running[caller] -= 1
            if not self._running[caller]:
                del self._running[caller]
            self._cond.notify_all()

    # -- workers --------------------------------------------------------------------------

    def _take(self, deadline: float) -> _Worker:
        with self._cond:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    return worker
                self._all.discard(worker)
                worker.kill()
        return self._start(deadline)

    def _start(self, deadline: float, *, replacing: bool = False) -> _Worker:
        try:
            worker = _Worker(self._snapshots, self._limits.memory_bytes)
        except OSError as exc:
            raise SparqlWorkerFailedError(f"cannot start a SPARQL worker: {exc}") from exc
        with self._cond:
            closed = self._closed
            if not closed:
                self._all.add(worker)
        if closed:  # close() ran while it started: it would have missed this one
            worker.kill()
            raise ProjectionError("the SPARQL workers are shut down")
        try:
            worker.exchange({}, b"", deadline, limit=0)
        except QueryTimeoutError:
            self._lose(worker, timeout=False, replace=not replacing)
            worker.kill()
            raise QueryTimeoutError("no SPARQL worker could start before the deadline") from None
        except _DiedError:
            self._lose(worker, timeout=False, replace=not replacing)
            raise worker.failure() from None
        worker.started = True
        return worker

    def _give_back(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed or len(self._all) > self._capacity:
                self._all.discard(worker)
                worker.kill()
            else:
                self._idle.append(worker)

    def _lose(self, worker: _Worker, *, timeout: bool, replace: bool = True) -> None:
        """Count a worker out (the caller kills it) and start its replacement (unless it was
        one that did not start: no endless restarts)."""
        with self._cond:
            self._all.discard(worker)
            if timeout:
                self._timeouts += 1
            else:
                self._crashes += 1
            closed = self._closed
        if replace and not closed:
            threading.Thread(target=self._replace, name="twinkg-sparql-spawn", daemon=True).start()

    def _replace(self) -> None:
        try:
            worker = self._start(time.monotonic() + 120, replacing=True)
        except TwinKGError as exc:
            _log.warning("a replacement SPARQL worker did not start: %s", exc)
            return
        self._give_back(worker)

    def close(self) -> None:
        """Stop every worker (queries running get ``sparql_worker_failed``)."""
        with self._cond:
            self._closed = True
            workers, self._idle = list(self._all), []
            self._all.clear()
            self._cond.notify_all()
        for worker in workers:
            worker.kill()
