"""Helpers the tests and their fixtures share: building apps and test databases."""
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from flask_migrate import upgrade
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, delete, insert, select, text, update
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

import get_raw_data

from app import create_app
from app.extensions import cache, db
from conf.settings import PROJECT_ROOT, BaseConfig, ConfigError, read_config
from financial.models import FetchRun, FetchRunSymbol, FinancialData, MonthlyPriceSums
from financial.monthly_sums import refresh_monthly_sums

# The API key the fetch job's tests configure; it must never show anywhere.
KEY = "SECRETKEY123"
FETCH_JOB_TIMEOUT_SECONDS = 120
# Not a bound on how long anything may take: it keeps a timeout that is lost
# from hanging the run, and is far past every timeout under test, however
# loaded the machine. Tests assert what was given up on, not when.
HANG_GUARD_SECONDS = 30


def call_guarded(function: Callable, *args, **kwargs):
    """Return ``function(*args, **kwargs)``, run in another thread; fail past HANG_GUARD_SECONDS.

    What it raises is raised here. A call still waiting is left to end as
    the test's fake server or proxy closes; its thread is a daemon, so even
    a call that never ends cannot hold the test run open at its exit.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread as it is
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_SECONDS)
    if thread.is_alive():
        raise AssertionError(f"{getattr(function, '__qualname__', function)} still waits after "
                             f"{HANG_GUARD_SECONDS}s: no timeout ended the wait")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def get_config(env_name: str | None = None) -> BaseConfig:
    """Build the config object for ``env_name`` (default: APP_ENV or development).

    Raises ConfigError naming every malformed or missing setting, in the order read.
    """
    config = read_config(env_name)
    if config.problems.found:
        raise ConfigError(*config.problems.found) from None
    return config


def build_app(database_url: str, log_dir, **overrides) -> Flask:
    """Create a testing app on ``database_url`` with logs in ``log_dir``."""
    settings = {"SQLALCHEMY_DATABASE_URI": database_url, "LOG_DIR": str(log_dir),
                "CACHE_TYPE": "SimpleCache", **overrides}
    return create_app("testing", overrides=settings)


def closed(response: TestResponse) -> TestResponse:
    """Close ``response`` as a server would, and return it (status and headers stay).

    An unread export still holds its database connection; left to the garbage
    collector, Python 3.13 warns "unclosed database" (an error in the tests).
    """
    response.close()
    return response


def dispose_engines(application: Flask) -> None:
    """Close the pooled connections of every engine of ``application`` (the export's too)."""
    with application.app_context():
        for engine in db.engines.values():
            engine.dispose()


def migrate_database(database_url: str, log_dir) -> None:
    """Bring the schema of ``database_url`` up to date with the migrations."""
    application = build_app(database_url, log_dir)
    with application.app_context():
        upgrade()
        db.engine.dispose()


def sqlite_url(folder) -> str:
    """Return the URL of a SQLite file in ``folder``."""
    return f"sqlite:///{folder / 'financial.db'}"


def delete_redis_keys(url: str, pattern: str) -> None:
    """Delete the keys matching ``pattern`` at ``url``: a test's own, on a shared Redis."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(pattern))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def create_mysql_database(server_url: str, charset: str = "utf8mb4") -> str:
    """Create an empty database of a unique name on the server; return its URL."""
    name = f"test_financial_{uuid.uuid4().hex[:10]}"
    server = create_engine(make_url(server_url).set(database=""))
    try:
        with server.begin() as connection:
            connection.execute(text(f"CREATE DATABASE {name} CHARACTER SET {charset}"))
    finally:
        server.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_mysql_database(database_url: str) -> None:
    """Drop the database ``database_url`` names, if it exists."""
    url = make_url(database_url)
    server = create_engine(url.set(database=""))
    try:
        with server.begin() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {url.database}"))
    finally:
        server.dispose()


def emptied_app(application: Flask) -> Iterator[Flask]:
    """Yield ``application`` with empty tables and cache; clean up after the test."""
    with application.app_context():
        for model in (FetchRunSymbol, FetchRun, FinancialData, MonthlyPriceSums):
            db.session.execute(delete(model))
        db.session.commit()
        cache.clear()
    yield application
    with application.app_context():
        cache.clear()
        db.session.remove()
    dispose_engines(application)


def documented_variables() -> list[str]:
    """Every variable .env.example lists: all the settings a developer's .env may hold."""
    lines = (PROJECT_ROOT / ".env.example").read_text().splitlines()
    return [line.split("=", 1)[0] for line in lines if re.match(r"[A-Z_]+=", line)]


def isolated_environment(**values: str) -> dict[str, str]:
    """os.environ with every documented setting blank unless given.

    The job loads the project's .env, but never over a variable already set,
    so a developer's own .env (an API key, other symbols) cannot steer a test.
    """
    return {**os.environ, **dict.fromkeys(documented_variables(), ""), **values}


def naming_a_day_twice(payload: dict[str, Any], day: str, first: Any) -> str:
    """Return ``payload`` as JSON text whose series names ``day`` twice: ``first``, then its own."""
    return naming_twice(payload, ("Time Series (Daily)",), day, first)


def naming_twice(payload: dict[str, Any], where: tuple[str, ...], key: str, first: Any) -> str:
    """Return ``payload`` as JSON text whose object at ``where`` names ``key`` twice.

    ``where`` is the keys leading to the object, none for the top level; it
    names ``key`` first with ``first``, then with its own value.
    ``json.loads`` keeps the second; only the text shows the first.
    """
    target = payload
    for step in where:
        target = target[step]
    text = json.dumps(payload)
    opening = f"{json.dumps(where[-1])}: {{" if where else "{"
    assert key in target and (not where or text.count(opening) == 1)
    return text.replace(opening, f"{opening}{json.dumps(key)}: {json.dumps(first)}, ", 1)


def run_job(capsys, job_env, *argv):
    """Run the fetch job; return (exit status, stdout, stderr), checking the key leaked nowhere."""
    status = get_raw_data.main(list(argv))
    out, err = capsys.readouterr()
    log_dir = Path(job_env["LOG_DIR"])
    logs = "".join(path.read_text() for path in log_dir.glob("*.log")) if log_dir.exists() else ""
    for where, content in (("stdout", out), ("stderr", err), ("log", logs)):
        assert KEY not in content, f"API key leaked to {where}"
    return status, out, err


def stored(app, symbol=None):
    """Return {(symbol, date): (open, close, volume)} of the table."""
    with app.app_context():
        query = select(FinancialData)
        if symbol:
            query = query.where(FinancialData.symbol == symbol)
        rows = db.session.scalars(query).all()
        return {(r.symbol, r.date): (r.open_price, r.close_price, int(r.volume)) for r in rows}


STATS_URL = "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-01-31"


def change_open_price(application: Flask, value: str) -> None:
    """Change every stored open price behind the cache's back, as the fetch job would."""
    with application.app_context():
        db.session.execute(update(FinancialData).values(open_price=Decimal(value)))
        refresh_monthly_sums(db.session)
        db.session.commit()


def open_price_of(client, url: str = STATS_URL) -> float:
    """Return the average open price the statistics at ``url`` answer (with a 200)."""
    response = client.get(url)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["average_daily_open_price"]


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def history(app) -> tuple[dict[int, FetchRun], dict[int, dict[str, FetchRunSymbol]]]:
    """Return the runs by id and, per run, its symbol rows by symbol."""
    with app.app_context():
        runs = {run.id: run for run in db.session.scalars(select(FetchRun))}
        symbols: dict[int, dict[str, FetchRunSymbol]] = {run_id: {} for run_id in runs}
        for row in db.session.scalars(select(FetchRunSymbol)):
            symbols[row.run_id][row.symbol] = row
        db.session.expunge_all()
    return runs, symbols


def free_port() -> int:
    """Return a TCP port nothing listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Rows of the large test database: enough that an export held in memory shows.
LARGE_ROWS = 200_000


def synthetic_rows(count: int, chunk_size: int = 10_000) -> Iterator[list[dict]]:
    """Yield ``count`` made-up rows with every column filled, ``chunk_size`` at a time.

    100 symbols share the days, so the rows span count / 100 days from 2000-01-03.
    """
    first_day = datetime.date(2000, 1, 3)
    for start in range(0, count, chunk_size):
        yield [{"symbol": f"S{n % 100:03d}", "date": first_day + datetime.timedelta(days=n // 100),
                "open_price": Decimal("100.1234"), "high_price": Decimal("110.5"),
                "low_price": Decimal("90.25"), "close_price": Decimal("105.0001"),
                "adjusted_close_price": Decimal("104.9876"), "volume": 123456789 + n,
                "dividend_amount": Decimal("0.0000"), "split_coefficient": Decimal("1.0")}
               for n in range(start, min(start + chunk_size, count))]


def insert_synthetic_rows(session, count: int) -> None:
    """Insert and commit ``count`` rows of ``synthetic_rows``."""
    for chunk in synthetic_rows(count):
        session.execute(insert(FinancialData), chunk)
    refresh_monthly_sums(session)
    session.commit()


def insert_prices(session, records: list[dict]) -> None:
    """Insert rows straight into financial_data, with the monthly sums the fetch job keeps."""
    session.execute(insert(FinancialData), records)
    refresh_monthly_sums(session)


def every_listed_row(client, query: str) -> list[dict]:
    """Every row GET /api/financial_data lists for ``query``, page after page."""
    rows, page = [], 1
    while True:
        body = client.get(f"/api/financial_data?{query}&limit=1000&page={page}").get_json()
        rows += body["data"]
        if page >= body["pagination"]["pages"]:
            return rows
        page += 1


def load_recorded_responses(database_url: str, log_dir, paths) -> None:
    """Load saved AlphaVantage responses into ``database_url`` as an operator would.

    Runs the fetch job (``get_raw_data.py --full --from-file ...``) in a
    process of its own, which also brings the schema up to date.
    """
    files = [arg for path in paths for arg in ("--from-file", str(path))]
    _run_fetch_job(database_url, log_dir, "--full", *files)


def load_sample(database_url: str, log_dir) -> None:
    """Load the bundled sample into ``database_url`` as `make run` does, without an API key."""
    _run_fetch_job(database_url, log_dir, "--sample-if-no-key")


def _run_fetch_job(database_url: str, log_dir, *args: str) -> None:
    env = isolated_environment(APP_ENV="testing", DATABASE_URL=database_url,
                               LOG_DIR=str(log_dir), CACHE_TYPE="SimpleCache")
    job = subprocess.run([sys.executable, "get_raw_data.py", *args],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                         timeout=FETCH_JOB_TIMEOUT_SECONDS)
    assert job.returncode == 0, f"the fetch job failed ({' '.join(args)}):\n{job.stderr}"


# Values of a sample answer that depend on when the sample was loaded.
VOLATILE_KEYS = frozenset({"id", "started_at", "finished_at", "last_fetched_at",
                           "sessions_behind"})


def masked(body):
    """Return ``body`` with each VOLATILE_KEYS value replaced by its type's name, recursively."""
    if isinstance(body, dict):
        return {key: type(value).__name__ if key in VOLATILE_KEYS else masked(value)
                for key, value in body.items()}
    if isinstance(body, list):
        return [masked(item) for item in body]
    return body


def data_commands(client) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, leaving out connection bookkeeping."""
    bookkeeping = ("cmdstat_info", "cmdstat_config", "cmdstat_client", "cmdstat_hello")
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in client.info("commandstats").items()
            if not name.startswith(bookkeeping)}


# The error envelope's body besides "info": a list endpoint's, any other endpoint's.
LIST_ERROR = {"data": [], "pagination": None}
OBJECT_ERROR = {"data": {}}
# What an error body must never show: internals that belong in the log.
LEAK_MARKERS = ("Traceback", "SELECT", "sqlalchemy", str(PROJECT_ROOT), ".py",
                "financial_data WHERE")


def assert_error(response, status, message, shape):
    """Assert an uncacheable JSON error of ``shape`` saying ``message``, leaking nothing."""
    assert response.status_code == status
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {**shape, "info": {"error": message}}
    text = response.get_data(as_text=True)
    assert not any(marker in text for marker in LEAK_MARKERS), text


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Return {(sample name, sorted labels): value} of one scrape of /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


class PageParser(HTMLParser):
    """Collect what a CSP without 'unsafe-inline' would refuse, and the files a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.loads: list[str] = []
        self.main_attributes: dict[str, str | None] = {}
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.inline += [f"<{tag} {name}>" for name in attributes
                        if name == "style" or name.startswith("on")]
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            if not attributes.get("src"):
                self.inline.append("<script> without src")
            else:
                self.loads.append(attributes["src"])
        if tag == "link":
            self.loads.append(attributes["href"])
        if tag == "main":
            self.main_attributes = attributes

    def handle_endtag(self, tag):
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append("script content")


def parse_page(response: TestResponse) -> PageParser:
    """Parse the HTML page ``response`` carries."""
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    return parser


class ManualClock:
    """Stand in for ``time.monotonic`` (call it) and ``time.sleep``: time moves when told to.

    A test moves ``now`` itself; ``sleep`` moves it too, and counts the naps.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
