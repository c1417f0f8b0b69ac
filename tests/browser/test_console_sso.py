"""The console's single sign-on in a real Chromium, against a real OpenID provider
(``oidc-provider-mock``) and the real API and Neo4j: the redirect to the provider, its form, the
code back on ``/console``, and a signed-in supervisor; a denied sign-in and a forged answer each
say why and sign no one in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import oidc_provider_mock
import pytest
from neo4j import Driver
from pydantic import SecretStr
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from tests.browser.conftest import screenshot
from tests.browser.test_console import accessible, text_of, until
from tests.conftest import Neo4jTarget
from tests.integration.api_world import IVANOVA, seed_and_ingest, serving
from twinkg.api.app import create_app
from twinkg.api.settings import Settings

pytestmark = [pytest.mark.neo4j, pytest.mark.browser]


@dataclass(frozen=True)
class SsoConsole:
    """The console on a real port, trusting the provider at ``issuer``."""

    url: str
    issuer: str


@pytest.fixture(scope="module")
def sso_console(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SsoConsole]:
    home = tmp_path_factory.mktemp("console-sso")
    store = seed_and_ingest(driver, neo4j_target, home, ingest=False)
    with oidc_provider_mock.run_server_in_thread() as provider:
        issuer = f"http://127.0.0.1:{provider.server_port}"
        claims = {"name": "Anna Ivanova", "roles": ["supervisor"], "twinkg_person": IVANOVA}
        assert httpx.put(f"{issuer}/users/{quote('ivanova')}", json=claims).status_code == 204
        settings = Settings(
            home=home,
            oidc_issuer=issuer,
            oidc_client_secret=SecretStr("console-secret-" + "s" * 20),
        )
        with serving(create_app(settings, store=store)) as url:
            yield SsoConsole(url, issuer)


def _login_page(browser: WebDriver, console: SsoConsole) -> None:
    browser.get(f"{console.url}/console#/approvals")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    until(browser, lambda b: b.find_elements(By.ID, "sso"), "the single sign-on button")


def test_a_supervisor_signs_in_through_the_identity_provider(
    browser: WebDriver, sso_console: SsoConsole
) -> None:
    _login_page(browser, sso_console)
    assert sso_console.issuer in text_of(browser, "#login")
    accessible(browser, "sign-in with single sign-on")
    screenshot(browser, "console-sso-1-sign-in")
    browser.find_element(By.ID, "sso").click()
    field = until(browser, lambda b: b.find_elements(By.NAME, "sub"), "the provider's form")[0]
    assert browser.current_url.startswith(sso_console.issuer + "/oauth2/authorize")
    assert "code_challenge_method=S256" in browser.current_url  # PKCE
    field.send_keys("ivanova")
    browser.find_element(By.XPATH, "//button[normalize-space()='Authorize']").click()
    until(browser, lambda b: "Anna Ivanova" in text_of(b, "#who-name"), "signed in as Ivanova")
    assert "supervisor" in text_of(browser, "#who-name")
    # back on the page it started from; the code is gone from the address and the history
    assert browser.current_url == f"{sso_console.url}/console#/approvals"
    until(browser, lambda b: "Approvals" in text_of(b, "main h1"), "the approvals page")
    screenshot(browser, "console-sso-2-signed-in")
    token = browser.execute_script("return sessionStorage.getItem('twinkg.console.token')")
    me = httpx.get(f"{sso_console.url}/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["method"] == "oidc" and me.json()["person"] == IVANOVA


def test_a_denied_or_forged_sign_in_signs_no_one_in(
    browser: WebDriver, sso_console: SsoConsole
) -> None:
    _login_page(browser, sso_console)
    browser.find_element(By.ID, "sso").click()
    until(browser, lambda b: b.find_elements(By.NAME, "sub"), "the provider's form")
    browser.find_element(By.XPATH, "//button[normalize-space()='Deny']").click()
    until(browser, lambda b: "did not sign you in" in text_of(b, "#message"), "the refusal")
    assert "access_denied" in text_of(browser, "#message")
    assert (
        browser.find_elements(By.ID, "token")
        and not browser.find_element(By.ID, "nav").is_displayed()
    )
    screenshot(browser, "console-sso-3-denied")
    # an answer no sign-in in this tab started (another site's code, a forged state)
    browser.get(f"{sso_console.url}/console?code=stolen-code&state=forged")
    until(browser, lambda b: "state mismatch" in text_of(b, "#message"), "the state refusal")
    assert "code=" not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('twinkg.console.token')") is None
    assert not browser.find_element(By.ID, "nav").is_displayed()
