"""The web console in a real browser (Debian's Chromium through Selenium) over the real API and
Neo4j: a supervisor watches an alarm appear, approves the pending stop, and an auditor follows
its lineage and sees the effect; every page passes the pinned axe-core with no serious or
critical violation; bad input in every form gets a clear message and changes nothing.

Screenshots of each step are kept under ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from neo4j import Driver
from pydantic import SecretStr
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import axe_violations, screenshot
from tests.conftest import Neo4jTarget
from tests.integration.api_world import (
    AS_OF,
    DATA,
    FLOW,
    PETROV,
    PUMP,
    make_keys,
    seed_and_ingest,
    serving,
)
from tests.integration.test_cli import run
from twinkg.api.app import create_app
from twinkg.api.security import Role
from twinkg.api.settings import Settings

pytestmark = [pytest.mark.neo4j, pytest.mark.browser]
JWT_SECRET = "console-test-" + "k" * 40
PATIENCE_S = 120  # an upper bound for slow machines; every wait ends on a state, not a time


@dataclass
class Console:
    """The API on a real port, an HTTP client for the agents' side, and one key per role."""

    url: str
    http: httpx.Client
    keys: dict[Role, str]
    env: dict[str, str]

    def headers(self, role: Role) -> dict[str, str]:
        """Headers that authenticate as ``role``."""
        return {"X-API-Key": self.keys[role]}


@pytest.fixture(scope="module")
def console(
    driver: Driver, neo4j_target: Neo4jTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    if not DATA.exists():
        pytest.skip(f"SKAB data not found at {DATA}: the console scenario replays it")
    home = tmp_path_factory.mktemp("console")
    store = seed_and_ingest(driver, neo4j_target, home, ingest=False)
    settings = Settings(
        home=home,
        projection_poll_s=0.1,
        query_timeout_s=5.0,
        jwt_secret=SecretStr(JWT_SECRET),  # an identity provider's shared key, for the JWT login
    )
    keys = make_keys(settings)
    env = {**neo4j_target.env(), "TWINKG_HOME": str(home)}
    with (
        serving(create_app(settings, store=store)) as url,
        httpx.Client(base_url=url, timeout=PATIENCE_S) as http,
    ):
        yield Console(url, http, keys, env)


def until(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Wait until ``condition`` holds (a truthy value), or fail saying ``what`` never came."""
    try:
        return WebDriverWait(browser, PATIENCE_S, poll_frequency=0.1).until(condition)
    except TimeoutException:
        shown = text_of(browser, "main")[:1500]
        raise AssertionError(
            f"{what} did not come (page: {browser.current_url}; message: "
            f"{text_of(browser, '#message')!r}; shows: {shown!r})"
        ) from None


def text_of(browser: WebDriver, css: str) -> str:
    """The text of the first element matching ``css`` ('' when there is none)."""
    found = browser.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def sign_in(browser: WebDriver, console: Console, role: Role) -> None:
    """Open the console and sign in with ``role``'s API key."""
    browser.get(f"{console.url}/console#/plant")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    field = until(browser, lambda b: b.find_elements(By.ID, "token"), "the sign-in form")[0]
    field.send_keys(console.keys[role])
    browser.find_element(By.ID, "signin").click()
    until(browser, lambda b: b.find_element(By.ID, "nav").is_displayed(), "the navigation")
    until(browser, lambda b: role.value in text_of(b, "#who-name"), f"signed in as {role}")


def visit(browser: WebDriver, console: Console, route: str, ready_css: str) -> None:
    """Go to ``#/route`` and wait until ``ready_css`` is on the page."""
    browser.get(f"{console.url}/console#/{route}")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ready_css), f"{ready_css} on {route}")


def accessible(browser: WebDriver, page: str) -> None:
    """No serious or critical axe-core violation on the current page."""
    violations = axe_violations(browser)
    assert not violations, f"{page}: {violations}"


def only_own_origin(browser: WebDriver, console: Console) -> None:
    """Everything the page loaded came from TwinKG itself."""
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    foreign = [u for u in loaded if not u.startswith(console.url)]
    assert not foreign, foreign


def listed(browser: WebDriver, css: str, text: str) -> bool:
    """Whether an element matching ``css`` holds ``text`` now (read in one step in the page, so
    a list that changes meanwhile cannot hand back an element it has dropped)."""
    return bool(
        browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])]"
            ".some((e) => e.textContent.includes(arguments[1]))",
            css,
            text,
        )
    )


def message(browser: WebDriver) -> str:
    """The page's alert line, once it says something."""
    return str(until(browser, lambda b: text_of(b, "#message"), "a message in the alert line"))


def approval_card(browser: WebDriver, decision: str) -> WebElement:
    """The inbox card of ``decision``."""
    cards: list[WebElement] = until(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, f'article.approval[data-decision="{decision}"]'),
        f"the approval card of {decision}",
    )
    return cards[0]


def pending(console: Console) -> list[dict[str, Any]]:
    """The approval requests waiting, as the API lists them."""
    answer = console.http.get("/approvals", headers=console.headers(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def test_the_page_is_served_with_a_strict_policy(console: Console) -> None:
    page = console.http.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy
    script = console.http.get("/console/static/console.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["x-content-type-options"] == "nosniff"
    assert console.http.get("/console/static/nothing.js").status_code == 404
    assert console.http.get("/console/static/../app.py").status_code == 404
    # The page holds no data: every call behind it needs credentials.
    assert console.http.get("/me").status_code == 401


def test_a_supervisor_approves_the_stop_an_auditor_follows_its_lineage(  # noqa: PLR0915
    browser: WebDriver, console: Console
) -> None:  # one operator's story, read top to bottom
    # 1. The supervisor signs in and watches the live events.
    sign_in(browser, console, Role.SUPERVISOR)
    visit(browser, console, "events", "#event-list")
    until(browser, lambda b: "connected" in text_of(b, "#ev-state"), "the event stream")
    accessible(browser, "live events")
    # 2. The cavitation run arrives; its alarm appears on the page as it is committed.
    ingested = run("ingest", "--skab", str(DATA), "--no-classify", env=console.env)
    assert ingested.returncode == 0, ingested.stderr
    until(browser, lambda b: listed(b, "li.finding", "alarm"), "an alarm in the live events")
    screenshot(browser, "console-1-alarm-appears")
    # 3. An agent client proposes to stop the pump over the API; the guard leaves it to a
    #    person (criticality A), and the request appears on the page.
    stop = {
        "kind": "controlled_stop",
        "target": PUMP,
        "confidence": 0.95,
        "rationale": "cavitation alarm on the pump",
        "as_of": AS_OF,
    }
    proposed = console.http.post("/actions", json=stop, headers=console.headers(Role.AGENT))
    assert proposed.status_code == 200, proposed.text
    until(browser, lambda b: listed(b, "li.approval", "controlled_stop"), "a stop to approve")
    stops = [r for r in pending(console) if r["action"]["kind"] == "controlled_stop"]
    assert [r["action"]["target"] for r in stops] == [PUMP], stops
    waiting = stops[0]["decision"]
    only_own_origin(browser, console)
    # 4. The inbox shows the request with its verdict, its validity and its evidence (the
    #    alarm this story raised among them, one row for each item), and the supervisor
    #    approves it.
    visit(browser, console, "approvals", "article.approval")
    card = approval_card(browser, waiting)
    assert "criticality A" in card.text and "Graph version" in card.text
    assert "Approvable until" in card.text and stops[0]["expires_at"] in card.text
    evidence = stops[0]["evidence"]
    assert "Alarm" in [e["kind"] for e in evidence], evidence
    rows = card.find_elements(By.CSS_SELECTOR, "table tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [e["kind"] for e in evidence]
    accessible(browser, "approvals")
    screenshot(browser, "console-2-approval-request")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    until(browser, lambda b: "applied" in approval_card(b, waiting).text, "the applied outcome")
    screenshot(browser, "console-3-approved")
    assert waiting not in [r["decision"] for r in pending(console)]
    applied = approval_card(browser, waiting).find_element(
        By.XPATH, ".//li[.//span[text()='applied']]//a[text()='lineage']"
    )
    ref = str(applied.get_attribute("href")).split("#/decision/", 1)[1]
    # 5. The supervisor may not read lineage: the page says so, the server would refuse.
    visit(browser, console, f"decision/{ref}", "main h1")
    until(browser, lambda b: "audit permission" in b.find_element(By.ID, "main").text, "a note")
    # 6. The auditor follows the lineage of the applied stop, verifies and replays it.
    sign_in(browser, console, Role.COMPLIANCE)
    visit(browser, console, f"decision/{ref}", "#lineage-graph")
    assert "applied" in browser.find_element(By.ID, "main").text
    more = browser.find_element(By.ID, "lineage-more")
    while more.is_enabled():
        more.click()
        more = until(browser, lambda b: b.find_element(By.ID, "lineage-more"), "the expander")
    kinds = {
        str(node.get_attribute("aria-label")).split(" ", 1)[0]
        for node in browser.find_elements(By.CSS_SELECTOR, "#lineage-graph g.node")
    }
    assert {"Decision", "Alarm", "Person"} <= kinds, kinds
    alarm = next(
        n
        for n in browser.find_elements(By.CSS_SELECTOR, "#lineage-graph g.node")
        if str(n.get_attribute("aria-label")).startswith("Alarm")
    )
    alarm.click()
    until(browser, lambda b: "Alarm" in text_of(b, "#lineage-details h3"), "the node's details")
    browser.find_element(By.ID, "verify-chain").click()
    until(browser, lambda b: "Chain intact" in text_of(b, "#chain-status"), "the chain status")
    accessible(browser, "decision")
    screenshot(browser, "console-4-lineage")
    browser.find_element(By.ID, "replay").click()
    until(browser, lambda b: "Replay decides alike" in b.page_source, "the replay")
    # 7. The effect: the pump is stopped.
    visit(browser, console, f"asset?iri={PUMP}", "svg.graph")
    until(browser, lambda b: "stopped" in b.find_element(By.CSS_SELECTOR, "dl.kv").text, "stop")
    accessible(browser, "asset")
    screenshot(browser, "console-5-effect")
    # The hierarchy shows the pump inside its loop, stopped, with its open findings.
    visit(browser, console, "plant", "ul.tree")
    pump = browser.find_element(By.XPATH, "//ul[contains(@class,'tree')]//ul//a[text()='P-1']")
    line = str(pump.find_element(By.XPATH, "./..").get_attribute("textContent"))
    assert "stopped" in line and "open finding" in line, line
    accessible(browser, "plant")
    screenshot(browser, "console-6-plant")
    visit(browser, console, "decisions", "main table a")
    assert ref in browser.find_element(By.ID, "main").text
    accessible(browser, "decisions")
    visit(browser, console, "audit", "main table")
    browser.find_element(By.ID, "verify-audit-log").click()
    until(browser, lambda b: "Audit log intact" in text_of(b, "#audit-log-status"), "audit log")
    accessible(browser, "audit")
    audit = browser.find_element(By.ID, "main").text
    assert "/approve" in audit and "test supervisor" in audit


def test_a_wrong_key_is_refused_at_the_sign_in_form(browser: WebDriver, console: Console) -> None:
    browser.get(f"{console.url}/console")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    field = until(browser, lambda b: b.find_elements(By.ID, "token"), "the sign-in form")[0]
    field.send_keys("tk_nobody_notakey")
    browser.find_element(By.ID, "signin").click()
    assert "401" in message(browser)
    assert browser.find_elements(By.ID, "token")
    assert not browser.find_element(By.ID, "nav").is_displayed()
    accessible(browser, "sign-in")


def bearer(**claims: Any) -> str:
    """A bearer JWT as an identity provider would issue it (HS256, the test's shared key)."""
    base = {"sub": "u-petrov", "aud": "twinkg", "exp": int(time.time()) + 600}
    return jwt.encode({**base, **claims}, JWT_SECRET, "HS256")


def test_a_bearer_token_signs_in_and_an_expired_one_is_refused(
    browser: WebDriver, console: Console
) -> None:
    for token, signed_in in (
        (bearer(name="Petrov", roles=["operator"], twinkg_person=PETROV), True),
        (bearer(name="Petrov", roles=["operator"], exp=int(time.time()) - 3600), False),
    ):
        browser.get(f"{console.url}/console")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        field = until(browser, lambda b: b.find_elements(By.ID, "token"), "the sign-in form")[0]
        field.send_keys(token)
        browser.find_element(By.ID, "signin").click()
        if signed_in:
            until(browser, lambda b: "Petrov · operator" in text_of(b, "#who-name"), "Petrov")
        else:
            assert "token_expired" in message(browser)
            assert not browser.find_element(By.ID, "nav").is_displayed()


@pytest.fixture
def setpoint_waiting(console: Console) -> dict[str, Any]:
    """A setpoint change that waits for a person (its confidence is under the threshold)."""
    proposal = {
        "kind": "setpoint_change",
        "target": PUMP,
        "confidence": 0.3,
        "quantity_kind": FLOW,
        "current_setpoint": 80.0,
        "proposed_setpoint": 75.0,
        "ramp_s": 60.0,
        "as_of": AS_OF,
    }
    made = console.http.post("/actions", json=proposal, headers=console.headers(Role.AGENT))
    step: dict[str, Any] = made.json()["steps"][-1]
    assert step["outcome"] == "awaiting_approval", step
    return step


def test_a_viewer_sees_no_button_and_the_server_refuses_anyway(
    browser: WebDriver, console: Console, setpoint_waiting: dict[str, Any]
) -> None:
    before = json.dumps(pending(console), sort_keys=True)
    sign_in(browser, console, Role.VIEWER)
    visit(browser, console, "approvals", "article.approval")
    card = approval_card(browser, setpoint_waiting["decision"])
    assert not card.find_elements(By.CSS_SELECTOR, "button.approve")
    assert "may not approve" in card.text
    accessible(browser, "approvals, viewer")
    _, run_id, step = setpoint_waiting["decision"].rsplit("/", 2)
    refused = console.http.post(
        f"/decisions/{run_id}/{step}/approve", json={}, headers=console.headers(Role.VIEWER)
    )
    assert refused.status_code == 403
    assert json.dumps(pending(console), sort_keys=True) == before
    visit(browser, console, "query", "main h1")
    assert "query permission" in browser.find_element(By.ID, "main").text


def test_a_bad_edit_a_stale_approval_or_an_empty_filter_changes_nothing(
    browser: WebDriver, console: Console, setpoint_waiting: dict[str, Any], driver: Driver
) -> None:
    before = json.dumps(pending(console), sort_keys=True)
    sign_in(browser, console, Role.SUPERVISOR)
    visit(browser, console, "approvals", "article.approval")
    card = approval_card(browser, setpoint_waiting["decision"])
    card.find_element(By.CSS_SELECTOR, "button.edit").click()
    setpoint = card.find_element(By.CSS_SELECTOR, "input[id^='sp-']")
    setpoint.clear()
    setpoint.send_keys("seventy")
    card.find_element(By.CSS_SELECTOR, "button.confirm-edit").click()
    assert "must be a number" in message(browser)
    screenshot(browser, "console-7-bad-edit")
    setpoint.clear()
    setpoint.send_keys("75")
    browser.execute_script("document.getElementById('message').textContent = ''")
    card.find_element(By.CSS_SELECTOR, "button.confirm-edit").click()
    assert "Change the setpoint or the ramp" in message(browser)
    assert json.dumps(pending(console), sort_keys=True) == before
    # The plant changes under the request: approving it now is refused with the reason.
    records, _, _ = driver.execute_query(
        "MATCH (p {uri: $pump}) WITH p, p.operationalStatus AS was "
        "SET p.operationalStatus = 'standby' RETURN was",
        pump=PUMP,
    )
    try:
        browser.execute_script("document.getElementById('message').textContent = ''")
        card.find_element(By.CSS_SELECTOR, "button.approve").click()
        stale = message(browser)
        assert "approval_stale" in stale and "HTTP 4" in stale, stale
        screenshot(browser, "console-7-stale-approval")
        assert json.dumps(pending(console), sort_keys=True) == before
    finally:
        driver.execute_query(
            "MATCH (p {uri: $pump}) SET p.operationalStatus = $was",
            pump=PUMP,
            was=records[0]["was"],
        )
    visit(browser, console, "events", "#event-list")
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=kind]:checked"):
        box.click()
    browser.find_element(By.CSS_SELECTOR, "form[aria-label='Filter events'] button").click()
    assert "at least one kind" in message(browser)


def test_the_workbench_refuses_a_write_and_answers_a_read(
    browser: WebDriver, console: Console, driver: Driver
) -> None:
    sign_in(browser, console, Role.ENGINEER)
    visit(browser, console, "query", "#q-text")
    accessible(browser, "query")
    text = browser.find_element(By.ID, "q-text")
    text.clear()
    text.send_keys("CREATE (n:ConsoleProbe) RETURN n")
    browser.find_element(By.ID, "q-run").click()
    refusal = message(browser)
    assert "HTTP 4" in refusal, refusal
    screenshot(browser, "console-8-write-refused")
    records, _, _ = driver.execute_query("MATCH (n:ConsoleProbe) RETURN count(n) AS n")
    assert records[0]["n"] == 0
    text.clear()
    text.send_keys(f"MATCH (a {{uri: '{PUMP}'}}) RETURN a.uri AS uri")
    browser.find_element(By.ID, "q-run").click()
    until(browser, lambda b: PUMP in text_of(b, "#q-out table"), "the query's table")
    assert screenshot(browser, "console-9-query").stat().st_size > 0


def finished(console: Console, job: str) -> dict[str, Any]:
    """Simulation job ``job`` once it has ended (polled until its state says so)."""
    deadline = PATIENCE_S * 5
    for _ in range(deadline * 10):
        state: dict[str, Any] = console.http.get(
            f"/sim/runs/{job}", headers=console.headers(Role.VIEWER)
        ).json()
        if state["state"] in {"done", "failed"}:
            return state
        time.sleep(0.1)
    raise AssertionError(f"simulation {job} did not end")


def test_simulations_are_compared_and_a_bad_run_is_refused(
    browser: WebDriver, console: Console
) -> None:
    jobs = []
    for policy in ("run-to-failure", "twinkg"):
        body = {"scenario": "net1-pump-wear", "policy": policy, "seeds": [4], "horizon_h": 25}
        started = console.http.post(
            "/sim/runs", json=body, headers=console.headers(Role.SUPERVISOR)
        )
        assert started.status_code == 202, started.text
        jobs.append(started.json()["job_id"])
    for job in jobs:
        assert finished(console, job)["state"] == "done"
    sign_in(browser, console, Role.SUPERVISOR)
    visit(browser, console, "simulations", "main table")
    for job in jobs:
        browser.find_element(By.CSS_SELECTOR, f"input[name=compare][value='{job}']").click()
    browser.find_element(By.ID, "sim-compare").click()
    charts = until(
        browser, lambda b: b.find_elements(By.CSS_SELECTOR, "figure svg.chart"), "charts"
    )
    labels = " ".join(str(c.get_attribute("aria-label")) for c in charts)
    assert "run-to-failure" in labels and "twinkg" in labels, labels
    accessible(browser, "simulations")
    screenshot(browser, "console-10-simulations")
    seeds = browser.find_element(By.ID, "sim-seeds")
    seeds.clear()
    seeds.send_keys("5-1")
    browser.find_element(By.ID, "sim-start").click()
    assert "backwards" in message(browser)
    listed_jobs = console.http.get("/sim/runs", headers=console.headers(Role.VIEWER)).json()
    assert len(listed_jobs["jobs"]) == len(jobs)


def test_a_viewer_sees_the_plant_graph_and_opens_the_pump_from_it(
    browser: WebDriver, console: Console
) -> None:
    answer = console.http.get("/assets/graph", headers=console.headers(Role.VIEWER))
    assert answer.status_code == 200, answer.text
    graph = answer.json()
    nodes = {n["iri"]: n for n in graph["nodes"]}
    pump = nodes[PUMP]
    on_pump = [
        e["source"] for e in graph["edges"] if e["kind"] == "monitors" and e["target"] == PUMP
    ]
    assert len(on_pump) == 4, graph["edges"]
    sign_in(browser, console, Role.VIEWER)
    visit(browser, console, "plant", "#pg-form")
    assert browser.find_element(By.ID, "pg-sensors").is_selected()
    browser.find_element(By.ID, "pg-show").click()
    pump_css = f'#plant-graph a.pg-node[data-iri="{PUMP}"]'
    node = until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, pump_css), "the pump")[0]
    assert text_of(browser, "#pg-status") == (
        f"{graph['assets']} assets and {graph['sensors']} sensors of the whole plant."
    )
    shown = str(node.find_element(By.TAG_NAME, "text").get_attribute("textContent"))
    findings = pump["open_findings"]
    assert "P-1" in shown and f"{pump['status']} · " in shown, shown
    assert (f"{findings} open finding" if findings else "no open finding") in shown, shown
    assert ("pg-bad" in str(node.get_attribute("class"))) == (findings > 0)
    for sensor in on_pump:  # each sensor on the pump, with its latest trust
        dot = browser.find_element(
            By.CSS_SELECTOR, f'#plant-graph a.pg-sensor[data-iri="{sensor}"]'
        )
        text = str(dot.find_element(By.TAG_NAME, "text").get_attribute("textContent"))
        assert text.startswith(f"{nodes[sensor]['tag']} · "), text
        trust = nodes[sensor]["trust"]
        if trust is None:
            assert text.endswith("no trust score"), text
        else:
            assert abs(float(text.rsplit("trust ", 1)[1]) - trust) <= 0.005 + 1e-9, (text, trust)
    drives = sum(e["kind"] == "drives" for e in graph["edges"])
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plant-graph path.pg-drives")) == drives
    svg = browser.find_element(By.ID, "plant-graph")
    assert svg.get_attribute("role") == "group"
    assert "Plant graph of the whole plant" in str(svg.get_attribute("aria-label"))
    links = svg.find_elements(By.CSS_SELECTOR, "a")
    assert len(links) == len(graph["nodes"])
    for link in links:  # each link is named by what it shows
        visible = str(link.find_element(By.TAG_NAME, "text").get_attribute("textContent"))
        assert " ".join(link.accessible_name.split()) == " ".join(visible.split())
    assert browser.find_element(By.CSS_SELECTOR, "ul.pg-legend").is_displayed()
    accessible(browser, "plant graph")
    screenshot(browser, "console-11-plant-graph")
    # By keyboard: the pump's node takes the focus and Enter opens the pump's page.
    browser.execute_script("arguments[0].focus()", node)
    assert browser.execute_script("return document.activeElement === arguments[0]", node)
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    until(browser, lambda b: text_of(b, "main h1") == "Asset P-1", "the pump's page")
    assert "#/asset?iri=" in browser.current_url
    browser.back()  # and back: the graph is drawn again
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, pump_css), "the graph again")
