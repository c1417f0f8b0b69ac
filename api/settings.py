"""All of TwinKG's settings, in one place (environment variables prefixed ``TWINKG_``).

Built on demand, never at import. Secrets are :class:`~pydantic.SecretStr`. Without
``TWINKG_NEO4J_URI`` TwinKG runs its own Neo4j under ``TWINKG_HOME`` (default ``./var``) with a
password generated on first use and kept in ``var/neo4j/password`` (mode 0600).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from kg.local_server import LocalServerConfig, write_secret

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
    seed_batch_size: int = Field(default=5000, ge=1, le=100_000)
    ingest_clock_skew_s: float = Field(
        default=300.0, ge=0, description="how far in the future a reading's timestamp may be"
    )
    ingest_window_s: float = Field(default=60.0, gt=0, description="window of the aggregates")
    ingest_alarm_score: float = Field(
        default=0.8, gt=0.5, le=1.0, description="anomaly peak that raises a critical alarm"
    )
    ingest_max_points: int = Field(
        default=5_000_000, ge=1, description="largest batch one ingest accepts"
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
    llm_base_url: str | None = Field(
        default=None, description="an OpenAI-compatible endpoint: the agents then plan with it"
    )
    llm_model: str | None = Field(default=None, description="the chat model's name")
    llm_api_key: SecretStr | None = Field(default=None, description="the endpoint's key, if any")
    approval_ttl_s: float = Field(
        default=1800.0, gt=0, le=86_400, description="how long an approval stays valid"
    )


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
