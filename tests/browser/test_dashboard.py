"""The dashboard at / in headless Chromium, on the recorded IBM and AAPL days.

Every test fails on a console error or a failed request it did not expect
(the ``browser`` fixture checks), and every page runs under the app's strict
Content-Security-Policy.
"""
import calendar
import datetime
import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, request
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conf.settings import PROJECT_ROOT
from tests.browser.dashboard_page import (
    api, element, invalid_controls, press, price_rows, refusal, requests_held, shown_readout,
    symbol_entries, tab_to, type_dates, wait_settled, wait_shown,
)
from tests.browser.harness import (
    UPDATE_SCREENSHOTS, FailedRequest, csp_directives, publish_screenshot,
)
from app.api.caching import clear_cached_answers
from app.extensions import db
from tests.helpers import build_app, insert_prices, migrate_database, sqlite_url

README_SCREENSHOT = PROJECT_ROOT / "docs" / "dashboard.png"
MIN_COLOURED_PIXELS = 50

# Counts the chart's pixels drawn exactly in the up, down and line colours.
CHART_PIXELS = """
const done = arguments[arguments.length - 1];
import('/static/dashboard/chart.js').then(({ COLORS }) => {
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const targets = { up: rgb(COLORS.up), down: rgb(COLORS.down), line: rgb(COLORS.line) };
  const counts = { up: 0, down: 0, line: 0 };
  for (const canvas of document.querySelectorAll('#chart canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < data.length; i += 4) {
      for (const [name, [r, g, b]] of Object.entries(targets)) {
        if (data[i] === r && data[i + 1] === g && data[i + 2] === b && data[i + 3] === 255) {
          counts[name] += 1;
        }
      }
    }
  }
  done(counts);
}, (error) => done({ error: String(error) }));
"""


# --- helpers ---------------------------------------------------------------------------

def expected_stats(server, symbol: str, start: str, end: str) -> dict[str, str]:
    """The statistics as the page should show them, from the API's own answers."""
    stats = api(server, "statistics", symbol=symbol, start_date=start, end_date=end)["data"]
    count = api(server, "financial_data", symbol=symbol, start_date=start,
                end_date=end)["pagination"]["count"]
    return {
        "trading_days": f"{count:,}",
        "average_daily_open_price": f"{stats['average_daily_open_price']:.2f}",
        "average_daily_close_price": f"{stats['average_daily_close_price']:.2f}",
        "average_daily_volume": f"{stats['average_daily_volume']:,}",
    }


def month_range_start(last: str, months: int) -> str:
    """The first day of the ``months`` whole months ending on ``last``."""
    day = datetime.date.fromisoformat(last)
    year, month_index = divmod(day.month - 1 - months, 12)
    year += day.year
    clamped = min(day.day, calendar.monthrange(year, month_index + 1)[1])
    return (datetime.date(year, month_index + 1, clamped) + datetime.timedelta(days=1)).isoformat()


def address(browser) -> dict[str, str]:
    query = parse_qs(urlsplit(browser.driver.current_url).query)
    return {name: values[0] for name, values in query.items()}


def shown_stats(browser) -> dict[str, str]:
    return {cell.get_attribute("data-stat"): cell.text
            for cell in browser.driver.find_elements(By.CSS_SELECTOR, "#stats [data-stat]")}


def readout_of(row: dict) -> dict[str, str]:
    """A row of the API as the readout should show it."""
    fields = ("date", "open_price", "high_price", "low_price", "close_price")
    shown = {name: row[name] if row[name] is not None else "unknown" for name in fields}
    return {**shown, "volume": f"{int(row['volume']):,}"}


def chart_pixels(browser) -> dict[str, int]:
    counts = browser.async_script(CHART_PIXELS)
    assert "error" not in counts, counts
    return counts


def point_at(browser, x: float, y: float) -> None:
    """Move the pointer to (x, y) of the viewport."""
    pointer = ActionBuilder(browser.driver)
    pointer.pointer_action.move_to_location(round(x), round(y))
    pointer.perform()


def pressed_presets(browser) -> list[str]:
    return [button.text for button in browser.driver.find_elements(
        By.CSS_SELECTOR, "[data-preset][aria-pressed='true']")]


# --- the main view ---------------------------------------------------------------------

def test_dashboard_draws_candles_volume_and_the_statistics_of_the_range(browser, live_server):
    symbols = symbol_entries(live_server)
    first_symbol = sorted(symbols)[0]
    browser.open(live_server.url + "/")
    wait_settled(browser)

    # No address given: the first symbol, the last three months of its stored days.
    last = symbols[first_symbol]["last_date"]
    view = {"symbol": first_symbol, "start_date": month_range_start(last, 3), "end_date": last}
    assert address(browser) == view
    assert pressed_presets(browser) == ["3M"]
    rows = price_rows(live_server, *view.values())
    assert shown_stats(browser) == expected_stats(live_server, *view.values())
    assert shown_readout(browser) == readout_of(rows[-1])
    pixels = chart_pixels(browser)
    assert pixels["up"] > MIN_COLOURED_PIXELS and pixels["down"] > MIN_COLOURED_PIXELS, pixels
    assert pixels["line"] == 0, "every recorded day has a high and a low: no line"
    label = element(browser, "#chart").get_attribute("aria-label")
    assert label == (f"Candlestick chart of {first_symbol}, {rows[0]['date']} to "
                     f"{rows[-1]['date']}, {len(rows)} trading days, with daily volume below")

    screenshot = browser.screenshot("dashboard", whole_page=True)
    publish_screenshot(screenshot, README_SCREENSHOT)


def test_the_readme_screenshot_is_rewritten_only_when_asked(tmp_path, monkeypatch):
    """A plain test run leaves docs/dashboard.png alone; UPDATE_SCREENSHOTS=1 rewrites it."""
    taken, committed = tmp_path / "taken.png", tmp_path / "committed.png"
    Image.new("RGB", (40, 30), "white").save(taken)
    Image.new("RGB", (40, 30), "black").save(committed)
    before = committed.read_bytes()
    monkeypatch.delenv(UPDATE_SCREENSHOTS, raising=False)
    assert not publish_screenshot(taken, committed)
    assert committed.read_bytes() == before
    monkeypatch.setenv(UPDATE_SCREENSHOTS, "1")
    assert publish_screenshot(taken, committed)
    assert committed.read_bytes() == taken.read_bytes()


def test_every_file_and_answer_comes_from_the_app_itself(browser, live_server):
    browser.open(live_server.url + "/")
    wait_settled(browser)
    requested = browser.requested_urls()
    assert any("/static/vendor/lightweight-charts/" in url for url in requested)
    assert any("/api/statistics" in url for url in requested)
    assert [url for url in requested if not url.startswith(live_server.url + "/")] == []


def test_pointing_at_a_day_shows_its_prices_and_the_space_before_the_first_none(browser,
                                                                                live_server):
    """Five days are drawn from the right edge: the empty space left of them is no day."""
    browser.open(live_server.url + "/?symbol=IBM&start_date=2023-03-20&end_date=2023-03-24")
    wait_shown(browser, "IBM", "2023-03-20", "2023-03-24")
    rows = price_rows(live_server, "IBM", "2023-03-20", "2023-03-24")
    first = browser.async_script(CANDLES)[0]
    point_at(browser, first["x"], first["y"])
    browser.wait_for(lambda: shown_readout(browser) == readout_of(rows[0]),
                     "the readout of the first day")
    chart = element(browser, "#chart").rect
    point_at(browser, chart["x"] + 8, first["y"])
    browser.wait_for(lambda: shown_readout(browser) == readout_of(rows[-1]),
                     "the readout of the chosen day (the last), as off the chart")


def test_a_narrower_window_still_shows_every_day_of_the_view(browser, live_server):
    """A phone turned upright, a window narrowed: the first day stays at the chart's left edge."""
    browser.open(f"{live_server.url}/?symbol=IBM&start_date=2022-12-01&end_date=2023-02-01")
    wait_shown(browser, "IBM", "2022-12-01", "2023-02-01")
    rows = price_rows(live_server, "IBM", "2022-12-01", "2023-02-01")
    wide = element(browser, "#chart").rect["width"]
    browser.driver.set_window_size(700, 900)
    browser.wait_for(lambda: element(browser, "#chart").rect["width"] < wide, "a narrower chart")
    chart = element(browser, "#chart").rect
    point_at(browser, chart["x"] + 2, chart["y"] + chart["height"] / 3)
    browser.wait_for(lambda: shown_readout(browser) == readout_of(rows[0]),
                     "the readout of the first day, at the left edge")


def test_a_preset_changes_the_address_and_the_numbers(browser, live_server):
    symbols = symbol_entries(live_server)
    browser.open(live_server.url + "/?symbol=IBM")
    wait_settled(browser)
    before = shown_stats(browser)

    element(browser, "[data-preset='1M']").click()
    last = symbols["IBM"]["last_date"]
    start = month_range_start(last, 1)
    wait_shown(browser, "IBM", start, last)
    assert address(browser) == {"symbol": "IBM", "start_date": start, "end_date": last}
    assert pressed_presets(browser) == ["1M"]
    after = shown_stats(browser)
    assert after == expected_stats(live_server, "IBM", start, last)
    assert after != before

    element(browser, "[data-preset='2W']").click()
    two_weeks = (datetime.date.fromisoformat(last) - datetime.timedelta(days=13)).isoformat()
    wait_shown(browser, "IBM", two_weeks, last)
    assert shown_stats(browser) == expected_stats(live_server, "IBM", two_weeks, last)

    element(browser, "[data-preset='All']").click()
    wait_shown(browser, "IBM", symbols["IBM"]["first_date"], last)
    assert shown_stats(browser)["trading_days"] == f"{symbols['IBM']['trading_days']:,}"


def test_a_shared_address_restores_the_view_after_a_reload(browser, live_server):
    view = {"symbol": "AAPL", "start_date": "2023-01-02", "end_date": "2023-02-15"}
    browser.open(f"{live_server.url}/?symbol=aapl&start_date=2023-01-02&end_date=2023-02-15")
    for visit in ("shared link", "reload"):
        if visit == "reload":
            browser.driver.refresh()
        wait_shown(browser, *view.values())
        assert address(browser) == view, visit
        assert element(browser, "#symbol").get_attribute("value") == "AAPL"
        assert element(browser, "#start_date").get_attribute("value") == "2023-01-02"
        assert element(browser, "#end_date").get_attribute("value") == "2023-02-15"
        assert pressed_presets(browser) == []
        assert shown_stats(browser) == expected_stats(live_server, *view.values())


def test_back_returns_to_the_previous_view_and_forward_comes_back(browser, live_server):
    entry = symbol_entries(live_server)["AAPL"]
    browser.open(live_server.url + "/?symbol=AAPL&start_date=2023-01-02&end_date=2023-02-15")
    wait_shown(browser, "AAPL", "2023-01-02", "2023-02-15")
    for _ in range(2):  # pressed twice, it is still one step back
        element(browser, "[data-preset='All']").click()
        wait_shown(browser, "AAPL", entry["first_date"], entry["last_date"])
    browser.driver.back()
    wait_shown(browser, "AAPL", "2023-01-02", "2023-02-15")
    assert shown_stats(browser) == expected_stats(live_server, "AAPL", "2023-01-02", "2023-02-15")
    browser.driver.forward()
    wait_shown(browser, "AAPL", entry["first_date"], entry["last_date"])
    assert pressed_presets(browser) == ["All"]


@pytest.fixture
def long_server(serve, tmp_path):
    """LONG: 3,000 days from 2000-01-01; SHORT: exactly the 14 days 2W shows."""
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")
    application = build_app(url, tmp_path / "log")

    def days(symbol: str, first: datetime.date, count: int) -> list[dict]:
        return [{"symbol": symbol, "date": first + datetime.timedelta(days=n),
                 "open_price": Decimal("10.5"), "high_price": Decimal("12"),
                 "low_price": Decimal("9"), "close_price": Decimal("11.25"), "volume": 1000 + n}
                for n in range(count)]
    with application.app_context():
        insert_prices(db.session, days("LONG", datetime.date(2000, 1, 1), 3000)
                      + days("SHORT", datetime.date(2023, 3, 11), 14))
        db.session.commit()
    return serve(application)


def test_a_range_of_years_fits_a_phone_screen(browser, long_server):
    browser.emulate_phone(width=375)
    browser.open(long_server.url + "/?symbol=LONG")
    wait_settled(browser)
    element(browser, "[data-preset='All']").click()
    wait_shown(browser, "LONG", "2000-01-01", "2008-03-18")
    chart = element(browser, "#chart")
    ActionChains(browser.driver).move_to_element_with_offset(
        chart, -chart.size["width"] // 2 + 2, -chart.size["height"] // 4).perform()
    # The chart's left edge is within the first days, not years into the range.
    browser.wait_for(lambda: "2000-01-01" <= shown_readout(browser)["date"] <= "2000-03-01",
                     "the readout of a day at the chart's left edge")
    browser.screenshot("phone-long-range")


# The candles of the price pane, left to right: each one's width and centre in the viewport.
# A candle is a run of pixel columns holding at least two pixels of the up or down colour
# (the last price's dotted line adds at most one a column).
CANDLES = """
const done = arguments[arguments.length - 1];
import('/static/dashboard/chart.js').then(({ COLORS }) => {
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const colours = [rgb(COLORS.up), rgb(COLORS.down)];
  const canvas = document.querySelector('#chart tr:first-child td:nth-child(2) canvas');
  const { width, height } = canvas;
  const box = canvas.getBoundingClientRect();
  const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  const candles = [];
  let run = 0;
  for (let x = 0; x <= width; x += 1) {
    let coloured = 0;
    for (let y = 0; y < height && x < width; y += 1) {
      const i = (y * width + x) * 4;
      coloured += colours.some(([r, g, b]) => data[i] === r && data[i + 1] === g
                                              && data[i + 2] === b && data[i + 3] === 255);
    }
    if (coloured > 1) {
      run += 1;
    } else if (run) {
      const centre = (x - run / 2) * box.width / width;
      candles.push({ width: run, x: box.left + centre, y: box.top + box.height / 2 });
      run = 0;
    }
  }
  done(candles);
}, (error) => done(String(error)));
"""
MAX_CANDLE_WIDTH = 40  # px: about a 1M range's candles on a desktop


@pytest.mark.parametrize("start", ["2023-03-24", "2023-03-23", "2023-03-20"])
def test_a_few_days_are_drawn_as_candles_of_a_normal_width(browser, live_server, start):
    """One, two or five days: each its own candle, none spread over the chart's width."""
    browser.open(f"{live_server.url}/?symbol=IBM&start_date={start}&end_date=2023-03-24")
    wait_shown(browser, "IBM", start, "2023-03-24")
    days = len(price_rows(live_server, "IBM", start, "2023-03-24"))
    widths = [candle["width"] for candle in browser.async_script(CANDLES)]
    assert len(widths) == days and 10 <= min(widths) and max(widths) <= MAX_CANDLE_WIDTH, widths


# For each pane's price scale, its dark (text) pixels on its top and bottom rows: a label cut
# at the pane's edge, where the other pane or the time axis begins.
SCALE_EDGE_PIXELS = """
const rows = [...document.querySelectorAll('#chart tr')].slice(0, -1);  // not the time axis
return rows.map((row) => row.cells[2]?.querySelector('canvas')).filter((canvas) => canvas?.height)
  .map((canvas) => [0, canvas.height - 1].map((y) => {
    const data = canvas.getContext('2d').getImageData(0, y, canvas.width, 1).data;
    let dark = 0;
    for (let i = 0; i < data.length; i += 4) {
      dark += data[i + 3] > 0 && Math.max(data[i], data[i + 1], data[i + 2]) < 160;
    }
    return dark;
  }));
"""


@pytest.mark.parametrize("symbol, start", [("AAPL", "2023-03-24"), ("IBM", "2023-03-20")])
def test_no_price_label_is_cut_where_the_panes_meet(browser, live_server, symbol, start):
    """One or five days: a label at a pane's edge is left out, not drawn cut in half."""
    browser.open(f"{live_server.url}/?symbol={symbol}&start_date={start}&end_date=2023-03-24")
    wait_shown(browser, symbol, start, "2023-03-24")
    edges = browser.script(SCALE_EDGE_PIXELS)
    assert edges == [[0, 0], [0, 0]], edges


# How far the time axis's last drawn Dec runs past its left edge and Feb past its right (px).
EDGE_LABELS_OVERHANG = """
const rows = document.querySelectorAll('#chart tr');
const axis = rows[rows.length - 1].cells[1].querySelector('canvas');
const last = (text) => window.drawnLabels.findLast((label) => label.canvas === axis
                                                             && label.text === text);
const [dec, feb] = [last('Dec'), last('Feb')];
return dec && feb ? [-dec.left, feb.right - axis.clientWidth] : null;  // null: not drawn yet
"""


@pytest.mark.parametrize("width", [1280, 320])
def test_no_time_label_is_cut_at_the_chart_edges(browser, live_server, width):
    """From a month's first day to another's: Dec and Feb drawn whole, not centred on an edge."""
    if width != 1280:
        browser.emulate_phone(width=width)
    with drawn_texts_recorded(browser):
        browser.open(f"{live_server.url}/?symbol=IBM&start_date=2022-12-01&end_date=2023-02-01")
        wait_shown(browser, "IBM", "2022-12-01", "2023-02-01")
        # The library moves an edge's label in to within half a pixel of it.
        browser.wait_for(lambda: max(browser.script(EDGE_LABELS_OVERHANG) or [1]) <= 0.5,
                         "Dec and Feb drawn within the time axis")


def test_the_pressed_preset_stays_pressed_when_another_gives_the_same_days(
        browser, long_server):
    browser.open(long_server.url + "/?symbol=SHORT")
    wait_settled(browser)
    element(browser, "[data-preset='All']").click()
    wait_shown(browser, "SHORT", "2023-03-11", "2023-03-24")
    assert pressed_presets(browser) == ["All"], "2W gives the same days, but All was pressed"
    select = element(browser, "#symbol")
    select.find_element(By.CSS_SELECTOR, "option[value='LONG']").click()
    wait_shown(browser, "LONG", "2000-01-01", "2008-03-18")
    assert pressed_presets(browser) == ["All"]
    assert browser.script("return document.getElementById('status').textContent") == (
        "Showing LONG, 2000-01-01 to 2008-03-18: 3,000 trading days.")


# --- the picker and freshness ------------------------------------------------------------

def test_the_picker_lists_every_symbol_with_its_freshness(browser, mixed_server):
    symbols = symbol_entries(mixed_server)
    browser.open(mixed_server.url + "/")
    wait_settled(browser)
    options = browser.driver.find_elements(By.CSS_SELECTOR, "#symbol option")
    assert [option.get_attribute("value") for option in options] == sorted(symbols)
    for option in options:
        entry = symbols[option.get_attribute("value")]
        assert entry["last_date"] in option.text
        assert ("stale" in option.text) == entry["stale"]
    assert {entry["stale"] for entry in symbols.values()} == {True, False}

    for symbol, entry in symbols.items():
        browser.open(f"{mixed_server.url}/?symbol={symbol}")
        wait_settled(browser)
        freshness = element(browser, "#freshness").text
        assert freshness.startswith("Stale" if entry["stale"] else "Fresh"), freshness
        assert f"{entry['first_date']} to {entry['last_date']}" in freshness


# --- candles, lines and what is unknown --------------------------------------------------

def open_every_day(browser, server, symbol: str) -> None:
    """Open the view of every stored day of ``symbol`` and wait for its chart."""
    entry = symbol_entries(server)[symbol]
    first, last = entry["first_date"], entry["last_date"]
    browser.open(f"{server.url}/?symbol={symbol}&start_date={first}&end_date={last}")
    wait_shown(browser, symbol, first, last)


def test_days_without_high_and_low_are_drawn_as_a_line(browser, mixed_server):
    open_every_day(browser, mixed_server, "AAPL")
    pixels = chart_pixels(browser)
    assert pixels["line"] > MIN_COLOURED_PIXELS and pixels["up"] == pixels["down"] == 0, pixels
    assert element(browser, "#chart").get_attribute("aria-label").startswith("Line chart")
    assert shown_readout(browser)["high_price"] == "unknown"


def test_a_range_partly_without_high_and_low_mixes_candles_and_a_line(browser, mixed_server):
    open_every_day(browser, mixed_server, "IBM")
    pixels = chart_pixels(browser)
    assert min(pixels.values()) > MIN_COLOURED_PIXELS, pixels
    label = element(browser, "#chart").get_attribute("aria-label")
    assert "closing-price line for the" in label
    browser.screenshot("line-and-candles")


def test_the_chart_label_counts_one_day_without_high_and_low_as_one_day(browser, mixed_server):
    entry = symbol_entries(mixed_server)["IBM"]
    rows = price_rows(mixed_server, "IBM", entry["first_date"], entry["last_date"])
    start = [row for row in rows if row["high_price"] is None][-1]["date"]
    end = entry["last_date"]
    browser.open(f"{mixed_server.url}/?symbol=IBM&start_date={start}&end_date={end}")
    wait_shown(browser, "IBM", start, end)
    shown = [row for row in rows if start <= row["date"]]
    assert element(browser, "#chart").get_attribute("aria-label") == (
        f"Candlestick chart of IBM, {start} to {end}, {len(shown)} trading days, with a "
        "closing-price line for the 1 day whose high and low are unknown, and daily volume below")


# Counts the labels of the price pane's scale: bands of rows holding dark (text) pixels.
# The last price's label is white on colour, so it is not counted.
PRICE_SCALE_LABELS = """
let labels = 0;
for (const canvas of document.querySelectorAll('#chart tr:first-child td:last-child canvas')) {
  const { width, height } = canvas;
  const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
  let inLabel = false;
  for (let y = 0; y < height; y += 1) {
    let dark = false;
    for (let i = y * width * 4; i < (y + 1) * width * 4 && !dark; i += 4) {
      dark = data[i + 3] > 200 && Math.max(data[i], data[i + 1], data[i + 2]) < 110;
    }
    labels += dark && !inLabel ? 1 : 0;
    inLabel = dark;
  }
}
return labels;
"""


def serve_prices_under_a_cent(serve, tmp_path) -> str:
    """Serve CENT, 30 days priced from 0.0230 to 0.0289 (the last close); return the page's URL."""
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")
    application = build_app(url, tmp_path / "log")
    first = datetime.date(2023, 1, 2)
    with application.app_context():
        insert_prices(db.session, [
            {"symbol": "CENT", "date": first + datetime.timedelta(days=n),
             "open_price": Decimal(f"0.02{30 + 2 * n}"), "high_price": Decimal(f"0.02{31 + 2 * n}"),
             "low_price": Decimal(f"0.02{30 + 2 * n}"), "close_price": Decimal(f"0.02{31 + 2 * n}"),
             "volume": 1000} for n in range(30)])
        db.session.commit()
    return serve(application).url + "/?symbol=CENT"


def test_the_price_scale_of_prices_under_a_cent_tells_them_apart(browser, serve, tmp_path):
    """With 2 decimals, every price from 0.0231 to 0.0289 is 0.02 or 0.03: one label, "0.03"."""
    browser.open(serve_prices_under_a_cent(serve, tmp_path))
    wait_settled(browser)
    assert browser.script(PRICE_SCALE_LABELS) >= 4


# Keeps each text the page draws on a canvas (the scales' labels) in window.drawnLabels: the
# text, its canvas and font, and its left and right ends on the canvas (CSS px).
RECORD_DRAWN_TEXTS = """
window.drawnLabels = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, ...rest) {
  const width = this.measureText(text).width;
  const left = { center: x - width / 2, right: x - width, end: x - width }[this.textAlign] ?? x;
  window.drawnLabels.push({
    text: String(text), canvas: this.canvas, font: this.font, left, right: left + width,
  });
  return fillText.call(this, text, x, ...rest);
};
"""


@contextmanager
def drawn_texts_recorded(browser) -> Iterator[None]:
    """Record the canvas texts of pages opened in the block; ``drawn_texts`` reads them."""
    recorder = browser.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                              {"source": RECORD_DRAWN_TEXTS})
    try:
        yield
    finally:
        browser.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", recorder)


def drawn_texts(browser) -> list[str]:
    return browser.script("return window.drawnLabels.map((label) => label.text)")


def drawn_font_sizes(browser, since: int = 0) -> set[str]:
    """The sizes of the fonts of the canvas texts drawn, from the ``since``-th on."""
    fonts = browser.script("return window.drawnLabels.map((label) => label.font)")[since:]
    return {re.search(r"[0-9.]+px", font)[0] for font in fonts}


@contextmanager
def default_font_size(browser, size: int) -> Iterator[None]:
    """Set the browser's default font size (a reader's setting, unlike zoom) in the block."""
    browser.driver.execute_cdp_cmd("Page.setFontSizes", {"fontSizes": {"standard": size}})
    try:
        yield
    finally:
        browser.driver.execute_cdp_cmd("Page.setFontSizes", {"fontSizes": {"standard": 16}})


def test_the_chart_labels_follow_the_default_font_size(browser, live_server):
    """12 px under the usual 16 px default, 18 px under 24 px; a change, from the next view on."""
    with drawn_texts_recorded(browser), default_font_size(browser, 24):
        browser.open(live_server.url + "/?symbol=IBM")
        wait_settled(browser)
        assert browser.script("return getComputedStyle(document.documentElement).fontSize") \
            == "24px"
        assert drawn_font_sizes(browser) == {"18px"}

        browser.driver.execute_cdp_cmd("Page.setFontSizes", {"fontSizes": {"standard": 16}})
        element(browser, "[data-preset='1M']").click()
        wait_shown(browser, "IBM", "2023-02-25", "2023-03-24")
        # Whatever the chart draws from now on, here the crosshair's labels on the last day.
        drawn = len(drawn_texts(browser))
        browser.script("document.getElementById('chart').focus()")
        press(browser, Keys.END)
        browser.wait_for(lambda: len(drawn_texts(browser)) > drawn, "the crosshair's labels")
        assert drawn_font_sizes(browser, since=drawn) == {"12px"}


def test_the_price_scale_labels_of_prices_under_a_cent_read_as_the_prices(browser, serve,
                                                                          tmp_path):
    """4 decimals: the last close reads 0.0289 on the scale, and every label lies in the range."""
    url = serve_prices_under_a_cent(serve, tmp_path)
    with drawn_texts_recorded(browser):
        browser.open(url)
        wait_settled(browser)
        drawn = drawn_texts(browser)
    prices = {text for text in drawn if re.fullmatch(r"[0-9]+\.[0-9]+", text)}
    assert "0.0289" in prices, prices
    assert all(re.fullmatch(r"0\.0[23][0-9]{2}", price) for price in prices), prices


@pytest.mark.parametrize("symbol", ["IBM", "AAPL"], ids=["candles", "line"])
def test_the_last_close_has_its_tag_on_the_scale_drawn_as_candles_or_a_line(
        browser, mixed_server, symbol):
    """AAPL has no high or low on any day: its closing-price line ends with a tag too."""
    entry = symbol_entries(mixed_server)[symbol]
    last = price_rows(mixed_server, symbol, entry["first_date"], entry["last_date"])[-1]
    with drawn_texts_recorded(browser):
        open_every_day(browser, mixed_server, symbol)
        assert last["close_price"] in drawn_texts(browser)


def test_the_crosshair_label_writes_the_day_as_the_readout_does(browser, live_server):
    """The time under the pointer reads 2023-01-04, not 04 Jan '23; the axis keeps short ticks."""
    with drawn_texts_recorded(browser):
        browser.open(live_server.url + "/?symbol=IBM&start_date=2022-12-01&end_date=2023-01-31")
        wait_shown(browser, "IBM", "2022-12-01", "2023-01-31")
        ticks = drawn_texts(browser)
        chart = element(browser, "#chart")
        ActionChains(browser.driver).move_to_element_with_offset(
            chart, 0, -chart.size["height"] // 4).perform()
        # The crosshair draws two labels: the price (a number) and the time.
        time_labels = browser.wait_for(lambda: {
            text for text in drawn_texts(browser)[len(ticks):]
            if not re.fullmatch(r"[0-9.,]+", text)}, "the crosshair's time label")
    assert time_labels == {shown_readout(browser)["date"]}
    assert "Dec" in ticks and not [text for text in ticks if re.search("[0-9]{4}-", text)], ticks


def test_a_day_chosen_with_the_keys_is_scrolled_into_a_zoomed_in_chart(browser, live_server):
    """Zoomed in on the last weeks, Home shows the first day, its crosshair label naming it."""
    view = ("IBM", "2022-10-31", "2023-03-24")
    rows = price_rows(live_server, *view)
    with drawn_texts_recorded(browser):
        browser.open(
            f"{live_server.url}/?symbol={view[0]}&start_date={view[1]}&end_date={view[2]}")
        wait_shown(browser, *view)
        chart = element(browser, "#chart")
        for _ in range(4):  # zoom in with the wheel, as a reader does
            ActionChains(browser.driver).scroll_from_origin(
                ScrollOrigin.from_element(chart), 0, -300).perform()
        drawn = len(drawn_texts(browser))
        browser.script("document.getElementById('chart').focus()")
        press(browser, Keys.HOME)
        time_labels = browser.wait_for(lambda: {
            text for text in drawn_texts(browser)[drawn:]
            if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text)}, "the crosshair's time label")
    assert shown_readout(browser) == readout_of(rows[0])
    assert time_labels == {rows[0]["date"]}


# Where each name of the readout stands, how tall the readout is, and where each value ends
# against its cell's right edge (0: right-aligned).
READOUT_LAYOUT = """
const readout = document.getElementById('readout');
const cells = [...readout.children];
return {
  height: readout.getBoundingClientRect().height,
  names: cells.map((cell) => { const box = cell.querySelector('dt').getBoundingClientRect();
                               return [box.left, box.top]; }),
  valueGaps: cells.map((cell) => cell.getBoundingClientRect().right
                                 - cell.querySelector('dd').getBoundingClientRect().right),
};
"""


@pytest.mark.parametrize("width", [1280, 375])
def test_the_readout_stands_still_from_day_to_day(browser, mixed_server, width):
    """Values of other widths ("unknown" beside "142.81") move no name and no line below."""
    browser.emulate_phone(width=width)
    open_every_day(browser, mixed_server, "IBM")
    element(browser, "#chart").send_keys(Keys.HOME)
    browser.wait_for(lambda: shown_readout(browser)["high_price"] == "unknown", "an older day")
    older = browser.script(READOUT_LAYOUT)
    element(browser, "#chart").send_keys(Keys.END)
    browser.wait_for(lambda: shown_readout(browser)["high_price"] != "unknown", "the last day")
    assert browser.script(READOUT_LAYOUT) == older
    assert older["valueGaps"] == [0] * 6, "the values are right-aligned, as in the statistics"


# --- messages ------------------------------------------------------------------------------

def test_a_range_without_data_says_so_instead_of_a_blank_chart(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM&start_date=2020-01-01&end_date=2020-01-31")
    state = wait_settled(browser)
    assert state["title"] is None, "no chart is shown"
    assert state["message"].startswith(
        "No prices are stored for IBM from 2020-01-01 to 2020-01-31.")
    assert not element(browser, "#results").is_displayed()
    assert not any("/api/statistics" in url for url in browser.requested_urls())
    browser.screenshot("no-data")


def test_a_range_of_no_trading_day_among_the_stored_ones_asks_for_a_wider_one(
        browser, live_server):
    """The Christmas weekend lies within IBM's stored days: a range within them is no help."""
    entry = symbol_entries(live_server)["IBM"]
    browser.open(live_server.url + "/?symbol=IBM&start_date=2022-12-24&end_date=2022-12-26")
    assert wait_settled(browser)["message"] == (
        "No prices are stored for IBM from 2022-12-24 to 2022-12-26. IBM has prices from "
        f"{entry['first_date']} to {entry['last_date']}, but none of them falls in this range "
        "(a weekend or a holiday?): pick a wider one.")
    browser.open(live_server.url + "/?symbol=IBM&start_date=2020-01-01&end_date=2020-01-31")
    assert wait_settled(browser)["message"].endswith(
        f"IBM has prices from {entry['first_date']} to {entry['last_date']}: "
        "pick a range within those days.")


@pytest.mark.parametrize("given, completed", [
    ("start_date=2024-01-01", {"start_date": "2024-01-01", "end_date": "2024-01-01"}),
    ("end_date=2022-01-01", {"start_date": "2022-01-01", "end_date": "2022-01-01"}),
])
def test_one_date_outside_the_stored_days_completes_to_a_valid_range(browser, live_server, given,
                                                                     completed):
    browser.open(f"{live_server.url}/?symbol=IBM&{given}")
    message = wait_settled(browser)["message"]
    assert message.startswith(f"No prices are stored for IBM from {completed['start_date']} "
                              f"to {completed['end_date']}.")
    assert address(browser) == {"symbol": "IBM", **completed}
    browser.driver.refresh()
    assert wait_settled(browser)["message"] == message, "the completed address reloads as it was"


def test_an_unknown_symbol_says_so(browser, live_server):
    browser.open(live_server.url + "/?symbol=ZZZZ")
    message = "No prices are stored for ZZZZ. Pick one of the stored symbols."
    assert wait_settled(browser)["message"] == message
    assert_a_preset_asks_for_a_symbol(browser, message)
    assert address(browser) == {"symbol": "ZZZZ"}


@pytest.mark.parametrize("dates, shown", [
    ("&start_date=2023-01-03&end_date=2023-01-20", ("2023-01-03", "2023-01-20")),
    ("&start_date=2023-01-03", ("2023-01-03", None)),  # completed as the address would be
    ("", None),  # the default preset
], ids=["both dates", "a start", "none"])
def test_a_symbol_picked_under_an_unknown_symbol_s_message_keeps_the_dates_asked(
        browser, live_server, dates, shown):
    entry = symbol_entries(live_server)["IBM"]
    browser.open(f"{live_server.url}/?symbol=ZZZZ{dates}")
    wait_settled(browser)
    element(browser, "#symbol").find_element(By.CSS_SELECTOR, "option[value='IBM']").click()
    start, end = shown or (month_range_start(entry["last_date"], 3), entry["last_date"])
    wait_shown(browser, "IBM", start, end or entry["last_date"])


@pytest.mark.parametrize("query", ["symbol=ZZZZ", "symbol=IBM&start_date=2023-02-30"])
def test_the_skip_link_to_the_address_message_leaves_the_controls_as_they_are(browser,
                                                                              live_server, query):
    """It changes the fragment alone: no view, no message written again, no field emptied."""
    browser.open(f"{live_server.url}/?{query}")
    message = wait_settled(browser)["message"]
    type_dates(browser, "02012023", "02282023")  # with no symbol picked: refused
    assert refusal(browser) == "Pick a stored symbol first."
    browser.script("window.messageWrites = 0; new MutationObserver(() => window.messageWrites++)"
                   ".observe(document.getElementById('message'),"
                   "       { subtree: true, childList: true, characterData: true });")
    tab_to(browser, "skip-link")
    press(browser, Keys.ENTER)
    browser.wait_for(lambda: browser.script("return document.activeElement.id") == "message",
                     "the message to have the focus")
    browser.async_script(NEXT_FRAMES)
    assert browser.script("return window.messageWrites") == 0, "the message was written again"
    assert wait_settled(browser)["message"] == message
    assert refusal(browser) == "Pick a stored symbol first."
    assert [element(browser, f"#{field}").get_attribute("value")
            for field in ("start_date", "end_date")] == ["2023-02-01", "2023-02-28"]


def assert_a_preset_asks_for_a_symbol(browser, message: str) -> None:
    """With no symbol picked, a preset is refused under the controls; ``message`` stays."""
    element(browser, "[data-preset='2W']").click()
    assert refusal(browser) == "Pick a stored symbol first."
    assert invalid_controls(browser) == ["symbol"]
    assert wait_settled(browser)["message"] == message, "the message about the address stays"
    assert pressed_presets(browser) == []


@pytest.mark.parametrize("query, problem", [
    ("symbol=IBM&start_date=2023-02-30",
     "start_date must be a date written YYYY-MM-DD, not “2023-02-30”"),
    ("symbol=IBM&end_date=yesterday",
     "end_date must be a date written YYYY-MM-DD, not “yesterday”"),
    ("symbol=IBM&start_date=2023-03-01&end_date=2023-02-01",
     "start_date 2023-03-01 is after end_date 2023-02-01"),
    ("symbol=IBM&start_date=0000-01-01",
     "start_date must be a date written YYYY-MM-DD, not “0000-01-01”"),
    ("symbol=%24%24%24", "symbol must be 1 to 16 letters, digits, '.' or '-', starting with a "
                         "letter or digit, not “$$$”"),
])
def test_a_bad_address_names_what_is_wrong(browser, live_server, query, problem):
    browser.open(f"{live_server.url}/?{query}")
    message = f"This address cannot be shown: {problem}. Pick a symbol and a range instead."
    assert wait_settled(browser)["message"] == message
    assert not any("/api/financial_data" in url for url in browser.requested_urls())
    assert element(browser, "#symbol").get_attribute("value") == "", "no symbol seems picked"
    assert_a_preset_asks_for_a_symbol(browser, message)
    assert urlsplit(browser.driver.current_url).query == query
    if query.startswith("symbol=%24"):
        browser.screenshot("bad-address")


def test_an_api_error_is_shown_with_a_retry(browser, serve, tmp_path):
    broken = serve(build_app("mysql+pymysql://api@127.0.0.1:1/financial", tmp_path / "log"))
    browser.open(broken.url + "/")
    assert wait_settled(browser)["message"] == (
        "The API answered with an error (HTTP 503): "
        "the database is unavailable, please retry later.")
    assert element(browser, "#retry").is_displayed()
    browser.screenshot("api-error")
    browser.script("window.location.hash = 'message'")  # what the skip link does
    browser.driver.back()
    assert wait_settled(browser)["message"].startswith("The API answered with an error (HTTP 503)")
    assert element(browser, "#retry").is_displayed(), "the message keeps its Retry"
    element(browser, "[data-preset='2W']").click()  # no symbol to pick: the reason stays
    assert wait_settled(browser)["message"].startswith("The API answered with an error (HTTP 503)")
    assert element(browser, "#retry").is_displayed(), "Retry stays"
    problems = browser.take_problems()
    assert problems.failed_requests == [
        FailedRequest(f"{broken.url}/api/symbols?limit=1000&page=1", status=503)]
    assert len(problems.console_errors) == 1 and "503" in problems.console_errors[0]


@pytest.mark.parametrize("query, dates", [
    ("symbol=IBM&start_date=2023-03-01&end_date=2023-03-10", ("2023-03-01", "2023-03-10")),
    ("start_date=2023-03-01", ("2023-03-01", "")),
    ("symbol=IBM&start_date=2023-03-10&end_date=2023-03-01", ("", "")),  # refused: none shown
])
def test_symbols_that_cannot_be_loaded_leave_the_address_dates_in_the_fields(
        browser, serve, tmp_path, query, dates):
    broken = serve(build_app("mysql+pymysql://api@127.0.0.1:1/financial", tmp_path / "log"))
    browser.open(f"{broken.url}/?{query}")
    assert wait_settled(browser)["message"].startswith("The API answered with an error (HTTP 503)")
    assert (element(browser, "#start_date").get_attribute("value"),
            element(browser, "#end_date").get_attribute("value")) == dates
    assert urlsplit(browser.driver.current_url).query == query
    assert [request.status for request in browser.take_problems().failed_requests] == [503]


def test_too_many_requests_says_when_to_retry(browser, serve, recorded_database_url, tmp_path):
    # The page and the symbols are let through; their prices are over the limit.
    server = serve(build_app(recorded_database_url, tmp_path / "log", RATE_LIMIT="2 per minute"))
    browser.open(server.url + "/?symbol=IBM")
    message = wait_settled(browser)["message"]
    assert re.fullmatch(r"The API answered with an error \(HTTP 429\): too many requests\. "
                        r"Retry in [1-6]?\d seconds?\.", message), message
    assert element(browser, "#retry").is_displayed()
    assert [request.status for request in browser.take_problems().failed_requests] == [429]


def test_an_empty_database_says_so_and_retry_shows_the_first_prices(browser, serve, tmp_path):
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")
    server = serve(build_app(url, tmp_path / "log"))
    browser.open(server.url + "/")
    assert wait_settled(browser)["message"] == (
        "No prices are stored yet. Run the fetch job (python get_raw_data.py) to load some, "
        "then retry.")
    assert element(browser, "#retry").is_displayed()
    assert browser.accessibility_violations() == []
    with server.app.app_context():  # the fetch job's first run
        insert_prices(db.session, [{
            "symbol": "IBM", "date": datetime.date(2023, 3, 24), "open_price": Decimal("10.5"),
            "high_price": Decimal("12"), "low_price": Decimal("9"),
            "close_price": Decimal("11.25"), "volume": 1000}])
        db.session.commit()
        clear_cached_answers()
    element(browser, "#retry").click()
    wait_shown(browser, "IBM", month_range_start("2023-03-24", 3), "2023-03-24")


def test_a_slow_retry_of_the_symbols_shows_that_they_are_loading(browser, serve, tmp_path):
    """Retry under the empty database's message: the line under the controls says what loads."""
    url = sqlite_url(tmp_path)
    migrate_database(url, tmp_path / "log")
    server = serve(build_app(url, tmp_path / "log"))
    browser.open(server.url + "/")
    empty = wait_settled(browser)["message"]
    assert empty.startswith("No prices are stored yet.")
    with requests_held(browser, "*/api/symbols*"):
        element(browser, "#retry").click()
        browser.wait_for(lambda: browser.script(
            "return document.getElementById('status').textContent"), "the symbols to load")
        assert browser.script(SHOWN_STATUS) == "Loading the stored symbols…", (
            "nothing shows that the retry is loading")
    assert wait_settled(browser)["message"] == empty
    assert browser.script(SHOWN_STATUS) is None


TOO_MANY = "The API answered with an error (HTTP 429): too many requests."
# Records each text the message shows, from the start of the page.
MESSAGE_LOG = """
window.messagesShown = [];
new MutationObserver(() => {
  const message = document.getElementById('message');
  const text = message && !message.hidden && document.getElementById('message-text').textContent;
  if (text && text !== window.messagesShown.at(-1)) {
    window.messagesShown.push(text);
  }
}).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
"""


def refusing_prices_once(database_url: str, log_dir, retry_after: int) -> Flask:
    """The app, whose first request for prices is over the rate limit for ``retry_after`` s."""
    refused = ({"info": {"error": "too many requests"}}, 429, {"Retry-After": str(retry_after)})
    return failing_app(database_url, log_dir, "/api/financial_data", refused, times=1)


def test_the_wait_after_too_many_requests_counts_down(browser, serve, recorded_database_url,
                                                      tmp_path):
    server = serve(refusing_prices_once(recorded_database_url, tmp_path / "log", retry_after=2))
    log = browser.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                         {"source": MESSAGE_LOG})
    try:
        browser.open(server.url + "/?symbol=IBM")
        browser.wait_for(lambda: browser.script("return window.messagesShown.length") == 3,
                         "the count to reach zero")
    finally:
        browser.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", log)
    assert browser.script("return window.messagesShown") == [
        f"{TOO_MANY} Retry in 2 seconds.", f"{TOO_MANY} Retry in 1 second.",
        f"{TOO_MANY} You can retry now."]
    assert element(browser, "#retry").is_displayed()
    assert browser.accessibility_violations() == []
    assert sum("/api/financial_data" in url for url in browser.requested_urls()) == 1, (
        "the page does not retry by itself")
    element(browser, "#retry").click()
    view = address(browser)
    wait_shown(browser, "IBM", view["start_date"], view["end_date"])
    assert [request.status for request in browser.take_problems().failed_requests] == [429]


def test_another_view_stops_the_count_of_the_last_one(browser, serve, recorded_database_url,
                                                      tmp_path):
    server = serve(refusing_prices_once(recorded_database_url, tmp_path / "log", retry_after=2))
    browser.open(server.url + "/?symbol=IBM")
    assert wait_settled(browser)["message"].startswith(f"{TOO_MANY} Retry in ")
    with requests_held(browser, "*/api/financial_data*"):
        element(browser, "[data-preset='2W']").click()
        # Timers run in the order they fall due: the count would have reached zero by now.
        browser.async_script("setTimeout(arguments[arguments.length - 1], 2000)")
        message = browser.script("return document.getElementById('message-text').textContent")
        assert message == TOO_MANY, "the count of the last view went on, or stands frozen"
        view = address(browser)
        assert browser.script(SHOWN_STATUS) == (
            f"Loading IBM, {view['start_date']} to {view['end_date']}…"), (
            "the page shows that the new view is loading, as it shows any view's loading")
    wait_shown(browser, "IBM", view["start_date"], view["end_date"])
    assert [request.status for request in browser.take_problems().failed_requests] == [429]


def test_retry_on_the_last_views_message_shows_the_view_the_address_holds(
        browser, serve, recorded_database_url, tmp_path):
    server = serve(refusing_prices_once(recorded_database_url, tmp_path / "log", retry_after=2))
    browser.open(server.url + "/?symbol=IBM")
    assert wait_settled(browser)["message"].startswith(f"{TOO_MANY} Retry in ")
    with requests_held(browser, "*/api/financial_data*"):
        element(browser, "[data-preset='2W']").click()
        view = address(browser)
        element(browser, "#retry").click()  # the 429's Retry, still shown while 2W loads
    wait_shown(browser, "IBM", view["start_date"], view["end_date"])
    assert address(browser) == view, "Retry went back to the view before"
    assert [request.status for request in browser.take_problems().failed_requests] == [429]


def test_an_unreachable_api_is_shown_and_retry_recovers(browser, serve, recorded_database_url,
                                                        tmp_path):
    server = serve(build_app(recorded_database_url, tmp_path / "log"))
    browser.open(server.url + "/?symbol=IBM")
    wait_settled(browser)
    server.stop()
    element(browser, "[data-preset='2W']").click()
    assert wait_settled(browser)["message"] == (
        "The API cannot be reached: the network request failed. "
        "Check your connection and that the server is running, then retry.")
    problems = browser.take_problems()
    assert [request.error for request in problems.failed_requests] == [
        "net::ERR_CONNECTION_REFUSED"]
    assert len(problems.console_errors) == 1

    server.restart()
    element(browser, "#retry").send_keys(Keys.ENTER)  # by keyboard
    view = address(browser)
    wait_shown(browser, "IBM", view["start_date"], view["end_date"])
    assert shown_stats(browser) == expected_stats(server, *view.values())
    assert browser.script("return document.activeElement.id") == "chart", (
        "the focus moves on from the hidden Retry button")


# The status line's text when it is shown to the eye too, else null.
SHOWN_STATUS = """
const status = document.getElementById('status');
const rect = status.getBoundingClientRect();
return rect.width > 1 && rect.height > 1 ? status.textContent : null;
"""


def test_a_slow_first_view_shows_that_it_is_loading(browser, live_server):
    with requests_held(browser, "*/api/financial_data*"):
        browser.open(live_server.url + "/?symbol=IBM")
        browser.wait_for(lambda: browser.script(
            "return document.getElementById('status').textContent.startsWith('Loading IBM')"),
            "the view to be loading")
        assert (browser.script(SHOWN_STATUS) or "").startswith("Loading IBM, "), (
            "nothing shows that the view is loading")
        browser.screenshot("slow-first-view")
    assert wait_settled(browser)["title"]
    assert browser.script(SHOWN_STATUS) is None, "the chart says it all"


# --- when the page cannot start ---------------------------------------------------------

def failing_app(database_url: str, log_dir, path: str, answer, times: int | None = None) -> Flask:
    """The app, answering ``answer`` (a Flask response value) for the file at ``path``.

    With ``times``, only its first ``times`` requests get that answer.
    """
    app = build_app(database_url, log_dir)
    answered = itertools.count()

    @app.before_request
    def _answer_for_path():
        if request.path == path and (times is None or next(answered) < times):
            return answer
        return None

    return app


def broken_file(name: str, before: str = "", after: str = "") -> tuple[str, int, dict]:
    """The dashboard's module ``name`` with code added ``before`` and ``after`` its own."""
    source = (PROJECT_ROOT / "app" / "static" / "dashboard" / name).read_text(encoding="utf-8")
    return f"{before}\n{source}\n{after}", 200, {"Content-Type": "text/javascript"}


FAILURE = "throw new Error('broken on purpose');"


def wait_start_failure(browser) -> str:
    """Wait until the page says it could not start; return what it says."""
    return browser.wait_for(lambda: browser.script(
        "return !document.getElementById('message').hidden"
        " && document.getElementById('message-text').textContent"), "the start-up failure")


@pytest.mark.parametrize("path, answer, cause", [
    ("/static/dashboard/view.js", ("", 404), "TypeError: Failed to fetch dynamically imported"),
    ("/static/dashboard/api.js", broken_file("api.js", before=FAILURE),
     "Error: broken on purpose"),
    # A bug in the first view: its chart is drawn, its statistics fail.
    ("/static/dashboard/view.js",
     broken_file("view.js", after=f"renderStats = () => {{{FAILURE}}};"),
     "Error: broken on purpose"),
], ids=["missing", "failing-at-start", "failing-first-view"])
def test_a_script_that_cannot_load_or_run_is_shown(browser, serve, recorded_database_url,
                                                   tmp_path, path, answer, cause):
    server = serve(failing_app(recorded_database_url, tmp_path / "log", path, answer))
    browser.open(server.url + "/?symbol=IBM")
    message = wait_start_failure(browser)
    assert message.startswith("The dashboard could not start: its scripts failed to load or to "
                              f"run ({cause}"), message
    assert message.endswith("Reload the page to try again. The prices can also be read from "
                            "the JSON API.")
    # The browser blames dashboard.js for the module it imports: the message names no file.
    assert "/static/" not in message and ".js" not in message, message
    assert element(browser, "#message-text a").get_attribute("href") == server.url + "/api/docs"
    for hidden in ("controls", "skip-link", "retry", "results"):
        assert not element(browser, f"#{hidden}").is_displayed(), hidden
    assert browser.accessibility_violations() == []
    problems = browser.take_problems()
    assert any("could not start" in line for line in problems.console_errors)
    assert [request.status for request in problems.failed_requests] == (
        [404] if answer[1] == 404 else [])


NOT_STARTED_TEXT = ("The dashboard has not started: its scripts have not loaded. On a slow "
                    "connection, wait a moment; otherwise reload the page. The prices can also "
                    "be read from the JSON API.")
# Skips the stylesheet's delays: its delayed animations end now (no test waits for them).
END_DELAYS = "document.getAnimations().forEach((animation) => animation.finish());"


def not_started_shown(browser) -> bool:
    return element(browser, ".not-started").is_displayed()


@pytest.mark.parametrize("blocked", [False, True], ids=["missing", "blocked"])
def test_a_main_script_that_cannot_load_is_shown(browser, serve, recorded_database_url, tmp_path,
                                                 blocked):
    main_js = "/static/dashboard/main.js"
    if blocked:  # as an extension or a proxy blocks it
        server = serve(build_app(recorded_database_url, tmp_path / "log"))
        browser.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"*{main_js}"]})
    else:
        server = serve(failing_app(recorded_database_url, tmp_path / "log", main_js, ("", 404)))
    try:
        browser.open(server.url + "/?symbol=IBM")
    finally:
        browser.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    assert not not_started_shown(browser), "not at once: a slow network may still bring it"
    browser.script(END_DELAYS)
    notice = element(browser, ".not-started")
    assert notice.is_displayed() and notice.text == NOT_STARTED_TEXT
    assert element(browser, ".not-started a").get_attribute("href") == server.url + "/api/docs"
    assert not element(browser, "#controls").is_displayed(), "the controls do nothing"
    assert browser.accessibility_violations() == []
    problems = browser.take_problems()
    assert [(request.url, request.status, request.error) for request in problems.failed_requests
            ] == [(server.url + main_js, None if blocked else 404,
                   "inspector" if blocked else None)]


def test_slow_scripts_start_the_page_when_they_come(browser, live_server):
    # main.js has run; the modules it loads are held, as on a slow network.
    with requests_held(browser, "*/static/dashboard/dashboard.js"):
        browser.open(live_server.url + "/?symbol=IBM")
        browser.script(END_DELAYS)
        assert not_started_shown(browser), "a long wait says what is missing"
    assert wait_settled(browser)["title"]
    assert not not_started_shown(browser) and element(browser, "#controls").is_displayed()


def test_without_javascript_the_page_says_it_needs_it(browser, live_server):
    browser.driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.open(live_server.url + "/?symbol=IBM")
        notice = element(browser, "noscript .message")
        assert notice.text == ("The dashboard needs JavaScript, which is off in this browser. "
                               "The prices can also be read from the JSON API.")
        assert element(browser, "noscript a").get_attribute("href") == (
            live_server.url + "/api/docs")
        assert not element(browser, "#controls").is_displayed()
        browser.script(END_DELAYS)
        assert not not_started_shown(browser), "the <noscript> message says it all"
    finally:
        browser.driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


# --- keyboard, small screens, CSP ------------------------------------------------------------

def test_the_keyboard_alone_picks_a_symbol_a_range_and_a_day(browser, live_server):
    symbols = sorted(symbol_entries(live_server))
    browser.open(live_server.url + "/")
    wait_settled(browser)
    assert address(browser)["symbol"] == symbols[0]

    tab_to(browser, "symbol")
    press(browser, Keys.ARROW_DOWN)
    wait_settled(browser)
    assert address(browser)["symbol"] == symbols[1]
    assert pressed_presets(browser) == ["3M"], "the preset follows the new symbol"

    press(browser, Keys.TAB)
    assert browser.script("return document.activeElement.dataset.preset") == "2W"
    press(browser, Keys.ENTER)
    view = address(browser)
    wait_shown(browser, view["symbol"], view["start_date"], view["end_date"])
    assert pressed_presets(browser) == ["2W"]

    tab_to(browser, "chart")
    rows = price_rows(live_server, *view.values())
    press(browser, Keys.HOME)
    assert shown_readout(browser) == readout_of(rows[0])
    press(browser, Keys.ARROW_RIGHT)
    assert shown_readout(browser) == readout_of(rows[1])
    press(browser, Keys.END)
    assert shown_readout(browser) == readout_of(rows[-1])


NEXT_FRAMES = """
const done = arguments[arguments.length - 1];
requestAnimationFrame(() => requestAnimationFrame(() => done(true)));
"""


def test_a_view_shown_while_the_chart_has_the_focus_reads_its_own_last_day(
        browser, live_server):
    """Back with the chart focused on a chosen day: the new view reads its last day, as ever."""
    view = ("IBM", "2023-01-01", "2023-03-24")
    browser.open(f"{live_server.url}/?symbol={view[0]}&start_date={view[1]}&end_date={view[2]}")
    wait_shown(browser, *view)
    element(browser, "[data-preset='2W']").click()
    two_weeks = address(browser)
    wait_shown(browser, *two_weeks.values())
    tab_to(browser, "chart")
    press(browser, Keys.HOME)
    assert shown_readout(browser) == readout_of(price_rows(live_server, *two_weeks.values())[0])

    browser.driver.back()  # the chart keeps the focus
    wait_shown(browser, *view)
    browser.async_script(NEXT_FRAMES)
    rows = price_rows(live_server, *view)
    assert browser.script("return document.activeElement.id") == "chart"
    assert shown_readout(browser) == readout_of(rows[-1])
    press(browser, Keys.ARROW_LEFT)
    assert shown_readout(browser) == readout_of(rows[-2])


PHONE_LAYOUT = """
const visible = (node) => node.checkVisibility();
const hasText = (node) => [...node.childNodes]
  .some((child) => child.nodeType === Node.TEXT_NODE && child.textContent.trim());
const controls = [...document.querySelectorAll('select, input, button, #chart')].filter(visible);
const buttons = [...document.querySelectorAll('button')].filter(visible);
const texts = [...document.querySelectorAll('body *')]
  .filter((node) => visible(node) && hasText(node));
return {
  viewport: window.innerWidth,
  scrollWidth: document.documentElement.scrollWidth,
  outside: controls.filter((node) => {
    const rect = node.getBoundingClientRect();
    return rect.left < 0 || rect.right > window.innerWidth;
  }).map((node) => node.id || node.textContent),
  smallestText: Math.min(...texts.map((node) => parseFloat(getComputedStyle(node).fontSize))),
  lowestButton: Math.min(...buttons.map((node) => node.getBoundingClientRect().height)),
  chartWidth: document.getElementById('chart').getBoundingClientRect().width,
};
"""


def test_typed_dates_show_that_range(browser, live_server):
    browser.open(live_server.url + "/?symbol=IBM")
    wait_settled(browser)
    type_dates(browser, "02012023", "02282023")
    wait_shown(browser, "IBM", "2023-02-01", "2023-02-28")
    assert address(browser) == {"symbol": "IBM", "start_date": "2023-02-01",
                                "end_date": "2023-02-28"}
    assert pressed_presets(browser) == []
    assert shown_stats(browser) == expected_stats(live_server, "IBM", "2023-02-01", "2023-02-28")


@pytest.mark.parametrize("query", ["symbol=IBM",
                                   "symbol=IBM&start_date=2020-01-01&end_date=2020-01-31"],
                         ids=["chart", "no-data-message"])
def test_typed_dates_in_reverse_are_refused_beside_the_fields_and_the_view_stays(
        browser, live_server, query):
    """The refused range is not applied: what the page shows, its address and preset stay."""
    browser.open(f"{live_server.url}/?{query}")
    shown = wait_settled(browser)
    before = {"address": address(browser), "presets": pressed_presets(browser)}
    type_dates(browser, "02282023", "02012023")
    assert refusal(browser) == ("The start date 2023-02-28 is after the end date 2023-02-01: "
                                "swap them or pick a preset.")
    assert invalid_controls(browser) == ["start_date", "end_date"]
    assert wait_settled(browser) == shown
    assert {"address": address(browser), "presets": pressed_presets(browser)} == before
    assert browser.script("return document.activeElement.id") == "end_date", "the focus stays"

    element(browser, "[data-preset='2W']").click()  # any view shown ends the refusal
    last = symbol_entries(live_server)["IBM"]["last_date"]
    two_weeks = (datetime.date.fromisoformat(last) - datetime.timedelta(days=13)).isoformat()
    wait_shown(browser, "IBM", two_weeks, last)
    assert refusal(browser) is None and invalid_controls(browser) == []
    assert element(browser, "#start_date").get_attribute("value") == two_weeks


def test_a_typed_date_that_is_no_day_is_refused_beside_its_field(browser, live_server):
    """A browser without date fields takes any text: 2023-02-30 is refused, the view stays."""
    browser.open(live_server.url + "/?symbol=IBM")
    shown = wait_settled(browser)
    before = address(browser)
    browser.script("document.getElementById('start_date').type = 'text'")
    start = element(browser, "#start_date")
    start.clear()
    start.send_keys("2023-02-30", Keys.ENTER)
    assert refusal(browser) == "Write both dates as YYYY-MM-DD, from year 0001 to 9999."
    assert invalid_controls(browser) == ["start_date"]
    assert wait_settled(browser) == shown
    assert address(browser) == before and pressed_presets(browser) == ["3M"]


def test_a_refusal_stays_while_the_dates_are_reversed_and_goes_once_they_are_not(
        browser, live_server):
    """Editing the dates, not submitting them: the refusal goes when they are in order again."""
    browser.open(live_server.url + "/?symbol=IBM")
    shown = wait_settled(browser)
    before = address(browser)
    type_dates(browser, "02282023", "02012023")
    sentence = refusal(browser)
    assert sentence and invalid_controls(browser) == ["start_date", "end_date"]

    press(browser, Keys.LEFT, Keys.LEFT, "02152023")  # from the year back to the month: 02/15
    assert element(browser, "#end_date").get_attribute("value") == "2023-02-15"
    assert refusal(browser) == sentence, "still before the start"
    assert invalid_controls(browser) == ["start_date", "end_date"]

    press(browser, Keys.LEFT, Keys.LEFT, "03152023")
    assert element(browser, "#end_date").get_attribute("value") == "2023-03-15"
    assert refusal(browser) is None and invalid_controls(browser) == []
    assert wait_settled(browser) == shown and address(browser) == before, "nothing was submitted"


def test_a_refused_field_loses_its_mark_once_it_holds_a_day(browser, live_server):
    """Both dates refused: each mark goes as its field is corrected, the sentence with the last."""
    browser.open(live_server.url + "/?symbol=IBM")
    wait_settled(browser)
    browser.script("for (const id of ['start_date', 'end_date']) {"
                   "  document.getElementById(id).type = 'text'; }")
    start, end = element(browser, "#start_date"), element(browser, "#end_date")
    start.clear()
    start.send_keys("2023-02-30")
    end.clear()
    end.send_keys("2023-13-01", Keys.ENTER)
    sentence = "Write both dates as YYYY-MM-DD, from year 0001 to 9999."
    assert refusal(browser) == sentence
    assert invalid_controls(browser) == ["start_date", "end_date"]

    start.send_keys(Keys.BACKSPACE * 2, "28")  # 2023-02-28: a day
    assert refusal(browser) == sentence and invalid_controls(browser) == ["end_date"]
    end.send_keys(Keys.BACKSPACE)  # 2023-13-0: still no day
    assert refusal(browser) == sentence and invalid_controls(browser) == ["end_date"]
    end.clear()
    end.send_keys("2023-03-01")
    assert refusal(browser) is None and invalid_controls(browser) == []


def test_the_page_fits_a_phone_screen(browser, live_server):
    browser.emulate_phone(width=375)
    browser.open(live_server.url + "/?symbol=IBM")
    wait_settled(browser)
    layout = browser.script(PHONE_LAYOUT)
    assert layout["viewport"] == 375
    assert layout["scrollWidth"] <= 375, "nothing scrolls sideways"
    assert layout["outside"] == []
    assert layout["smallestText"] >= 12
    assert layout["lowestButton"] >= 40, "buttons are big enough to tap"
    assert layout["chartWidth"] >= 300
    pixels = chart_pixels(browser)
    assert pixels["up"] > MIN_COLOURED_PIXELS and pixels["down"] > MIN_COLOURED_PIXELS
    browser.screenshot("phone")


@contextmanager
def touch_screen(browser) -> Iterator[None]:
    """Make the page's pointer a finger, as on a phone, until the block ends."""
    browser.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled",
                                   {"enabled": True, "maxTouchPoints": 1})
    try:
        yield
    finally:
        browser.driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})


def swipe_up(browser, x: float, y: float, distance: int = 150) -> None:
    """Drag a finger ``distance`` px up from (x, y) of the viewport, as to scroll the page down."""
    def touch(kind: str, points: list[dict]) -> None:
        browser.driver.execute_cdp_cmd("Input.dispatchTouchEvent",
                                       {"type": kind, "touchPoints": points})

    touch("touchStart", [{"x": x, "y": y}])
    for step in range(1, 11):
        touch("touchMove", [{"x": x, "y": y - distance * step / 10}])
    touch("touchEnd", [])


def page_scroll(browser) -> float:
    return browser.script("return window.scrollY")


def test_a_finger_swiping_up_on_the_chart_scrolls_the_page(browser, live_server):
    """On a phone the chart fills half the screen: a vertical swipe on it must move the page."""
    browser.emulate_phone(width=360)
    with touch_screen(browser):
        browser.open(live_server.url + "/?symbol=IBM&start_date=2023-01-01&end_date=2023-03-24")
        wait_shown(browser, "IBM", "2023-01-01", "2023-03-24")
        browser.script("window.scrollTo(0, 200)")
        chart = browser.script("return document.getElementById('chart').getBoundingClientRect()")
        swipe_up(browser, chart["x"] + chart["width"] / 2, chart["y"] + chart["height"] * 0.6)
        browser.wait_for(lambda: page_scroll(browser) > 300, "the page to scroll down")


def test_every_control_has_a_label(browser, live_server):
    browser.open(live_server.url + "/")
    wait_settled(browser)
    unlabelled = browser.script("""
        return [...document.querySelectorAll('select, input, button, [tabindex]')]
          .filter((node) => !(node.labels?.length || node.getAttribute('aria-label')
                              || node.textContent.trim()))
          .map((node) => node.outerHTML);
    """)
    assert unlabelled == []


# What the contract's policy allows the HTML pages: nothing inline, nothing from elsewhere.
STRICT_CSP = {"script-src": {"'self'"}, "style-src": {"'self'"}, "img-src": {"'self'", "data:"},
              "connect-src": {"'self'"}}
CSP_LISTENER = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_the_page_works_under_the_contract_csp(browser, live_server):
    served = csp_directives(requests.get(live_server.url + "/", timeout=10)
                            .headers["Content-Security-Policy"])
    for directive, sources in STRICT_CSP.items():
        assert served[directive] == sources, directive
    listener = browser.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                              {"source": CSP_LISTENER})
    try:
        browser.open(live_server.url + "/?symbol=IBM")
        assert wait_settled(browser)["title"]
        assert chart_pixels(browser)["up"] > MIN_COLOURED_PIXELS
        assert browser.script("return window.cspViolations") == []
        # The listener does catch a violation: an inline style is refused.
        browser.script("document.head.append(Object.assign("
                       "document.createElement('style'), {textContent: 'p {}'}))")
        browser.wait_for(lambda: browser.script("return window.cspViolations.length"),
                         "the injected style to be refused")
        assert browser.take_problems().console_errors
    finally:
        browser.driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", listener)
