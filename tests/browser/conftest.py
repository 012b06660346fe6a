"""Fixtures for tests in a real browser: Chromium, live servers, loaded data.

- ``browser``: a ``Browser`` on the session's one headless Chromium, reset per
  test. After the test, any console error or failed request the test did not
  take (``browser.take_problems()``) fails it, and a failed test leaves a
  screenshot in ``test-artifacts/browser/``.
- ``live_server``: the app on a SQLite database loaded from the recorded
  AlphaVantage responses by the fetch job (``--from-file``), served by a real
  WSGI server thread (with the app's own headers, its Content-Security-Policy too).
- ``mixed_server``: the same days as a database from before high/low were
  stored would hold some of them, plus a symbol fetched today (not stale).
- ``serve``: serve any other app (e.g. one whose database is down) the same way.

The tests are skipped, with the reason, only when no Chromium is installed.
A test of another page needs nothing more than::

    def test_swagger_ui_lists_the_operations(browser, live_server):
        browser.open(live_server.url + "/api/docs")
        browser.wait_for(lambda: browser.script("return document.querySelector('.opblock')"),
                         "the first operation")
        browser.screenshot("swagger-ui")
"""
import datetime
import re
import shutil
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from flask import Flask
from selenium import webdriver
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from tests.browser.harness import (
    ARTIFACTS_DIR, INSTALL_HINT, Browser, LiveServer, find_chromium, start_chromium,
)
from financial.models import FinancialData
from tests.fake_alphavantage import AAPL, ALPHAVANTAGE_FIXTURES, IBM
from tests.helpers import build_app, insert_prices, load_recorded_responses, sqlite_url

RECORDED_RESPONSES = (ALPHAVANTAGE_FIXTURES / IBM, ALPHAVANTAGE_FIXTURES / AAPL)
_REPORTS = pytest.StashKey[dict]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so a fixture can tell whether its test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    """The session's one headless Chromium (starting one per test would cost seconds)."""
    paths = find_chromium()
    if paths is None:
        pytest.skip(f"no Chromium and chromedriver on PATH: {INSTALL_HINT}")
    shutil.rmtree(ARTIFACTS_DIR, ignore_errors=True)  # no screenshot of an earlier run misleads
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SE_CHROMEDRIVER", raising=False)
        driver = start_chromium(*paths, tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium, request) -> Iterator[Browser]:
    """A clean page; fails the test on console errors or failed requests it did not take."""
    page = Browser(chromium)
    page.reset()
    yield page
    reports = request.node.stash.get(_REPORTS, {})
    if any(report.failed for report in reports.values()):
        page.screenshot("FAILED-" + re.sub(r"[^\w.-]+", "_", request.node.name))
    problems = page.take_problems()
    assert not problems, f"the page reported problems: {problems}"


@pytest.fixture(scope="session")
def recorded_database_url(tmp_path_factory) -> str:
    """A SQLite database holding the recorded IBM and AAPL days, loaded by the fetch job."""
    folder = tmp_path_factory.mktemp("recorded-db")
    url = sqlite_url(folder)
    load_recorded_responses(url, folder / "log", RECORDED_RESPONSES)
    return url


@pytest.fixture(scope="session")
def live_server(recorded_database_url, tmp_path_factory) -> Iterator[LiveServer]:
    """The app on the recorded data, served on a free port for the whole session."""
    yield from _served(recorded_database_url, tmp_path_factory.mktemp("live-log"))


@pytest.fixture(scope="session")
def mixed_database_url(tmp_path_factory) -> str:
    """The recorded days, some without high and low, and a symbol whose last day is today.

    AAPL has no high or low on any day and IBM none on its older half, as rows
    stored before those columns existed; NEW has one day, today, so it is fresh.
    """
    folder = tmp_path_factory.mktemp("mixed-db")
    url = sqlite_url(folder)
    load_recorded_responses(url, folder / "log", RECORDED_RESPONSES)
    unknown_range = {"high_price": None, "low_price": None}
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            ibm = FinancialData.symbol == "IBM"
            days = connection.scalars(select(FinancialData.date).where(ibm)
                                      .order_by(FinancialData.date)).all()
            connection.execute(update(FinancialData).values(unknown_range)
                               .where(ibm, FinancialData.date < days[len(days) // 2]))
            connection.execute(update(FinancialData).values(unknown_range)
                               .where(FinancialData.symbol == "AAPL"))
        # With its monthly sums, as the fetch job stores a day: without them, the statistics
        # of a range ending on the last day of a month (today, once a month) find no day.
        with Session(engine) as session, session.begin():
            insert_prices(session, [{
                "symbol": "NEW", "date": datetime.date.today(), "open_price": Decimal("10.5"),
                "high_price": Decimal("11"), "low_price": Decimal("10"),
                "close_price": Decimal("10.75"), "volume": 1000}])
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def mixed_server(mixed_database_url, tmp_path_factory) -> Iterator[LiveServer]:
    """The app on ``mixed_database_url``, served for the whole session."""
    yield from _served(mixed_database_url, tmp_path_factory.mktemp("mixed-log"))


def _served(database_url: str, log_dir) -> Iterator[LiveServer]:
    server = LiveServer(build_app(database_url, log_dir))
    yield server
    server.stop()


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], LiveServer]]:
    """Serve an app of the test's own; stopped after the test."""
    servers: list[LiveServer] = []

    def _serve(app: Flask) -> LiveServer:
        servers.append(LiveServer(app))
        return servers[-1]

    yield _serve
    for server in servers:
        server.stop()
