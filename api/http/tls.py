"""HTTPS for ``twinkg serve``, and mutual TLS for edge producers (uvicorn's SSL options).

With ``TWINKG_TLS_CLIENT_CA_FILE`` set, the TLS handshake demands a client certificate signed by
that CA. uvicorn does not hand the certificate to the app, so a producer still authenticates
with its API key or token: the certificate proves the machine, the key the identity.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from twinkg.api.settings import Settings
from twinkg.ontology.errors import ConfigError


def _readable(path: Path, setting: str) -> str:
    if not path.is_file():
        raise ConfigError(f"{setting}: no such file {path}")
    return str(path)


def uvicorn_ssl_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``: none for plain HTTP, TLS, or mutual TLS."""
    cert, key, client_ca = (
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_client_ca_file,
    )
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError("TWINKG_TLS_CLIENT_CA_FILE needs TWINKG_TLS_CERT_FILE and _KEY_FILE")
        return {}
    if cert is None or key is None:
        raise ConfigError("TWINKG_TLS_CERT_FILE and TWINKG_TLS_KEY_FILE go together")
    options: dict[str, Any] = {
        "ssl_certfile": _readable(cert, "TWINKG_TLS_CERT_FILE"),
        "ssl_keyfile": _readable(key, "TWINKG_TLS_KEY_FILE"),
    }
    if client_ca is not None:
        options["ssl_ca_certs"] = _readable(client_ca, "TWINKG_TLS_CLIENT_CA_FILE")
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options
