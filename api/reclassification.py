"""Reclassification after ingest, one run at a time and coalesced.

Every ingested batch that changed something asks for the assets to be reclassified (OWL
inference, seconds on a large plant). Each ask gets a *generation*; a run covers every
generation asked for before it started. So a burst of batches costs one or two runs rather than
one each, and a caller that must see its batch's labels waits only for the run that covers it.
A long-running service (the HTTP API, later the broker and OPC UA sources) asks and goes on:
its answer names the generation, and ``GET /ready`` says which generation the inferred labels
have reached. The CLI asks and waits. A failed run is reported and never stops the worker; the
batches stand either way (``twinkg reason classify`` runs it again by hand). A run asked for in
the background waits until ``TWINKG_RECLASSIFY_MIN_GAP_S`` has passed since the last one ended
(a caller that waits lifts that hold), so a stream of batches does not keep the reasoner's JVM
running back to back (decision 0064).
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twinkg.ontology.errors import TwinKGError

if TYPE_CHECKING:  # owlready2 loads only when a reclassification runs
    from twinkg.reasoner.inference import ReclassifySummary

_log = logging.getLogger("twinkg.reasoner")


class Reclassify(enum.StrEnum):
    """What an ingest does about reclassification after a batch that changed something."""

    WAIT = "wait"  # ask, and wait for the run that covers the batch (the CLI)
    BACKGROUND = "background"  # ask and go on (a service: the answer names the generation)
    OFF = "off"  # do not ask (a caller that reclassifies itself)


@dataclass(frozen=True, slots=True)
class ReclassifyOutcome:
    """What the run that covered a generation found: its summary, or why it failed."""

    generation: int
    summary: ReclassifySummary | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ReclassifyStatus:
    """Where reclassification stands: generations asked for and covered, whether a run is
    going on, and the last run's duration or error."""

    requested: int
    completed: int
    running: bool
    last_seconds: float | None
    last_error: str | None
    held: bool = False  # a run is due and waits out the minimum gap (no caller waits on it)


class Reclassifier:
    """Runs ``run`` (read the facts, classify, write the labels) on a worker thread, once per
    batch of asks. Thread-safe; the thread starts with the first ask."""

    def __init__(self, run: Callable[[], ReclassifySummary], *, min_gap_s: float = 0.0) -> None:
        """``min_gap_s``: a run asked for in the background starts at least this long after
        the one before it ended, so a stream of batches leaves the reasoner idle at least that
        long between runs rather than running it back to back; a caller that waits
        (:meth:`wait`, :meth:`settle`, :meth:`close`) lifts the hold at once."""
        self._run = run
        self._min_gap_s = min_gap_s
        self._last_end = -math.inf
        self._waiting = 0  # callers blocked in wait(): a held run starts for them at once
        self._held = False
        self._changed = threading.Condition(threading.RLock())
        self._requested = 0  # the newest generation asked for
        self._started = 0  # the newest generation a run has started for
        self._last = ReclassifyOutcome(0, None, None)  # the newest finished run
        self._running = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self) -> int:
        """Ask for a run that starts after now; the generation it will cover."""
        with self._changed:
            if self._closed:
                raise TwinKGError("the twin is closing: no reclassification is taken any more")
            self._requested += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="twinkg-reclassify", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()
            return self._requested

    def wait(self, generation: int) -> ReclassifyOutcome:
        """Block until a run that started after ``generation`` was asked for has finished;
        what that run (or a later one) found."""
        with self._changed:
            self._waiting += 1
            self._changed.notify_all()  # a run held back by the gap starts now
            try:
                self._changed.wait_for(lambda: self._last.generation >= generation)
            finally:
                self._waiting -= 1
            return self._last

    def settle(self) -> ReclassifyOutcome:
        """Block until every generation asked for so far is covered; the newest outcome."""
        with self._changed:  # re-entrant: the ask count and the wait see one state
            return self.wait(self._requested)

    def status(self) -> ReclassifyStatus:
        """A snapshot of where reclassification stands."""
        with self._changed:
            last = self._last
            return ReclassifyStatus(
                requested=self._requested,
                completed=last.generation,
                running=self._running,
                last_seconds=last.summary.seconds if last.summary is not None else None,
                last_error=last.error,
                held=self._held,
            )

    def close(self) -> None:
        """Take no more asks, finish the run every ask so far needs, and stop the thread."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _work(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._requested > self._started or self._closed)
                if self._requested == self._started:  # closed, nothing left to cover
                    return
                self._hold_gap()
                generation = self._started = self._requested
                self._running = True
            outcome = self._once(generation)
            with self._changed:
                self._running = False
                self._last_end = time.monotonic()
                self._last = outcome
                self._changed.notify_all()

    def _hold_gap(self) -> None:
        """Wait (the lock held by the caller, released while waiting) until the minimum gap
        since the last run ended has passed, or a caller waits, or the twin closes."""
        while not self._closed and not self._waiting:
            left = self._last_end + self._min_gap_s - time.monotonic()
            if left <= 0:
                break
            self._held = True
            self._changed.notify_all()  # status() readers see the hold
            self._changed.wait(left)
        self._held = False

    def _once(self, generation: int) -> ReclassifyOutcome:
        try:
            return ReclassifyOutcome(generation, self._run(), None)
        except TwinKGError as exc:
            _log.warning("reclassification failed: %s", exc)
            return ReclassifyOutcome(generation, None, str(exc))
        except Exception as exc:  # a bug must not end the worker: every later ask would hang
            _log.exception("reclassification failed unexpectedly")
            return ReclassifyOutcome(generation, None, f"{type(exc).__name__}: {exc}")
