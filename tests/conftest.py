"""Shared fixtures: apps on SQLite and (when TEST_MYSQL_URL is set) MariaDB/MySQL.

Each database backend is migrated once per session; every test then starts
from empty tables and an empty cache. Tests of behaviour that does not depend
on the database (validation, 404/405, OpenAPI, CORS) take ``sqlite_app`` or
``sqlite_client`` and run once; the rest take ``app``/``client`` and run on
every backend.
"""
import datetime
import locale
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from types import SimpleNamespace

import pytest
from faker import Faker
from flask import Flask
from pytest_httpserver import HTTPServer
from urllib3.util import retry as urllib3_retry
from werkzeug.wrappers import Request, Response

from app.extensions import db
from financial.ingest import recent_days, store_symbol
from lib.avantage_api import read_saved_response
from tests.fake_alphavantage import ALPHAVANTAGE_FIXTURES, FakeAlphaVantage, QuietHTTPServer
from tests.helpers import (
    LARGE_ROWS, build_app, create_mysql_database, dispose_engines, drop_mysql_database,
    emptied_app,
    insert_prices, insert_synthetic_rows, load_sample, migrate_database, sqlite_url,
)
from tests.servers import PrivateRedis

TEST_MYSQL_URL = os.environ.get("TEST_MYSQL_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
# flask, the fetch job and gunicorn read the checkout's .env (python-dotenv);
# a developer's own (a key, a rate limit, a database) must steer no test, nor
# any program a test starts, which inherit this. A test of .env clears it.
os.environ["PYTHON_DOTENV_DISABLED"] = "1"


@pytest.fixture(scope="session")
def sqlite_database_url(tmp_path_factory) -> str:
    """URL of a migrated, session-wide SQLite test database."""
    url = sqlite_url(tmp_path_factory.mktemp("db"))
    migrate_database(url, tmp_path_factory.mktemp("log"))
    return url


@pytest.fixture(scope="session")
def mysql_database_url(tmp_path_factory) -> Iterator[str]:
    """URL of a migrated, session-wide MariaDB/MySQL test database of its own."""
    if not TEST_MYSQL_URL:
        pytest.skip("TEST_MYSQL_URL is not set")
    url = create_mysql_database(TEST_MYSQL_URL)
    try:
        migrate_database(url, tmp_path_factory.mktemp("log"))
        yield url
    finally:
        drop_mysql_database(url)


@pytest.fixture(scope="session", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request) -> str:
    """URL of a migrated, session-wide test database, one per backend."""
    return request.getfixturevalue(f"{request.param}_database_url")


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def empty_database_url(request, tmp_path) -> Iterator[str]:
    """URL of a database of its own with no tables at all, one per backend (for migrations)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    if not TEST_MYSQL_URL:
        pytest.skip("TEST_MYSQL_URL is not set")
    url = create_mysql_database(TEST_MYSQL_URL)
    try:
        yield url
    finally:
        drop_mysql_database(url)


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def large_database_url(request, tmp_path_factory) -> Iterator[str]:
    """A database of its own holding LARGE_ROWS synthetic rows, one per backend and module."""
    log_dir = tmp_path_factory.mktemp("large-log")
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("large"))
    elif TEST_MYSQL_URL:
        url = create_mysql_database(TEST_MYSQL_URL)
    else:
        pytest.skip("TEST_MYSQL_URL is not set")
    try:
        migrate_database(url, log_dir)
        application = build_app(url, log_dir)
        with application.app_context():
            insert_synthetic_rows(db.session, LARGE_ROWS)
            db.engine.dispose()
        yield url
    finally:
        if request.param == "mysql":
            drop_mysql_database(url)


@pytest.fixture
def app(database_url, tmp_path):
    """A testing app on empty tables with an empty cache."""
    yield from emptied_app(build_app(database_url, tmp_path / "log"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sqlite_app(sqlite_database_url, tmp_path):
    """A testing app on SQLite only, for what every backend does alike."""
    yield from emptied_app(build_app(sqlite_database_url, tmp_path / "log"))


@pytest.fixture
def sqlite_client(sqlite_app):
    return sqlite_app.test_client()


@pytest.fixture
def mysql_app(mysql_database_url, tmp_path):
    """A testing app on MariaDB/MySQL only, to compare with ``sqlite_app``."""
    yield from emptied_app(build_app(mysql_database_url, tmp_path / "mysql-log"))


@pytest.fixture(scope="session",
                params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def sample_database_url(request, tmp_path_factory) -> Iterator[str]:
    """A database of its own holding the bundled sample, loaded as `make run` loads it.

    One per backend and session: the tests that take it only read.
    """
    folder = tmp_path_factory.mktemp("sample")
    if request.param == "sqlite":
        url = sqlite_url(folder)
    elif TEST_MYSQL_URL:
        url = create_mysql_database(TEST_MYSQL_URL)
    else:
        pytest.skip("TEST_MYSQL_URL is not set")
    try:
        load_sample(url, folder / "log")
        yield url
    finally:
        if request.param == "mysql":
            drop_mysql_database(url)


@pytest.fixture
def sample_app(sample_database_url, tmp_path) -> Iterator[Flask]:
    """A testing app on the sample database (read it, do not change it)."""
    application = build_app(sample_database_url, tmp_path / "log")
    yield application
    dispose_engines(application)


@pytest.fixture
def sample_client(sample_app):
    return sample_app.test_client()


@pytest.fixture
def db_session(app):
    """The app's session inside an app context, for calling services directly."""
    with app.app_context():
        yield db.session
        db.session.rollback()


@pytest.fixture
def mysql_session(mysql_app):
    """``db_session`` on MariaDB/MySQL only, for what only that backend does."""
    with mysql_app.app_context():
        yield db.session
        db.session.rollback()


@pytest.fixture
def redis_url():
    if not TEST_REDIS_URL:
        pytest.skip("TEST_REDIS_URL is not set")
    return TEST_REDIS_URL


@pytest.fixture
def redis_app(database_url, tmp_path, redis_url):
    """A testing app whose cache is the real Redis (TEST_REDIS_URL's database).

    It keeps the default key prefix, so a fetch job run with the same
    CACHE_REDIS_URL clears exactly what this app cached.
    """
    yield from emptied_app(build_app(
        database_url, tmp_path / "log", CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url))


@pytest.fixture
def private_redis(tmp_path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own on a free port, free to be killed or paused."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def stall() -> Iterator[Callable[[Request], Response]]:
    """A fake AlphaVantage handler that answers only when the test ends: a stalled upstream."""
    release = threading.Event()

    def handler(_request: Request) -> Response:
        release.wait(60)
        return Response("{}", content_type="application/json")

    yield handler
    release.set()


@pytest.fixture
def backoffs(monkeypatch) -> list[float]:
    """Record the backoffs urllib3's retries sleep between attempts, instead of sleeping them.

    Only urllib3's retry module sees the stand-in clock; the client's own
    waits go through its injected ``sleep``.
    """
    slept: list[float] = []
    monkeypatch.setattr(urllib3_retry, "time", SimpleNamespace(sleep=slept.append, time=time.time))
    return slept


@pytest.fixture
def fake():
    faker = Faker()
    Faker.seed(1234)
    return faker


@pytest.fixture
def make_price(fake):
    """Build a record dict as the table stores it; keywords override fields."""
    def _make(**overrides) -> dict:
        record = {
            "symbol": fake.lexify("????").upper(),
            "date": fake.date_between(datetime.date(2020, 1, 1), datetime.date(2024, 12, 31)),
            "open_price": Decimal(fake.pydecimal(left_digits=3, right_digits=4, positive=True)),
            "close_price": Decimal(fake.pydecimal(left_digits=3, right_digits=4, positive=True)),
            "volume": fake.random_int(0, 100_000_000),
        }
        record.update(overrides)
        return record
    return _make


@pytest.fixture
def store_prices(app):
    """Insert records straight into the table (bypassing the fetch job)."""
    def _store(records: list[dict]) -> None:
        with app.app_context():
            insert_prices(db.session, records)
            db.session.commit()
    return _store


RECORDED_ANSWERS = ("IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json",
                    "AAPL_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json",
                    "IBM_TIME_SERIES_DAILY_compact_2024-06-18.json")


@pytest.fixture
def recorded_prices(app) -> None:
    """Store every day of the recorded AlphaVantage answers, as the fetch job stores them.

    IBM and AAPL 2022-10-31..2023-03-24 with adjusted values, IBM 2024-01-26..
    2024-06-18 without (TIME_SERIES_DAILY), and one MSFT day, 2023-03-24,
    stored before high and low were kept.
    """
    with app.app_context():
        for name in RECORDED_ANSWERS:
            series = read_saved_response(ALPHAVANTAGE_FIXTURES / name)
            store_symbol(db.session(), series.symbol, recent_days(series, None))
        insert_prices(db.session, [
            {"symbol": "MSFT", "date": datetime.date(2023, 3, 24), "open_price": Decimal("277.24"),
             "close_price": Decimal("280.57"), "volume": 28199180}])
        db.session.commit()


@pytest.fixture(scope="session")
def fake_alphavantage_server() -> Iterator[HTTPServer]:
    """One threaded server for the session; threaded so a stalled handler blocks nobody else."""
    server = QuietHTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_alphavantage(fake_alphavantage_server: HTTPServer) -> Iterator[FakeAlphaVantage]:
    """A fresh fake AlphaVantage per test; fails the test on unqueued requests or handler errors."""
    server = fake_alphavantage_server
    server.clear()
    fake = FakeAlphaVantage(server)
    server.expect_request("/query").respond_with_handler(fake.dispatch)
    yield fake
    server.clear_all_handlers()
    server.check()
    assert not fake.unexpected, f"requests with no queued response: {fake.unexpected}"


@pytest.fixture(scope="session")
def turkish_locale_path(tmp_path_factory) -> str:
    """A LOCPATH folder holding tr_TR.UTF-8, built with localedef (few machines install it)."""
    folder = tmp_path_factory.mktemp("locales")
    try:
        subprocess.run(["localedef", "-i", "tr_TR", "-f", "UTF-8", str(folder / "tr_TR.UTF-8")],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no localedef, or it cannot build tr_TR.UTF-8")
    return str(folder)


@pytest.fixture
def turkish_locale(request, monkeypatch) -> Iterator[None]:
    """The C library's character handling of LANG=tr_TR.UTF-8 (no lower case of "I" is "i")."""
    previous = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "tr_TR.UTF-8")
    except locale.Error:
        monkeypatch.setenv("LOCPATH", request.getfixturevalue("turkish_locale_path"))
        locale.setlocale(locale.LC_CTYPE, "tr_TR.UTF-8")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
