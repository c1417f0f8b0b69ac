"""The checkpointer on a real Postgres: the same interrupt, crash and resume runs as on SQLite.

The session starts a throwaway cluster (``initdb`` into a temporary folder, ``pg_ctl start``
listening on a Unix socket only, trust authentication) and stops it at the end. Postgres
refuses to run as root, so under root (as in CI) the cluster runs as the ``postgres`` user.
Skipped when the Postgres server binaries (Debian: ``apt-get install postgresql``) or the
``postgres`` extra (``pip install 'twinkg[postgres]'``) are missing.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_checkpoint import (
    ACTION,
    Foreign,
    Probe,
    crash_and_resume,
    interrupt_and_resume,
    start,
    tiny_graph,
)
from twinkg.agents.checkpoint import open_checkpointer, unfinished_threads

pytest.importorskip(
    "langgraph.checkpoint.postgres", reason="the postgres extra is not installed (twinkg[postgres])"
)
psycopg = pytest.importorskip("psycopg")

PORT = 5432  # names the socket file only: the server listens on no TCP address


def _bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that holds initdb."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else None


def _as_owner(owner: str | None, *command: str) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else list(command)


@pytest.fixture(scope="session")
def postgres_socket() -> Iterator[Path]:
    """A running throwaway Postgres for the session; yields the folder of its socket."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no Postgres server binaries (/usr/lib/postgresql/*/bin/initdb)")
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run Postgres as")
        owner = "postgres"
    # Not under pytest's tmp folder: that one is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="twinkg-pg-"))
    data, socket_dir, log = root / "data", root / "socket", root / "server.log"
    socket_dir.mkdir()
    if owner:
        shutil.chown(root, owner, owner)
        shutil.chown(socket_dir, owner, owner)
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    options = f"-k {socket_dir} -p {PORT} -c listen_addresses='' -c fsync=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
    try:
        for command in (
            [*initdb, "--no-sync", "-E", "UTF8", "--locale=C"],
            [*pg_ctl, "-w", "-t", "60", "start"],
        ):
            subprocess.run(_as_owner(owner, *command), check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        server_log = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"Postgres did not start: {exc.stderr!r}\n{server_log}")
    try:
        yield socket_dir
    finally:
        subprocess.run(
            _as_owner(owner, *pg_ctl, "-m", "immediate", "stop"),
            check=False,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


_numbers = itertools.count()


@pytest.fixture
def postgres_url(postgres_socket: Path) -> str:
    """A fresh, empty database on the session's server, as a postgresql:// URL."""
    name = f"checkpoints_{next(_numbers)}"
    admin = f"postgresql://postgres@/postgres?host={postgres_socket}&port={PORT}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@/{name}?host={postgres_socket}&port={PORT}"


@pytest.fixture
def probe(tmp_path: Path) -> Probe:
    """A fresh counter file."""
    return Probe(counts=str(tmp_path / "runs.txt"))


def test_an_interrupted_run_waits_and_then_finishes(postgres_url: str, probe: Probe) -> None:
    with open_checkpointer(postgres_url) as saver:
        assert type(saver).__name__ == "PostgresSaver"
        interrupt_and_resume(saver, probe, "run-1")


def test_a_crashed_run_is_cut_off_and_resumes_at_the_node_it_died_in(
    postgres_url: str, probe: Probe
) -> None:
    crash_and_resume(postgres_url, probe, "run-9")


def test_the_postgres_saver_uses_the_allowlist_and_setup_is_repeatable(
    postgres_url: str, probe: Probe
) -> None:
    with open_checkpointer(postgres_url) as saver:
        start(tiny_graph(saver), "run-1", probe)
    with open_checkpointer(postgres_url) as saver:  # tables exist: setup() again is a no-op
        serde = saver.serde
        assert serde.loads_typed(serde.dumps_typed(ACTION)) == ACTION
        assert serde.loads_typed(serde.dumps_typed(Foreign(x=1))) == {"x": 1}  # not rebuilt
        assert [t.thread_id for t in unfinished_threads(saver)] == ["run-1"]
        conn = saver.conn  # type: ignore[attr-defined]
    assert conn.closed  # the context closed the connection


def test_postgres_urls_take_both_schemes(postgres_url: str) -> None:
    short = postgres_url.replace("postgresql://", "postgres://", 1)
    with open_checkpointer(short) as saver:
        assert unfinished_threads(saver) == []
