"""Roles, API keys and bearer tokens: who may do what, and every way a credential is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from typer.testing import CliRunner

from twinkg.api.cli import keys as cli_keys
from twinkg.api.errors import (
    AmbiguousCredentialsError,
    AuthenticationError,
    CredentialsInvalidError,
    PermissionDeniedError,
    TokenExpiredError,
)
from twinkg.api.security import (
    GRANTS,
    Authenticator,
    JwtVerifier,
    KeyStore,
    Permission,
    Principal,
    Role,
    may_approve,
    single_header,
)
from twinkg.ontology.errors import ConfigError, InvalidInputError, NotFoundError

P = Permission
EXPECTED_GRANTS = {
    Role.VIEWER: {P.READ},
    Role.ENGINEER: {P.READ, P.QUERY, P.VALIDATE},
    Role.AGENT: {P.READ, P.QUERY, P.PROPOSE, P.RUN_AGENTS},
    Role.OPERATOR: {P.READ, P.APPROVE},
    Role.SUPERVISOR: {P.READ, P.APPROVE, P.RUN_AGENTS},
    Role.COMPLIANCE: {P.READ, P.QUERY, P.AUDIT},
    Role.PRODUCER: {P.INGEST, P.VALIDATE},
    Role.ADMIN: set(Permission),
}
SECRET = "s" * 40
AUDIENCE = "twinkg"


def principal(*roles: Role) -> Principal:
    return Principal("k1", "someone", frozenset(roles), None, "api_key")


# --- roles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_every_role_holds_exactly_its_permissions(role: Role) -> None:
    assert GRANTS[role] == EXPECTED_GRANTS[role]
    caller = principal(role)
    for permission in Permission:
        if permission in EXPECTED_GRANTS[role]:
            caller.require(permission)
        else:
            with pytest.raises(PermissionDeniedError, match=permission.value):
                caller.require(permission)


def test_permissions_of_several_roles_are_their_union() -> None:
    caller = principal(Role.PRODUCER, Role.VIEWER)
    assert caller.permissions == {P.INGEST, P.VALIDATE, P.READ}
    with pytest.raises(PermissionDeniedError, match=r"roles: producer, viewer"):
        caller.require(P.QUERY)


def test_approval_by_criticality() -> None:
    operator, supervisor = principal(Role.OPERATOR), principal(Role.SUPERVISOR)
    assert [may_approve(operator, c) for c in ("A", "B", "C", None)] == [False, True, True, False]
    assert all(may_approve(supervisor, c) for c in ("A", "B", "C", None))
    assert may_approve(principal(Role.ADMIN), "A")
    assert not may_approve(principal(Role.ENGINEER), "C")  # no APPROVE permission at all
    assert not may_approve(operator, "Z")  # unknown counts as the most critical


# --- API keys ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_key_is_shown_once_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    record, key = store.create(name="edge-1", roles=[Role.PRODUCER], person=None)
    assert key.startswith(f"tk_{record.id}_") and len(record.id) == 12
    text = (tmp_path / "keys.json").read_text()
    assert key.split("_", 2)[2] not in text and record.sha256 in text
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    caller = store.verify(key)
    assert caller == Principal(record.id, "edge-1", frozenset({Role.PRODUCER}), None, "api_key")
    assert [r.id for r in KeyStore(tmp_path / "keys.json").list()] == [record.id]


def test_a_key_bound_to_sites_keeps_them_and_an_older_key_file_binds_none(tmp_path: Path) -> None:
    """Decision 0085: the sites a key is bound to are stored, read back and carried by its
    caller; a record from before (no ``sites``) is bound to none; a bad tag is refused."""
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    record, key = store.create(name="gw", roles=[Role.PRODUCER], sites=["SKT", "A-2", "SKT"])
    assert record.sites == ("A-2", "SKT")  # sorted, each once
    assert store.verify(key).sites == frozenset({"SKT", "A-2"})
    assert KeyStore(path).verify(key).sites == frozenset({"SKT", "A-2"})  # read from the file
    document = json.loads(path.read_text())
    (entry,) = (item for item in document["keys"] if item["id"] == record.id)
    del entry["sites"]  # as a key file written before sites existed
    path.write_text(json.dumps(document))
    assert KeyStore(path).verify(key).sites == frozenset()
    for bad in (["twinkg/v1/#"], [""], ["-lead"], ["a" * 65], ["tab\t"]):
        with pytest.raises(InvalidInputError, match="not a topic segment"):
            store.create(name="gw", roles=[Role.PRODUCER], sites=bad)
    with pytest.raises(InvalidInputError, match="not the string"):
        store.create(name="gw", roles=[Role.PRODUCER], sites="SKT")
    entry["sites"] = ["a/b"]
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="malformed record"):
        KeyStore(path).verify(key)


def test_revoked_unknown_and_malformed_keys_are_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    record, key = store.create(name="eng", roles=[Role.ENGINEER], person="https://x/p/1")
    assert store.verify(key).person == "https://x/p/1"
    key_id, secret = key.removeprefix("tk_").split("_", 1)
    for bad in (f"tk_{key_id}_{secret[:-1]}x", f"tk_{'a' * 12}_{secret}", "tk_short_x", "nope"):
        with pytest.raises(CredentialsInvalidError):
            store.verify(bad)
    store.revoke(record.id)
    with pytest.raises(CredentialsInvalidError, match="revoked"):
        store.verify(key)
    with pytest.raises(NotFoundError):
        store.revoke("nosuchkey000")


def test_an_expired_key_is_refused_as_expired(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path / "keys.json", clock=clock)
    _, key = store.create(name="tmp", roles=[Role.VIEWER], expires_in=timedelta(hours=1))
    assert store.verify(key).roles == {Role.VIEWER}
    clock.now += timedelta(hours=1)
    with pytest.raises(TokenExpiredError):
        store.verify(key)


def test_another_process_revoking_a_key_takes_effect_without_a_restart(tmp_path: Path) -> None:
    server = KeyStore(tmp_path / "keys.json")
    record, key = server.create(name="agent", roles=[Role.AGENT])
    assert server.verify(key).subject == record.id  # the server has read and cached the file
    KeyStore(tmp_path / "keys.json").revoke(record.id)  # as `twinkg keys revoke` does
    with pytest.raises(CredentialsInvalidError, match="revoked"):
        server.verify(key)


def test_a_tampered_key_file_refuses_rather_than_guesses(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    _, key = store.create(name="v", roles=[Role.VIEWER])
    document = json.loads(path.read_text())
    document["keys"][0]["sha256"] = hashlib.sha256(b"other").hexdigest()
    path.write_text(json.dumps(document))
    with pytest.raises(CredentialsInvalidError):
        store.verify(key)
    document["keys"][0]["roles"] = ["root"]
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="malformed record"):
        store.verify(key)
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        store.verify(key)
    path.write_text(json.dumps({"keys": []}))
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by others"):
        store.verify(key)


def test_keys_need_a_name_and_a_role(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    with pytest.raises(InvalidInputError):
        store.create(name=" ", roles=[Role.VIEWER])
    with pytest.raises(InvalidInputError):
        store.create(name="x", roles=[])


# --- bearer tokens ----------------------------------------------------------------------------


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"sub": "u-7", "aud": AUDIENCE, "exp": int(time.time()) + 300, "roles": ["operator"]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], body: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


def test_a_valid_hs256_token_names_its_caller() -> None:
    verifier = JwtVerifier(secret=SECRET, audience=AUDIENCE, issuer="https://idp")
    token = jwt.encode(
        claims(iss="https://idp", name="Ana", twinkg_person="https://p/ana"), SECRET, "HS256"
    )
    assert verifier.verify(token) == Principal(
        "u-7", "Ana", frozenset({Role.OPERATOR}), "https://p/ana", "jwt"
    )


def test_a_token_may_bind_its_caller_to_sites() -> None:
    verifier = JwtVerifier(secret=SECRET, audience=AUDIENCE, issuer="https://idp")
    token = jwt.encode(claims(iss="https://idp", twinkg_sites=["SKT"]), SECRET, "HS256")
    assert verifier.verify(token).sites == frozenset({"SKT"})
    for bad in ("SKT", [1], ["a/b"]):
        token = jwt.encode(claims(iss="https://idp", twinkg_sites=bad), SECRET, "HS256")
        with pytest.raises(CredentialsInvalidError, match=r"twinkg_sites|topic segment"):
            verifier.verify(token)


@pytest.mark.parametrize(
    ("overrides", "key", "error", "reason"),
    [
        ({"exp": -120}, SECRET, TokenExpiredError, "expired"),
        ({}, "x" * 40, CredentialsInvalidError, "signature"),
        ({"aud": "other"}, SECRET, CredentialsInvalidError, "audience"),
        ({"iss": "https://evil"}, SECRET, CredentialsInvalidError, "issuer"),
        ({"exp": None}, SECRET, CredentialsInvalidError, "'exp'"),
        ({"sub": None}, SECRET, CredentialsInvalidError, "'sub'"),
        ({"roles": ["root"]}, SECRET, CredentialsInvalidError, "unknown role"),
        ({"roles": "admin"}, SECRET, CredentialsInvalidError, "'roles'"),
        ({"sub": ""}, SECRET, CredentialsInvalidError, "'sub' must be a non-empty string"),
        ({"sub": "  "}, SECRET, CredentialsInvalidError, "'sub' must be a non-empty string"),
        ({"sub": 7}, SECRET, CredentialsInvalidError, "InvalidSubject"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(
    overrides: dict[str, Any], key: str, error: type[Exception], reason: str
) -> None:
    if overrides.get("exp") is not None:  # relative to now: the token is built when the test runs
        overrides = {**overrides, "exp": int(time.time()) + overrides["exp"]}
    token_claims = claims(**overrides)
    verifier = JwtVerifier(secret=SECRET, audience=AUDIENCE)
    issuer_verifier = JwtVerifier(secret=SECRET, audience=AUDIENCE, issuer="https://idp")
    target = issuer_verifier if "iss" in token_claims else verifier
    with pytest.raises(error, match=reason) as caught:
        target.verify(jwt.encode(token_claims, key, "HS256"))
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_times_given_as_numeric_strings_are_refused(claim: str) -> None:
    verifier = JwtVerifier(secret=SECRET, audience=AUDIENCE)
    moment = str(int(time.time()) + (300 if claim == "exp" else -300))
    with pytest.raises(CredentialsInvalidError, match=f"'{claim}' must be a number"):
        verifier.verify(jwt.encode(claims(**{claim: moment}), SECRET, "HS256"))


def test_a_token_within_the_leeway_still_counts() -> None:
    verifier = JwtVerifier(secret=SECRET, audience=AUDIENCE)
    assert verifier.verify(jwt.encode(claims(exp=int(time.time()) - 5), SECRET, "HS256"))


def test_an_unsigned_token_is_refused() -> None:
    verifier = JwtVerifier(secret=SECRET, audience=AUDIENCE)
    token = hand_made({"alg": "none", "typ": "JWT"}, claims(roles=["admin"]), lambda _: b"")
    with pytest.raises(CredentialsInvalidError, match="algorithm not allowed"):
        verifier.verify(token)


def _rsa() -> tuple[rsa.RSAPrivateKey, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_rs256_and_es256_tokens_verify_with_their_public_keys() -> None:
    private, public = _rsa()
    verifier = JwtVerifier(public_key_pem=public, audience=AUDIENCE)
    assert verifier.algorithms == ("RS256",)
    assert verifier.verify(jwt.encode(claims(), private, "RS256")).subject == "u-7"
    other, _ = _rsa()
    with pytest.raises(CredentialsInvalidError, match="signature"):
        verifier.verify(jwt.encode(claims(), other, "RS256"))
    ec_private = ec.generate_private_key(ec.SECP256R1())
    ec_public = ec_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ec_verifier = JwtVerifier(public_key_pem=ec_public, audience=AUDIENCE)
    assert ec_verifier.verify(jwt.encode(claims(), ec_private, "ES256")).subject == "u-7"


def test_an_hs256_token_signed_with_the_public_key_is_refused() -> None:
    """The alg-confusion attack: the public key, which anyone has, used as an HMAC secret."""
    _, public = _rsa()
    verifier = JwtVerifier(public_key_pem=public, audience=AUDIENCE)
    forged = hand_made(
        {"alg": "HS256", "typ": "JWT"},
        claims(roles=["admin"]),
        lambda data: hmac.new(public, data, hashlib.sha256).digest(),
    )
    with pytest.raises(CredentialsInvalidError, match="algorithm not allowed"):
        verifier.verify(forged)


def test_verifier_configuration_is_checked() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        JwtVerifier(secret="short", audience=AUDIENCE)
    with pytest.raises(ConfigError):
        JwtVerifier(secret=SECRET, public_key_pem=_rsa()[1], audience=AUDIENCE)
    with pytest.raises(ConfigError, match="PEM"):
        JwtVerifier(public_key_pem=b"not a key", audience=AUDIENCE)


# --- the authenticator ------------------------------------------------------------------------


def test_the_authenticator_reads_either_header(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "keys.json")
    _, key = keys.create(name="eng", roles=[Role.ENGINEER])
    auth = Authenticator(keys, JwtVerifier(secret=SECRET, audience=AUDIENCE))
    token = jwt.encode(claims(), SECRET, "HS256")
    assert auth.authenticate(None, key).name == "eng"
    assert auth.authenticate(f"Bearer {key}", None).name == "eng"
    assert auth.authenticate(f"bearer {token}", None).method == "jwt"
    with pytest.raises(AuthenticationError) as missing:
        auth.authenticate(None, None)
    assert type(missing.value) is AuthenticationError
    for bad in ("Basic dXNlcjpwdw==", "Bearer", "Bearer nonsense"):
        with pytest.raises(CredentialsInvalidError):
            auth.authenticate(bad, None)
    with pytest.raises(CredentialsInvalidError, match="one credential"):
        auth.authenticate(f"Bearer {token}", key)
    with pytest.raises(CredentialsInvalidError, match="not configured"):
        Authenticator(keys, None).authenticate(f"Bearer {token}", None)


@pytest.mark.parametrize("authorization", ["garbage", "", "Bearer", "Basic dXNlcjpwdw=="])
def test_a_valid_key_with_any_authorization_header_is_ambiguous(
    tmp_path: Path, authorization: str
) -> None:
    keys = KeyStore(tmp_path / "keys.json")
    _, key = keys.create(name="eng", roles=[Role.ENGINEER])
    auth = Authenticator(keys, JwtVerifier(secret=SECRET, audience=AUDIENCE))
    with pytest.raises(AmbiguousCredentialsError) as refused:
        auth.authenticate(authorization, key)
    assert refused.value.code == "auth_ambiguous"
    assert isinstance(refused.value, AuthenticationError)  # a 401
    with pytest.raises(CredentialsInvalidError, match="X-API-Key header is empty"):
        auth.authenticate(None, "")
    with pytest.raises(CredentialsInvalidError, match="must be 'Bearer <token>'"):
        auth.authenticate("", None)


def test_a_credential_header_sent_twice_is_ambiguous() -> None:
    assert single_header([], "X-API-Key") is None
    assert single_header([""], "X-API-Key") == ""
    with pytest.raises(AmbiguousCredentialsError, match="sent 2 times"):
        single_header(["tk_a", "tk_b"], "X-API-Key")


# --- the CLI ----------------------------------------------------------------------------------


def test_keys_cli_creates_lists_and_revokes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWINKG_HOME", str(tmp_path))
    monkeypatch.delenv("TWINKG_API_KEYS_FILE", raising=False)
    runner = CliRunner()
    made = runner.invoke(cli_keys.app, ["create", "--name", "ops", "--role", "operator"])
    assert made.exit_code == 0, made.output
    key = next(line for line in made.stdout.splitlines() if line.startswith("tk_"))
    store = KeyStore(tmp_path / "api-keys.json")
    assert store.verify(key).roles == {Role.OPERATOR}
    listed = runner.invoke(cli_keys.app, ["list", "--json"])
    assert listed.exit_code == 0 and key not in listed.stdout
    (shown,) = json.loads(listed.stdout)
    assert "sha256" not in shown and shown["roles"] == ["operator"]
    assert runner.invoke(cli_keys.app, ["revoke", shown["id"]]).exit_code == 0
    with pytest.raises(CredentialsInvalidError):
        store.verify(key)
    unknown = runner.invoke(cli_keys.app, ["create", "--name", "x", "--role", "root"])
    assert unknown.exit_code == 2  # typer refuses a role that is not a choice
    assert runner.invoke(cli_keys.app, ["revoke", "nosuchkey000"]).exit_code == 8
    assert (tmp_path / "api-keys.json").stat().st_mode & 0o777 == 0o600
    bound = runner.invoke(
        cli_keys.app, ["create", "--name", "gw", "--role", "producer", "--site", "SKT"]
    )
    assert bound.exit_code == 0 and "sites SKT" in bound.stderr, bound.output
    key = next(line for line in bound.stdout.splitlines() if line.startswith("tk_"))
    assert store.verify(key).sites == {"SKT"}
    bad = runner.invoke(
        cli_keys.app, ["create", "--name", "gw", "--role", "producer", "--site", "a/b"]
    )
    assert bad.exit_code == 5 and "not a topic segment" in bad.stderr, bad.output
