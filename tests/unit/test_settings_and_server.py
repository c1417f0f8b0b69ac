"""Settings resolution and the local server's bookkeeping (no Java needed)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from twinkg.api import server
from twinkg.api.settings import Settings, connection, local_server_config
from twinkg.kg import local_server
from twinkg.ontology.errors import PortInUseError, ServerError


def test_without_uri_the_local_server_is_used_with_a_generated_private_password(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path, neo4j_bolt_port=7999)
    conn = connection(settings)
    assert conn.local and conn.uri == "bolt://127.0.0.1:7999"
    password_file = tmp_path / "neo4j" / "password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert len(conn.password.get_secret_value()) >= 24
    assert connection(settings).password == conn.password  # stable across calls
    assert conn.password.get_secret_value() not in repr(conn)


def test_with_uri_that_server_is_used_and_nothing_local_is_created(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        neo4j_uri="neo4j+s://example.databases.neo4j.io",
        neo4j_user="ops",
        neo4j_password=SecretStr("s3cret"),
    )
    conn = connection(settings)
    assert not conn.local and conn.uri.startswith("neo4j+s://") and conn.user == "ops"
    assert not (tmp_path / "neo4j").exists()


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TWINKG_NEO4J_BOLT_PORT", "17001")
    monkeypatch.setenv("TWINKG_NEO4J_HEAP", "512m")
    monkeypatch.setenv("TWINKG_HOME", str(tmp_path))
    config = local_server_config(Settings())
    assert (config.port, config.heap, config.home) == (17001, "512m", tmp_path / "neo4j")


def test_bad_memory_size_is_refused() -> None:
    with pytest.raises(ValueError, match="neo4j_heap"):
        Settings(neo4j_heap="lots")


def test_stale_pid_file_does_not_count_as_running(tmp_path: Path) -> None:
    config = local_server.LocalServerConfig(home=tmp_path, port=7998, password="x" * 12)
    config.pid_file.write_text(str(os.getpid()), encoding="utf-8")  # alive, but not a launcher
    assert not local_server.status(config).running
    assert local_server.stop(config) is False
    assert not config.pid_file.exists()


def test_taken_port_is_refused_before_java_starts(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config = local_server.LocalServerConfig(home=tmp_path, port=port, password="x" * 12)
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            local_server.start(config)


def test_a_taken_api_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = Settings(home=tmp_path, api_port=port)
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            server.start(settings)
        assert server.running(settings) is None  # no process, no pid file
    server.check_port_free(settings)  # free again once the squatter is gone


def test_missing_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("twinkg.kg.local_server.shutil.which", lambda _: None)
    with pytest.raises(ServerError, match="Maven"):
        local_server.build(tmp_path)


def test_missing_neo4j_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    config = local_server.LocalServerConfig(
        home=tmp_path, port=7997, password="x" * 12, conf=tmp_path / "nope.conf"
    )
    with pytest.raises(ServerError, match=r"nope\.conf does not exist"):
        local_server.start(config)


def _fake_maven(tmp_path: Path, failures: int) -> Path:
    """An ``mvn`` that answers like a throttled Maven Central ``failures`` times, then builds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    target = tmp_path / "server" / "target"
    script = f"""#!/bin/sh
n=$(cat "{tmp_path}/calls" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "{tmp_path}/calls"
if [ $n -le {failures} ]; then
  echo "[ERROR] status code: 429, reason phrase: Too Many Requests"; exit 1
fi
mkdir -p "{target}/classes/org/twinkg/server" "{target}/lib"
touch "{target}/classes/org/twinkg/server/Launcher.class" "{target}/lib/neo4j-5.26.30.jar"
"""
    mvn.write_text(script, encoding="utf-8")
    mvn.chmod(0o755)
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "pom.xml").write_text("<project/>", encoding="utf-8")
    return bin_dir


def test_maven_429_is_retried_until_it_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{_fake_maven(tmp_path, failures=2)}:{os.environ['PATH']}")
    pauses: list[float] = []
    classpath = local_server.build(tmp_path / "server", sleep=pauses.append)
    assert (tmp_path / "calls").read_text(encoding="utf-8").strip() == "3"
    assert len(pauses) == 2 and pauses[0] < pauses[1]
    assert classpath.endswith("lib/*")


def test_maven_that_keeps_failing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{_fake_maven(tmp_path, failures=99)}:{os.environ['PATH']}")
    with pytest.raises(ServerError, match=r"after 5 tries: .*429"):
        local_server.build(tmp_path / "server", sleep=lambda _: None)
