"""OPC UA application security: the instance certificate of an application, and the only
secure channel TwinKG speaks, Basic256Sha256 with SignAndEncrypt (OPC 10000-2 §6, 10000-4 §6.1,
10000-7 "SecurityPolicy [B] Basic256Sha256"; decision 0058).

Trust is by pinning: a server accepts exactly the client certificates it is given, byte for byte,
and a client talks only to the server certificate it is given. A self-signed application
certificate is made once (RSA 2048, SHA-256, the application URI and host names in its
SubjectAltName) and reused; its files are readable by their owner only.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from twinkg.ontology.errors import ConfigError, OpcUaUntrustedError

log = logging.getLogger(__name__)

VALID_YEARS = 5
"""How long a created application instance certificate is valid."""

POLICY_URI = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"
"""The one security policy TwinKG offers and accepts."""


@dataclass(frozen=True)
class OpcUaCredentials:
    """An OPC UA application instance certificate, its private key and the application URI
    that the certificate's SubjectAltName carries."""

    cert_file: Path
    key_file: Path
    application_uri: str


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def load_certificate(path: Path) -> x509.Certificate:
    """The X.509 certificate in ``path``, DER or PEM; a :class:`ConfigError` names the file
    when it is missing or is no certificate."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the certificate ({exc.strerror})") from exc
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: not an X.509 certificate (DER or PEM)") from exc


def certificate_uris(cert: x509.Certificate) -> list[str]:
    """The URIs in the certificate's SubjectAltName (an OPC UA application URI among them)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(uri) for uri in san.value.get_values_for_type(x509.UniformResourceIdentifier)]


def _plain_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise ConfigError(f"a credentials name is a plain file name, not {name!r}")
    return name


def _build(application_uri: str, name: str, hostnames: Sequence[str]) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TwinKG"),
        ]
    )
    alt_names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    alt_names += [x509.DNSName(host) for host in hostnames]
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * VALID_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.DER), pem_key


def ensure_credentials(
    directory: Path,
    name: str,
    application_uri: str,
    hostnames: Sequence[str] = ("localhost",),
) -> OpcUaCredentials:
    """The credentials ``directory/<name>.der`` (certificate) and ``<name>.pem`` (key): made on
    first use, reused after. A kept certificate whose SubjectAltName lacks ``application_uri``
    is refused rather than silently replaced (other peers may have pinned it)."""
    _plain_name(name)
    if not application_uri or any(c.isspace() for c in application_uri):
        raise ConfigError(f"an OPC UA application URI is a URI without spaces: {application_uri!r}")
    creds = OpcUaCredentials(directory / f"{name}.der", directory / f"{name}.pem", application_uri)
    if creds.cert_file.is_file() and creds.key_file.is_file():
        if application_uri not in certificate_uris(load_certificate(creds.cert_file)):
            raise ConfigError(
                f"{creds.cert_file}: its SubjectAltName does not carry {application_uri!r}; "
                "remove the certificate and key to make new ones"
            )
        return creds
    cert_der, key_pem = _build(application_uri, name, hostnames)
    _write_private(creds.key_file, key_pem)
    _write_private(creds.cert_file, cert_der)
    return creds


def _der(path: Path) -> bytes:
    return load_certificate(path).public_bytes(serialization.Encoding.DER)


class _PinnedClients(UserManager):
    """Accepts a session only from a channel whose client certificate is one of the pinned ones,
    then defers to the server's own user manager (roles stay as the server defines them)."""

    def __init__(self, trusted: frozenset[bytes], inner: UserManager | None) -> None:
        self._trusted = trusted
        self._inner = inner

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        """The user for an activated session, or None (BadUserAccessDenied) for an unpinned
        channel certificate."""
        if not isinstance(certificate, bytes) or certificate not in self._trusted:
            log.warning("opcua_untrusted: a session from an untrusted client certificate refused")
            return None
        if self._inner is None:
            return User(role=UserRole.User)
        return self._inner.get_user(
            iserver, username=username, password=password, certificate=certificate
        )


async def secure_server(
    server: Server,
    creds: OpcUaCredentials,
    trusted: Sequence[Path],
) -> None:
    """Make ``server`` offer only Basic256Sha256 SignAndEncrypt endpoints under ``creds``, and
    accept sessions only from the client certificates in ``trusted`` (pinned, DER or PEM).
    Call after ``server.init()`` and before ``server.start()``."""
    pinned = frozenset(_der(path) for path in trusted)
    server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.load_certificate(str(creds.cert_file))
    await server.load_private_key(str(creds.key_file))
    await server.set_application_uri(creds.application_uri)

    async def validate(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        if cert.public_bytes(serialization.Encoding.DER) not in pinned:
            log.warning(
                "opcua_untrusted: client %s refused: certificate not trusted", app.ApplicationUri
            )
            raise ServiceError(StatusCodes.BadCertificateUntrusted)
        if app.ApplicationUri not in certificate_uris(cert):
            log.warning(
                "opcua_untrusted: client %s refused: URI not in its certificate", app.ApplicationUri
            )
            raise ServiceError(StatusCodes.BadCertificateUriInvalid)

    server.set_certificate_validator(validate)
    # CreateSession may omit the client certificate; the channel's certificate is checked again
    # when the session is activated, so an unpinned channel never gets a session.
    iserver = server.iserver
    iserver.user_manager = _PinnedClients(pinned, iserver.user_manager)


async def secure_client(
    client: Client,
    creds: OpcUaCredentials,
    server_cert: Path | None,
) -> None:
    """Make ``client`` connect with Basic256Sha256 SignAndEncrypt under ``creds``. With
    ``server_cert`` the server must present exactly that certificate; without, the certificate
    the server's endpoint lists is taken (trust on first use: it connects to read it)."""
    own = load_certificate(creds.cert_file)
    if creds.application_uri not in certificate_uris(own):
        raise ConfigError(f"{creds.cert_file}: its SubjectAltName lacks {creds.application_uri!r}")
    client.application_uri = creds.application_uri
    pinned = _der(server_cert) if server_cert is not None else None
    try:
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            str(creds.cert_file),
            str(creds.key_file),
            server_certificate=pinned,
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
    except UaError as exc:
        raise OpcUaUntrustedError(
            f"{client.server_url.geturl()}: no Basic256Sha256 SignAndEncrypt endpoint ({exc})"
        ) from exc

    async def validate(cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        der = cert.public_bytes(serialization.Encoding.DER)
        if pinned is not None and der != pinned:
            raise ServiceError(StatusCodes.BadCertificateUntrusted)
        if app.ApplicationUri not in certificate_uris(cert):
            raise ServiceError(StatusCodes.BadCertificateUriInvalid)

    client.certificate_validator = validate


def local_hostnames() -> tuple[str, ...]:
    """``localhost`` and this machine's host name: the DNS names a local application's
    certificate carries."""
    names = ["localhost", socket.gethostname()]
    return tuple(dict.fromkeys(name for name in names if name))
