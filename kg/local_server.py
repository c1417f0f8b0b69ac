"""The Neo4j server TwinKG runs for itself when no ``TWINKG_NEO4J_URI`` is configured.

Maven fetches Neo4j 5.26 LTS Community (``kg/neo4j-server/pom.xml``) and compiles a small launcher
that starts it with only a Bolt connector on loopback. This module builds it on first use, starts
it in the background, waits until Bolt answers, and stops it. The data folder, pid file, password
file and log live under the configured home (``var/neo4j`` by default, ignored by git).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from twinkg.ontology.errors import PortInUseError, ServerError

SERVER_DIR = Path(__file__).resolve().parent / "neo4j-server"
READY_MARK = "TWINKG-NEO4J-READY"
ERROR_MARK = "TWINKG-NEO4J-ERROR"
_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
)
_MAVEN_TRIES = 5


@dataclass(frozen=True, slots=True)
class LocalServerConfig:
    """Where and how the local server runs (built by the settings in ``api``)."""

    home: Path
    port: int
    password: str
    address: str = "127.0.0.1"
    heap: str = "2g"
    pagecache: str = "1g"
    tx_memory: str = "2g"
    java: str = "java"
    conf: Path | None = None
    """Optional neo4j.conf-style file with further settings (the fields above take precedence)."""

    @classmethod
    def throwaway(
        cls, home: Path, *, heap: str, pagecache: str, tx_memory: str
    ) -> LocalServerConfig:
        """A server for tests and benchmarks: a free loopback port and a random password."""
        return cls(
            home=home,
            port=free_port(),
            password=secrets.token_urlsafe(16),
            heap=heap,
            pagecache=pagecache,
            tx_memory=tx_memory,
        )

    @property
    def bolt_uri(self) -> str:
        """The Bolt URI clients use to reach this server."""
        return f"bolt://{self.address}:{self.port}"

    @property
    def pid_file(self) -> Path:
        """The file holding the launcher's pid while it runs."""
        return self.home / "launcher.pid"

    @property
    def log_file(self) -> Path:
        """The launcher's stdout and stderr."""
        return self.home / "launcher.log"


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """Whether the local server runs, and where."""

    running: bool
    pid: int | None
    bolt_uri: str


def build(
    server_dir: Path = SERVER_DIR,
    *,
    log: Callable[[str], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Fetch Neo4j with Maven and compile the launcher (once); return the Java classpath.

    Maven Central can answer 429 under load, so the build is retried with growing pauses.
    """
    classes, lib = server_dir / "target" / "classes", server_dir / "target" / "lib"
    launcher = classes / "org/twinkg/server/Launcher.class"
    sources = [server_dir / "pom.xml", *server_dir.glob("src/**/*.java")]
    stale = not launcher.exists() or any(
        src.stat().st_mtime > launcher.stat().st_mtime for src in sources
    )
    if stale or not any(lib.glob("neo4j-*.jar")):
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServerError("Maven (mvn) is not installed; it is needed once to fetch Neo4j")
        reason = ""
        for attempt in range(1, _MAVEN_TRIES + 1):
            log(f"fetching Neo4j with Maven (attempt {attempt}/{_MAVEN_TRIES})")
            done = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(server_dir / "pom.xml"),
                    "package",
                    "-Dmaven.wagon.http.retryHandler.count=3",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                break
            lines = (done.stdout + done.stderr).strip().splitlines()
            reason = lines[-1] if lines else f"mvn exited with status {done.returncode}"
            if attempt < _MAVEN_TRIES:
                sleep(min(60, 5 * 2**attempt))
        else:
            raise ServerError(f"Maven could not fetch Neo4j after {_MAVEN_TRIES} tries: {reason}")
    return f"{classes}{os.pathsep}{lib}{os.sep}*"


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, never briefly by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port on ``address`` that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def port_free(address: str, port: int) -> bool:
    """Whether a server could bind ``address:port`` now (as servers bind: SO_REUSEADDR, so a
    port with only connections in TIME_WAIT counts as free)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def _bolt_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False


def _read_pid(config: LocalServerConfig) -> int | None:
    try:
        pid = int(config.pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and _is_launcher(pid) else None


def _is_launcher(pid: int) -> bool:
    # A stale pid file may name a process that has nothing to do with us.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return not sys.platform.startswith("linux")
    return b"org.twinkg.server.Launcher" in cmdline


def status(config: LocalServerConfig) -> ServerStatus:
    """Whether a launcher started from ``config.home`` is alive."""
    pid = _read_pid(config)
    return ServerStatus(pid is not None, pid, config.bolt_uri)


def start(
    config: LocalServerConfig,
    *,
    wait_s: float = 180.0,
    parent_pid: int | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> ServerStatus:
    """Start the server in the background and wait until Bolt accepts connections.

    With ``parent_pid`` the server stops by itself when that process exits (tests use this).
    Already running: returns its status. Port taken by another process: :class:`PortInUseError`.
    """
    current = status(config)
    if current.running:
        return current
    if not port_free(config.address, config.port):
        raise PortInUseError(
            f"port {config.port} on {config.address} is already in use; "
            "set TWINKG_NEO4J_BOLT_PORT to another port"
        )
    if config.conf is not None and not config.conf.is_file():
        raise ServerError(f"Neo4j settings file {config.conf} does not exist")
    classpath = build(log=log)
    config.home.mkdir(parents=True, exist_ok=True)
    password_file = config.home / "password"
    write_secret(password_file, config.password)
    command = [
        config.java,
        f"-Xms{config.heap}",
        f"-Xmx{config.heap}",
        *_JVM_FLAGS,
        "-cp",
        classpath,
        "org.twinkg.server.Launcher",
        "--home",
        str(config.home / "data"),
        "--address",
        config.address,
        "--port",
        str(config.port),
        "--password-file",
        str(password_file),
        "--pagecache",
        config.pagecache,
        "--tx-memory",
        config.tx_memory,
    ]
    if parent_pid is not None:
        command += ["--parent-pid", str(parent_pid)]
    if config.conf is not None:
        command += ["--conf", str(config.conf.resolve())]
    log(f"starting Neo4j on {config.bolt_uri}")
    with config.log_file.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    config.pid_file.write_text(str(process.pid), encoding="utf-8")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        code = process.poll()
        text = config.log_file.read_text(encoding="utf-8", errors="replace")
        if code is not None or ERROR_MARK in text:
            config.pid_file.unlink(missing_ok=True)
            _raise_start_failure(config, text, code)
        if READY_MARK in text and _bolt_open(config.address, config.port):
            return ServerStatus(True, process.pid, config.bolt_uri)
        time.sleep(0.25)
    stop(config)
    raise ServerError(f"Neo4j did not become ready within {wait_s:.0f} s; see {config.log_file}")


def _raise_start_failure(config: LocalServerConfig, text: str, code: int | None) -> None:
    errors = [
        line.split(ERROR_MARK, 1)[1].strip() for line in text.splitlines() if ERROR_MARK in line
    ]
    if code == 3 or any("already in use" in e for e in errors):
        raise PortInUseError(f"port {config.port} on {config.address} is already in use")
    detail = errors[0] if errors else f"the launcher exited with status {code}"
    raise ServerError(f"Neo4j did not start: {detail} (log: {config.log_file})")


def stop(config: LocalServerConfig, *, wait_s: float = 60.0) -> bool:
    """Stop the server cleanly (SIGTERM, then SIGKILL after ``wait_s``); False if none ran."""
    pid = _read_pid(config)
    if pid is None:
        config.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    config.pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return _state(pid) != "Z"


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0] if sys.platform.startswith("linux") else ""
