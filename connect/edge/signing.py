"""The Ed25519 keys of policy bundles: the central twin's signing key, and the public keys an
edge trusts (decision 0059).

The signing key is made once under ``var/edge/signing.key`` (readable by its owner only); its
public key is written as text, ``ed25519:<base64 of the 32 raw bytes>``, to ``signing.pub``.
An edge trusts a key by holding that text in ``trusted/<key id>.pub`` (``twinkg edge trust``)
or naming a file with it in ``TWINKG_EDGE_TRUSTED_KEY``. A key's id is the first 16 hex digits
of the SHA-256 of its raw bytes, so a bundle says which key signed it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from twinkg.connect.mqtt.topics import segment
from twinkg.kg.local_server import write_secret
from twinkg.ontology.errors import ConfigError, InvalidInputError

PREFIX = "ed25519:"


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A public key an edge may trust: its raw bytes and its id."""

    raw: bytes

    @property
    def key_id(self) -> str:
        """The first 16 hex digits of the SHA-256 of the raw key."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    @property
    def text(self) -> str:
        """The key as ``ed25519:<base64>`` (what ``twinkg edge trust`` takes)."""
        return PREFIX + base64.b64encode(self.raw).decode("ascii")

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def parse_public(text: str) -> PublicKey:
    """``ed25519:<base64>`` as a key (:class:`InvalidInputError` saying why it is not one)."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise InvalidInputError(f"a public key is {PREFIX}<base64 of 32 bytes>, not {text[:60]!r}")
    try:
        raw = base64.b64decode(text[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("the public key is not valid base64") from None
    if len(raw) != 32:
        raise InvalidInputError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return PublicKey(raw)


class SigningKey:
    """The central twin's bundle signing key in ``folder`` (made on first use, kept)."""

    def __init__(self, folder: Path) -> None:
        self.key_file = folder / "signing.key"
        self.public_file = folder / "signing.pub"

    def _private(self) -> Ed25519PrivateKey:
        if not self.key_file.is_file():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_secret(self.key_file, pem.decode("ascii"))
        loaded = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ConfigError(f"{self.key_file} is not an Ed25519 private key")
        public = PublicKey(
            loaded.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )
        if not self.public_file.is_file():
            self.public_file.write_text(public.text + "\n", encoding="utf-8")
        return loaded

    def public(self) -> PublicKey:
        """The public key (making the key pair on first use)."""
        raw = (
            self._private()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return PublicKey(raw)

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of ``message``."""
        return self._private().sign(message)


class TrustStore:
    """The public keys an edge trusts: ``folder/<key id>.pub``, plus an optional extra file."""

    def __init__(self, folder: Path, extra: Path | None = None) -> None:
        self.folder = folder
        self.extra = extra

    def add(self, key: PublicKey) -> Path:
        """Trust ``key`` from now on; the file it is kept in."""
        segment(key.key_id, "key id")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key.key_id}.pub"
        path.write_text(key.text + "\n", encoding="utf-8")
        return path

    def keys(self) -> dict[str, PublicKey]:
        """Every trusted key by its id (a file that is not a key is a configuration error)."""
        files = sorted(self.folder.glob("*.pub")) if self.folder.is_dir() else []
        if self.extra is not None:
            if not self.extra.is_file():
                raise ConfigError(f"TWINKG_EDGE_TRUSTED_KEY: {self.extra} does not exist")
            files.append(self.extra)
        found: dict[str, PublicKey] = {}
        for path in files:
            try:
                key = parse_public(path.read_text(encoding="utf-8"))
            except InvalidInputError as exc:
                raise ConfigError(f"trusted key {path}: {exc}") from None
            found[key.key_id] = key
        return found
