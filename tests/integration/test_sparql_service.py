"""A real ``twinkg serve`` process under hostile SPARQL (issue 11): concurrent first requests,
a query that aborts its engine, queries that never end, one user trying to take every worker,
and a restart that must not rebuild the projection.

The server is started as users start it, over the real Neo4j; every wait is for a state the
server reports (``/health``, ``/ready``), never for a duration. Runaway queries would take
years on any machine; the test ends them by killing their worker processes, as the kernel's
out-of-memory killer would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from neo4j import Driver

from tests.conftest import Neo4jTarget, seed_skab
from tests.integration.api_world import PUMP, free_port, make_keys
from twinkg.api.app import create_app
from twinkg.api.security import KeyStore, Role
from twinkg.api.settings import Settings, projection_folder
from twinkg.kg.projection import Projection
from twinkg.kg.records import GraphRecords, NodeRecord
from twinkg.kg.store import GraphStore
from twinkg.ontology.vocab import TK, PropKey

pytestmark = pytest.mark.neo4j

TAG = f"PREFIX tk: <https://w3id.org/twinkg/ontology#> SELECT ?t WHERE {{ <{PUMP}> tk:tag ?t }}"
FIRST = [
    TAG,
    "ASK { ?s ?p ?o }",
    f"CONSTRUCT {{ <{PUMP}> ?p ?o }} WHERE {{ <{PUMP}> ?p ?o }}",
    "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> "
    "SELECT (COUNT(?c) AS ?n) WHERE { ?c rdfs:subClassOf+ ?d FILTER(isIRI(?d)) } GROUP BY ?d",
] * 2
PANIC = (
    "SELECT ?c ?f WHERE { ?a ?b ?c . ?d ?e ?f FILTER(isNumeric(?c) && isLiteral(?f)) } "
    "ORDER BY ?c ?f"
)
_MIXED = " ".join(
    f'{i} "NaN"^^<http://www.w3.org/2001/XMLSchema#double> "{i}" "x"@en {i}.5' for i in range(20)
)
PANIC_FOR_SURE = f"SELECT ?x WHERE {{ VALUES ?x {{ {_MIXED} }} }} ORDER BY ?x"
RUNAWAY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l }"


@dataclass
class Server:
    """A ``twinkg serve`` process, its URL, keys (one engineer key per name) and store."""

    env: dict[str, str]
    url: str
    keys: dict[str, str]
    store: GraphStore
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it answers ``/health``."""
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "twinkg.api.cli.main", "serve"],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _until(self.healthy, "the server answers /health", process=self.process, log=self.log)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM, as a supervisor stops it; the test waits for the exit."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=120)

    def sparql(self, query: str, *, who: str = "engineer") -> httpx.Response:
        return httpx.post(
            f"{self.url}/sparql",
            content=query.encode(),
            headers={"X-API-Key": self.keys[who], "Content-Type": "application/sparql-query"},
            timeout=700,
        )

    def ready(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/ready", timeout=30).json()
        return body

    def workers(self) -> list[int]:
        """The SPARQL worker processes this server runs now."""
        assert self.process is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and b"twinkg.kg.sparql_worker" in cmdline:
                found.append(int(entry.name))
        return found


def _until(
    condition: Callable[[], bool],
    what: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Wait for a state; the bound only turns a hang into a failure."""
    deadline = time.monotonic() + 240
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the server exited: {log.read_text() if log else ''}")
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("sparql-service")
    store = seed_skab(driver)
    settings = Settings(home=home)
    keys = {role.value: key for role, key in make_keys(settings).items()}
    key_store = KeyStore(home / "api-keys.json")
    for name in ("alice", "bob", "carol", *(f"first-{i}" for i in range(len(FIRST)))):
        keys[name] = key_store.create(name=name, roles=[Role.ENGINEER])[1]
    port = free_port()
    env = {
        **neo4j_target.env(),
        "TWINKG_HOME": str(home),
        "TWINKG_API_PORT": str(port),
        "TWINKG_PROJECTION_POLL_S": "0.1",
        "TWINKG_SPARQL_TIMEOUT_S": "600",
        "TWINKG_SPARQL_WORKERS": "4",
        "TWINKG_SPARQL_USER_CONCURRENCY": "16",
        "TWINKG_SPARQL_QUEUE": "16",
        "TWINKG_SPARQL_QUEUE_WAIT_S": "600",
    }
    running = Server(env, f"http://127.0.0.1:{port}", keys, store, home / "server.log")
    running.start()
    try:
        yield running
    finally:
        if running.process is not None and running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(timeout=60)


def test_concurrent_first_requests_on_a_fresh_process_all_succeed(server: Server) -> None:
    start = threading.Barrier(len(FIRST))
    answers: dict[int, httpx.Response] = {}

    def ask(i: int) -> None:
        start.wait()
        answers[i] = server.sparql(FIRST[i], who=f"first-{i}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(FIRST))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert sorted(answers) == list(range(len(FIRST)))
    for i, response in answers.items():
        assert response.status_code == 200, (FIRST[i], response.text)
    assert b"P-1" in answers[0].content


def test_a_query_that_aborts_its_worker_costs_only_that_query(server: Server) -> None:
    for query in (PANIC, PANIC_FOR_SURE):  # the reported one aborts almost always; this, always
        response = server.sparql(query)
        if query is PANIC_FOR_SURE or response.status_code != 200:
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "sparql_worker_failed"
            assert "total order" in response.json()["error"]["message"]
        assert server.healthy()
        again = server.sparql(TAG)
        assert again.status_code == 200 and b"P-1" in again.content
    assert server.ready()["ready"] is True


def _retag(store: GraphStore, tag: str) -> None:
    store.write(
        GraphRecords((NodeRecord(PUMP, (str(TK.CentrifugalPump),), {PropKey.TAG: tag}),), ())
    )


def test_runaway_queries_cost_their_workers_only_and_one_user_cannot_take_them_all(
    server: Server,
) -> None:
    hung: list[httpx.Response] = []
    waited: list[httpx.Response] = []

    def background(into: list[httpx.Response], query: str, who: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: into.append(server.sparql(query, who=who)))
        thread.start()
        return thread

    # four workers, at most three running per caller: alice's fourth to sixth queries wait
    threads = [background(hung, RUNAWAY, "alice") for _ in range(3)]
    _until(lambda: server.ready()["sparql"]["busy"] == 3, "alice's three queries run")
    threads += [background(waited, TAG, "alice") for _ in range(3)]
    _until(lambda: server.ready()["sparql"]["queued"] == 3, "alice's next three wait")
    refused = server.sparql("ASK {}", who="alice")  # and her seventh is refused at once
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "sparql_user_limit"
    assert server.sparql(TAG, who="bob").status_code == 200  # the free worker is bob's
    # the writer keeps applying changes meanwhile
    _retag(server.store, "P-1-BUSY")
    _until(lambda: server.ready()["projection"]["pending"] == 0, "the change is applied")
    assert b"P-1-BUSY" in server.sparql(TAG, who="bob").content
    # carol takes the last worker: SPARQL is saturated, the API stays ready, and says so
    threads.append(background(hung, RUNAWAY, "carol"))
    _until(lambda: server.ready()["sparql"]["saturated"], "every worker is taken")
    ready = server.ready()
    assert ready["ready"] is True and ready["detail"] == "sparql_saturated"
    assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
    for pid in server.workers():  # the kernel's OOM killer, as far as the server can tell
        os.kill(pid, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=700)
    assert [r.json()["error"]["code"] for r in hung] == ["sparql_worker_failed"] * 4
    assert [r.status_code for r in waited] == [200] * 3  # alice's waiting queries ran then
    assert all(b"P-1-BUSY" in r.content for r in waited)
    _until(lambda: server.ready()["sparql"]["busy"] == 0, "the workers are free again")


def test_the_cli_answers_from_the_running_apis_projection(server: Server) -> None:
    _retag(server.store, "P-1-CLI")
    _until(lambda: server.ready()["projection"]["pending"] == 0, "the API applied the change")
    done = subprocess.run(
        [sys.executable, "-m", "twinkg.api.cli.main", "sparql", TAG, "--format", "csv"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["t", "P-1-CLI"]
    assert server.ready()["sparql"]["rebuilds"] == 1  # the API still writes it, unrebuilt


def test_a_restart_serves_at_once_and_reopens_the_projection_without_a_rebuild(
    server: Server,
) -> None:
    assert server.ready()["sparql"]["rebuilds"] == 1  # the first start built it
    server.stop()
    _retag(server.store, "P-1-WHILE-DOWN")
    server.start()
    # the persisted snapshot answers at once, with its lag; the writer then catches up
    assert server.ready()["sparql"]["building"] is False
    _until(lambda: server.ready()["projection"]["pending"] == 0, "the restart caught up")
    assert b"P-1-WHILE-DOWN" in server.sparql(TAG).content
    assert server.ready()["sparql"]["rebuilds"] == 0


def test_the_api_starts_without_waiting_for_the_projection(driver: Driver, tmp_path: Path) -> None:
    store = seed_skab(driver)
    settings = Settings(home=tmp_path, projection_poll_s=0.1, sparql_queue_wait_s=0.5)
    keys = make_keys(settings)
    engineer = {"X-API-Key": keys[Role.ENGINEER]}
    # another process holds the writer role and has published nothing: no build can start
    blocker = Projection(store, path=projection_folder(settings))
    assert blocker.open()
    app = create_app(settings, store=store)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/assets", headers=engineer).status_code == 200
            ready = client.get("/ready").json()
            assert ready["ready"] is True and ready["detail"] == "projection_building"
            assert ready["sparql"]["building"] is True
            waiting = client.get("/sparql", params={"query": TAG}, headers=engineer)
            assert waiting.status_code == 503
            assert waiting.json()["error"]["code"] == "projection_building"
            blocker.close()  # the API's follower takes the role over and builds
            _until(lambda: not client.get("/ready").json()["sparql"]["building"], "built")
            answer = client.get("/sparql", params={"query": TAG}, headers=engineer)
            assert answer.status_code == 200 and b"P-1" in answer.content
            assert client.get("/ready").json()["sparql"]["rebuilds"] == 1
    finally:
        blocker.close()
