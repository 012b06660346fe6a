"""Fixtures of the integration tests: the fetch job's environment, a stored day for the cache's."""
import datetime
from decimal import Decimal

import pytest

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
def ibm_day(make_price) -> dict:
    """One IBM day in January 2023 (``STATS_URL``'s range): open 10.00, close 20.00."""
    return make_price(symbol="IBM", date=datetime.date(2023, 1, 3),
                      open_price=Decimal("10.00"), close_price=Decimal("20.00"), volume=100)
