"""Real-browser testing: the app on a real WSGI server, driven in headless Chromium.

``LiveServer`` serves a Flask app from a thread on a free loopback port.
``Browser`` wraps one selenium session of Debian's ``chromium`` and
``chromium-driver`` (never a downloaded browser or driver): it records the
console and every network request, so a test can assert that a page logged no
error and no request failed, and saves screenshots as test artifacts. The
fixtures in ``tests/browser/conftest.py`` build both.
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from PIL import Image, ImageChops
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from conf.settings import PROJECT_ROOT

ARTIFACTS_DIR = PROJECT_ROOT / "test-artifacts" / "browser"
UPDATE_SCREENSHOTS = "UPDATE_SCREENSHOTS"  # =1: publish_screenshot rewrites committed pictures
# axe-core, vendored for the tests only (``make vendor-axe``, AXE_CORE_VERSION in the Makefile).
AXE_SCRIPT = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
# Runs axe on the page; answers "impact rule: element" for each element that violates a rule.
RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] }).then(
  (results) => done(results.violations.flatMap((rule) => rule.nodes.map(
    (node) => `${rule.impact} ${rule.id}: ${node.target.join(' ')}`))),
  (error) => done([`axe failed: ${error}`]));
"""
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
INSTALL_HINT = "apt-get install chromium chromium-driver (.ci/run installs them when missing)"
DESKTOP_SIZE = (1280, 900)
WAIT_SECONDS = 15.0
POLL_SECONDS = 0.05
# Flags for a quiet, reproducible headless run as root in a container.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--hide-scrollbars", "--force-color-profile=srgb",
    "--font-render-hinting=none", "--lang=en-US",
)


class _QuietHandler(WSGIRequestHandler):
    """Log nothing (the app logs its requests) and close each connection after its answer.

    HTTP/1.0 means no keep-alive, so once the server is stopped every new
    request is refused at once, as from a server that went away.
    """

    protocol_version = "HTTP/1.0"

    def log(self, kind: str, message: str, *args: Any) -> None:
        pass


class LiveServer:
    """Serve ``app`` from a thread on a free port of 127.0.0.1 until ``stop()``."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._start(port=0)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def _start(self, port: int) -> None:
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self.app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"live-server-{self._server.server_port}")
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the port: later connections are refused."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def restart(self) -> None:
        """Serve again on the same address, as a server back from an outage."""
        self.stop()
        self._start(port=self._server.server_port)


def csp_directives(policy: str) -> dict[str, set[str]]:
    """Return a Content-Security-Policy as {directive: set of sources}."""
    directives = (part.split() for part in policy.split(";") if part.strip())
    return {name.lower(): set(sources) for name, *sources in directives}


def find_chromium() -> tuple[str, str] | None:
    """Return the paths of the system's Chromium and chromedriver, or None."""
    browser = next(filter(None, map(shutil.which, CHROMIUM_CANDIDATES)), None)
    driver = shutil.which(CHROMEDRIVER)
    return (browser, driver) if browser and driver else None


def start_chromium(browser_path: str, driver_path: str, profile_dir: Path) -> webdriver.Chrome:
    """Start headless Chromium on a fresh profile in ``profile_dir``, console and network logs on.

    The explicit driver path keeps Selenium Manager (which would download a
    driver) out of the way; SE_CHROMEDRIVER must be unset, as it overrides it.
    """
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={DESKTOP_SIZE[0]},{DESKTOP_SIZE[1]}")
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@dataclass(frozen=True)
class FailedRequest:
    """A request that got no answer (``error``) or an HTTP error status."""

    url: str
    status: int | None = None
    error: str | None = None


@dataclass
class Problems:
    """What went wrong in the page: console errors and failed requests."""

    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[FailedRequest] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.console_errors or self.failed_requests)


class Browser:
    """One test's view of the shared Chromium: open pages, wait, read logs, take screenshots."""

    def __init__(self, driver: webdriver.Chrome, artifacts_dir: Path = ARTIFACTS_DIR) -> None:
        self.driver = driver
        self.artifacts_dir = artifacts_dir
        self._requested: list[str] = []
        self._problems = Problems()
        self._request_urls: dict[str, str] = {}

    def reset(self) -> None:
        """Forget the previous test: blank page, desktop size, empty cache and logs."""
        self.driver.get("about:blank")
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        self.driver.set_window_size(*DESKTOP_SIZE)
        # Park the pointer in a corner, so no page opens with a hover left by the last test.
        pointer = ActionBuilder(self.driver)
        pointer.pointer_action.move_to_location(0, 0)
        pointer.perform()
        self.driver.get_log("browser")
        self.driver.get_log("performance")
        self._requested.clear()
        self._problems = Problems()
        self._request_urls.clear()

    def open(self, url: str) -> None:
        self.driver.get(url)

    def script(self, source: str, *args: Any) -> Any:
        """Run ``source`` in the page (``return`` gives a value back)."""
        return self.driver.execute_script(source, *args)

    def async_script(self, source: str, *args: Any) -> Any:
        """Run ``source`` in the page; it answers by calling its last argument with a value."""
        return self.driver.execute_async_script(source, *args)

    def wait_for(self, condition: Callable[[], Any], what: str,
                 timeout: float = WAIT_SECONDS) -> Any:
        """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(POLL_SECONDS)

    def accessibility_violations(self) -> list[str]:
        """Return what axe-core finds wrong in the page as it is now, one line per element.

        The script is injected from the tests' own copy, through the driver,
        which the page's Content-Security-Policy does not govern: nothing is
        served, fetched or added to the page for it.
        """
        if not self.script("return typeof axe === 'object'"):
            self.script(AXE_SCRIPT.read_text(encoding="utf-8"))
        return self.async_script(RUN_AXE)

    def emulate_phone(self, width: int = 375, height: int = 740) -> None:
        """Make the viewport a phone's: ``width`` CSS pixels, touch, mobile layout."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})

    def screenshot(self, name: str, whole_page: bool = False) -> Path:
        """Save the viewport as ``<artifacts>/<name>.png`` and return the path.

        With ``whole_page``, the viewport first grows (at the same width) to the page's
        height, so the image holds the page from top to bottom.
        """
        if whole_page:
            width, height = self.script("const page = document.documentElement;"
                                        "return [page.clientWidth, page.scrollHeight];")
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        path = self.artifacts_dir / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def requested_urls(self) -> list[str]:
        """Return the URL of every request the page made since the test began."""
        self._collect()
        return list(self._requested)

    def take_problems(self) -> Problems:
        """Return the console errors and failed requests since the last call, and forget them."""
        self._collect()
        problems, self._problems = self._problems, Problems()
        return problems

    def _collect(self) -> None:
        try:
            console = self.driver.get_log("browser")
            performance = self.driver.get_log("performance")
        except WebDriverException:  # the browser is gone; the test has failed already
            return
        self._problems.console_errors += [
            entry["message"] for entry in console if entry["level"] == "SEVERE"
            or "Content Security Policy" in entry["message"]]
        for entry in performance:
            self._read_network_event(json.loads(entry["message"])["message"])

    def _read_network_event(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            self._request_urls[params["requestId"]] = url
            if not url.startswith("data:"):
                self._requested.append(url)
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            response = params["response"]
            self._problems.failed_requests.append(
                FailedRequest(response["url"], status=response["status"]))
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            url = self._request_urls.get(params["requestId"], "?")
            reason = params.get("blockedReason") or params.get("errorText")
            self._problems.failed_requests.append(FailedRequest(url, error=reason))


def publish_screenshot(source: Path, target: Path, tolerance: float = 0.005) -> bool:
    """Copy ``source`` to ``target`` if asked to and over ``tolerance`` of their pixels differ.

    Asked means ``UPDATE_SCREENSHOTS=1`` (``make screenshot``): a plain test run
    leaves the committed screenshot (e.g. the README's) alone, so the checkout
    stays clean. Even when asked, it changes with the page, not with a digit of
    a date that moved on. Returns whether it was copied.
    """
    if os.environ.get(UPDATE_SCREENSHOTS) != "1":
        return False
    if target.is_file():
        with Image.open(source) as new, Image.open(target) as old:
            if new.size == old.size:
                difference = ImageChops.difference(new.convert("RGB"), old.convert("RGB"))
                unchanged = difference.convert("L").histogram()[0]
                if new.width * new.height - unchanged <= tolerance * new.width * new.height:
                    return False
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return True
