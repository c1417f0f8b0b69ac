"""All of TwinKG's settings, in one place (environment variables prefixed ``TWINKG_``).

Built on demand, never at import. Secrets are :class:`~pydantic.SecretStr`. Without
``TWINKG_NEO4J_URI`` TwinKG runs its own Neo4j under ``TWINKG_HOME`` (default ``./var``) with a
password generated on first use and kept in ``var/neo4j/password`` (mode 0600).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from twinkg.connect.mqtt.broker import SERVICE_USER, BrokerConfig
from twinkg.connect.mqtt.endpoint import MqttEndpoint
from twinkg.connect.mqtt.pki import Credentials
from twinkg.kg.local_server import LocalServerConfig, write_secret
from twinkg.ontology.errors import ConfigError

_SIZE = r"^[0-9]+[kKmMgG]?$"


class Settings(BaseSettings):
    """TwinKG configuration; every field can be set as ``TWINKG_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="TWINKG_", extra="ignore", frozen=True)

    home: Path = Field(default=Path("var"), description="folder for local state (server data)")
    neo4j_uri: str | None = Field(
        default=None, description="use this Neo4j instead of the local one"
    )
    neo4j_user: str = "neo4j"
    neo4j_password: SecretStr | None = None
    neo4j_database: str | None = Field(default=None, description="database name (server default)")
    neo4j_bolt_port: int = Field(default=7687, ge=1, le=65535)
    neo4j_heap: str = Field(default="2g", pattern=_SIZE)
    neo4j_pagecache: str = Field(default="1g", pattern=_SIZE)
    neo4j_tx_memory: str = Field(default="2g", pattern=_SIZE)
    neo4j_conf: Path | None = Field(
        default=None, description="extra neo4j.conf-style settings for the local server"
    )
    neo4j_start_timeout_s: float = Field(default=180.0, gt=0)
    java: str = "java"
    query_timeout_s: float = Field(default=30.0, gt=0)
    query_row_cap: int = Field(default=1000, ge=1)
    query_max_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="largest answer of read-only Cypher, in bytes of JSON rows (cut: truncated)",
    )
    seed_batch_size: int = Field(default=5000, ge=1, le=100_000)
    ingest_clock_skew_s: float = Field(
        default=300.0, ge=0, description="how far in the future a reading's timestamp may be"
    )
    ingest_window_s: float = Field(default=60.0, gt=0, description="window of the aggregates")
    ingest_alarm_score: float = Field(
        default=0.8, gt=0.5, le=1.0, description="anomaly peak that raises a critical alarm"
    )
    ingest_realarm_s: float = Field(
        default=3600.0,
        gt=0,
        description="a standing anomaly or envelope alarm older than this is raised anew",
    )
    reclassify_min_gap_s: float = Field(
        default=5.0,
        ge=0,
        description="a background reclassification (OWL inference after ingest) starts at "
        "least this long after the previous one ended; a caller that waits for one is never "
        "held back (0: back to back)",
    )
    ingest_max_points: int = Field(
        default=5_000_000, ge=1, description="largest batch one ingest accepts"
    )
    ingest_max_graph_records: int = Field(
        default=300_000,
        ge=1,
        description="most Neo4j nodes and relationships one batch may write (one transaction; "
        "about 100,000 window aggregates fit the default 2g of TWINKG_NEO4J_TX_MEMORY)",
    )
    ingest_json_max_depth: int = Field(
        default=32,
        ge=4,
        le=500,
        description="deepest JSON nesting a telemetry batch may have (a batch of points needs 3)",
    )
    checkpoint_url: str | None = Field(
        default=None,
        description="where agent runs are checkpointed: a postgresql:// URL "
        "(default: SQLite under TWINKG_HOME/agents)",
    )
    agents_stale_after_s: float = Field(
        default=300.0, gt=0, description="a sensor silent this long is a finding"
    )
    agents_lookback_s: float = Field(
        default=86_400.0, gt=0, description="how far back the agents look for undecided findings"
    )
    agents_baseline_s: float = Field(
        default=600.0, gt=0, description="window before a finding that symptoms are measured on"
    )
    agent_threads: int = Field(
        default=8,
        ge=1,
        le=64,
        description="agent threads in each `twinkg run` process that takes work items over "
        "MQTT: that many assets decided on at once, each under its lease (decision 0084)",
    )
    agents_watch_s: float = Field(
        default=0.0,
        ge=0,
        description="how long the new anomalies of an asset the agents last decided to watch "
        "wait before they are decided on (0: never; at most agents_lookback_s)",
    )
    sim_lookahead_workers: int = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1),
        ge=1,
        le=64,
        description="processes that try the look-ahead's candidates at once in a simulated run "
        "(forked; 1: one after another; default: the machine's cores, at most 4)",
    )
    sim_opcua_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="limit of one call to a simulated plant served over OPC UA (sim run --over "
        "opcua): connect, write, step, read",
    )
    llm_base_url: str | None = Field(
        default=None, description="an OpenAI-compatible endpoint: the agents then plan with it"
    )
    llm_model: str | None = Field(default=None, description="the chat model's name")
    llm_api_key: SecretStr | None = Field(default=None, description="the endpoint's key, if any")
    approval_ttl_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="how long an approval stays valid"
    )
    approval_request_ttl_s: float = Field(
        default=28_800.0,
        gt=0,
        le=7 * 86_400,
        description="how long an approval request may be approved (after it, only rejected)",
    )
    api_host: str = Field(default="127.0.0.1", description="where `twinkg serve` listens")
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="largest request body the API accepts"
    )
    api_keys_file: Path | None = Field(
        default=None, description="hashed API keys (default TWINKG_HOME/api-keys.json)"
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="HMAC secret for HS256 bearer tokens"
    )
    jwt_public_key_file: Path | None = Field(
        default=None, description="PEM public key for RS256/ES256 bearer tokens"
    )
    jwt_issuer: str | None = Field(default=None, description="required `iss` of bearer tokens")
    jwt_audience: str = Field(default="twinkg", description="required `aud` of bearer tokens")
    oidc_issuer: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s]+$",
        description="single sign-on: the OpenID Connect provider's issuer URL (off when unset)",
    )
    oidc_client_id: str = Field(
        default="twinkg-console", min_length=1, description="the console's client id there"
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="its secret, when the provider holds the console confidential"
    )
    oidc_scope: str = Field(
        default="openid profile email", description="the scopes the console asks for"
    )
    oidc_roles_claim: str = Field(
        default="roles",
        min_length=1,
        description="the ID token claim with the TwinKG role names (dotted: realm_access.roles)",
    )
    oidc_ca_file: Path | None = Field(
        default=None, description="trust the provider's TLS certificate by this CA bundle"
    )
    oidc_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="each request to the provider"
    )
    tls_cert_file: Path | None = Field(default=None, description="serve HTTPS with this cert")
    tls_key_file: Path | None = Field(default=None, description="the certificate's private key")
    tls_client_ca_file: Path | None = Field(
        default=None, description="require client certificates signed by this CA (mutual TLS)"
    )
    audit_log: Path | None = Field(
        default=None, description="the audit log (default TWINKG_HOME/audit/audit.jsonl)"
    )
    log_level: str = Field(
        default="WARNING",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR)$",
        description="what `twinkg run` logs of its own (libraries log warnings): WARNING, or "
        "INFO for each OPC UA write-back too",
    )
    sparql_timeout_s: float = Field(default=30.0, gt=0, description="SPARQL time limit")
    sparql_row_cap: int = Field(default=10_000, ge=1, description="most SPARQL rows returned")
    projection_poll_s: float = Field(
        default=0.5, gt=0, description="how often the SPARQL projection reads the change log"
    )
    events_poll_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="how often a `GET /events` stream looks for new decisions and findings",
    )
    events_keepalive_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="an idle `GET /events` stream sends a comment line this often, so proxies "
        "keep it open (FastAPI's own ping after 15 s of silence then never fires)",
    )
    projection_path: Path | None = Field(
        default=None, description="the SPARQL projection's folder (default TWINKG_HOME/projection)"
    )
    sparql_workers: int = Field(
        default=4, ge=1, le=64, description="SPARQL worker processes (queries running at once)"
    )
    sparql_user_concurrency: int = Field(
        default=2, ge=1, description="SPARQL queries one caller may have running or waiting"
    )
    sparql_queue: int = Field(
        default=8, ge=0, description="SPARQL requests that may wait for a worker"
    )
    sparql_queue_wait_s: float = Field(
        default=10.0, ge=0, description="longest wait for a SPARQL worker before sparql_busy"
    )
    sparql_worker_memory_mb: int = Field(
        default=2048, ge=0, description="address-space limit of each SPARQL worker (0: none)"
    )
    sparql_result_max_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="largest SPARQL answer, in bytes"
    )

    service_metrics_port: int = Field(
        default=9464,
        ge=1,
        le=65535,
        description="where `twinkg service start` serves the service's metrics (127.0.0.1)",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="an existing MQTT 5 broker (mqtts://host:port); unset: TwinKG's own Mosquitto",
    )
    mqtt_port: int = Field(default=8883, ge=1, le=65535, description="the local broker's port")
    mqtt_ca_file: Path | None = Field(default=None, description="CA of the broker's certificate")
    mqtt_cert_file: Path | None = Field(default=None, description="the workers' client certificate")
    mqtt_key_file: Path | None = Field(default=None, description="the client certificate's key")
    mqtt_client_id: str = Field(
        default="twinkg-ingest-1",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="this worker's MQTT client id (stable: its session survives a restart)",
    )
    mqtt_receive_maximum: int = Field(
        default=32, ge=1, le=65535, description="most unacknowledged messages a worker holds"
    )
    mqtt_group_max: int = Field(
        default=8,
        ge=1,
        le=256,
        description="most waiting telemetry messages a worker ingests together as one batch",
    )
    mqtt_timeout_s: float = Field(default=10.0, gt=0, description="MQTT connect/publish limit")
    mqtt_max_payload_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="largest MQTT message the broker takes"
    )

    opcua_application_uri: str = Field(
        default="urn:twinkg:opcua-client",
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$",
        description="the twin's OPC UA application URI (its certificate's SubjectAltName)",
    )
    opcua_cert_file: Path | None = Field(
        default=None, description="the twin's OPC UA certificate (unset: made under HOME/opcua)"
    )
    opcua_key_file: Path | None = Field(default=None, description="that certificate's key (PEM)")
    opcua_server_cert_file: Path | None = Field(
        default=None, description="the only OPC UA server certificate trusted (pinned)"
    )
    opcua_timeout_s: float = Field(default=10.0, gt=0, description="OPC UA request/connect limit")
    opcua_publishing_interval_ms: float = Field(
        default=500.0, gt=0, description="the OPC UA subscription's publishing interval"
    )
    opcua_batch_points: int = Field(
        default=500, ge=1, description="flush an OPC UA telemetry batch at this many points"
    )
    opcua_batch_ms: float = Field(
        default=1000.0, gt=0, description="…or when its oldest point waited this long"
    )
    opcua_reconnect_max_s: float = Field(
        default=30.0, gt=0, description="longest back-off between OPC UA reconnection tries"
    )
    opcua_writeback_poll_s: float = Field(
        default=1.0, gt=0, description="how often the write-back looks for applied actions"
    )
    opcua_writeback_max_age_s: float = Field(
        default=600.0, gt=0, description="an action applied longer ago is never written back"
    )
    opcua_servers: list[str] = Field(
        default_factory=list,
        description="OPC UA servers `twinkg run` subscribes to, each URL=MAPPING (a JSON list; "
        "--opcua wins)",
    )
    opcua_write_back: bool = Field(
        default=False,
        description="`twinkg run` writes allowed, recorded actions back to those servers",
    )

    edge_site: str | None = Field(
        default=None, description="the site an edge runtime serves (its producer's only site)"
    )
    edge_node: str = Field(
        default="edge-1",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="the edge's name: its producer certificate and its topics' node",
    )
    edge_area: str = Field(
        default="edge",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="the area segment of the edge's telemetry topic",
    )
    edge_inbox: Path | None = Field(
        default=None, description="folder of JSON telemetry batches the edge takes in"
    )
    edge_buffer_max_entries: int = Field(
        default=100_000, ge=1, description="most telemetry batches the edge buffer holds"
    )
    edge_buffer_max_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=1024, description="most bytes of telemetry it holds"
    )
    edge_trusted_key: Path | None = Field(
        default=None, description="a file with a bundle signing key the edge trusts"
    )
    edge_resend_s: float = Field(
        default=120.0, gt=0, description="seconds before an unconfirmed entry is sent again"
    )
    edge_window: int = Field(
        default=64, ge=1, le=65535, description="most entries in flight without a receipt"
    )
    edge_budget_ms: float = Field(
        default=1000.0,
        gt=0,
        description="a local decision's budget in ms (batch taken in to decision on disk); "
        "each decision over it is logged and counted",
    )
    edge_ca_file: Path | None = Field(default=None, description="CA of the central broker")
    edge_cert_file: Path | None = Field(default=None, description="the edge's producer certificate")
    edge_key_file: Path | None = Field(default=None, description="that certificate's key")

    otlp_endpoint: str | None = Field(
        default=None,
        description="export OpenTelemetry traces over OTLP/HTTP here (…/v1/traces); unset: off",
    )
    otel_service_name: str = Field(default="twinkg", description="service.name of the traces")

    @model_validator(mode="after")
    def _watch_within_lookback(self) -> Settings:
        # a watched asset's anomalies wait the watch out; past the look-back they would be lost
        if self.agents_watch_s > self.agents_lookback_s:
            raise ValueError(
                f"agents_watch_s ({self.agents_watch_s:g} s) exceeds agents_lookback_s "
                f"({self.agents_lookback_s:g} s): anomalies would age out unseen"
            )
        return self


def load_settings() -> Settings:
    """The settings from the environment; :class:`ConfigError` naming the first bad one."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "TWINKG_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(f"{field}: {first['msg']}") from None
    except SettingsError as exc:  # a list setting (TWINKG_OPCUA_SERVERS) that is not JSON
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "settings"
        raise ConfigError(f"TWINKG_{field.upper()}: not valid JSON ({exc})") from None


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach Neo4j; ``local`` when it is TwinKG's own server."""

    uri: str
    user: str
    password: SecretStr
    database: str | None
    local: bool


def telemetry_dir(settings: Settings) -> Path:
    """Where the telemetry log and quarantine live."""
    return settings.home.resolve() / "telemetry"


def detector_dir(settings: Settings) -> Path:
    """Where fitted anomaly detectors are kept."""
    return settings.home.resolve() / "detectors"


def api_keys_path(settings: Settings) -> Path:
    """Where the hashed API keys are kept."""
    return settings.api_keys_file or settings.home.resolve() / "api-keys.json"


def audit_log_path(settings: Settings) -> Path:
    """Where the audit log of state-changing requests is appended."""
    return settings.audit_log or settings.home.resolve() / "audit" / "audit.jsonl"


def projection_folder(settings: Settings) -> Path:
    """Where the SPARQL projection persists (``TWINKG_PROJECTION_PATH``, else under home)."""
    return settings.projection_path or settings.home.resolve() / "projection"


def broker_config(settings: Settings) -> BrokerConfig:
    """The local Mosquitto broker's configuration (``var/broker`` under home)."""
    return BrokerConfig(
        home=settings.home.resolve() / "broker",
        port=settings.mqtt_port,
        max_packet_bytes=settings.mqtt_max_payload_bytes,
    )


def mqtt_endpoint(settings: Settings) -> MqttEndpoint:
    """How the twin's workers reach the broker: ``TWINKG_MQTT_URL`` with the certificate files
    given, else the local broker with the service client's certificate."""
    local = broker_config(settings)
    given = (settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file)
    if any(path is not None for path in given):
        if None in given:
            raise ConfigError(
                "TWINKG_MQTT_CA_FILE, TWINKG_MQTT_CERT_FILE and TWINKG_MQTT_KEY_FILE go together"
            )
        ca, cert, key = (Path(str(path)) for path in given)
        credentials: Credentials | None = Credentials(ca, cert, key)
    elif settings.mqtt_url is None:
        credentials = local.client(SERVICE_USER)
    else:
        credentials = None
    return MqttEndpoint(
        url=settings.mqtt_url or local.url,
        credentials=credentials,
        timeout_s=settings.mqtt_timeout_s,
    )


def edge_dir(settings: Settings) -> Path:
    """Where an edge runtime keeps its bundles, chain and buffer, and the central twin its
    bundle signing key (``var/edge``)."""
    return settings.home.resolve() / "edge"


def edge_endpoint(settings: Settings) -> MqttEndpoint:
    """How the edge reaches the central broker: ``TWINKG_MQTT_URL`` (else the local broker)
    with ``TWINKG_EDGE_CA_FILE``/``_CERT_FILE``/``_KEY_FILE``, else the certificate the local
    broker issued to ``TWINKG_EDGE_NODE``."""
    local = broker_config(settings)
    given = (settings.edge_ca_file, settings.edge_cert_file, settings.edge_key_file)
    if any(path is not None for path in given):
        if None in given:
            raise ConfigError(
                "TWINKG_EDGE_CA_FILE, TWINKG_EDGE_CERT_FILE and TWINKG_EDGE_KEY_FILE go together"
            )
        ca, cert, key = (Path(str(path)) for path in given)
        credentials = Credentials(ca, cert, key)
    else:
        credentials = local.client(settings.edge_node)
    return MqttEndpoint(
        url=settings.mqtt_url or local.url,
        credentials=credentials,
        timeout_s=settings.mqtt_timeout_s,
    )


def events_cursor(settings: Settings) -> Path:
    """Where the event publisher keeps the last chain index it published."""
    return settings.home.resolve() / "mqtt" / "events.cursor"


def service_dir(settings: Settings) -> Path:
    """Where `twinkg service start` keeps the background service's pid and log."""
    return settings.home.resolve() / "service"


def findings_cursor(settings: Settings) -> Path:
    """Where the event publisher keeps the last change log entry whose findings it published."""
    return settings.home.resolve() / "mqtt" / "findings.cursor"


def sim_opcua_dir(settings: Settings) -> Path:
    """Where a simulated plant served over OPC UA and its client keep their certificates."""
    return settings.home.resolve() / "opcua" / "sim"


def dead_letter_dir(settings: Settings) -> Path:
    """Where messages refused whole are kept with their reason."""
    return telemetry_dir(settings) / "refused"


def checkpoint_target(settings: Settings) -> str:
    """Where agent runs are checkpointed: the Postgres URL, or the SQLite file."""
    if settings.checkpoint_url:
        return settings.checkpoint_url
    return str(settings.home.resolve() / "agents" / "checkpoints.sqlite")


def local_server_config(settings: Settings) -> LocalServerConfig:
    """The local server's configuration, creating its password on first use."""
    home = settings.home.resolve() / "neo4j"
    return LocalServerConfig(
        home=home,
        port=settings.neo4j_bolt_port,
        password=_local_password(settings, home).get_secret_value(),
        heap=settings.neo4j_heap,
        pagecache=settings.neo4j_pagecache,
        tx_memory=settings.neo4j_tx_memory,
        java=settings.java,
        conf=settings.neo4j_conf,
    )


def _local_password(settings: Settings, home: Path) -> SecretStr:
    if settings.neo4j_password is not None:
        return settings.neo4j_password
    path = home / "password"
    if path.exists():
        return SecretStr(path.read_text(encoding="utf-8").strip())
    password = secrets.token_urlsafe(24)
    write_secret(path, password)
    return SecretStr(password)


def connection(settings: Settings) -> Connection:
    """Where the graph lives: ``TWINKG_NEO4J_URI`` if set, else the local server."""
    if settings.neo4j_uri:
        password = settings.neo4j_password or SecretStr("")
        return Connection(
            settings.neo4j_uri, settings.neo4j_user, password, settings.neo4j_database, local=False
        )
    local = local_server_config(settings)
    return Connection(
        local.bolt_uri, "neo4j", SecretStr(local.password), settings.neo4j_database, local=True
    )
