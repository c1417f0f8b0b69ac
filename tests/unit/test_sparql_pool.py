"""SPARQL worker processes against real Oxigraph snapshots (no Neo4j): a query that panics,
runs out of memory or runs past its deadline costs its own worker only; one caller cannot take
every worker; snapshots are published, pinned and swept safely.

Every outcome here is a state, never a race against the clock: the runaway queries below would
take years on any machine, so whatever its speed they reach their deadline (or their memory
limit) first."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyoxigraph as ox
import pytest

from twinkg.graph_seed.registry import PLANTS_DIR
from twinkg.kg import sparql_snapshots
from twinkg.kg.sparql_pool import PoolLimits, SparqlPool, died_of_memory
from twinkg.kg.sparql_store import StoreState, read_state, state_update
from twinkg.ontology.catalog import ontology_files
from twinkg.ontology.errors import (
    ProjectionError,
    QueryTimeoutError,
    SparqlBusyError,
    SparqlInvalidError,
    SparqlMemoryLimitError,
    SparqlUserLimitError,
    SparqlWorkerFailedError,
    TwinKGError,
)

JSON = "application/sparql-results+json"
COUNT = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
# pyoxigraph 0.5.13 aborts the process on this sort: mixed literals (NaN among them) break the
# total order its sort requires. Inline values make it certain; the reporter's query over a
# store aborts too, but whether depends on the order the rows reach the sort (blank node ids
# are random per load), so the integration test runs both.
_MIXED = " ".join(
    f'{i} "NaN"^^<http://www.w3.org/2001/XMLSchema#double> "{i}" "x"@en {i}.5' for i in range(20)
)
PANIC_ON_VALUES = f"SELECT ?x WHERE {{ VALUES ?x {{ {_MIXED} }} }} ORDER BY ?x"
# About 1,700 triples to the fourth power: no machine counts that before its deadline.
RUNAWAY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"
# Billions of rows kept for a sort: past any worker's memory limit long before it could end.
HOG = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i } ORDER BY ?a ?d ?g"


@pytest.fixture(scope="module")
def plant_store(tmp_path_factory: pytest.TempPathFactory) -> ox.Store:
    """The ontology and the SKAB testbed's Turtle in an on-disk store, with a state."""
    store = ox.Store(str(tmp_path_factory.mktemp("primary") / "store"))
    for file in ontology_files():
        store.load(path=file, format=ox.RdfFormat.TURTLE)
    store.load(path=PLANTS_DIR / "skab-testbed.ttl", format=ox.RdfFormat.TURTLE)
    store.update(state_update(StoreState(7, "", "test")))
    return store


@pytest.fixture
def snapshots(plant_store: ox.Store, tmp_path: Path) -> Path:
    root = tmp_path / "snapshots"
    sparql_snapshots.publish(plant_store, root, applied=7)
    return root


@pytest.fixture
def make_pool(snapshots: Path) -> Iterator[Callable[..., SparqlPool]]:
    made: list[SparqlPool] = []

    def make(**limits: object) -> SparqlPool:
        pool = SparqlPool(snapshots, PoolLimits(**limits))  # type: ignore[arg-type]
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


def _count(pool: SparqlPool, *, caller: str = "anonymous") -> int:
    answer = pool.run(COUNT, media_type=JSON, row_cap=10, timeout_s=120, caller=caller)
    return int(json.loads(answer.body)["results"]["bindings"][0]["n"]["value"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a state (not for a duration): the bound only turns a hang into a failure."""
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


class _Background:
    """A query running on its own thread; what it raised, once it ends."""

    def __init__(self, pool: SparqlPool, text: str, *, caller: str, timeout_s: float) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                pool.run(text, media_type=JSON, row_cap=10, timeout_s=timeout_s, caller=caller)
            except TwinKGError as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> BaseException | None:
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        return self.error


def test_an_answer_comes_from_the_newest_snapshot_with_its_seq(
    make_pool: Callable[..., SparqlPool], plant_store: ox.Store
) -> None:
    pool = make_pool(workers=1)
    answer = pool.run(COUNT, media_type=JSON, row_cap=10, timeout_s=120)
    state = read_state(plant_store)
    assert state is not None and (answer.applied, answer.rows) == (state.applied, 1)
    assert _count(pool) == len(plant_store) - 3  # the state graph is not the default graph


def test_a_query_that_panics_costs_only_its_worker(make_pool: Callable[..., SparqlPool]) -> None:
    pool = make_pool(workers=1)
    expected = _count(pool)
    (first,) = pool.pids()
    with pytest.raises(SparqlWorkerFailedError, match="total order"):
        pool.run(PANIC_ON_VALUES, media_type=JSON, row_cap=10, timeout_s=300)
    assert not _alive(first)
    assert _count(pool) == expected  # the next query is answered, by another worker
    assert first not in pool.pids()
    status = pool.status()
    assert (status.crashes, status.busy, status.saturated) == (1, 0, False)


def test_a_query_past_its_deadline_has_its_worker_killed(
    make_pool: Callable[..., SparqlPool],
) -> None:
    pool = make_pool(workers=1)
    expected = _count(pool)
    (first,) = pool.pids()
    with pytest.raises(QueryTimeoutError, match="worker was stopped"):
        pool.run(RUNAWAY, media_type=JSON, row_cap=10, timeout_s=1.0)
    assert not _alive(first)  # killed and collected: nothing runs on after the deadline
    assert pool.status().busy == 0 and pool.status().timeouts == 1
    assert _count(pool) == expected


def test_a_query_past_the_memory_limit_costs_only_its_worker(
    make_pool: Callable[..., SparqlPool],
) -> None:
    pool = make_pool(workers=1, memory_bytes=1 << 30)
    expected = _count(pool)
    with pytest.raises(SparqlMemoryLimitError, match="more memory"):
        pool.run(HOG, media_type=JSON, row_cap=10, timeout_s=600)
    assert _count(pool) == expected


def test_a_workers_address_space_is_what_it_uses_not_what_malloc_reserved(
    make_pool: Callable[..., SparqlPool],
) -> None:
    """The memory limit counts address space (RLIMIT_AS): glibc's per-thread malloc arenas
    (64 MiB reserved each) must not spend it, or a worker dies on a COUNT on a busy machine."""
    pool = make_pool(workers=1, memory_bytes=1 << 30)
    _count(pool)
    (pid,) = pool.pids()
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    peak_kb = int(next(line for line in status if line.startswith("VmPeak:")).split()[1])
    assert peak_kb * 1024 < (1 << 30) // 2, f"the worker reserved {peak_kb} kB for one COUNT"


NO_THREAD = [
    "terminate called after throwing an instance of 'std::system_error'",
    "  what():  Resource temporarily unavailable",
]


@pytest.mark.parametrize(
    ("tail", "limited", "expected"),
    [
        (["memory allocation of 1073741824 bytes failed"], False, True),  # Rust's abort
        (["Traceback (most recent call last):", "MemoryError"], True, True),
        (NO_THREAD, True, True),  # a thread's stack could not be mapped under the limit
        (NO_THREAD, False, False),  # with no limit, it is some other shortage: a crash
        (["thread '<unnamed>' panicked at src/sort.rs:12:5:", "total order"], True, False),
        ([], True, False),
    ],
)
def test_what_a_dead_worker_left_on_stderr_says_whether_memory_ran_out(
    tail: list[str], limited: bool, expected: bool
) -> None:
    assert died_of_memory(tail, limited=limited) is expected


def test_a_query_oxigraph_cannot_parse_leaves_the_worker_in_service(
    make_pool: Callable[..., SparqlPool],
) -> None:
    pool = make_pool(workers=1)
    _count(pool)
    (first,) = pool.pids()
    with pytest.raises(SparqlInvalidError):
        pool.run("SELECT * WHERE { ?s ?p }", media_type=JSON, row_cap=10, timeout_s=60)
    assert pool.pids() == [first] and _alive(first)


def test_one_caller_cannot_take_every_worker(make_pool: Callable[..., SparqlPool]) -> None:
    pool = make_pool(workers=2, per_user=5, queue_wait_s=600)  # per caller: workers - 1 running
    runaway = _Background(pool, RUNAWAY, caller="alice", timeout_s=600)
    _until(lambda: len(pool.running()) == 1, "alice's query runs")
    waits = _Background(pool, COUNT, caller="alice", timeout_s=600)  # for her own to end
    _until(lambda: pool.status().queued == 1, "alice's second query waits")
    with pytest.raises(SparqlUserLimitError):  # one running and one waiting: her share
        pool.run(COUNT, media_type=JSON, row_cap=10, timeout_s=60, caller="alice")
    assert _count(pool, caller="bob") > 0  # the free worker is bob's, though alice asked first
    assert pool.status().queued == 1 and set(pool.running().values()) == {"alice"}
    pool.close()
    assert isinstance(runaway.join(), SparqlWorkerFailedError)
    assert isinstance(waits.join(), SparqlBusyError)


def test_when_every_worker_is_taken_a_request_is_told_so(
    make_pool: Callable[..., SparqlPool],
) -> None:
    pool = make_pool(workers=1, queue=0)
    runaway = _Background(pool, RUNAWAY, caller="alice", timeout_s=600)
    _until(lambda: pool.status().saturated, "the only worker is taken")
    with pytest.raises(SparqlBusyError, match="busy"):
        pool.run(COUNT, media_type=JSON, row_cap=10, timeout_s=60, caller="bob")
    pool.close()
    runaway.join()


def test_a_freed_worker_goes_to_the_caller_running_the_fewest(
    make_pool: Callable[..., SparqlPool],
) -> None:
    pool = make_pool(workers=3, per_user=2, queue=4, queue_wait_s=600)
    alice = _Background(pool, RUNAWAY, caller="alice", timeout_s=600)
    bob = [_Background(pool, RUNAWAY, caller="bob", timeout_s=600) for _ in range(2)]
    _until(lambda: len(pool.running()) == 3, "three runaway queries run")
    alice_waits = _Background(pool, RUNAWAY, caller="alice", timeout_s=600)
    _until(lambda: pool.status().queued == 1, "alice's second query waits")
    carol_waits = _Background(pool, RUNAWAY, caller="carol", timeout_s=600)
    _until(lambda: pool.status().queued == 2, "carol's query waits too")
    bobs_worker = next(pid for pid, caller in pool.running().items() if caller == "bob")
    os.kill(bobs_worker, 9)  # as the kernel's OOM killer would: one worker, no warning
    # carol (no query running) gets the freed worker before alice (one running), who was first
    _until(lambda: "carol" in pool.running().values(), "carol's query runs")
    assert pool.status().queued == 1 and list(pool.running().values()).count("alice") == 1
    pool.close()
    assert isinstance(alice_waits.join(), SparqlBusyError)
    for query in (alice, carol_waits, *bob):
        assert isinstance(query.join(), SparqlWorkerFailedError)


def test_a_worker_moves_to_a_newer_snapshot_and_a_pinned_one_is_kept(
    make_pool: Callable[..., SparqlPool], plant_store: ox.Store, snapshots: Path
) -> None:
    pool = make_pool(workers=1)
    before = _count(pool)
    reader = sparql_snapshots.pin(snapshots)
    assert reader is not None
    extra = ox.Quad(ox.NamedNode("urn:test:s"), ox.NamedNode("urn:test:p"), ox.Literal("o"))
    plant_store.add(extra)
    plant_store.update(state_update(StoreState(8, "", "test")))
    try:
        newer = sparql_snapshots.publish(plant_store, snapshots, applied=8)
        answer = pool.run(COUNT, media_type=JSON, row_cap=10, timeout_s=120)
        assert (answer.snapshot, answer.applied) == (newer, 8)
        assert _count(pool) == before + 1
        # the worker let the old one go; the pinned reader still holds it, so it stays
        assert sparql_snapshots.numbers(snapshots) == [reader.number, newer]
        assert len(ox.Store.read_only(str(reader.path))) == before + 3
        reader.release()
        assert sparql_snapshots.sweep(snapshots, keep=newer) == 1
        assert sparql_snapshots.numbers(snapshots) == [newer]
        assert sparql_snapshots.stamp(snapshots, newer) == (8, "")
    finally:
        plant_store.remove(extra)
        plant_store.update(state_update(StoreState(7, "", "test")))


def test_nothing_published_is_a_clear_error(tmp_path: Path) -> None:
    pool = SparqlPool(tmp_path / "none", PoolLimits(workers=1))
    try:
        with pytest.raises(ProjectionError, match="no projection snapshot"):
            pool.run(COUNT, media_type=JSON, row_cap=10, timeout_s=60)
    finally:
        pool.close()
