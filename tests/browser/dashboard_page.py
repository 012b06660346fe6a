"""Read and drive the dashboard at / in a ``Browser``, for the test modules that test it.

A module of its own, not a test module: a test module imported by another one
would be imported twice by pytest (the test folders are no packages), once
under each name, with its module-level state twice.
"""
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

SETTLED_STATE = """
const message = document.getElementById('message');
const results = document.getElementById('results');
if (results.getAttribute('aria-busy') === 'true' || (message.hidden && results.hidden)) {
  return null;
}
return {
  message: message.hidden ? null : document.getElementById('message-text').textContent,
  title: results.hidden ? null : document.getElementById('chart-title').textContent,
};
"""


def api(server, path: str, **params) -> dict:
    response = requests.get(f"{server.url}/api/{path}", params=params, timeout=10)
    return response.json()


def symbol_entries(server) -> dict[str, dict]:
    return {entry["symbol"]: entry for entry in api(server, "symbols", limit=1000)["data"]}


def price_rows(server, symbol: str, start: str, end: str) -> list[dict]:
    body = api(server, "financial_data", symbol=symbol, start_date=start, end_date=end,
               fields="all", limit=1000)
    assert body["pagination"]["pages"] <= 1, "the recorded data fits one page"
    return body["data"]


def wait_settled(browser) -> dict:
    """Wait until the page shows results or a message; return the chart title or the message."""
    return browser.wait_for(lambda: browser.script(SETTLED_STATE), "the dashboard to settle")


def wait_shown(browser, symbol: str, start: str, end: str) -> None:
    """Wait until the page shows the chart of exactly this view."""
    title = f"{symbol}, {start} to {end}"
    browser.wait_for(lambda: (browser.script(SETTLED_STATE) or {}).get("title") == title,
                     f"the chart of {title}")


def type_dates(browser, start: str, end: str) -> None:
    """Type both dates, as the browser's date fields take them in en-US (mmddyyyy); press Enter."""
    tab_to(browser, "start_date")
    press(browser, start)
    tab_to(browser, "end_date")
    press(browser, end, Keys.ENTER)


def refusal(browser) -> str | None:
    """The sentence under the controls refusing what they asked for, or None when none is shown."""
    return browser.script("const refusal = document.getElementById('refusal');"
                          "return refusal && !refusal.hidden ? refusal.textContent : null;")


def invalid_controls(browser) -> list[str]:
    """The ids of the controls marked as holding what was refused."""
    return browser.script("return [...document.querySelectorAll('#controls [aria-invalid=true]')]"
                          ".map((node) => node.id);")


def shown_readout(browser) -> dict[str, str]:
    return {cell.get_attribute("data-field"): cell.text
            for cell in browser.driver.find_elements(By.CSS_SELECTOR, "#readout [data-field]")}


def element(browser, css: str):
    return browser.driver.find_element(By.CSS_SELECTOR, css)


def press(browser, *keys: str) -> None:
    ActionChains(browser.driver).send_keys(*keys).perform()


def tab_to(browser, element_id: str, limit: int = 15) -> None:
    """Press Tab until the element has the focus, failing after ``limit`` presses."""
    for _ in range(limit):
        press(browser, Keys.TAB)
        if browser.script("return document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} is not reachable with Tab")


@contextmanager
def requests_held(browser, url_pattern: str) -> Iterator[None]:
    """Hold the page's requests to URLs matching ``url_pattern`` until the block ends.

    The page stays in its loading state for as long as the test needs, with no
    timing involved; leaving the block lets the held requests go on.
    """
    browser.driver.execute_cdp_cmd("Fetch.enable", {"patterns": [{"urlPattern": url_pattern}]})
    try:
        yield
    finally:
        browser.driver.execute_cdp_cmd("Fetch.disable", {})
