"""The browser stack itself, without the console: Chromium, screenshots and axe-core work.

Two small pages are served from a local ``http.server`` on 127.0.0.1: one with a deliberate
critical violation (an image without a text alternative), one without any. The browser loads
both; axe-core must find the violation on the first and nothing on the second.
"""

from __future__ import annotations

import functools
import shutil
import struct
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from tests.browser.conftest import SCREENSHOTS, axe_violations, screenshot

pytestmark = pytest.mark.browser

ICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='64' height='64'%3E"
    "%3Ccircle cx='32' cy='32' r='28' fill='%23256'/%3E%3C/svg%3E"
)
PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
<main>
<h1>Pump P-101</h1>
<p>Cavitation suspected on the suction side.</p>
{image}
<button type="button" id="ready">Acknowledge</button>
</main>
</body>
</html>
"""
PAGES = {
    # image-alt: an <img> with neither alt nor any other accessible name (axe: critical).
    "broken.html": PAGE.format(title="No alternative text", image=f'<img src="{ICON}">'),
    "accessible.html": PAGE.format(
        title="Accessible", image=f'<img src="{ICON}" alt="Pump P-101, running">'
    ),
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The two pages over HTTP on 127.0.0.1 (a free port, a thread), as a base URL."""
    root = tmp_path_factory.mktemp("site")
    for name, html in PAGES.items():
        (root / name).write_text(html, encoding="utf-8")
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, name="browser-test-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _open(browser: WebDriver, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, 20).until(ec.visibility_of_element_located((By.ID, "ready")))
    WebDriverWait(browser, 20).until(
        lambda driver: driver.execute_script(
            "const img = document.querySelector('img');"
            "return document.readyState === 'complete' && img.complete && img.naturalWidth > 0;"
        )
    )


def test_axe_finds_the_missing_alternative_text(browser: WebDriver, site: str) -> None:
    _open(browser, f"{site}/broken.html")
    found = axe_violations(browser)
    assert [(v.id, v.impact) for v in found] == [("image-alt", "critical")], found
    assert found[0].targets == ("img",)
    assert found[0].help
    # The impacts asked for are the ones returned.
    assert axe_violations(browser, impacts=("minor", "moderate")) == []


def test_an_accessible_page_has_no_violation(browser: WebDriver, site: str) -> None:
    _open(browser, f"{site}/accessible.html")
    assert axe_violations(browser) == []
    assert axe_violations(browser, impacts=("minor", "moderate", "serious", "critical")) == []


def test_a_screenshot_is_a_png_of_the_window(browser: WebDriver, site: str) -> None:
    _open(browser, f"{site}/accessible.html")
    path = screenshot(browser, "stack/accessible page")
    assert path == SCREENSHOTS / "stack-accessible-page.png"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    viewport = browser.execute_script(
        "return [Math.round(window.innerWidth * window.devicePixelRatio),"
        " Math.round(window.innerHeight * window.devicePixelRatio)];"
    )
    assert [width, height] == viewport


def test_the_driver_is_debians_chromedriver(browser: WebDriver) -> None:
    assert browser.service.path == shutil.which("chromedriver")
    capabilities = browser.capabilities
    assert capabilities["browserName"] == "chrome"
    driver_major = capabilities["chrome"]["chromedriverVersion"].split(".")[0]
    assert driver_major == capabilities["browserVersion"].split(".")[0]
