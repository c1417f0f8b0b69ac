"""Single sign-on with an OpenID Connect provider: the console's login (decision 0077).

The console runs the authorization code flow with PKCE as a public client: it sends the browser
to the provider's authorization endpoint with a code challenge, a ``state`` and a ``nonce``, and
takes the code back on ``/console``. It hands the code and its verifier to TwinKG
(``POST /auth/oidc/token``), which redeems them at the provider's token endpoint (server to
server: the page keeps ``connect-src 'self'``, and the provider needs no CORS rule), checks the
ID token, and gives it back. The page then sends that ID token as its bearer token; every
request is checked here: the signature by a key the provider publishes (its JWKS), the issuer,
the audience (the console's client id), the times, and the TwinKG roles in the roles claim.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from twinkg.api.errors import CredentialsInvalidError, IdentityProviderError
from twinkg.api.roles import Principal
from twinkg.api.security import decode_token, token_principal
from twinkg.api.settings import Settings
from twinkg.ontology.errors import ConfigError

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
"""The signatures an ID token may carry: asymmetric only (an HMAC one would be keyed by the
client secret, which a public client does not have)."""

_REFETCH_AFTER_S = 30.0  # an unknown key id refetches the key set at most this often


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """What the provider's discovery document says (OpenID Connect Discovery 1.0)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None


@dataclass(frozen=True, slots=True)
class SignIn:
    """A finished sign-in: the ID token to send as bearer, until when, and who it names."""

    token: str
    expires_at: str
    principal: Principal


class OidcProvider:
    """One OpenID provider, as TwinKG's settings name it; safe to share between threads."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.oidc_issuer is None:
            raise ConfigError("no OpenID provider is configured (TWINKG_OIDC_ISSUER)")
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.scope = settings.oidc_scope
        if "openid" not in self.scope.split():
            raise ConfigError("TWINKG_OIDC_SCOPE must include 'openid': sign-in takes an ID token")
        self.roles_claim = settings.oidc_roles_claim
        secret = settings.oidc_client_secret
        self._secret = None if secret is None else secret.get_secret_value()
        verify: str | bool = str(settings.oidc_ca_file) if settings.oidc_ca_file else True
        self._http = client or httpx.Client(timeout=settings.oidc_timeout_s, verify=verify)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None

    def metadata(self) -> ProviderMetadata:
        """The provider's endpoints, read once from its discovery document."""
        with self._lock:
            if self._metadata is None:
                self._metadata = self._discover()
            return self._metadata

    def verify(self, token: str) -> Principal:
        """The caller an ID token of this provider names (``CredentialsInvalidError`` or
        ``TokenExpiredError`` when it does not check out)."""
        return self._principal(self.claims(token))

    def claims(self, token: str) -> dict[str, Any]:
        """An ID token's claims once its signature, issuer, audience and times check out."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise CredentialsInvalidError("malformed bearer token (DecodeError)") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise CredentialsInvalidError(
                f"bearer token algorithm not allowed ({', '.join(ALGORITHMS)})"
            )
        key = self._key(header.get("kid"))
        return decode_token(
            token,
            key.key,
            algorithms=(str(algorithm),),
            audience=self.client_id,
            issuer=self.issuer,
            leeway_s=30.0,
        )

    def exchange(self, code: str, verifier: str, redirect_uri: str, nonce: str) -> SignIn:
        """Redeem an authorization code (with its PKCE verifier) at the token endpoint and check
        the ID token it brings, its ``nonce`` included (a replayed answer fails)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": verifier,
        }
        auth = None
        if (
            self._secret is not None
        ):  # client_secret_basic, each part form-encoded (RFC 6749 §2.3.1)
            auth = (quote(self.client_id, safe=""), quote(self._secret, safe=""))
        body = self._request(
            "POST", self.metadata().token_endpoint, data=form, auth=auth, refusal=True
        )
        token = body.get("id_token")
        if not isinstance(token, str):
            raise IdentityProviderError(
                "the provider's token response has no id_token: is 'openid' in TWINKG_OIDC_SCOPE?"
            )
        claims = self.claims(token)
        if claims.get("nonce") != nonce:
            raise CredentialsInvalidError(
                "the ID token's nonce is not the one this sign-in sent (a replayed answer)"
            )
        principal = self._principal(claims)
        expires = datetime.fromtimestamp(float(claims["exp"]), UTC).isoformat()
        return SignIn(token, expires, principal)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        return token_principal(
            claims, roles_claim=self.roles_claim, method="oidc", other_roles=True
        )

    def _discover(self) -> ProviderMetadata:
        url = f"{self.issuer}/.well-known/openid-configuration"
        doc = self._request("GET", url)
        if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
            raise IdentityProviderError(
                f"the provider at {url} names itself {doc.get('issuer')!r}, not {self.issuer!r}"
            )
        fields = ("authorization_endpoint", "token_endpoint", "jwks_uri")
        missing = [name for name in fields if not isinstance(doc.get(name), str)]
        if missing:
            raise IdentityProviderError(f"the discovery document lacks {', '.join(missing)}")
        end = doc.get("end_session_endpoint")
        return ProviderMetadata(
            self.issuer,
            doc["authorization_endpoint"],
            doc["token_endpoint"],
            doc["jwks_uri"],
            end if isinstance(end, str) else None,
        )

    def _key(self, kid: Any) -> jwt.PyJWK:
        with self._lock:
            now = self._monotonic()
            stale = self._fetched_at is None or now - self._fetched_at >= _REFETCH_AFTER_S
            if (kid not in self._keys or not self._keys) and stale:
                self._keys = self._key_set()
                self._fetched_at = now
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            if kid not in self._keys:
                raise CredentialsInvalidError(
                    "bearer token signed by a key the identity provider does not publish"
                )
            return self._keys[kid]

    def _key_set(self) -> dict[str, jwt.PyJWK]:
        if self._metadata is None:
            self._metadata = self._discover()
        doc = self._request("GET", self._metadata.jwks_uri)
        try:
            keys = jwt.PyJWKSet.from_dict(doc).keys
        except jwt.PyJWTError as exc:
            raise IdentityProviderError(f"the provider's key set is unusable: {exc}") from None
        return {str(key.key_id): key for key in keys if key.public_key_use in {None, "sig"}}

    def _request(
        self,
        method: str,
        url: str,
        *,
        data: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        refusal: bool = False,
    ) -> dict[str, Any]:
        """One JSON request to the provider. A 4xx with an OAuth error is the provider refusing
        the sign-in (``CredentialsInvalidError`` when ``refusal``); anything else that is not a
        JSON object is the provider failing (``IdentityProviderError``)."""
        try:
            response = self._http.request(method, url, data=data, auth=auth)
        except httpx.HTTPError as exc:
            raise IdentityProviderError(
                f"the identity provider at {url} is unreachable: {exc}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if refusal and 400 <= response.status_code < 500 and isinstance(body, dict):
            reason = body.get("error_description") or body.get("error") or response.status_code
            raise CredentialsInvalidError(f"the identity provider refused the sign-in: {reason}")
        if response.status_code != 200 or not isinstance(body, dict):
            raise IdentityProviderError(
                f"the identity provider answered {url} with HTTP {response.status_code}"
            )
        return body
