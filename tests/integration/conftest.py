"""Fixtures of the integration tests: the fetch job's environment, a stored day for the cache's,
a database user with few connections."""
import datetime
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.api import health
from tests.helpers import KEY, isolated_environment


@pytest.fixture
def job_env(monkeypatch, app, tmp_path, fake_alphavantage):
    """Environment of a fetch run against the test database and the fake server."""
    values = {
        "APP_ENV": "testing", "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "LOG_DIR": str(tmp_path / "joblog"), "ALPHAVANTAGE_API_KEY": KEY,
        "ALPHAVANTAGE_BASE_URL": fake_alphavantage.url, "ALPHAVANTAGE_REQUEST_INTERVAL": "0",
        "ALPHAVANTAGE_RETRY_WAIT": "0", "ALPHAVANTAGE_BACKOFF_FACTOR": "0",
        "CACHE_TYPE": "SimpleCache", "SYMBOLS": "IBM,AAPL",
    }
    for name, value in isolated_environment(**values).items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def health_clock(monkeypatch) -> list[float]:
    """The clock of /api/health's shared probe, moved by hand: ``[0]`` is the time in seconds."""
    now = [1000.0]
    monkeypatch.setattr(health, "monotonic", lambda: now[0])
    return now


@pytest.fixture
def ibm_day(make_price) -> dict:
    """One IBM day in January 2023 (``STATS_URL``'s range): open 10.00, close 20.00."""
    return make_price(symbol="IBM", date=datetime.date(2023, 1, 3),
                      open_price=Decimal("10.00"), close_price=Decimal("20.00"), volume=100)


@pytest.fixture
def limited_user_url(mysql_database_url) -> Iterator[Callable[[int], str]]:
    """Make users of the MariaDB/MySQL test database allowed ``limit`` connections; return a URL.

    Called as ``limited_user_url(limit)``; the users are dropped after the
    test. The server's own max_connections is shared by every test and
    program on it, so the tests never lower it: an account's
    MAX_USER_CONNECTIONS runs out the same way, for that account alone.
    """
    url = make_url(mysql_database_url)
    admin = create_engine(url)
    users: list[str] = []

    def _make(limit: int) -> str:
        name, password = f"test_limited_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
        with admin.begin() as connection:
            connection.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}' "
                                    f"WITH MAX_USER_CONNECTIONS {limit}"))
            users.append(name)
            connection.execute(text(f"GRANT ALL ON `{url.database}`.* TO '{name}'@'%'"))
        return url.set(username=name, password=password).render_as_string(hide_password=False)

    try:
        yield _make
    finally:
        with admin.begin() as connection:
            for name in users:
                connection.execute(text(f"DROP USER IF EXISTS '{name}'@'%'"))
        admin.dispose()
