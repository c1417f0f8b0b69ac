"""Mutual TLS for edge producers: a real uvicorn over real TLS, certificates made for the test.

The TLS layer admits only machines with a certificate from the configured CA; the API key on
top still says who is calling.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Annotated

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from twinkg.api.errors import AuthenticationError, error_headers
from twinkg.api.http.auth import requires
from twinkg.api.http.tls import uvicorn_ssl_options
from twinkg.api.security import Authenticator, KeyStore, Permission, Principal, Role
from twinkg.api.settings import Settings
from twinkg.kg.local_server import free_port
from twinkg.ontology.errors import ConfigError


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Issued:
    cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert_path, key_path)


class Authority:
    """A throwaway certificate authority."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.issued = _write(folder, name, self.cert, self.key)

    def issue(self, name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
                critical=False,
            )
        return _write(self.folder, name, builder.sign(self.key, hashes.SHA256()), key)


@dataclass(frozen=True)
class Served:
    url: str
    ca: Authority
    client: Issued
    stranger: Issued
    api_key: str


def _app(keys: KeyStore) -> FastAPI:
    app = FastAPI()
    app.state.authenticator = Authenticator(keys, None)

    @app.exception_handler(AuthenticationError)
    async def unauthenticated(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthenticationError)
        body = {"error": {"code": exc.code, "message": str(exc), "details": None}}
        return JSONResponse(body, status_code=401, headers=error_headers(exc))

    @app.get("/whoami")
    def whoami(who: Annotated[Principal, Depends(requires(Permission.INGEST))]) -> dict[str, str]:
        return {"name": who.name}

    return app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("mtls")
    ca, other = Authority(folder, "plant-ca"), Authority(folder, "other-ca")
    server_cert = ca.issue("twinkg-server", server=True)
    keys = KeyStore(folder / "keys.json")
    _, api_key = keys.create(name="edge-7", roles=[Role.PRODUCER])
    settings = Settings(
        home=folder,
        tls_cert_file=server_cert.cert,
        tls_key_file=server_cert.key,
        tls_client_ca_file=ca.issued.cert,
    )
    port = free_port()
    config = uvicorn.Config(
        _app(keys),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **uvicorn_ssl_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Served(
            f"https://127.0.0.1:{port}",
            ca,
            ca.issue("edge-7", server=False),
            other.issue("intruder", server=False),
            api_key,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _context(served: Served, cert: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(served.ca.issued.cert))
    if cert is not None:
        context.load_cert_chain(str(cert.cert), str(cert.key))
    return context


def _client(served: Served, cert: Issued | None) -> httpx.Client:
    return httpx.Client(verify=_context(served, cert), timeout=10)


def _tls12_handshake(served: Served, cert: Issued | None) -> str:
    """Shake hands over TLS 1.2, where a refused client certificate fails the handshake itself
    (TLS 1.3 reports it after the handshake: httpx then sees the connection closed)."""
    context = _context(served, cert)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    host, port = served.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return str(tls.version())


def test_the_right_client_certificate_and_key_get_through(served: Served) -> None:
    with _client(served, served.client) as client:
        response = client.get(f"{served.url}/whoami", headers={"X-API-Key": served.api_key})
        assert response.status_code == 200 and response.json() == {"name": "edge-7"}
        assert client.get(f"{served.url}/whoami").status_code == 401  # the machine, not who
    assert _tls12_handshake(served, served.client) == "TLSv1.2"


@pytest.mark.parametrize("which", ["none", "another CA's"])
def test_without_a_certificate_from_the_ca_the_handshake_fails(served: Served, which: str) -> None:
    cert = None if which == "none" else served.stranger
    with _client(served, cert) as client, pytest.raises(httpx.TransportError):
        client.get(f"{served.url}/whoami", headers={"X-API-Key": served.api_key})
    with pytest.raises(ssl.SSLError):  # the server ends the handshake
        _tls12_handshake(served, cert)


def test_tls_settings_that_do_not_fit_together_are_refused(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("x")
    assert uvicorn_ssl_options(Settings(home=tmp_path)) == {}
    plain = uvicorn_ssl_options(Settings(home=tmp_path, tls_cert_file=pem, tls_key_file=pem))
    assert set(plain) == {"ssl_certfile", "ssl_keyfile"}
    missing = tmp_path / "missing.pem"
    for wrong in (
        Settings(home=tmp_path, tls_cert_file=pem),
        Settings(home=tmp_path, tls_key_file=pem),
        Settings(home=tmp_path, tls_client_ca_file=pem),
        Settings(home=tmp_path, tls_cert_file=pem, tls_key_file=missing),
        Settings(home=tmp_path, tls_cert_file=pem, tls_key_file=pem, tls_client_ca_file=missing),
    ):
        with pytest.raises(ConfigError):
            uvicorn_ssl_options(wrong)
