"""The browser tests' stack: Debian's headless Chromium driven by Selenium, axe-core for a11y.

Nothing is fetched at run time (decision 0074). Chromium and chromedriver are Debian's
(`chromium`, `chromium-driver`), installed by `make setup`; the driver is always given by path
and Selenium Manager is kept offline, so it never downloads a driver or a browser. axe-core is
read from ``tests/browser/node_modules``, which `make setup` fills with ``npm ci`` from
``tests/browser/package-lock.json``.

- ``browser``: one headless Chromium for the session (a fresh profile, quit at the end).
- ``screenshot(driver, name)``: a PNG under ``test-artifacts/screenshots/`` (kept as an artifact).
- ``axe_violations(driver)``: axe-core's serious and critical violations on the current page.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
AXE_JS = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
WINDOW = (1400, 1000)

_taken: list[Path] = []


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium (Debian's), driven through Debian's chromedriver, for the session."""
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        missing = " and ".join(
            name
            for name, path in (("chromium", chromium), ("chromedriver", chromedriver))
            if not path
        )
        pytest.fail(
            f"{missing} not found on PATH: run `make setup` (the README's set-up installs "
            "Debian's chromium and chromium-driver)",
            pytrace=False,
        )
    home = tmp_path_factory.mktemp("chromium")
    profile = home / "profile"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    with pytest.MonkeyPatch.context() as env:
        # Belt and braces: a driver given by path already skips Selenium Manager.
        env.setenv("SE_OFFLINE", "true")
        service = Service(executable_path=chromedriver, log_output=str(home / "chromedriver.log"))
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.set_page_load_timeout(30)
            driver.set_script_timeout(30)
            yield driver
        finally:
            driver.quit()


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save the page as ``test-artifacts/screenshots/<name>.png`` (replacing it); its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-') or 'page'}.png"
    path.unlink(missing_ok=True)
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"the browser wrote no screenshot to {path}")
    _taken.append(path)
    return path


@dataclass(frozen=True)
class AxeViolation:
    """One axe-core rule a page breaks, with the selectors of the elements that break it."""

    id: str
    impact: str
    help: str
    targets: tuple[str, ...]


@functools.cache
def _axe_source() -> str:
    if not AXE_JS.is_file():
        pytest.fail(
            f"axe-core is missing ({AXE_JS.relative_to(REPO)}): run `make setup` "
            "(npm ci from tests/browser/package-lock.json)",
            pytrace=False,
        )
    return AXE_JS.read_text(encoding="utf-8")


_RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']}).then(
  (results) => done({violations: results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target),
  }))}),
  (error) => done({error: String(error)}),
);
"""


def _selector(target: Any) -> str:
    """A node's target: a selector per frame (a list per shadow root), joined with ' >> '."""
    if isinstance(target, list):
        return " >> ".join(_selector(part) for part in target)
    return str(target)


def axe_violations(
    driver: WebDriver, impacts: Iterable[str] = ("serious", "critical")
) -> list[AxeViolation]:
    """Run the pinned axe-core on the current page; its violations of the given impacts."""
    driver.execute_script(_axe_source())
    result = driver.execute_async_script(_RUN_AXE)
    if not isinstance(result, dict) or "violations" not in result:
        raise AssertionError(f"axe-core did not run: {result!r}")
    wanted = set(impacts)
    return [
        AxeViolation(
            id=str(v["id"]),
            impact=str(v["impact"]),
            help=str(v["help"]),
            targets=tuple(_selector(target) for target in v["targets"]),
        )
        for v in result["violations"]
        if v["impact"] in wanted
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where this session's screenshots went."""
    if _taken:
        terminalreporter.write_line(
            f"browser screenshots: {len(_taken)} in {SCREENSHOTS} (test-artifacts/, git-ignored)"
        )
