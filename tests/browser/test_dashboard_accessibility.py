"""The dashboard for keyboard and screen reader users, and on small screens.

axe-core (vendored in ``tests/browser/vendor/``) checks each state the page
can be in against WCAG 2.1 A and AA and its best practices: any violation,
whatever its impact, fails the test with one line per element.
"""
import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from selenium.webdriver.common.keys import Keys

from tests.browser.dashboard_page import (
    element, price_rows, press, refusal, requests_held, shown_readout, symbol_entries, tab_to,
    type_dates, wait_settled, wait_shown,
)
from app.extensions import db
from tests.helpers import build_app, insert_prices, migrate_database, sqlite_url

NARROWEST_WIDTH = 320  # CSS px: WCAG's reflow width, a 1280 px screen zoomed to 400%
LONGEST_SYMBOL = "W" * 16  # the contract's longest (VARCHAR(16)), of its widest letter
PAGE_TITLE = "Stock prices · Financial data"


def accessible(browser, css: str) -> dict:
    """Return what Chromium tells a screen reader of an element.

    That is its role, name, description, whether it is invalid, and its value text.

    The value text is the element's aria-valuetext: Debian's Chromium leaves the
    DevTools protocol's ``valuetext`` empty, even for its own date fields.
    """
    found = browser.driver.execute_cdp_cmd("Runtime.evaluate", {
        "expression": f"document.querySelector({css!r})"})
    node = browser.driver.execute_cdp_cmd("Accessibility.getPartialAXTree", {
        "objectId": found["result"]["objectId"], "fetchRelatives": False})["nodes"][0]
    properties = {item["name"]: item["value"].get("value") for item in node.get("properties", [])}
    return {"role": node["role"]["value"], "name": node["name"]["value"],
            "description": node.get("description", {}).get("value", ""),
            "invalid": properties.get("invalid", "false"),
            "valuetext": browser.script(
                "return document.querySelector(arguments[0]).getAttribute('aria-valuetext')", css)}


def spoken_day(row: dict) -> str:
    """A day of the API as the chart's value should read it."""
    unknown = "unknown"
    return (f"{row['date']}: open {row['open_price']}, high {row['high_price'] or unknown}, "
            f"low {row['low_price'] or unknown}, close {row['close_price']}, "
            f"volume {int(row['volume']):,}")


def test_the_chart_view_and_a_message_pass_axe(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM")
    assert wait_settled(browser)["title"]
    assert browser.accessibility_violations() == []

    browser.open(live_server.url + "/?symbol=IBM&start_date=2020-01-01&end_date=2020-01-31")
    assert wait_settled(browser)["message"]
    assert browser.accessibility_violations() == []


def test_a_screen_reader_moves_through_the_days_of_the_chart(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM&start_date=2023-03-01&end_date=2023-03-24")
    wait_shown(browser, "IBM", "2023-03-01", "2023-03-24")
    rows = price_rows(live_server, "IBM", "2023-03-01", "2023-03-24")
    tab_to(browser, "chart", limit=25)
    # A slider, not an image: screen readers pass its arrow keys on instead of
    # reading the page with them, and say its value, the day, at each key.
    chart = accessible(browser, "#chart")
    assert chart["role"] == "slider"
    assert chart["name"].startswith("Candlestick chart of IBM, 2023-03-01 to 2023-03-24")
    assert chart["valuetext"] == spoken_day(rows[-1])
    for keys, index in ((Keys.HOME, 0), (Keys.ARROW_UP, 1), (Keys.ARROW_RIGHT, 2),
                        (Keys.ARROW_DOWN, 1), (Keys.ARROW_LEFT, 0), (Keys.END, -1)):
        press(browser, keys)
        assert accessible(browser, "#chart")["valuetext"] == spoken_day(rows[index]), keys
        assert shown_readout(browser)["date"] == rows[index]["date"]


def test_a_refused_range_is_an_alert_that_describes_the_fields_at_fault(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM")
    assert wait_settled(browser)["title"]
    type_dates(browser, "02282023", "02012023")
    assert accessible(browser, "#refusal")["role"] == "alert"
    for css in ("#start_date", "#end_date"):
        field = accessible(browser, css)
        assert (field["description"], field["invalid"]) == (refusal(browser), "true"), css
    assert accessible(browser, "#symbol")["invalid"] == "false"
    assert browser.accessibility_violations() == []
    browser.screenshot("refused-dates")


def test_retry_that_ends_in_a_message_without_retry_leaves_the_focus_on_the_message(
        browser, serve, tmp_path):
    url = sqlite_url(tmp_path)  # no schema yet: the API answers 503
    server = serve(build_app(url, tmp_path / "log"))
    browser.open(server.url + "/?symbol=ZZZZ")
    assert "HTTP 503" in wait_settled(browser)["message"]
    migrate_database(url, tmp_path / "log")  # up, with a symbol, but not that one
    with server.app.app_context():
        insert_prices(db.session, [{
            "symbol": "IBM", "date": datetime.date(2023, 3, 24), "open_price": Decimal("10.5"),
            "high_price": Decimal("12"), "low_price": Decimal("9"),
            "close_price": Decimal("11.25"), "volume": 1000}])
        db.session.commit()
    tab_to(browser, "retry", limit=25)
    press(browser, Keys.ENTER)
    browser.wait_for(
        lambda: wait_settled(browser)["message"].startswith("No prices are stored for ZZZZ"),
        "the message that the symbol is not stored")
    assert not element(browser, "#retry").is_displayed()
    assert browser.script("return document.activeElement.id") == "message", (
        "the focus is not lost with the hidden Retry button")
    assert [request.status for request in browser.take_problems().failed_requests] == [503]


def test_a_message_replacing_the_focused_chart_takes_the_focus(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM&start_date=2020-01-01&end_date=2020-01-31")
    assert wait_settled(browser)["message"]
    element(browser, "[data-preset='2W']").click()
    assert wait_settled(browser)["title"]
    tab_to(browser, "chart", limit=25)
    browser.driver.back()  # Alt+Left
    assert wait_settled(browser)["message"].startswith("No prices are stored for IBM")
    assert browser.script("return document.activeElement.id") == "message"


@contextmanager
def without_check_visibility(browser) -> Iterator[None]:
    """Open pages in the block as a browser without ``Element.checkVisibility()`` would.

    Safari before 17.4 (and Chrome 105, Firefox 106) has no such method: it is
    deleted in each new page before the page's own scripts run.
    """
    added = browser.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {
        "source": "delete Element.prototype.checkVisibility;"})
    try:
        yield
    finally:
        browser.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {
            "identifier": added["identifier"]})


def shown_around_the_message(browser) -> dict:
    """The focus, the tab's title, the status and the skip link, which a message updates."""
    return browser.script("""return {
        focus: document.activeElement.id, title: document.title,
        status: document.getElementById('status').textContent,
        skip: document.getElementById('skip-link').textContent,
        checkVisibility: typeof Element.prototype.checkVisibility };""")


def test_a_message_over_the_focused_chart_needs_no_check_visibility(browser, live_server):
    with without_check_visibility(browser):
        browser.open(live_server.url + "/?symbol=IBM&start_date=2020-01-01&end_date=2020-01-31")
        assert wait_settled(browser)["message"]
        element(browser, "[data-preset='2W']").click()
        assert wait_settled(browser)["title"]
        tab_to(browser, "chart", limit=25)
        browser.driver.back()
        assert wait_settled(browser)["message"].startswith("No prices are stored for IBM")
        assert shown_around_the_message(browser) == {
            "focus": "message", "title": PAGE_TITLE, "status": "",
            "skip": "Skip to the message", "checkVisibility": "undefined"}


# Counts the messages the page writes from now on, the same text again too.
COUNT_MESSAGES = """
window.messagesShown = 0;
new MutationObserver(() => { window.messagesShown += 1; }).observe(
  document.getElementById('message-text'), { childList: true });
"""


def test_retry_failing_again_needs_no_check_visibility(browser, serve, tmp_path):
    broken = serve(build_app("mysql+pymysql://api@127.0.0.1:1/financial", tmp_path / "log"))
    with without_check_visibility(browser):
        browser.open(broken.url + "/")
        assert "HTTP 503" in wait_settled(browser)["message"]
        browser.script(COUNT_MESSAGES)
        tab_to(browser, "retry", limit=25)
        press(browser, Keys.ENTER)
        browser.wait_for(lambda: browser.script("return window.messagesShown"),
                         "the message of the second HTTP 503")
        # The message keeps its Retry, and the Retry button its focus.
        assert shown_around_the_message(browser) == {
            "focus": "retry", "title": PAGE_TITLE, "status": "",
            "skip": "Skip to the message", "checkVisibility": "undefined"}
    problems = browser.take_problems()
    assert [request.status for request in problems.failed_requests] == [503, 503]
    assert len(problems.console_errors) == 2, problems.console_errors  # one for each 503


@pytest.mark.parametrize("query, target, text", [
    ("symbol=IBM", "chart", "Skip to the chart"),
    ("symbol=IBM&start_date=2020-01-01&end_date=2020-01-31", "message", "Skip to the message"),
])
def test_the_skip_link_leads_past_the_controls_to_what_is_shown(browser, live_server, query,
                                                                target, text):
    browser.open(f"{live_server.url}/?{query}")
    wait_settled(browser)
    tab_to(browser, "skip-link", limit=1)  # the first stop on the page
    assert element(browser, "#skip-link").text == text
    press(browser, Keys.ENTER)
    assert browser.script("return document.activeElement.id") == target


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


PRESET_LOOKS = """
return Object.fromEntries([...document.querySelectorAll('[data-preset]')].map((button) => {
  const style = getComputedStyle(button);
  return [button.dataset.preset,
          [style.backgroundColor, style.color, style.borderColor, style.borderWidth].join(' ')];
}));
"""


def test_the_pressed_preset_stands_out_in_forced_colours(browser, live_server):
    # Windows' contrast themes replace the page's colours with the user's own.
    browser.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "forced-colors", "value": "active"}]})
    try:
        browser.open(live_server.url + "/?symbol=IBM")
        wait_settled(browser)
        assert browser.script("return matchMedia('(forced-colors: active)').matches")
        looks = browser.script(PRESET_LOOKS)
        assert looks["3M"] not in {looks[name] for name in ("2W", "1M", "1Y", "All")}, looks
        assert browser.accessibility_violations() == []
    finally:
        browser.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


# Each field's border, the page's background around it and its own inside it.
FIELD_EDGES = """
const page = getComputedStyle(document.body).backgroundColor;
return [...document.querySelectorAll('select, input')].map((field) => {
  const style = getComputedStyle(field);
  return [field.id, style.borderTopColor, page, style.backgroundColor];
});
"""


def contrast(*colours: str) -> float:
    """The WCAG contrast ratio of two opaque CSS rgb() colours."""
    def luminance(colour: str) -> float:
        channels = [int(part) / 255 for part in colour[colour.index("(") + 1:-1].split(",")[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    light, dark = sorted(map(luminance, colours), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_edges_of_the_fields_have_3_to_1_contrast(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM")
    wait_settled(browser)
    for field, border, around, inside in browser.script(FIELD_EDGES):
        assert contrast(border, around) >= 3 and contrast(border, inside) >= 3, field


def test_the_narrowest_screen_passes_axe(browser, live_server):
    browser.emulate_phone(width=NARROWEST_WIDTH, height=640)
    browser.open(live_server.url + "/?symbol=AAPL")
    assert wait_settled(browser)["title"]
    assert browser.accessibility_violations() == []


# The date fields' widths on the page, and the width one takes when nothing narrows it.
DATE_FIELD_WIDTHS = """
const fields = ['start_date', 'end_date'].map((id) => document.getElementById(id));
const probe = fields[0].parentElement.cloneNode(true);
probe.style.position = 'absolute';
document.body.append(probe);
const natural = probe.querySelector('input').offsetWidth;
probe.remove();
return { natural, shown: fields.map((field) => field.offsetWidth) };
"""


# Each date in an element (its id the argument), with the number of lines its characters are on.
DATE_LINES = """
const walker = document.createTreeWalker(document.getElementById(arguments[0]),
                                         NodeFilter.SHOW_TEXT);
const texts = []; // [text node, its offset in the element's text]
let text = '';
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  texts.push([node, text.length]);
  text += node.textContent;
}
const at = (offset, isEnd) => {
  const [node, start] = texts.findLast(([, from]) => (isEnd ? from < offset : from <= offset));
  return [node, offset - start];
};
return [...text.matchAll(/\\d{4}-\\d{2}-\\d{2}/g)].map((match) => {
  const range = document.createRange();
  range.setStart(...at(match.index, false));
  range.setEnd(...at(match.index + match[0].length, true));
  const lines = new Set([...range.getClientRects()].map((rect) => Math.round(rect.bottom)));
  return [match[0], lines.size];
});
"""


def test_the_dates_of_the_chart_title_are_whole_on_the_narrowest_screen(browser, live_server):
    browser.emulate_phone(width=NARROWEST_WIDTH, height=640)
    browser.open(live_server.url + "/?symbol=IBM&start_date=2023-03-01&end_date=2023-03-24")
    wait_shown(browser, "IBM", "2023-03-01", "2023-03-24")
    assert browser.script(DATE_LINES, "chart-title") == [["2023-03-01", 1], ["2023-03-24", 1]]


def test_the_dates_of_a_message_are_whole_on_a_phone(browser, live_server):
    browser.emulate_phone(width=390)
    browser.open(live_server.url + "/?symbol=IBM&start_date=2024-01-01")
    assert wait_settled(browser)["message"].startswith("No prices are stored for IBM")
    dates = ["2024-01-01", "2024-01-01", "2022-10-31", "2023-03-24"]
    assert browser.script(DATE_LINES, "message-text") == [[date, 1] for date in dates]


def test_the_dates_of_the_freshness_line_are_whole_at_every_phone_width(browser, live_server):
    """Its stored range and its last fetch's day: wherever the line wraps, no date is cut."""
    browser.open(live_server.url + "/?symbol=IBM")
    assert wait_settled(browser)["title"]
    broken = {}
    for width in range(NARROWEST_WIDTH, 769, 4):  # up to the one-column layout's widest
        browser.emulate_phone(width=width)
        dates = browser.script(DATE_LINES, "freshness")
        assert len(dates) == 3, dates  # first and last stored day, the last fetch's day
        broken.update({width: dates for _, lines in dates if lines > 1})
    assert broken == {}


def test_the_dates_are_whole_on_the_narrowest_screen(browser, live_server):
    browser.emulate_phone(width=NARROWEST_WIDTH, height=640)
    browser.open(live_server.url + "/?symbol=IBM")
    assert wait_settled(browser)["title"]
    widths = browser.script(DATE_FIELD_WIDTHS)
    assert min(widths["shown"]) >= widths["natural"], f"a date is cut off: {widths}"


# The picked symbol's width in the closed picker, and the width it needs to be whole.
PICKED_SYMBOL_WIDTHS = """
const select = document.getElementById('symbol');
const probe = select.cloneNode(false);
probe.append(new Option(select.selectedOptions[0].text));
Object.assign(probe.style, { position: 'absolute', width: 'auto', minWidth: '0',
                             maxWidth: 'none' });
document.body.append(probe);
const natural = probe.offsetWidth;
probe.remove();
return { natural, shown: select.offsetWidth };
"""


def test_the_picked_symbol_is_whole_on_the_narrowest_screen(browser, mixed_server):
    entry = symbol_entries(mixed_server)["IBM"]
    assert entry["stale"]
    browser.emulate_phone(width=NARROWEST_WIDTH, height=640)
    browser.open(mixed_server.url + "/?symbol=IBM")
    assert wait_settled(browser)["title"]
    widths = browser.script(PICKED_SYMBOL_WIDTHS)
    assert widths["shown"] >= widths["natural"], f"the picked symbol is cut off: {widths}"
    picked = browser.script("return document.getElementById('symbol').selectedOptions[0].text")
    assert picked == f"IBM · {entry['last_date']} · stale", "the freshness stays"

    browser.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})  # turned wide
    browser.wait_for(lambda: "last day" in browser.script(
        "return document.getElementById('symbol').selectedOptions[0].text"),
        "the full option text on a wide screen")


@pytest.fixture
def longest_symbol_server(serve, tmp_path):
    """LONGEST_SYMBOL with one stored day, and nothing else."""
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")
    application = build_app(url, tmp_path / "log")
    with application.app_context():
        insert_prices(db.session, [{
            "symbol": LONGEST_SYMBOL, "date": datetime.date(2023, 3, 24),
            "open_price": Decimal("10.5"), "high_price": Decimal("12"), "low_price": Decimal("9"),
            "close_price": Decimal("11.25"), "volume": 1000}])
        db.session.commit()
    return serve(application)


def test_the_longest_symbol_is_whole_on_the_narrowest_screen(browser, longest_symbol_server):
    browser.emulate_phone(width=NARROWEST_WIDTH, height=640)
    browser.open(f"{longest_symbol_server.url}/?symbol={LONGEST_SYMBOL}")
    assert wait_settled(browser)["title"]
    widths = browser.script(PICKED_SYMBOL_WIDTHS)
    assert widths["shown"] >= widths["natural"], f"the picked symbol is cut off: {widths}"
    assert browser.script(
        "return document.getElementById('symbol').selectedOptions[0].text") == LONGEST_SYMBOL
    assert browser.script("return document.documentElement.scrollWidth") <= NARROWEST_WIDTH, (
        "the page scrolls sideways")


def test_the_dates_of_the_loading_line_are_whole_at_every_phone_width(browser,
                                                                      longest_symbol_server):
    """The line saying which view loads, shown while no chart is: no date in it is cut."""
    with requests_held(browser, "*/api/financial_data*"):
        browser.open(f"{longest_symbol_server.url}/?symbol={LONGEST_SYMBOL}"
                     "&start_date=2023-03-01")
        browser.wait_for(lambda: browser.script(
            "return document.getElementById('status').textContent.startsWith('Loading W')"),
            "the view to be loading")
        broken = {}
        for width in range(NARROWEST_WIDTH, 769, 4):  # up to the one-column layout's widest
            browser.emulate_phone(width=width)
            dates = browser.script(DATE_LINES, "status")
            assert [date for date, _ in dates] == ["2023-03-01", "2023-03-24"], dates
            broken.update({width: dates for _, lines in dates if lines > 1})
        assert broken == {}
    assert wait_settled(browser)["title"]


def test_a_message_quoting_a_long_address_fits_the_narrowest_screen(browser, live_server):
    browser.emulate_phone(width=NARROWEST_WIDTH, height=640)
    browser.open(f"{live_server.url}/?symbol={'X' * 60}")
    # Quoted cut to 40 characters, still a word wider than the screen.
    assert f"“{'X' * 37}...”" in wait_settled(browser)["message"]
    assert browser.script("return document.documentElement.scrollWidth") <= NARROWEST_WIDTH, (
        "the page scrolls sideways")


def test_an_api_error_passes_axe(browser, serve, tmp_path):
    broken = serve(build_app("mysql+pymysql://api@127.0.0.1:1/financial", tmp_path / "log"))
    browser.open(broken.url + "/")
    assert "HTTP 503" in wait_settled(browser)["message"]
    assert element(browser, "#retry").is_displayed()
    assert browser.accessibility_violations() == []
    assert [request.status for request in browser.take_problems().failed_requests] == [503]
