"""Shared fixtures: apps on SQLite and (when TEST_MYSQL_URL is set) MariaDB/MySQL.

Each database backend is migrated once per session; every test then starts
from empty tables and an empty cache.
"""
import datetime
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from faker import Faker
from pytest_httpserver import HTTPServer
from flask_migrate import upgrade
from sqlalchemy import create_engine, delete, insert, text
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import cache, db
from financial.models import FinancialData
from tests.fake_alphavantage import FakeAlphaVantage, QuietHTTPServer

TEST_MYSQL_URL = os.environ.get("TEST_MYSQL_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")


def build_app(database_url: str, log_dir, **overrides):
    """Create a testing app on ``database_url`` with logs in ``log_dir``."""
    settings = {"SQLALCHEMY_DATABASE_URI": database_url, "LOG_DIR": str(log_dir),
                "CACHE_TYPE": "SimpleCache", **overrides}
    return create_app("testing", overrides=settings)


def migrate_database(database_url: str, log_dir) -> None:
    app = build_app(database_url, log_dir)
    with app.app_context():
        upgrade()
        db.engine.dispose()


def _mysql_database(tmp_path_factory):
    if not TEST_MYSQL_URL:
        pytest.skip("TEST_MYSQL_URL is not set")
    name = f"test_financial_{uuid.uuid4().hex[:10]}"
    server = create_engine(make_url(TEST_MYSQL_URL).set(database=""))
    with server.begin() as connection:
        connection.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    url = make_url(TEST_MYSQL_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate_database(url, tmp_path_factory.mktemp("log"))
        yield url
    finally:
        with server.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        server.dispose()


@pytest.fixture(scope="session", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request, tmp_path_factory):
    """URL of a migrated, session-wide test database, one per backend."""
    if request.param == "mysql":
        yield from _mysql_database(tmp_path_factory)
        return
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'financial.db'}"
    migrate_database(url, tmp_path_factory.mktemp("log"))
    yield url


def emptied_app(application) -> Iterator:
    """Yield ``application`` with empty tables and cache; clean up after the test."""
    with application.app_context():
        db.session.execute(delete(FinancialData))
        db.session.commit()
        cache.clear()
    yield application
    with application.app_context():
        cache.clear()
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(database_url, tmp_path):
    """A testing app on empty tables with an empty cache."""
    yield from emptied_app(build_app(database_url, tmp_path / "log"))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db_session(app):
    """The app's session inside an app context, for calling services directly."""
    with app.app_context():
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
            db.session.execute(insert(FinancialData), records)
            db.session.commit()
    return _store


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
