"""Single sign-on through a real OpenID provider (``oidc-provider-mock``: authlib's provider,
RS256 ID tokens, a JWKS endpoint, a discovery document) against the API and the real Neo4j.

The code flow is driven as a browser would (the provider's authorization form, its redirect),
the code is redeemed by TwinKG (``POST /auth/oidc/token``), and the ID token it hands back is
the bearer token of every later request. Each way a sign-in can go wrong is refused with a
401 that says why; a provider that cannot be reached is a 502, and API keys still work.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import oidc_provider_mock
import pytest
from neo4j import Driver
from pydantic import SecretStr

from tests.conftest import Neo4jTarget
from tests.integration.api_world import IVANOVA, ApiWorld, api_world, free_port
from twinkg.api.security import Role

pytestmark = pytest.mark.neo4j

REDIRECT = "http://127.0.0.1:8000/console"
CLIENT_ID = "twinkg-console"
CLIENT_SECRET = "console-secret-" + "s" * 20
JWT_SECRET = "oidc-test-" + "k" * 40
USERS: dict[str, dict[str, Any]] = {
    "ivanova": {  # a supervisor, who approves as Ivanova; the realm's other roles are ignored
        "name": "Anna Ivanova",
        "roles": ["supervisor", "offline_access", "uma_authorization"],
        "twinkg_person": IVANOVA,
    },
    "visitor": {"name": "A visitor", "roles": ["offline_access"]},  # no TwinKG role
}


@dataclass(frozen=True)
class Sso:
    """The provider's issuer URL and the API configured to trust it."""

    issuer: str
    world: ApiWorld

    def authorize(self, sub: str, nonce: str, verifier: str, client_id: str = CLIENT_ID) -> str:
        """Sign ``sub`` in at the provider's authorization form, as the browser would; the
        code the provider sends back to the console."""
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid profile email",
            "state": "state-1",
            "nonce": nonce,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        config = self.world.client.get("/auth/oidc").json()
        answer = httpx.post(config["authorization_endpoint"], params=params, data={"sub": sub})
        assert answer.status_code == 302, answer.text
        back = urlsplit(answer.headers["location"])
        assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
        query = parse_qs(back.query)
        assert query["state"] == ["state-1"]
        return query["code"][0]

    def sign_in(self, sub: str) -> httpx.Response | Any:
        """The whole flow for ``sub``: TwinKG's answer to the code."""
        nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        code = self.authorize(sub, nonce, verifier)
        body = {"code": code, "code_verifier": verifier, "redirect_uri": REDIRECT, "nonce": nonce}
        return self.world.client.post("/auth/oidc/token", json=body)


def _error(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    with oidc_provider_mock.run_server_in_thread() as server:
        url = f"http://127.0.0.1:{server.server_port}"
        for sub, claims in USERS.items():
            assert httpx.put(f"{url}/users/{quote(sub)}", json=claims).status_code == 204
        yield url


@pytest.fixture(scope="module")
def sso(
    driver: Driver,
    neo4j_target: Neo4jTarget,
    tmp_path_factory: pytest.TempPathFactory,
    issuer: str,
) -> Iterator[Sso]:
    with api_world(
        driver,
        neo4j_target,
        tmp_path_factory.mktemp("oidc"),
        ingest=False,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=SecretStr(CLIENT_SECRET),
        jwt_secret=SecretStr(JWT_SECRET),  # a second way in: the static key's tokens still work
    ) as world:
        yield Sso(issuer, world)


def test_a_supervisor_signs_in_through_the_provider_and_is_who_the_token_says(sso: Sso) -> None:
    config = sso.world.client.get("/auth/oidc").json()
    assert config["enabled"] is True and config["issuer"] == sso.issuer
    assert config["client_id"] == CLIENT_ID and "openid" in config["scope"].split()
    assert config["authorization_endpoint"].startswith(sso.issuer + "/")
    answer = sso.sign_in("ivanova")
    assert answer.status_code == 200, answer.text
    signed_in = answer.json()
    assert signed_in["name"] == "Anna Ivanova" and signed_in["roles"] == ["supervisor"]
    bearer = {"Authorization": f"Bearer {signed_in['token']}"}
    me = sso.world.client.get("/me", headers=bearer).json()
    assert me["method"] == "oidc" and me["subject"] == "ivanova", me
    assert me["roles"] == ["supervisor"] and me["person"] == IVANOVA
    assert "approve" in me["permissions"]
    assert sso.world.client.get("/approvals", headers=bearer).status_code == 200
    audit = sso.world.client.get("/audit", headers=bearer)
    assert audit.status_code == 403 and _error(audit) == "forbidden"  # a supervisor's limits
    # The sign-in is in the audit log; neither the token nor the code is.
    entries = sso.world.client.get("/audit", headers=sso.world.as_role(Role.COMPLIANCE)).json()
    logged = [e for e in entries if e["path"] == "/auth/oidc/token"]
    assert {e["status"] for e in logged} >= {200}, logged
    assert signed_in["token"] not in json.dumps(entries)


def test_a_replayed_forged_or_roleless_sign_in_is_refused(sso: Sso) -> None:
    client = sso.world.client
    nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    code = sso.authorize("ivanova", nonce, verifier)
    body = {"code": code, "code_verifier": verifier, "redirect_uri": REDIRECT, "nonce": nonce}
    # an answer whose nonce is not the one this sign-in sent (the code is then spent)
    replayed = client.post("/auth/oidc/token", json={**body, "nonce": "n" * 32})
    assert replayed.status_code == 401 and _error(replayed) == "auth_invalid"
    assert "nonce" in replayed.json()["error"]["message"]
    # the same code twice: the provider refuses it, and says so
    again = client.post("/auth/oidc/token", json=body)
    assert again.status_code == 401 and _error(again) == "auth_invalid"
    assert "refused the sign-in" in again.json()["error"]["message"]
    # a person the provider knows, with no TwinKG role
    visitor = sso.sign_in("visitor")
    assert visitor.status_code == 401 and "no TwinKG role" in visitor.json()["error"]["message"]
    # an ID token of the same provider for another application
    nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    other = sso.authorize("ivanova", nonce, verifier, client_id="another-app")
    token_url = client.get("/auth/oidc").json()["issuer"] + "/oauth2/token"
    redeemed = httpx.post(
        token_url,
        data={
            "grant_type": "authorization_code",
            "code": other,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=("another-app", "its-secret"),
    )
    assert redeemed.status_code == 200, redeemed.text
    foreign = {"Authorization": f"Bearer {redeemed.json()['id_token']}"}
    refused = client.get("/me", headers=foreign)
    assert refused.status_code == 401 and "another audience" in refused.text
    # a token of ours with one character of its signature changed
    token = sso.sign_in("ivanova").json()["token"]
    head, _, signature = token.rpartition(".")
    forged = f"{head}.{signature[:10]}{'A' if signature[10] != 'A' else 'B'}{signature[11:]}"
    bad = client.get("/me", headers={"Authorization": f"Bearer {forged}"})
    assert bad.status_code == 401 and _error(bad) == "auth_invalid"
    # bodies that are not a sign-in answer: the PKCE verifier's form, a redirect elsewhere
    for wrong in (
        {**body, "code_verifier": "short"},
        {**body, "redirect_uri": "https://elsewhere.example/callback"},
        {**body, "redirect_uri": REDIRECT + "?next=/evil"},
        {**body, "nonce": "tiny"},
    ):
        answer = client.post("/auth/oidc/token", json=wrong)
        assert answer.status_code == 422 and _error(answer) == "invalid_request", answer.text


def test_the_static_key_tokens_and_api_keys_still_work_beside_it(sso: Sso) -> None:
    import jwt  # noqa: PLC0415 - only this test signs a token of its own

    token = jwt.encode(
        {"sub": "svc", "aud": "twinkg", "exp": 4_102_444_800, "roles": ["viewer"]},
        JWT_SECRET,
        algorithm="HS256",
    )
    me = sso.world.client.get("/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["method"] == "jwt" and me["roles"] == ["viewer"], me
    keyed = sso.world.client.get("/me", headers=sso.world.as_role(Role.OPERATOR)).json()
    assert keyed["method"] == "api_key"


def test_without_a_provider_sign_on_is_off_and_an_unreachable_one_is_a_502(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with api_world(driver, neo4j_target, tmp_path_factory.mktemp("no-oidc"), ingest=False) as w:
        assert w.client.get("/auth/oidc").json() == {
            "enabled": False,
            "issuer": None,
            "client_id": None,
            "scope": None,
            "authorization_endpoint": None,
            "end_session_endpoint": None,
        }
        body = {"code": "c", "code_verifier": "v" * 43, "redirect_uri": REDIRECT, "nonce": "n" * 16}
        off = w.client.post("/auth/oidc/token", json=body)
        assert off.status_code == 404 and _error(off) == "not_found"
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with api_world(
        driver, neo4j_target, tmp_path_factory.mktemp("gone"), ingest=False, oidc_issuer=gone
    ) as w:
        down = w.client.get("/auth/oidc")
        assert down.status_code == 502 and _error(down) == "oidc_unavailable"
        assert "unreachable" in down.json()["error"]["message"]
        keyed = w.client.get("/me", headers=w.as_role(Role.VIEWER))
        assert keyed.status_code == 200  # an API key needs no provider
