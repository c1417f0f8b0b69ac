"""The Mosquitto broker TwinKG runs for itself when no ``TWINKG_MQTT_URL`` is configured.

Like the local Neo4j (``kg.local_server``) it lives under the configured home (``var/broker``):
the configuration this module writes, its certificates (``connect.mqtt.pki``), the ACL file, the
list of issued clients, the persistence folder, the log and the pid file. The one listener is
MQTT over TLS on loopback, every client must present a certificate signed by the local CA, its
common name is its user name, and the ACL file grants each user the topics of its role
(``connect.mqtt.topics.acl_lines``); anonymous clients are refused. Decision 0056.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from twinkg.connect.mqtt.pki import Credentials, LocalCa
from twinkg.connect.mqtt.topics import Role, acl_lines, segment
from twinkg.kg.local_server import port_free
from twinkg.ontology.errors import ConfigError, PortInUseError, ServerError

SERVICE_USER = "twinkg-service"
"""The client the twin's own workers connect as."""

INSTALL_HINT = "install Debian's mosquitto (`apt-get install mosquitto`; `make setup` does as root)"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """Where and how the local broker runs (built from the settings in ``api``)."""

    home: Path
    port: int = 8883
    address: str = "127.0.0.1"
    max_queued_messages: int = 100_000
    max_packet_bytes: int = 16 * 1024 * 1024
    executable: str = "mosquitto"

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"mqtts://{self.address}:{self.port}"

    @property
    def pki(self) -> Path:
        """The folder of the CA, the broker's certificate and the clients' certificates."""
        return self.home / "pki"

    @property
    def pid_file(self) -> Path:
        """The running broker's process id."""
        return self.home / "mosquitto.pid"

    @property
    def log_file(self) -> Path:
        """The broker's log."""
        return self.home / "mosquitto.log"

    def client(self, name: str) -> Credentials:
        """The credentials issued to client ``name`` (they may not exist yet)."""
        folder = self.pki / "clients"
        return Credentials(self.pki / "ca.crt", folder / f"{name}.crt", folder / f"{name}.key")


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    """Whether the local broker runs, its pid and where it listens."""

    running: bool
    pid: int | None
    url: str


@dataclass(frozen=True, slots=True)
class IssuedClient:
    """A client the local CA issued a certificate to, with its role and (producers) its site."""

    name: str
    role: Role
    site: str | None


def _clients_file(config: BrokerConfig) -> Path:
    return config.home / "clients.json"


def issued(config: BrokerConfig) -> list[IssuedClient]:
    """Every client issued so far, in the order they were issued."""
    try:
        rows = json.loads(_clients_file(config).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{_clients_file(config)} cannot be read: {exc}") from None
    return [IssuedClient(r["name"], Role(r["role"]), r.get("site")) for r in rows]


def issue(config: BrokerConfig, name: str, role: Role, *, site: str | None = None) -> Credentials:
    """Issue client ``name`` a certificate for ``role`` (a producer: bound to ``site``), grant
    it its topics and, when the broker runs, restart it so the grants hold. Issuing a name
    again makes a new key and certificate and replaces its grants (the old certificate still
    authenticates until it expires: the CA keeps no revocation list)."""
    segment(name, "client name")
    acl_lines(name, role, site)  # refuses a producer without a site before anything is written
    ca = LocalCa(config.pki)
    credentials = ca.issue(name, config.pki / "clients")
    clients = [c for c in issued(config) if c.name != name]
    clients.append(IssuedClient(name, role, site if role is Role.PRODUCER else None))
    rows = [{"name": c.name, "role": c.role.value, "site": c.site} for c in clients]
    _clients_file(config).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    _write_acl(config, clients)
    if _read_pid(config) is not None:
        # Mosquitto 2.0 rereads its ACL on SIGHUP, but drops the subscriptions of disconnected
        # persistent sessions as it does (telemetry held for a stopped worker would then be
        # lost). A clean restart saves and restores every session; clients reconnect.
        stop(config)
        start(config)
    return credentials


def _write_acl(config: BrokerConfig, clients: list[IssuedClient]) -> None:
    lines = ["# written by TwinKG from clients.json; `twinkg broker issue` rewrites it", ""]
    for client in clients:
        lines += acl_lines(client.name, client.role, client.site)
    (config.home / "acl").write_text("\n".join(lines), encoding="utf-8")


def prepare(config: BrokerConfig) -> Path:
    """Make what the broker needs (CA, its certificate, the service client, ACL, configuration)
    and return the configuration file. Existing certificates are kept."""
    config.home.mkdir(parents=True, exist_ok=True)
    ca = LocalCa(config.pki)
    ca.ensure()
    server = Credentials(ca.cert_file, config.pki / "broker.crt", config.pki / "broker.key")
    if not (server.cert.is_file() and server.key.is_file()):
        ca.issue("broker", config.pki, server_hosts=("localhost", "127.0.0.1", config.address))
    if not config.client(SERVICE_USER).cert.is_file() or all(
        c.name != SERVICE_USER for c in issued(config)
    ):
        issue(config, SERVICE_USER, Role.SERVICE)
    _write_acl(config, issued(config))
    (config.home / "data").mkdir(exist_ok=True)
    conf = config.home / "mosquitto.conf"
    conf.write_text(_conf_text(config, server), encoding="utf-8")
    return conf


def _conf_text(config: BrokerConfig, server: Credentials) -> str:
    user = pwd.getpwuid(os.geteuid()).pw_name  # as root Mosquitto would switch to `mosquitto`
    home = config.home.resolve()
    return "\n".join(
        (
            "# written by TwinKG (connect/mqtt/broker.py) on every start; edits are lost",
            f"user {user}",
            "per_listener_settings false",
            "allow_anonymous false",
            "persistence true",
            f"persistence_location {home / 'data'}/",
            "autosave_interval 5",
            f"log_dest file {home / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
            f"max_queued_messages {config.max_queued_messages}",
            "max_queued_bytes 0",
            f"max_packet_size {config.max_packet_bytes}",
            f"acl_file {home / 'acl'}",
            f"listener {config.port} {config.address}",
            "protocol mqtt",
            f"cafile {server.ca.resolve()}",
            f"certfile {server.cert.resolve()}",
            f"keyfile {server.key.resolve()}",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
            "",
        )
    )


def _read_pid(config: BrokerConfig) -> int | None:
    try:
        pid = int(config.pid_file.read_text(encoding="utf-8").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"mosquitto" in cmdline and _state(pid) != "Z" else None


def _state(pid: int) -> str:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return "Z"
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "Z"


def status(config: BrokerConfig) -> BrokerStatus:
    """Whether a broker started from ``config.home`` is alive."""
    pid = _read_pid(config)
    return BrokerStatus(pid is not None, pid, config.url)


def _tls_open(config: BrokerConfig) -> bool:
    """Whether the listener completes a TLS handshake with the service client's certificate."""
    credentials = config.client(SERVICE_USER)
    context = ssl.create_default_context(cafile=str(credentials.ca))
    context.load_cert_chain(str(credentials.cert), str(credentials.key))
    try:
        with (
            socket.create_connection((config.address, config.port), timeout=1.0) as raw,
            context.wrap_socket(raw, server_hostname=config.address),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def start(config: BrokerConfig, *, wait_s: float = 30.0) -> BrokerStatus:
    """Start the broker in the background and wait until its TLS listener answers.

    Already running: its status. Port taken: :class:`PortInUseError`. Mosquitto missing or
    failing to start: :class:`ServerError` with the reason from its log."""
    current = status(config)
    if current.running:
        return current
    if shutil.which(config.executable) is None:
        raise ServerError(f"{config.executable} is not on PATH: {INSTALL_HINT}")
    if not port_free(config.address, config.port):
        raise PortInUseError(
            f"port {config.port} on {config.address} is already in use; "
            "set TWINKG_MQTT_PORT to another port"
        )
    conf = prepare(config)
    with config.log_file.open("ab") as out:
        process = subprocess.Popen(
            [config.executable, "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    config.pid_file.write_text(str(process.pid), encoding="utf-8")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            config.pid_file.unlink(missing_ok=True)
            raise ServerError(
                f"mosquitto exited with status {process.returncode}: {_last_error(config)}"
            )
        if _tls_open(config):
            return BrokerStatus(True, process.pid, config.url)
        time.sleep(0.1)
    stop(config)
    raise ServerError(f"mosquitto did not answer within {wait_s:.0f} s; see {config.log_file}")


def _last_error(config: BrokerConfig) -> str:
    try:
        lines = config.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"no log at {config.log_file}"
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or [f"nothing in {config.log_file}"])[-1].strip()


def stop(config: BrokerConfig, *, wait_s: float = 30.0, kill: bool = False) -> bool:
    """Stop the broker (SIGTERM, so it saves its persistent state; SIGKILL after ``wait_s``,
    or at once with ``kill``, as a failover drill does); False if none ran."""
    pid = _read_pid(config)
    if pid is None:
        config.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _state(pid) != "Z":
        time.sleep(0.05)
    if _state(pid) != "Z":
        os.kill(pid, signal.SIGKILL)
    config.pid_file.unlink(missing_ok=True)
    return True
