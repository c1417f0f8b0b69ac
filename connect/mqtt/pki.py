"""The certificates of the local broker: a private CA, the broker's certificate and one client
certificate per MQTT user, for TLS with mutual authentication (decision 0056).

Mosquitto takes a client's identity from its certificate (``use_identity_as_username``): the
certificate's common name *is* the MQTT user name the ACL file grants topics to, so a client
cannot claim another's rights without that client's private key. Keys are EC P-256 and written
readable by their owner only; certificates are valid for :data:`VALID_DAYS` days. A CA is made
once and kept: issuing a client later signs with the same CA, so the broker need not restart.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from twinkg.kg.local_server import write_secret
from twinkg.ontology.errors import ConfigError

VALID_DAYS = 825
"""How long an issued certificate is valid (the CA: ten times as long)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A certificate, its private key and the CA that signed it, as files a TLS client reads."""

    ca: Path
    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_secret(path, pem.decode("ascii"))


class LocalCa:
    """A certificate authority kept in ``folder`` (``ca.crt``, ``ca.key``): made on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cert_file = folder / "ca.crt"
        self.key_file = folder / "ca.key"

    def ensure(self) -> None:
        """Make the CA's key and self-signed certificate unless both exist already."""
        if self.cert_file.is_file() and self.key_file.is_file():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TwinKG local broker CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=10 * VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .sign(key, hashes.SHA256())
        )
        _write_key(self.key_file, key)
        _write_cert(self.cert_file, cert)

    def _signer(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        self.ensure()
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{self.key_file} is not an EC private key")
        return cert, key

    def issue(self, name: str, folder: Path, *, server_hosts: tuple[str, ...] = ()) -> Credentials:
        """A certificate for ``name`` (its common name) signed by this CA, written to
        ``folder/<name>.crt`` and ``.key``. With ``server_hosts`` it is a server certificate
        for those host names and IP addresses; without, a client certificate."""
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"a certificate name is a plain file name, not {name!r}")
        ca_cert, ca_key = self._signer()
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server_hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(h) for h in server_hosts]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        credentials = Credentials(self.cert_file, folder / f"{name}.crt", folder / f"{name}.key")
        _write_key(credentials.key, key)
        _write_cert(credentials.cert, cert)
        return credentials


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def common_name(cert_file: Path) -> str:
    """The common name of the certificate in ``cert_file`` (the MQTT user it authenticates)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ConfigError(f"{cert_file} has no common name")
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8")
