"""Routes: single sign-on with an OpenID Connect provider (``api.oidc``, decision 0077).

Both are open to anonymous callers, as a login has to be: ``GET /auth/oidc`` says whether
single sign-on is on and where the browser goes to sign in; ``POST /auth/oidc/token`` redeems
the code the provider sent back for an ID token, checked here, that the console then sends as
its bearer token. Neither writes anything but the audit log's entry of the request.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from twinkg.api.oidc import OidcProvider
from twinkg.api.security import Authenticator
from twinkg.ontology.errors import NotFoundError

router = APIRouter(tags=["auth"])

_PKCE = r"^[A-Za-z0-9._~-]{43,128}$"  # RFC 7636 §4.1: the verifier's alphabet and length
_OPAQUE = r"^[\x21-\x7e]+$"  # printable ASCII, no space: what a code or a nonce is made of


class OidcConfigOut(BaseModel):
    """Whether single sign-on is on and, when it is, what the console needs to start it."""

    enabled: bool
    issuer: str | None = None
    client_id: str | None = None
    scope: str | None = None
    authorization_endpoint: str | None = None
    end_session_endpoint: str | None = None


class OidcCodeIn(BaseModel):
    """The authorization code the provider sent back, and what this sign-in started with."""

    code: Annotated[str, Field(min_length=1, max_length=4096, pattern=_OPAQUE)]
    code_verifier: Annotated[str, Field(pattern=_PKCE)]
    redirect_uri: Annotated[str, Field(min_length=1, max_length=2048)]
    nonce: Annotated[str, Field(min_length=16, max_length=256, pattern=_OPAQUE)]

    @field_validator("redirect_uri")
    @classmethod
    def _console(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path != "/console":
            raise ValueError("the redirect URI must be the console's own: http(s)://HOST/console")
        if parts.query or parts.fragment:
            raise ValueError("the redirect URI carries no query or fragment")
        return value


class OidcTokenOut(BaseModel):
    """The ID token to send as ``Authorization: Bearer``, until when it holds, and who it is."""

    token: str
    expires_at: str
    name: str
    roles: list[str]


def _provider(request: Request) -> OidcProvider:
    authenticator: Authenticator = request.app.state.authenticator
    if not isinstance(authenticator.oidc, OidcProvider):
        raise NotFoundError("single sign-on is not configured here (TWINKG_OIDC_ISSUER)")
    return authenticator.oidc


@router.get("/auth/oidc")
def oidc_config(request: Request) -> OidcConfigOut:
    """Whether the console may sign in through the OpenID provider, and where it starts."""
    authenticator: Authenticator = request.app.state.authenticator
    provider = authenticator.oidc
    if not isinstance(provider, OidcProvider):
        return OidcConfigOut(enabled=False)
    metadata = provider.metadata()
    return OidcConfigOut(
        enabled=True,
        issuer=provider.issuer,
        client_id=provider.client_id,
        scope=provider.scope,
        authorization_endpoint=metadata.authorization_endpoint,
        end_session_endpoint=metadata.end_session_endpoint,
    )


@router.post("/auth/oidc/token")
def oidc_token(request: Request, body: OidcCodeIn) -> OidcTokenOut:
    """Redeem the provider's authorization code with its PKCE verifier; the ID token comes back
    once its signature, issuer, audience, times, nonce and TwinKG roles check out."""
    provider = _provider(request)
    signed_in = provider.exchange(body.code, body.code_verifier, body.redirect_uri, body.nonce)
    principal = signed_in.principal
    return OidcTokenOut(
        token=signed_in.token,
        expires_at=signed_in.expires_at,
        name=principal.name,
        roles=sorted(role.value for role in principal.roles),
    )
