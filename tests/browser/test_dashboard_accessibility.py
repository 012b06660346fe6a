"""The dashboard for keyboard and screen reader users, and on small screens.

axe-core (vendored in ``tests/browser/vendor/``) checks each state the page
can be in against WCAG 2.1 A and AA and its best practices: any violation,
whatever its impact, fails the test with one line per element.
"""
from collections.abc import Iterator
from contextlib import contextmanager

from tests.browser.test_dashboard import element, wait_settled
from tests.helpers import build_app

NARROWEST_WIDTH = 320  # CSS px: WCAG's reflow width, a 1280 px screen zoomed to 400%


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


def test_the_chart_view_and_a_message_pass_axe(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM")
    assert wait_settled(browser)["title"]
    assert browser.accessibility_violations() == []

    browser.open(live_server.url + "/?symbol=IBM&start_date=2020-01-01&end_date=2020-01-31")
    assert wait_settled(browser)["message"]
    assert browser.accessibility_violations() == []


def test_the_results_being_replaced_stay_readable_and_say_so(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM")
    wait_settled(browser)
    with requests_held(browser, "*/api/financial_data*"):
        element(browser, "[data-preset='1M']").click()
        browser.wait_for(lambda: element(browser, "#results").get_attribute("aria-busy") == "true",
                         "the results to be marked busy")
        assert browser.accessibility_violations() == []
        assert "loading" in browser.script(
            "return getComputedStyle(document.getElementById('chart-title'), '::after').content")
    assert wait_settled(browser)["title"]


def test_the_narrowest_screen_passes_axe(browser, live_server):
    browser.emulate_phone(width=NARROWEST_WIDTH, height=640)
    browser.open(live_server.url + "/?symbol=AAPL")
    assert wait_settled(browser)["title"]
    assert browser.accessibility_violations() == []


def test_an_api_error_passes_axe(browser, serve, tmp_path):
    broken = serve(build_app("mysql+pymysql://api@127.0.0.1:1/financial", tmp_path / "log"))
    browser.open(broken.url + "/")
    assert "HTTP 503" in wait_settled(browser)["message"]
    assert element(browser, "#retry").is_displayed()
    assert browser.accessibility_violations() == []
    assert [request.status for request in browser.take_problems().failed_requests] == [503]
