"""Where a broker is and how a client proves who it is (no MQTT library needed to say so)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from twinkg.connect.mqtt.pki import Credentials
from twinkg.ontology.errors import ConfigError


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """How to reach a broker: ``mqtts://host:port`` (TLS) or ``mqtt://host:port``, and the
    certificate the client authenticates with (required for ``mqtts``)."""

    url: str
    credentials: Credentials | None
    timeout_s: float = 10.0
    keepalive_s: int = 30
    session_expiry_s: int = 3600

    def address(self) -> tuple[str, int, bool]:
        """Host, port and whether TLS is used (:class:`ConfigError` for a bad URL)."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"TWINKG_MQTT_URL {self.url!r} is not mqtt(s)://host[:port]")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigError(f"TWINKG_MQTT_URL {self.url!r} has a bad port") from None
        if tls and self.credentials is None:
            raise ConfigError("an mqtts:// broker needs a CA, a client certificate and its key")
        return parts.hostname, port, tls
