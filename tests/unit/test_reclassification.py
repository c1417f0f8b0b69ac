"""Reclassification after ingest: one run at a time, coalesced, never stopped by a failure.

The run is a stand-in that blocks on an event until the test lets it go, so every interleaving
below is forced by the test, never left to timing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from twinkg.api.reclassification import Reclassifier
from twinkg.ontology.errors import ServerError, TwinKGError
from twinkg.reasoner.inference import ReclassifySummary


class Gate:
    """A run that counts itself and blocks until released; it can be told to fail."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.fail: Exception | None = None

    def __call__(self) -> ReclassifySummary:
        self.runs += 1
        self.started.release()
        self.release.acquire()
        if self.fail is not None:
            raise self.fail
        return ReclassifySummary(True, None, {}, 0, 0, seconds=0.5)


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    for _ in range(10):  # never leave the worker blocked
        gate.release.release()


def test_asks_during_a_run_are_covered_by_one_more_run(gate: Gate) -> None:
    worker = Reclassifier(gate)
    first = worker.request()
    gate.started.acquire()  # the first run is going on
    later = [worker.request() for _ in range(5)]
    assert worker.status().running and worker.status().requested == 6
    gate.release.release()
    assert worker.wait(first).generation >= first
    gate.started.acquire()  # the second run covers all five later asks
    gate.release.release()
    outcome = worker.wait(later[-1])
    assert outcome.generation == later[-1] and outcome.summary is not None
    worker.close()
    assert gate.runs == 2
    status = worker.status()
    assert (status.requested, status.completed, status.running) == (6, 6, False)
    assert status.last_seconds == 0.5 and status.last_error is None


def test_a_wait_returns_only_after_a_run_that_started_after_the_ask(gate: Gate) -> None:
    worker = Reclassifier(gate)
    worker.request()
    gate.started.acquire()  # a run is going on: it started before the next ask
    second = worker.request()
    waited = threading.Event()

    def waiter() -> None:
        worker.wait(second)
        waited.set()

    threading.Thread(target=waiter, daemon=True).start()
    gate.release.release()  # the first run ends; the second has not run yet
    gate.started.acquire()  # the second run started
    assert not waited.is_set()
    gate.release.release()
    assert worker.wait(second).generation == second
    worker.close()


def test_a_failed_run_is_reported_and_the_next_ask_runs_again(gate: Gate) -> None:
    worker = Reclassifier(gate)
    gate.fail = ServerError("the reasoner's JVM could not start")
    gate.release.release()
    failed = worker.wait(worker.request())
    assert failed.summary is None and failed.error is not None and "JVM" in failed.error
    assert worker.status().last_error == failed.error
    gate.fail = None
    gate.release.release()
    good = worker.wait(worker.request())
    assert good.summary is not None and good.error is None
    worker.close()
    assert gate.runs == 2


def test_a_bug_in_a_run_does_not_end_the_worker(gate: Gate) -> None:
    worker = Reclassifier(gate)
    gate.fail = KeyError("unexpected")
    gate.release.release()
    broken = worker.wait(worker.request())
    assert broken.error is not None and broken.error.startswith("KeyError")
    gate.fail = None
    gate.release.release()
    assert worker.wait(worker.request()).summary is not None
    worker.close()


def test_close_finishes_what_was_asked_and_takes_no_more(gate: Gate) -> None:
    worker = Reclassifier(gate)
    generation = worker.request()
    for _ in range(2):
        gate.release.release()
    worker.close()
    assert worker.status().completed == generation
    with pytest.raises(TwinKGError):
        worker.request()


def test_nothing_runs_and_no_thread_starts_before_the_first_ask(gate: Gate) -> None:
    before = threading.active_count()
    worker = Reclassifier(gate)
    worker.close()
    assert gate.runs == 0 and threading.active_count() == before
    assert worker.status().requested == 0


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_background_ask_waits_out_the_gap_unless_a_caller_waits(gate: Gate) -> None:
    """With a minimum gap, a run asked for in the background right after another is held; a
    caller that waits for it (or closing the twin) lifts the hold at once."""
    worker = Reclassifier(gate, min_gap_s=3600.0)
    first = worker.request()
    assert gate.started.acquire(timeout=60)  # the first run starts at once: none before it
    gate.release.release()
    worker.wait(first)
    second = worker.request()
    _until(lambda: worker.status().held, "the second run to be held by the gap")
    assert gate.runs == 1 and worker.status().completed == first
    waiter = threading.Thread(target=worker.wait, args=(second,))
    waiter.start()  # someone needs the labels now
    assert gate.started.acquire(timeout=60)
    assert not worker.status().held and worker.status().running
    gate.release.release()
    waiter.join(60)
    assert gate.runs == 2 and worker.status().completed == second
    third = worker.request()
    _until(lambda: worker.status().held, "the third run to be held by the gap")
    closer = threading.Thread(target=worker.close)
    closer.start()  # closing finishes every ask so far, held or not
    assert gate.started.acquire(timeout=60)
    gate.release.release()
    closer.join(60)
    assert gate.runs == 3 and worker.status().completed == third
