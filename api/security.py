"""Who is calling: API keys, bearer tokens, and the authenticator that tries both.

Pure (no FastAPI): ``api/http/auth.py`` plugs it into the HTTP app, ``api/cli/keys.py`` into
the CLI, ``api/mcp/server.py`` into the MCP endpoint.
Every request carries either an API key (``tk_<id>_<secret>``, in ``X-API-Key`` or as
``Authorization: Bearer tk_…``) or an OAuth2 bearer JWT (RFC 6750, RFC 7519; algorithms pinned
per RFC 8725 §3.1). Only SHA-256 hashes of API keys are stored; the key is shown once. The roles
and permissions (``api/roles.py``) are re-exported here.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import string
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from twinkg.api.errors import (
    AmbiguousCredentialsError,
    AuthenticationError,
    CredentialsInvalidError,
    TokenExpiredError,
)
from twinkg.api.roles import (
    APPROVABLE_CRITICALITY,
    GRANTS,
    AuthMethod,
    Permission,
    Principal,
    Role,
    may_approve,
    parse_roles,
)
from twinkg.api.settings import Settings, api_keys_path
from twinkg.connect.mqtt.topics import segment
from twinkg.ontology.errors import ConfigError, InvalidInputError, NotFoundError

__all__ = [
    "APPROVABLE_CRITICALITY",
    "GRANTS",
    "KEY_PREFIX",
    "AuthMethod",
    "Authenticator",
    "JwtVerifier",
    "KeyRecord",
    "KeyStore",
    "Permission",
    "Principal",
    "Role",
    "TokenVerifier",
    "build_authenticator",
    "decode_token",
    "may_approve",
    "parse_roles",
    "single_header",
    "token_principal",
]

# --- API keys ---------------------------------------------------------------------------------

KEY_PREFIX = "tk_"
_ID_ALPHABET = string.ascii_lowercase + string.digits  # no "_": the id ends at the first one
_ID_LENGTH = 12


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the key file holds about one API key: never the key, only its secret's hash."""

    id: str
    name: str
    roles: tuple[Role, ...]
    person: str | None
    sha256: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    sites: tuple[str, ...] = ()  # the sites (tags) its telemetry may name; none: every site

    def to_json(self) -> dict[str, Any]:
        """The record as the key file stores it."""
        document = asdict(self)
        document["roles"] = [role.value for role in self.roles]
        document["sites"] = list(self.sites)
        for field in ("created_at", "expires_at", "revoked_at"):
            moment = document[field]
            document[field] = moment.isoformat() if moment is not None else None
        return document

    @classmethod
    def from_json(cls, document: Any) -> KeyRecord:
        """A record from the key file; anything malformed is :class:`ConfigError`."""
        try:
            created = datetime.fromisoformat(document["created_at"])
            expires, revoked = document["expires_at"], document["revoked_at"]
            record = cls(
                id=str(document["id"]),
                name=str(document["name"]),
                roles=tuple(parse_roles(list(document["roles"]))),
                person=document["person"],
                sha256=str(document["sha256"]),
                created_at=created,
                expires_at=datetime.fromisoformat(expires) if expires else None,
                revoked_at=datetime.fromisoformat(revoked) if revoked else None,
                sites=site_tags(document.get("sites") or []),  # absent in older key files
            )
        except (KeyError, TypeError, ValueError, InvalidInputError) as exc:
            raise ConfigError(f"API key file: a malformed record ({exc})") from None
        for moment in (record.created_at, record.expires_at, record.revoked_at):
            if moment is not None and moment.tzinfo is None:
                raise ConfigError(f"API key file: record {record.id} has a time without a zone")
        return record


class KeyStore:
    """API keys in a JSON file (mode 0600, replaced atomically), re-read when it changes."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = _now) -> None:
        self.path = path
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._records: dict[str, KeyRecord] = {}

    def create(
        self,
        *,
        name: str,
        roles: frozenset[Role] | set[Role] | list[Role],
        person: str | None = None,
        expires_in: timedelta | None = None,
        sites: Sequence[str] = (),
    ) -> tuple[KeyRecord, str]:
        """A new key: its record, and the key itself (shown once, never stored). ``sites``:
        the sites, by their tags, whose sensors its telemetry may name (none: every site)."""
        if not name.strip():
            raise InvalidInputError("an API key needs a name")
        if not roles:
            raise InvalidInputError("an API key needs at least one role")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidInputError("an API key's lifetime must be positive")
        key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
        secret = secrets.token_urlsafe(32)
        now = self._clock()
        record = KeyRecord(
            id=key_id,
            name=name.strip(),
            roles=tuple(sorted(set(roles))),
            person=person,
            sha256=_sha256(secret),
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
            revoked_at=None,
            sites=site_tags(sites),
        )
        with self._locked() as records:
            records[key_id] = record
        return record, f"{KEY_PREFIX}{key_id}_{secret}"

    def list(self) -> list[KeyRecord]:
        """Every record, oldest first (revoked and expired ones included)."""
        return sorted(self._current().values(), key=lambda r: (r.created_at, r.id))

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key; it stops working at once, also in running servers."""
        with self._locked() as records:
            record = records.get(key_id)
            if record is None:
                raise NotFoundError(f"no API key with id {key_id!r}")
            if record.revoked_at is None:
                record = replace(record, revoked_at=self._clock())
                records[key_id] = record
        return record

    def verify(self, key: str) -> Principal:
        """The caller a key identifies; unknown, revoked or expired keys raise."""
        key_id, _, secret = key.removeprefix(KEY_PREFIX).partition("_")
        if not key.startswith(KEY_PREFIX) or len(key_id) != _ID_LENGTH or not secret:
            raise CredentialsInvalidError("malformed API key (expected tk_<id>_<secret>)")
        record = self._current().get(key_id)
        expected = record.sha256 if record is not None else "0" * 64
        if not hmac.compare_digest(_sha256(secret), expected) or record is None:
            raise CredentialsInvalidError("unknown API key")
        if record.revoked_at is not None:
            raise CredentialsInvalidError(f"API key {key_id} was revoked")
        if record.expires_at is not None and record.expires_at <= self._clock():
            raise TokenExpiredError(f"API key {key_id} expired at {record.expires_at.isoformat()}")
        roles, sites = frozenset(record.roles), frozenset(record.sites)
        return Principal(key_id, record.name, roles, record.person, "api_key", sites)

    # -- the file ---------------------------------------------------------------------------

    def _current(self) -> dict[str, KeyRecord]:
        """The records, re-read when the file's identity, size or mtime changed."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._records = None, {}
            return {}
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        if stamp != self._stamp:
            if info.st_mode & 0o022:
                raise ConfigError(f"{self.path} is writable by others; chmod 600 it")
            self._records = self._read()
            self._stamp = stamp
        return self._records

    def _read(self) -> dict[str, KeyRecord]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read the API key file {self.path}: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ConfigError(f'{self.path}: expected {{"keys": [ … ]}}')
        records = [KeyRecord.from_json(item) for item in document["keys"]]
        return {record.id: record for record in records}

    @contextmanager
    def _locked(self) -> Iterator[dict[str, KeyRecord]]:
        """Read, let the caller change, and write back the records under an exclusive lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            records = self._read()
            yield records
            self._write(records)
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, records: dict[str, KeyRecord]) -> None:
        ordered = sorted(records.values(), key=lambda r: (r.created_at, r.id))
        text = json.dumps({"keys": [r.to_json() for r in ordered]}, indent=2) + "\n"
        fd, temp = tempfile.mkstemp(prefix=".api-keys-", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            Path(temp).replace(self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


# --- bearer tokens ----------------------------------------------------------------------------

_MIN_HMAC_SECRET = 32  # bytes: RFC 7518 §3.2 wants a key at least as long as the hash


class JwtVerifier:
    """Checks OAuth2 bearer JWTs: signature with one pinned algorithm family, then the claims."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key_pem: bytes | None = None,
        audience: str,
        issuer: str | None = None,
        leeway_s: float = 30.0,
    ) -> None:
        if (secret is None) == (public_key_pem is None):
            raise ConfigError("bearer tokens need either an HMAC secret or a public key, not both")
        self._key: Any
        self.algorithms: tuple[str, ...]
        if secret is not None:
            if len(secret.encode()) < _MIN_HMAC_SECRET:
                raise ConfigError(f"TWINKG_JWT_SECRET must be at least {_MIN_HMAC_SECRET} bytes")
            self._key, self.algorithms = secret, ("HS256",)
        else:
            self._key, self.algorithms = _public_key(public_key_pem or b"")
        self.audience = audience
        self.issuer = issuer
        self.leeway_s = leeway_s

    def verify(self, token: str) -> Principal:
        """The caller a token identifies. Expired → :class:`TokenExpiredError`, else invalid."""
        claims = decode_token(
            token,
            self._key,
            algorithms=self.algorithms,
            audience=self.audience,
            issuer=self.issuer,
            leeway_s=self.leeway_s,
        )
        return token_principal(claims)


def decode_token(
    token: str,
    key: Any,
    *,
    algorithms: tuple[str, ...],
    audience: str,
    issuer: str | None,
    leeway_s: float,
) -> dict[str, Any]:
    """The claims of a signed JWT once its signature (one of ``algorithms``), audience, issuer
    and times check out; each failure is a :class:`CredentialsInvalidError` that says which, an
    expired token :class:`TokenExpiredError`."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(algorithms),
            audience=audience,
            issuer=issuer,
            leeway=leeway_s,
            options={
                "require": ["exp", "sub", "aud"] + (["iss"] if issuer else []),
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpiredError("the bearer token has expired") from None
    except jwt.InvalidAlgorithmError:
        allowed = ", ".join(algorithms)
        raise CredentialsInvalidError(f"bearer token algorithm not allowed ({allowed})") from None
    except jwt.InvalidSignatureError:
        raise CredentialsInvalidError("bearer token signature does not verify") from None
    except jwt.InvalidAudienceError:
        raise CredentialsInvalidError("bearer token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise CredentialsInvalidError("bearer token is from another issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise CredentialsInvalidError(f"bearer token lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError as exc:
        reason = type(exc).__name__.removesuffix("Error")
        raise CredentialsInvalidError(f"malformed bearer token ({reason})") from None
    return claims


_NUMERIC_DATES = ("exp", "nbf", "iat")


def _check_claim_types(claims: dict[str, Any]) -> None:
    """RFC 7519 §2 and §4.1: times are JSON numbers (PyJWT would read ``"exp": "99999999999"``
    as a number), and the subject is a non-empty string."""
    for name in _NUMERIC_DATES:
        if name in claims and type(claims[name]) not in (int, float):
            raise CredentialsInvalidError(f"bearer token: {name!r} must be a number (NumericDate)")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise CredentialsInvalidError("bearer token: 'sub' must be a non-empty string")


def _public_key(pem: bytes) -> tuple[Any, tuple[str, ...]]:
    """The verification key and the one algorithm its type allows (never an HMAC one)."""
    try:
        key = load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"TWINKG_JWT_PUBLIC_KEY_FILE is not a PEM public key: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey):
        return key, ("RS256",)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, ("ES256",)
    raise ConfigError("TWINKG_JWT_PUBLIC_KEY_FILE must hold an RSA or a P-256 public key")


def token_principal(
    claims: dict[str, Any],
    *,
    roles_claim: str = "roles",
    method: AuthMethod = "jwt",
    other_roles: bool = False,
) -> Principal:
    """The caller a verified token's claims name: TwinKG role names from ``roles_claim`` (a
    dotted path into the claims, as identity providers nest them: ``realm_access.roles``), the
    person approvals are recorded as from ``twinkg_person``, the name from ``name`` or
    ``preferred_username``. With ``other_roles`` the names that are no TwinKG role are passed
    over (an identity provider's roles serve many applications); at least one must be TwinKG's.
    """
    _check_claim_types(claims)
    names: Any = claims
    for part in roles_claim.split("."):
        names = names.get(part) if isinstance(names, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CredentialsInvalidError(
            f"bearer token needs a {roles_claim!r} claim: a list of role names"
        )
    if other_roles:
        known = {role.value for role in Role}
        names = [name for name in names if name in known]
        if not names:
            raise CredentialsInvalidError(
                f"the token's {roles_claim!r} holds no TwinKG role ({', '.join(sorted(known))})"
            )
    try:
        roles = parse_roles(names)
    except InvalidInputError as exc:
        raise CredentialsInvalidError(f"bearer token: {exc}") from None
    person = claims.get("twinkg_person")
    if person is not None and not isinstance(person, str):
        raise CredentialsInvalidError("bearer token: 'twinkg_person' must be a string")
    sites = claims.get("twinkg_sites", [])
    if not isinstance(sites, list) or not all(isinstance(site, str) for site in sites):
        raise CredentialsInvalidError("bearer token: 'twinkg_sites' must be a list of site tags")
    try:
        bound = frozenset(site_tags(sites))
    except InvalidInputError as exc:
        raise CredentialsInvalidError(f"bearer token: {exc}") from None
    subject = str(claims["sub"])
    name = claims.get("name") or claims.get("preferred_username") or subject
    return Principal(subject, str(name), roles, person, method, bound)


def site_tags(sites: Sequence[str]) -> tuple[str, ...]:
    """``sites`` as a caller is bound to them: site tags as topics and events name them (topic
    segments), sorted, each once; :class:`InvalidInputError` naming the first that is not one."""
    if isinstance(sites, str):
        raise InvalidInputError(f"sites are a list, not the string {sites!r}")
    for site in sites:
        if not isinstance(site, str):
            raise InvalidInputError(f"site {site!r} is not a string")
        segment(site, "site")
    return tuple(sorted(set(sites)))


# --- both -------------------------------------------------------------------------------------


class TokenVerifier(Protocol):
    """Checks the bearer tokens of one issuer (the OpenID provider of ``api.oidc``)."""

    issuer: str

    def verify(self, token: str) -> Principal:
        """The caller the token names, or an :class:`AuthenticationError`."""
        ...


class Authenticator:
    """Turns a request's credentials into a :class:`Principal`."""

    def __init__(
        self, keys: KeyStore, jwt: JwtVerifier | None, oidc: TokenVerifier | None = None
    ) -> None:
        self.keys = keys
        self.jwt = jwt
        self.oidc = oidc

    def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The caller from ``Authorization: Bearer …`` or ``X-API-Key``; exactly one of them.

        ``None`` means the header is absent; a header that is present counts, even empty or
        malformed: both present is :class:`AmbiguousCredentialsError` (``auth_ambiguous``),
        whichever of them is valid.
        """
        if authorization is not None and api_key is not None:
            raise AmbiguousCredentialsError(
                "send one credential: an Authorization header or an X-API-Key, not both"
            )
        if api_key is not None:
            if not api_key.strip():
                raise CredentialsInvalidError("the X-API-Key header is empty")
            return self.keys.verify(api_key.strip())
        if authorization is None:
            raise AuthenticationError(
                "authentication required: an X-API-Key or an Authorization: Bearer header"
            )
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise CredentialsInvalidError("the Authorization header must be 'Bearer <token>'")
        if credential.startswith(KEY_PREFIX):
            return self.keys.verify(credential)
        oidc = self.oidc
        if oidc is not None and (self.jwt is None or self._issuer(credential) == oidc.issuer):
            return oidc.verify(credential)
        if self.jwt is None:
            raise CredentialsInvalidError("bearer tokens are not configured here; use an API key")
        return self.jwt.verify(credential)

    @staticmethod
    def _issuer(token: str) -> str | None:
        """The ``iss`` a token claims, unverified: only which verifier checks it depends on it."""
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        return str(issuer).rstrip("/") if issuer is not None else None


def single_header(values: list[str], name: str) -> str | None:
    """The one value of the credential header ``name`` (``None`` when absent); a header sent
    more than once is :class:`AmbiguousCredentialsError`."""
    if len(values) > 1:
        raise AmbiguousCredentialsError(f"the {name} header was sent {len(values)} times")
    return values[0] if values else None


def build_authenticator(settings: Settings) -> Authenticator:
    """The authenticator the settings describe: the key file, and JWTs when a key is set."""
    if settings.jwt_secret is not None and settings.jwt_public_key_file is not None:
        raise ConfigError("set TWINKG_JWT_SECRET or TWINKG_JWT_PUBLIC_KEY_FILE, not both")
    verifier: JwtVerifier | None = None
    common: dict[str, Any] = {"audience": settings.jwt_audience, "issuer": settings.jwt_issuer}
    if settings.jwt_secret is not None:
        verifier = JwtVerifier(secret=settings.jwt_secret.get_secret_value(), **common)
    elif settings.jwt_public_key_file is not None:
        try:
            pem = settings.jwt_public_key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"TWINKG_JWT_PUBLIC_KEY_FILE: {exc}") from None
        verifier = JwtVerifier(public_key_pem=pem, **common)
    oidc: TokenVerifier | None = None
    if settings.oidc_issuer is not None:
        from twinkg.api.oidc import OidcProvider  # noqa: PLC0415 - it builds on this module

        oidc = OidcProvider(settings)
    return Authenticator(KeyStore(api_keys_path(settings)), verifier, oidc)
