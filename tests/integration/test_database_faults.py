"""A database that freezes, refuses or rejects us: fast 503s, clear log lines, no secret.

The frozen database is the shared MariaDB behind a proxy of the test's own
that stops forwarding (tests/servers.py); the server itself is never touched.
"""
import contextlib
import dataclasses
import datetime
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import create_engine, delete, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.api.export import EXPORT_BIND
from app.extensions import db
from conf.settings import PROJECT_ROOT
from financial.fetch_run import (
    DATABASE_LOST_REASON, LOCK_LOST_REASON, Job, RunEndNotRecorded, RunHooks, RunLoop, RunSettings,
    recorded_run,
)
from financial.models import FinancialData
from financial.runs import RunRecorder, utc_now
from lib.avantage_api import DailySeries, read_saved_response
from lib.db import engine_options, limit_statement_time
from lib.locks import MIGRATION_LOCK, RUN_LOCK, database_lock, lock_name
from scripts.prestart import EXIT_CONFIG, EXIT_UNREACHABLE
from tests.deployment import healthcheck_command
from tests.helpers import (
    HANG_GUARD_SECONDS, build_app, call_guarded, create_mysql_database, dispose_engines,
    drop_mysql_database, insert_prices, isolated_environment, migrate_database, sqlite_url,
    wait_for,
)
from tests.servers import (
    StallingProxy, http_get, pausing_proxy, production_gunicorn, refusing_mysql, stalling_proxy,
)

DATABASE_TIMEOUT = 1
UNAVAILABLE = "the database is unavailable, please retry later"
EXPORT = "/api/financial_data/export"
STATS = "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-01-31"
PASSWORD = "hunter2-do-not-log"
T = TypeVar("T")

# A run of whole histories, waiting for another as long as the fetch job does by default.
FULL_RUN = RunSettings(window_days=None, lock_timeout=300.0)


def store_one_day(application) -> None:
    with application.app_context():
        insert_prices(db.session, [{
            "symbol": "IBM", "date": datetime.date(2023, 1, 3), "open_price": Decimal("10"),
            "close_price": Decimal("20"), "volume": 100}])
        db.session.commit()


def first_probing(proxy: StallingProxy, ask: Callable[[], T], is_200: Callable[[T], bool]) -> T:
    """Return the first answer of a health check, ``ask()`` asked again, that is not a 200.

    One probe answers health for PROBE_SECONDS (app/api/health.py): 200 from
    an earlier probe (the start-up poll's, here), the stalled database asked
    nothing. The answer returned is the first to have probed it.
    """
    answers: list[T] = []

    def probed() -> bool:
        accepted, received = proxy.accepted, proxy.received
        answers.append(ask())
        if not is_200(answers[-1]):
            return True
        assert (proxy.accepted, proxy.received) == (accepted, received), "a 200 that probed"
        return False

    wait_for(probed, "health to probe the stalled database", HANG_GUARD_SECONDS)
    return answers[-1]


@pytest.mark.mysql
def test_a_frozen_database_answers_503_then_recovers(mysql_app, tmp_path):
    store_one_day(mysql_app)
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        log_dir = tmp_path / "log"
        with production_gunicorn(log_dir, APP_ENV="production", DATABASE_URL=proxied,
                                 DATABASE_TIMEOUT=str(DATABASE_TIMEOUT), GUNICORN_WORKERS="1",
                                 CACHE_TYPE="SimpleCache") as port:
            assert http_get(port, STATS)[0] == 200
            proxy.stall()

            # What an answer waits for: each wait (DATABASE_TIMEOUT, as test_factory
            # checks) ends with its connection given up. Health pings the pooled
            # connection, then connects anew; the others find no pooled one left.
            for path, data, waits in (("/api/health", None, 2),
                                      ("/api/financial_data?limit=7", [], 1),
                                      (STATS.replace("01-31", "01-30"), {}, 1)):
                accepted, hung_up = proxy.accepted, proxy.hung_up
                ask = partial(http_get, port, path, timeout=HANG_GUARD_SECONDS)
                status, headers, body = (first_probing(proxy, ask, lambda answer: answer[0] == 200)
                                         if path == "/api/health" else ask())
                assert (status, headers["Content-Type"]) == (503, "application/json"), path
                assert headers["Retry-After"] == "5"
                assert body["info"] == {"error": UNAVAILABLE}
                assert body.get("data") == data
                wait_for(lambda: proxy.connected == 0, "the worker's connections to end",
                         HANG_GUARD_SECONDS)
                assert (proxy.accepted - accepted, proxy.hung_up - hung_up) == (1, waits), path
            accepted, received = proxy.accepted, proxy.received
            status = http_get(port, STATS, timeout=HANG_GUARD_SECONDS)[0]
            assert status == 200, "cached answers stay"
            assert (proxy.accepted, proxy.received) == (accepted, received), "no wait for them"

            proxy.resume()
            wait_for(lambda: http_get(port, "/api/health", timeout=HANG_GUARD_SECONDS)[0] == 200,
                     "health to recover once the database answers again")
            status, _, body = http_get(port, "/api/financial_data?limit=7")
            assert (status, len(body["data"])) == (200, 1)
        output = (log_dir / "gunicorn.out").read_text(errors="replace")
        assert "WORKER TIMEOUT" not in output
        log = (log_dir / "api.log").read_text()
        assert "health check failed: OperationalError 2013: Lost connection" in log
        assert "hint: the connection broke or the server did not answer in time" in log


@pytest.mark.mysql
def test_the_log_says_when_the_database_is_back(mysql_app, tmp_path):
    """The outage's line, then one line when a request reads the database again.

    A cached answer served meanwhile is no sign of the database: it ends nothing.
    """
    store_one_day(mysql_app)
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        application = build_app(proxied, tmp_path / "log", DATABASE_TIMEOUT=DATABASE_TIMEOUT,
                                DATABASE_READ_TIMEOUT=DATABASE_TIMEOUT)
        client = application.test_client()
        assert client.get(STATS).status_code == 200
        proxy.stall()
        assert client.get("/api/financial_data?limit=7").status_code == 503
        assert client.get(STATS).status_code == 200, "a cached answer"
        assert client.get("/api/financial_data?limit=7").status_code == 503
        proxy.resume()
        assert client.get("/api/financial_data?limit=7").status_code == 200
        dispose_engines(application)
    log = (tmp_path / "log" / "api.log").read_text()
    outage, back = [line.partition(" app.errors: ")[2] for line in log.splitlines()
                    if " app.errors: " in line]
    assert outage.startswith("database unavailable: OperationalError 2013: Lost connection")
    assert re.fullmatch(r"database is back after \d+s; requests answered 503 since the last "
                        r"'database unavailable' line: 1", back), back


def test_only_a_request_served_by_the_database_says_it_is_back(tmp_path):
    """A scrape (200) or a health check (503) answered without the schema ends no outage."""
    url = sqlite_url(tmp_path)
    application = build_app(url, tmp_path / "log")
    client = application.test_client()
    assert client.get("/api/financial_data?limit=7").status_code == 503
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/health").status_code == 503
    assert client.get("/api/financial_data?limit=7").status_code == 503
    migrate_database(url, tmp_path / "log")  # the log goes on in the same file
    assert client.get("/api/financial_data?limit=7").status_code == 200
    dispose_engines(application)
    log = (tmp_path / "log" / "api.log").read_text()
    # The table named is the first the page reads (the monthly sums, for a wide count);
    # the seconds are those the migration took.
    lines = [line.partition(" app.errors: ")[2] for line in log.splitlines()
             if " app.errors: " in line]
    lines = [re.sub(r"after \d+s;", "after Ns;", re.sub(r"table: \w+;", "table: T;", line))
             for line in lines]
    assert lines == [
        "database unavailable: OperationalError: no such table: T; hint: the "
        "schema is missing or behind the migrations: run them (flask --app app db upgrade)",
        "database is back after Ns; requests answered 503 since the last 'database "
        "unavailable' line: 1"]


@pytest.mark.mysql
def test_the_image_health_check_reports_the_503_of_a_frozen_database(mysql_app, tmp_path):
    """Docker's check waits out the API's own bound (default DATABASE_TIMEOUT), not less."""
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with production_gunicorn(tmp_path / "log", APP_ENV="production", DATABASE_URL=proxied,
                                 GUNICORN_WORKERS="1", CACHE_TYPE="SimpleCache") as port:
            assert http_get(port, "/api/health")[0] == 200  # a pooled connection to ping
            proxy.stall()
            health = first_probing(proxy, partial(
                subprocess.run, healthcheck_command(), capture_output=True, text=True,
                env=isolated_environment(GUNICORN_BIND=f"127.0.0.1:{port}"), timeout=60),
                lambda check: check.returncode == 0)
    assert (health.returncode, health.stderr) == (1, "unhealthy: /api/health answered 503\n")


@pytest.fixture
def mysql_server_url():
    if not os.environ.get("TEST_MYSQL_URL"):
        pytest.skip("TEST_MYSQL_URL is not set")
    return make_url(os.environ["TEST_MYSQL_URL"])


def _health_log_of(url: str, tmp_path: Path) -> str:
    application = build_app(url, tmp_path / "log")
    response = application.test_client().get("/api/health")
    assert response.status_code == 503
    assert PASSWORD not in response.get_data(as_text=True)
    with application.app_context():
        db.engine.dispose()
    return (tmp_path / "log" / "api.log").read_text()


@pytest.mark.mysql
@pytest.mark.parametrize("change, expected", [
    ({"username": "no_such_user_ft", "password": PASSWORD, "database": "financial"},
     "OperationalError 1045: Access denied for user 'no_such_user_ft'@"),
    ({"database": "no_such_database_ft"},
     "OperationalError 1049: Unknown database 'no_such_database_ft'"),
])
def test_a_rejected_connection_is_logged_with_code_and_hint(mysql_server_url, tmp_path, change,
                                                            expected):
    url = mysql_server_url.set(**change).render_as_string(hide_password=False)
    log = _health_log_of(url, tmp_path)
    hint = {"1045": "hint: authentication failed: check the user name and the password",
            "1049": "hint: unknown database: create it, or fix its name in DATABASE_URL"}
    assert expected in log
    assert hint[expected.split()[1].rstrip(":")] in log
    assert PASSWORD not in log


@pytest.mark.parametrize("path, status", [
    (STATS, 404),
    ("/api/financial_data/export?symbol=IBM", 200),
], ids=["no data", "export"])
def test_any_answer_read_from_the_database_says_it_is_back(tmp_path, path, status):
    """A 404 for want of data, or an export (whose session is closed before it streams)."""
    url = sqlite_url(tmp_path)
    application = build_app(url, tmp_path / "log")
    client = application.test_client()
    assert client.get("/api/financial_data?limit=7").status_code == 503
    migrate_database(url, tmp_path / "log")
    response = client.get(path)
    response.get_data()  # the export streams: read it to its end
    assert response.status_code == status
    dispose_engines(application)
    log = (tmp_path / "log" / "api.log").read_text()
    # The seconds are those the migration took: 1 or more on a loaded machine.
    back = [re.sub(r"after \d+s;", "after Ns;", line.partition(" app.errors: ")[2])
            for line in log.splitlines() if " app.errors: " in line][1:]
    assert back == ["database is back after Ns; requests answered 503 since the last 'database "
                    "unavailable' line: 0"]


def test_a_refused_connection_is_logged_with_code_and_hint(tmp_path):
    log = _health_log_of(f"mysql+pymysql://api:{PASSWORD}@127.0.0.1:1/financial", tmp_path)
    assert ("health check failed: OperationalError 2003: Can't connect to MySQL server on "
            "'127.0.0.1'") in log
    assert "hint: cannot connect: check the host and port in DATABASE_URL" in log
    assert "database unavailable" not in log and PASSWORD not in log


TOO_MANY = "too many connections: lower GUNICORN_WORKERS or GUNICORN_THREADS, or raise"


def _answers_503_as_an_outage(application) -> None:
    """Ask the list, the statistics and the export: each a 503 to retry, in its envelope."""
    client = application.test_client()
    for path, data in (("/api/financial_data?limit=7", []), (STATS, {}),
                       ("/api/financial_data/export?symbol=IBM", [])):
        response = client.get(path)
        assert (response.status_code, response.headers["Retry-After"]) == (503, "5"), path
        assert (response.json["info"], response.json["data"]) == ({"error": UNAVAILABLE}, data)
    dispose_engines(application)


def test_a_server_at_max_connections_answers_503_logged_once_per_interval(tmp_path):
    """MariaDB/MySQL refusing a connection for want of room (1040): an outage, not a 500."""
    with refusing_mysql(1040, "Too many connections") as server:
        url = f"mysql+pymysql://api:{PASSWORD}@127.0.0.1:{server.port}/financial"
        _answers_503_as_an_outage(build_app(url, tmp_path / "log"))
        assert server.refused >= 3
    log = (tmp_path / "log" / "api.log").read_text()
    [line] = [line for line in log.splitlines() if "database unavailable" in line]
    assert line.endswith("ERROR app.errors: database unavailable: OperationalError 1040: Too "
                         f"many connections; hint: {TOO_MANY} max_connections")
    assert PASSWORD not in log and "Traceback" not in log


@pytest.mark.mysql
def test_a_user_out_of_connections_answers_503_logged_once_per_interval(limited_user_url,
                                                                        tmp_path):
    """An account's MAX_USER_CONNECTIONS reached (1226) is the same outage as 1040."""
    url = limited_user_url(1)
    holder = create_engine(url)
    try:
        with holder.connect():  # the user's only connection
            _answers_503_as_an_outage(build_app(url, tmp_path / "log"))
    finally:
        holder.dispose()
    log = (tmp_path / "log" / "api.log").read_text()
    [line] = [line for line in log.splitlines() if "database unavailable" in line]
    assert "database unavailable: OperationalError 1226: User " in line
    assert "has exceeded the 'max_user_connections' resource (current value: 1); hint: " in line
    assert make_url(url).password not in log and "Traceback" not in log


@pytest.mark.mysql
@pytest.mark.parametrize("change, expected", [
    ({"password": PASSWORD}, "OperationalError 1045: Access denied for user 'root'@"),
    ({"database": "no_such_database_ft"},
     "OperationalError 1049: Unknown database 'no_such_database_ft'"),
], ids=["wrong password", "unknown database"])
def test_prestart_stops_at_once_on_a_refusal_waiting_cannot_change(
        mysql_server_url, tmp_path, change, expected):
    """Not waited out like an outage: one line, and a status the restart policy shows."""
    url = mysql_server_url.set(**{"database": "financial", **change})
    env = isolated_environment(APP_ENV="production", LOG_DIR=str(tmp_path),
                               DATABASE_URL=url.render_as_string(hide_password=False))
    # Waiting out the whole --timeout would outlast the run's own timeout.
    result = subprocess.run([sys.executable, "-m", "scripts.prestart", "--timeout", "600"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_CONFIG, result.stderr
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "ERROR prestart: database mysql+pymysql://root" in error
    assert f"refused this configuration: {expected}" in error and "; hint: " in error
    assert "waiting up to" not in result.stderr
    output = result.stdout + result.stderr + (tmp_path / "api.log").read_text()
    assert PASSWORD not in output and "Traceback" not in output


# MariaDB's other "access denied" (1698): its answer to a user name it does not
# know, for some names (`financial`, the compose file's user, among them), and to
# an account that logs in through another plugin (unix_socket). No password named.
ACCESS_DENIED_1698 = "Access denied for user 'financial'@'127.0.0.1'"
AUTHENTICATION_HINT = "hint: authentication failed: check the user name and the password"


def test_mariadbs_other_access_denied_is_logged_with_the_authentication_hint(tmp_path):
    with refusing_mysql(1698, ACCESS_DENIED_1698) as server:
        log = _health_log_of(
            f"mysql+pymysql://financial:{PASSWORD}@127.0.0.1:{server.port}/financial", tmp_path)
    assert (f"health check failed: OperationalError 1698: {ACCESS_DENIED_1698}; "
            f"{AUTHENTICATION_HINT}") in log
    assert PASSWORD not in log


def test_prestart_stops_at_once_on_mariadbs_other_access_denied(tmp_path):
    """A wrong user name on MariaDB is a refusal like 1045, not an outage to wait out."""
    with refusing_mysql(1698, ACCESS_DENIED_1698) as server:
        url = f"mysql+pymysql://financial:{PASSWORD}@127.0.0.1:{server.port}/financial"
        env = isolated_environment(APP_ENV="production", LOG_DIR=str(tmp_path), DATABASE_URL=url)
        result = subprocess.run([sys.executable, "-m", "scripts.prestart", "--timeout", "15"],
                                cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert server.refused == 1, "asked once, not again until the --timeout"
    assert "waiting up to" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert (f"refused this configuration: OperationalError 1698: {ACCESS_DENIED_1698}; "
            f"{AUTHENTICATION_HINT}") in error
    assert "waiting up to" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("option", ["password", "passwd"])
def test_prestart_never_logs_a_password_given_as_a_query_option(tmp_path, option):
    """PyMySQL takes the password from the URL's query as well; the URL in the line hides it."""
    denied = "Access denied for user 'financial'@'127.0.0.1' (using password: YES)"
    with refusing_mysql(1045, denied) as server:
        url = (f"mysql+pymysql://financial@127.0.0.1:{server.port}/financial"
               f"?charset=utf8mb4&{option}={PASSWORD}")
        env = isolated_environment(APP_ENV="production", LOG_DIR=str(tmp_path), DATABASE_URL=url)
        result = subprocess.run([sys.executable, "-m", "scripts.prestart", "--timeout", "15"],
                                cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == EXIT_CONFIG, result.stderr
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert (f"ERROR prestart: database mysql+pymysql://financial@127.0.0.1:{server.port}/"
            f"financial?charset=utf8mb4&{option}=*** refused this configuration: "
            f"OperationalError 1045: {denied}") in error
    assert PASSWORD not in result.stdout + result.stderr + (tmp_path / "api.log").read_text()


@pytest.fixture
def fresh_database_url(mysql_server_url):
    """URL of a new, empty MariaDB/MySQL database, dropped afterwards."""
    url = create_mysql_database(mysql_server_url.render_as_string(hide_password=False))
    try:
        yield url
    finally:
        drop_mysql_database(url)


FIXTURE = PROJECT_ROOT / "tests" / "fixtures" / "alphavantage" / (
    "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json")


@pytest.mark.mysql
@pytest.mark.parametrize("command", [
    ["get_raw_data.py", "--from-file", str(FIXTURE)],
    ["-m", "scripts.prestart", "--timeout", "10"],
], ids=["fetch job", "prestart"])
def test_batch_programs_outwait_the_api_database_timeout(fresh_database_url, tmp_path, command):
    """The migration lock is held longer than DATABASE_TIMEOUT: the program waits, then works."""
    url = make_url(fresh_database_url)
    env = isolated_environment(APP_ENV="testing", LOG_DIR=str(tmp_path), DATABASE_URL=str(
        fresh_database_url), DATABASE_TIMEOUT=str(DATABASE_TIMEOUT))
    lock = {"name": lock_name(url.database or "", MIGRATION_LOCK)}
    engine = create_engine(url)
    try:
        with engine.connect() as holder:
            assert holder.execute(text("SELECT GET_LOCK(:name, 0)"), lock).scalar() == 1
            process = subprocess.Popen([sys.executable, *command], cwd=PROJECT_ROOT, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                wait_for(lambda: process.poll() is not None or any(
                    "another process is migrating the database" in log.read_text()
                    for log in tmp_path.glob("*.log")), "the program to wait for the lock")
                waiting_since = time.monotonic()
                wait_for(lambda: time.monotonic() - waiting_since > 2 * DATABASE_TIMEOUT,
                         "twice DATABASE_TIMEOUT to pass")
                assert process.poll() is None, "still waiting, its connection still open"
                holder.execute(text("SELECT RELEASE_LOCK(:name)"), lock)
                out, err = process.communicate(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        assert process.returncode == 0, err
        assert inspect(engine).has_table("financial_data")
    finally:
        engine.dispose()


# The fetch job's wait for one answer (DATABASE_JOB_TIMEOUT) in the tests below:
# far longer than they wait for the job to end.
JOB_TIMEOUT = 300
STOP_BOUND = 60


def start_job_through(proxy: StallingProxy, database_url: str, tmp_path: Path,
                      *argv: str, **settings: str) -> subprocess.Popen:
    """Start the fetch job on ``database_url``'s database, reached through ``proxy``."""
    url = make_url(database_url)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    env = isolated_environment(**{"APP_ENV": "testing", "DATABASE_URL": proxied,
                                  "LOG_DIR": str(tmp_path),
                                  "DATABASE_JOB_TIMEOUT": str(JOB_TIMEOUT), **settings})
    return subprocess.Popen([sys.executable, "get_raw_data.py", *argv], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait for the job to end within ``timeout`` seconds (kill it otherwise); return its output."""
    try:
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


@pytest.mark.mysql
@pytest.mark.parametrize("argv, status", [
    (["--from-file", str(FIXTURE)], 1),
    (["--from-file", str(FIXTURE), "--schedule", "0 0 1 1 *"], 0),
], ids=["one run", "schedule"])
def test_sigterm_ends_the_wait_for_a_frozen_database(mysql_app, tmp_path, argv, status):
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxy.stall()
        process = start_job_through(proxy, url.render_as_string(hide_password=False), tmp_path,
                                    *argv)
        wait_for(lambda: proxy.accepted > 0 or process.poll() is not None,
                 "the job to connect to the database")
        process.send_signal(signal.SIGTERM)
        # Without the stop, the job would wait JOB_TIMEOUT for the frozen database.
        out, err = finish(process, STOP_BOUND)
    assert process.returncode == status, err
    assert "stopped while waiting for the database; nothing fetched" in err
    assert "SIGTERM received: stopped" in err and "Traceback" not in err
    assert out == ""


@pytest.mark.mysql
def test_a_frozen_database_fails_the_job_after_one_wait(mysql_app, tmp_path):
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxy.stall()
        process = start_job_through(proxy, url.render_as_string(hide_password=False), tmp_path,
                                    "--from-file", str(FIXTURE), DATABASE_JOB_TIMEOUT="1")
        out, err = finish(process, STOP_BOUND)
        connections = proxy.accepted
    assert (process.returncode, out) == (1, "")
    assert ("get_raw_data: database unavailable (OperationalError 2013: Lost connection") in err
    assert "nothing fetched" in err and "Traceback" not in err
    assert connections == 1, "the schema check's timeout is not waited out again to migrate"


@pytest.mark.mysql
def test_prestart_gives_up_on_a_frozen_database_within_its_timeout(mysql_app, tmp_path):
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxy.stall()
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        env = isolated_environment(APP_ENV="production", LOG_DIR=str(tmp_path),
                                   DATABASE_URL=proxied, DATABASE_JOB_TIMEOUT=str(JOB_TIMEOUT))
        process = subprocess.Popen([sys.executable, "-m", "scripts.prestart", "--timeout", "2"],
                                   cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        # --timeout bounds every try: none may wait JOB_TIMEOUT, the migrations' wait for an answer.
        _, err = finish(process, STOP_BOUND)
    assert process.returncode == EXIT_UNREACHABLE, err
    assert "was not ready within 2s: OperationalError 2013: Lost connection" in err
    assert "Traceback" not in err


def stall_at_armed_commits(engine: Engine, proxy: StallingProxy,
                           then: Callable[[], object] = lambda: None) -> list[bool]:
    """Return ``armed``, a list each fetch appends to: the next commit of ``engine`` pops it,
    and if True stalls ``proxy`` as the commit is sent (a server stopped there), then calls
    ``then``."""
    armed: list[bool] = []

    @event.listens_for(engine, "commit")
    def stop_the_server(_connection):
        if armed.pop() if armed else False:
            proxy.stall()
            then()

    return armed


class ResumeOnFailure(logging.Handler):
    """Thaws the proxy once the run logs a symbol's database failure: a restart, not a freeze.

    After the check of the symbol's commit gave up too, before the run's end.
    """

    def __init__(self, proxy: StallingProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def emit(self, record: logging.LogRecord) -> None:
        if "failed: database error" in record.getMessage():
            self.proxy.resume()


@pytest.mark.mysql
@pytest.mark.parametrize("restarted", [False, True], ids=["frozen", "restarted"])
def test_a_database_lost_mid_run_ends_the_run_unless_it_is_back(mysql_app, restarted):
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    series, fetched = read_saved_response(FIXTURE), []
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:

        def job(symbol: str, stall: bool = False) -> Job:
            def fetch() -> DailySeries:
                fetched.append(symbol)
                if stall:
                    proxy.stall()
                return dataclasses.replace(series, symbol=symbol)
            return Job(symbol, fetch, calls_api=True)

        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(proxied, **engine_options(proxied, timeout=DATABASE_TIMEOUT))
        run_log, resume = logging.getLogger("financial.fetch_run"), ResumeOnFailure(proxy)
        if restarted:
            run_log.addHandler(resume)
        try:
            with Session(engine) as session:
                loop = RunLoop(session, FULL_RUN,
                               RunHooks(report=lambda _: None, note=lambda _: None),
                               history=RunRecorder.open(session, "manual", utc_now))
                outcome = loop.run([job("IBM"), job("AAPL", stall=True), job("MSFT")])
        finally:
            run_log.removeHandler(resume)
            engine.dispose()
    if restarted:
        assert fetched == ["IBM", "AAPL", "MSFT"], "a database back in time lets the run go on"
        assert (outcome.stored, outcome.ended_early) == (2, None)
    else:
        assert fetched == ["IBM", "AAPL"], "no request of the quota for a symbol it cannot store"
        assert (outcome.stored, outcome.ended_early) == (1, DATABASE_LOST_REASON)


class ResumeOnUnrecordedFailure(logging.Handler):
    """Thaws the proxy once the run could not record a symbol's failure: back by the run's end."""

    def __init__(self, proxy: StallingProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("could not record "):
            self.proxy.resume()


@pytest.mark.mysql
def test_a_run_whose_end_is_recorded_records_the_outcomes_it_could_not_before(mysql_app):
    """A database lost mid-run, back by the run's end: the run ends early, and its history
    holds the symbol that failed and the one not fetched, which /api/symbols reads."""
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    series = read_saved_response(FIXTURE)
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:

        def job(symbol: str, stall: bool = False) -> Job:
            def fetch() -> DailySeries:
                if stall:
                    proxy.stall()
                return dataclasses.replace(series, symbol=symbol)
            return Job(symbol, fetch, calls_api=True)

        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(proxied, **engine_options(proxied, timeout=DATABASE_TIMEOUT))
        run_log = logging.getLogger("financial.fetch_run")
        resume = ResumeOnUnrecordedFailure(proxy)
        run_log.addHandler(resume)
        try:
            with Session(engine) as session:
                outcome = recorded_run(session, engine,
                                       [job("IBM"), job("AAPL", stall=True), job("MSFT")],
                                       FULL_RUN,
                                       RunHooks(report=lambda _: None, note=lambda _: None),
                                       trigger="manual")
        finally:
            run_log.removeHandler(resume)
            engine.dispose()
    assert (outcome.stored, outcome.ended_early) == (1, DATABASE_LOST_REASON)
    client = mysql_app.test_client()
    [run] = client.get("/api/fetch_runs").json["data"]
    assert run["status"] == "partial"
    assert [(outcome["symbol"], outcome["status"], outcome["error"])
            for outcome in run["symbols"]] == [
        ("AAPL", "failed", "database error (OperationalError 2013: the connection broke or the "
                           "server did not answer in time); its rows are unchanged"),
        ("IBM", "ok", None),
        ("MSFT", "not_fetched", f"not fetched: {DATABASE_LOST_REASON}")]


@pytest.mark.mysql
def test_a_symbol_whose_commit_the_database_took_after_the_wait_is_stored(mysql_app):
    """A server stopped as the commit was sent reads it once it runs again, after the job gave
    up waiting for its answer: the symbol is stored, and recorded so, not failed "unchanged"."""
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    series = read_saved_response(FIXTURE)
    with pausing_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(proxied, **engine_options(proxied, timeout=DATABASE_TIMEOUT))
        # The symbol's commit, once; the server is back after the wait for it.
        armed = stall_at_armed_commits(engine, proxy, then=lambda: threading.Timer(
            1.5 * DATABASE_TIMEOUT, proxy.resume).start())

        def fetch() -> DailySeries:
            armed.append(True)
            return series

        try:
            with Session(engine) as session:
                outcome = recorded_run(session, engine, [Job("IBM", fetch, calls_api=True)],
                                       FULL_RUN,
                                       RunHooks(report=lambda _: None, note=lambda _: None),
                                       trigger="manual")
        finally:
            engine.dispose()
    assert (outcome.stored, outcome.failures, outcome.status) == (1, 0, "ok"), outcome.message
    client = mysql_app.test_client()
    [run] = client.get("/api/fetch_runs").json["data"]
    assert [(symbol["symbol"], symbol["status"], symbol["rows_new"])
            for symbol in run["symbols"]] == [("IBM", "ok", len(series.bars))]
    assert run["rows_new"] == len(series.bars)
    assert len(client.get("/api/financial_data?symbol=IBM&limit=500").json["data"]) == len(
        series.bars)


@pytest.mark.mysql
def test_a_symbol_met_before_whose_commit_was_lost_fails_though_its_first_outcome_stands(
        mysql_app):
    """A symbol the run stored once, then again: the second commit never reaches the server
    (restarted meanwhile). The outcome row found then is the first store's, which tells
    nothing of the second: it fails, its rows unchanged, not counted stored twice."""
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    series = read_saved_response(FIXTURE)
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(proxied, **engine_options(proxied, timeout=DATABASE_TIMEOUT))
        stalled: list[bool] = []
        # The second store's commit, once.
        armed = stall_at_armed_commits(engine, proxy, then=lambda: stalled.append(True))

        @event.listens_for(engine, "handle_error")
        def restart_the_server(_context):
            if stalled:  # the commit given up: the server is back, without it
                stalled.clear()
                proxy.resume()

        def fetch(again: bool) -> DailySeries:
            armed.append(again)
            return series

        try:
            with Session(engine) as session:
                outcome = recorded_run(
                    session, engine, [Job("IBM", lambda: fetch(False), calls_api=True),
                                      Job("IBM", lambda: fetch(True), calls_api=True)],
                    FULL_RUN,
                    RunHooks(report=lambda _: None, note=lambda _: None), trigger="manual")
        finally:
            engine.dispose()
    assert (outcome.stored, outcome.failures) == (1, 1), outcome.message
    client = mysql_app.test_client()
    [run] = client.get("/api/fetch_runs").json["data"]
    assert [(symbol["symbol"], symbol["status"], symbol["rows_new"])
            for symbol in run["symbols"]] == [("IBM", "failed", len(series.bars))]
    assert run["rows_new"] == len(series.bars)


@pytest.mark.mysql
def test_a_commit_whose_check_finds_the_database_gone_waits_for_it_no_more(mysql_app, caplog):
    """The commit got no answer, nor did the read telling whether it was taken: the database
    is lost, and the symbol's failure is left for the run's end, not written and waited for."""
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    series = read_saved_response(FIXTURE)
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(proxied, **engine_options(proxied, timeout=DATABASE_TIMEOUT))
        armed = stall_at_armed_commits(engine, proxy)  # the symbol's commit: gone for good

        def fetch() -> DailySeries:
            armed.append(True)
            return series

        caplog.set_level(logging.INFO, logger="financial.fetch_run")
        try:
            with Session(engine) as session, pytest.raises(RunEndNotRecorded) as caught:
                recorded_run(session, engine, [Job("IBM", fetch, calls_api=True),
                                               Job("AAPL", fetch, calls_api=True)],
                             FULL_RUN,
                             RunHooks(report=lambda _: None, note=lambda _: None),
                             trigger="manual")
        finally:
            engine.dispose()
    outcome = caught.value.outcome
    assert (outcome.stored, outcome.failures, outcome.ended_early) == (
        0, 2, DATABASE_LOST_REASON)
    assert "could not record" not in caplog.text


@pytest.mark.mysql
def test_a_commit_in_doubt_the_database_took_by_the_runs_end_counts_the_symbol_stored(
        mysql_app):
    """The server, stopped as the symbol's commit was sent, runs again only after the check
    of that commit gave up: it takes the commit then, outcome row and all. The run's end
    finds it: the symbol is stored, not failed "unchanged" over that row (nor the end lost
    on a duplicate outcome)."""
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    series = read_saved_response(FIXTURE)
    with pausing_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(proxied, **engine_options(proxied, timeout=DATABASE_TIMEOUT))
        armed = stall_at_armed_commits(engine, proxy)  # IBM's commit, once

        def fetch(symbol: str) -> DailySeries:
            armed.append(symbol == "IBM")
            return dataclasses.replace(series, symbol=symbol)

        run_log, resume = logging.getLogger("financial.fetch_run"), ResumeOnFailure(proxy)
        run_log.addHandler(resume)
        try:
            with Session(engine) as session:
                outcome = recorded_run(
                    session, engine, [Job("IBM", lambda: fetch("IBM"), calls_api=True),
                                      Job("AAPL", lambda: fetch("AAPL"), calls_api=True)],
                    FULL_RUN, RunHooks(report=lambda _: None, note=lambda _: None),
                    trigger="manual")
        finally:
            run_log.removeHandler(resume)
            engine.dispose()
    assert (outcome.stored, outcome.failures, outcome.status) == (1, 1, "partial"), \
        outcome.message
    client = mysql_app.test_client()
    [run] = client.get("/api/fetch_runs").json["data"]
    assert [(symbol["symbol"], symbol["status"], symbol["rows_new"])
            for symbol in run["symbols"]] == [("AAPL", "not_fetched", 0),
                                              ("IBM", "ok", len(series.bars))]
    assert (run["status"], run["rows_new"]) == ("partial", len(series.bars))
    assert run["message"].startswith(f"1 of 2 symbols stored, {len(series.bars)} new rows")


@pytest.mark.mysql
def test_a_run_whose_lock_another_run_took_after_its_connection_was_lost_stops(mysql_app):
    """The run lock goes with its connection (a server restarted): a second run may take it
    while the first goes on. The first stops before its next symbol, as if asked to, rather
    than run beside the second (which marked it interrupted)."""
    url = mysql_app.config["SQLALCHEMY_DATABASE_URI"]
    series = read_saved_response(FIXTURE)
    engine = create_engine(url, **engine_options(url, timeout=DATABASE_TIMEOUT))
    other = create_engine(url)
    name = lock_name(make_url(url).database or "", RUN_LOCK)
    taken = contextlib.ExitStack()

    def fetch(symbol: str) -> DailySeries:
        with other.connect() as connection:
            holder_id = connection.scalar(text("SELECT IS_USED_LOCK(:name)"), {"name": name})
            connection.execute(text(f"KILL CONNECTION {int(holder_id)}"))
        taken.enter_context(database_lock(other, RUN_LOCK, 0))  # the second run's
        return dataclasses.replace(series, symbol=symbol)

    try:
        with Session(engine) as session, taken:
            outcome = recorded_run(
                session, engine, [Job("IBM", lambda: fetch("IBM"), calls_api=True),
                                  Job("AAPL", lambda: series, calls_api=True)],
                FULL_RUN, RunHooks(report=lambda _: None, note=lambda _: None),
                trigger="manual")
    finally:
        engine.dispose()
        other.dispose()
    assert (outcome.stored, outcome.status, outcome.ended_early) == (
        1, "interrupted", LOCK_LOST_REASON), outcome.message
    [run] = mysql_app.test_client().get("/api/fetch_runs").json["data"]
    assert [(symbol["symbol"], symbol["status"], symbol["error"])
            for symbol in run["symbols"]] == [
        ("AAPL", "not_fetched", f"not fetched: {LOCK_LOST_REASON}"), ("IBM", "ok", None)]


@pytest.mark.mysql
def test_a_database_frozen_between_symbols_ends_the_run_at_the_lock_check(mysql_app, caplog):
    """The check of the run lock before a symbol finds the database gone: lost, as when a
    failure cannot be recorded (no request, no wait of their own for the later symbols), not
    taken for a lock another run took."""
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    series, fetched = read_saved_response(FIXTURE), []
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:

        def job(symbol: str) -> Job:
            def fetch() -> DailySeries:
                fetched.append(symbol)
                return dataclasses.replace(series, symbol=symbol)
            return Job(symbol, fetch, calls_api=True)

        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(proxied, **engine_options(proxied, timeout=DATABASE_TIMEOUT))
        caplog.set_level(logging.INFO, logger="financial.fetch_run")
        try:
            with Session(engine) as session, pytest.raises(RunEndNotRecorded) as caught:
                recorded_run(session, engine, [job("IBM"), job("AAPL"), job("MSFT")], FULL_RUN,
                             RunHooks(report=lambda _: proxy.stall(), note=lambda _: None),
                             trigger="manual")
        finally:
            engine.dispose()
    outcome = caught.value.outcome
    assert fetched == ["IBM"]
    assert (outcome.stored, outcome.failures, outcome.stopped, outcome.ended_early) == (
        1, 2, False, DATABASE_LOST_REASON)
    assert "could not record" not in caplog.text


@pytest.mark.mysql
def test_a_symbol_the_database_failed_is_recorded_with_the_code_and_its_cause(mysql_app):
    """The history, which /api/fetch_runs serves, names MySQL's code and our words for it.

    Not the driver's message (`Lost connection to server at '127.0.0.1:...'`):
    it may name the database's user and host.
    """
    url = make_url(mysql_app.config["SQLALCHEMY_DATABASE_URI"])
    series = read_saved_response(FIXTURE)
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:

        def fetch() -> DailySeries:
            proxy.stall()  # the store times out; the failure is recorded once it resumes
            return series

        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        engine = create_engine(proxied, **engine_options(proxied, timeout=DATABASE_TIMEOUT))
        run_log, resume = logging.getLogger("financial.fetch_run"), ResumeOnFailure(proxy)
        run_log.addHandler(resume)
        try:
            with Session(engine) as session:
                RunLoop(session, FULL_RUN,
                        RunHooks(report=lambda _: None, note=lambda _: None),
                        history=RunRecorder.open(session, "manual", utc_now),
                        ).run([Job("IBM", fetch, calls_api=True)])
        finally:
            run_log.removeHandler(resume)
            engine.dispose()
    response = mysql_app.test_client().get("/api/fetch_runs")
    [run] = response.json["data"]
    assert [(outcome["symbol"], outcome["error"]) for outcome in run["symbols"]] == [(
        "IBM", "database error (OperationalError 2013: the connection broke or the server did "
               "not answer in time); its rows are unchanged")]
    assert "Lost connection" not in response.get_data(as_text=True)


class ReleaseOnUnrecordedFailure(logging.Handler):
    """Ends the holder's transaction once the run could not record a symbol's failure."""

    def __init__(self, end_holder) -> None:
        super().__init__()
        self.end_holder = end_holder

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("could not record "):
            self.end_holder()


@pytest.mark.mysql
def test_a_symbol_that_meets_a_lock_wait_timeout_fails_and_the_run_goes_on(mysql_app):
    """Another transaction holds IBM's rows past the lock wait timeout (MySQL error 1205),
    storing them and recording the failure: IBM fails, and AAPL is still fetched and stored.

    A lock conflict is no lost database: the run must not end early.
    """
    url = mysql_app.config["SQLALCHEMY_DATABASE_URI"]
    series = read_saved_response(FIXTURE)
    engine = create_engine(url, **engine_options(url, timeout=30))

    @event.listens_for(engine, "connect")
    def impatient(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")

    holder = engine.connect()
    fetched = []

    def hold_ibm_rows() -> None:
        """Insert, uncommitted, IBM's newest day and IBM's outcome of the running run."""
        holder.begin()
        [run_id] = holder.execute(text("SELECT MAX(id) FROM fetch_runs")).one()
        holder.execute(text("INSERT INTO financial_data (symbol, date, open_price, close_price, "
                            "volume) VALUES ('IBM', '2023-03-24', 1, 1, 1)"))
        holder.execute(text("INSERT INTO fetch_run_symbols (run_id, symbol, status, "
                            "rows_fetched, rows_new, rows_updated) "
                            "VALUES (:run_id, 'IBM', 'ok', 0, 0, 0)"), {"run_id": run_id})

    def end_holder() -> None:
        if holder.in_transaction():
            holder.rollback()

    def job(symbol: str) -> Job:
        def fetch() -> DailySeries:
            fetched.append(symbol)
            if symbol == "IBM":
                hold_ibm_rows()
            return dataclasses.replace(series, symbol=symbol)
        return Job(symbol, fetch, calls_api=True)

    run_log = logging.getLogger("financial.fetch_run")
    releaser = ReleaseOnUnrecordedFailure(end_holder)
    run_log.addHandler(releaser)
    try:
        with Session(engine) as session:
            outcome = recorded_run(session, engine, [job("IBM"), job("AAPL")], FULL_RUN,
                                   RunHooks(report=lambda _: None, note=lambda _: None),
                                   trigger="manual")
    finally:
        run_log.removeHandler(releaser)
        end_holder()
        holder.close()
        engine.dispose()
    assert fetched == ["IBM", "AAPL"]
    assert (outcome.stored, outcome.failures, outcome.ended_early) == (1, 1, None)
    [run] = mysql_app.test_client().get("/api/fetch_runs").json["data"]
    assert [(symbol["symbol"], symbol["status"], symbol["error"])
            for symbol in run["symbols"]] == [
        ("AAPL", "ok", None),
        ("IBM", "failed", "database error (OperationalError 1205: another transaction held "
                          "the rows too long (a lock wait or a deadlock)); its rows are "
                          "unchanged")]
    with mysql_app.app_context():
        assert db.session.execute(text(
            "SELECT symbol, COUNT(*) FROM financial_data GROUP BY symbol")).all() == [
            ("AAPL", len(series.bars))]


def running_statements(engine, marker: str) -> list:
    """Return the ids of the server's threads running a statement that holds ``marker``."""
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT id FROM information_schema.processlist WHERE info LIKE :marker "
            "AND info NOT LIKE '%processlist%'"), {"marker": f"%{marker}%"}).scalars().all()


def statement_limit(session: Session) -> float:
    """Return the seconds the server lets a statement of ``session``'s connection run."""
    dbapi_connection = session.connection().connection.dbapi_connection
    if "mariadb" in dbapi_connection.get_server_info().lower():
        return float(session.scalar(text("SELECT @@max_statement_time")))
    return session.scalar(text("SELECT @@max_execution_time")) / 1000


@pytest.mark.mysql
def test_the_server_ends_a_statement_the_api_no_longer_waits_for(mysql_database_url, tmp_path):
    """A read the API gave up on (its 503) does not run on: the server ends it as well.

    PyMySQL's read timeout only stops the client. Without a limit on the
    server, a statement such as a sort of every matching row runs to its
    end, on a connection of its own, for each request answered 503.
    BENCHMARK stands for such a statement: it would run for hours.
    """
    application = build_app(mysql_database_url, tmp_path / "log", DATABASE_TIMEOUT=DATABASE_TIMEOUT,
                            DATABASE_READ_TIMEOUT=DATABASE_TIMEOUT)
    marker = f"statement_time_probe_{os.getpid()}"
    monitor = create_engine(mysql_database_url)
    try:
        with application.app_context():
            limit = statement_limit(db.session)  # on the connection the statement runs on
            # Both give up after DATABASE_TIMEOUT: the client's read timeout raises, while
            # BENCHMARK ended by the server's limit answers 0 (MariaDB), whichever is first.
            with contextlib.suppress(OperationalError):
                db.session.execute(text(f"SELECT BENCHMARK(100000000000, MD5('{marker}'))"))
            db.session.rollback()
        assert limit == DATABASE_TIMEOUT, "the server's limit is the API's wait"
        wait_for(lambda: not running_statements(monitor, marker),
                 "the server to end the statement", timeout=HANG_GUARD_SECONDS)
    finally:
        with monitor.connect() as connection:
            for thread in running_statements(monitor, marker):
                connection.execute(text(f"KILL QUERY {int(thread)}"))
        monitor.dispose()
        dispose_engines(application)


def statement_of(engine, thread: int) -> str | None:
    """Return the statement the server's thread ``thread`` runs, or None (idle or gone)."""
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT info FROM information_schema.processlist WHERE id = :thread"),
            {"thread": thread}).scalar()


def slow_counts(_connection, _cursor, statement: str, parameters, *_) -> tuple:
    """Make each count a statement that runs on the server for hours, as a huge sort may.

    BENCHMARK, not SLEEP: MariaDB ends a SLEEP within seconds of the client
    leaving, but runs a sort, or BENCHMARK, on to its end.
    """
    if statement.startswith("SELECT count(*)"):
        statement = (f"SELECT slow.* FROM ({statement}) AS slow "
                     "WHERE BENCHMARK(100000000000, MD5('slow')) = 0")
    return statement, parameters


@pytest.mark.mysql
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_server_ends_the_statement_of_an_export_that_gave_up_before_its_first_row(
        mysql_database_url, tmp_path, method):
    """An export answered 503 before its first row leaves no statement running on the server.

    Its engine has no statement limit (its rows stream for as long as the
    client reads), and PyMySQL's read timeout only stops the client: a
    count or sort of millions of rows, each request's own, ran on to its
    end. BENCHMARK stands for one.
    """
    application = build_app(mysql_database_url, tmp_path / "log", DATABASE_TIMEOUT=DATABASE_TIMEOUT,
                            DATABASE_READ_TIMEOUT=DATABASE_TIMEOUT,
                            EXPORT_READ_TIMEOUT=DATABASE_TIMEOUT)
    threads: list[int] = []
    with application.app_context():
        # The session's database: rows an earlier test stored would be exported below.
        db.session.execute(delete(FinancialData))
        db.session.commit()
        export_engine = db.engines[EXPORT_BIND]
    event.listen(export_engine, "checkout",
                 lambda dbapi_connection, *_: threads.append(dbapi_connection.thread_id()))
    applied = []  # the wait for each answer, on the socket each statement is sent on

    def note_wait(connection, *_) -> None:
        applied.append(connection.connection.dbapi_connection._sock.gettimeout())

    event.listen(export_engine, "before_cursor_execute", note_wait)
    event.listen(export_engine, "before_cursor_execute", slow_counts, retval=True)
    monitor = create_engine(mysql_database_url)
    try:
        response = application.test_client().open(f"{EXPORT}?symbol=IBM", method=method)
        assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
        if method == "GET":
            assert response.get_json() == {"data": [], "pagination": None,
                                           "info": {"error": UNAVAILABLE}}
        [thread] = threads
        assert set(applied) == {DATABASE_TIMEOUT}, "given up on, and ended, after the API's wait"
        wait_for(lambda: statement_of(monitor, thread) is None,
                 "the server to end the export's statement", timeout=HANG_GUARD_SECONDS)
        event.remove(export_engine, "before_cursor_execute", slow_counts)
        again = application.test_client().get(f"{EXPORT}?symbol=IBM")
        assert (again.status_code, again.get_data()) == (
            200, b"symbol,date,open_price,close_price,volume\r\n")
    finally:
        with monitor.connect() as connection:
            for thread in threads:
                if statement_of(monitor, thread) is not None:
                    connection.execute(text(f"KILL QUERY {int(thread)}"))
        monitor.dispose()
        dispose_engines(application)


KILL_FAILED = ("WARNING lib.db: a statement the client stopped waiting for could not be ended "
               "on the server (OperationalError); it runs on to its end")


@pytest.mark.mysql
@pytest.mark.parametrize("frozen_at, kill_tried", [
    # As the export counts its rows, once the request has read the data version:
    # ending that count waits no longer than the API does.
    ("before_cursor_execute", True),
    # As the export's own connection is made: no statement ran there, none to end.
    ("do_connect", False),
], ids=["counting", "connecting"])
def test_an_export_a_frozen_database_never_answers_gets_its_503_in_time(
        mysql_database_url, tmp_path, frozen_at, kill_tried):
    url = make_url(mysql_database_url)
    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        application = build_app(proxied, tmp_path / "log", DATABASE_TIMEOUT=DATABASE_TIMEOUT,
                                DATABASE_READ_TIMEOUT=DATABASE_TIMEOUT,
                                EXPORT_READ_TIMEOUT=DATABASE_TIMEOUT)
        with application.app_context():
            export_engine = db.engines[EXPORT_BIND]
        applied = []  # the wait for each answer the frozen connection is given

        def freeze(*args) -> None:
            if frozen_at == "do_connect":  # what the driver is asked to connect with
                applied.append(args[3]["read_timeout"])
            else:  # the socket of the connection the statement is sent on
                applied.append(args[0].connection.dbapi_connection._sock.gettimeout())
            proxy.stall()

        event.listen(export_engine, frozen_at, freeze)
        try:
            response = call_guarded(application.test_client().get, f"{EXPORT}?symbol=IBM")
            assert (response.status_code, response.get_json()) == (
                503, {"data": [], "pagination": None, "info": {"error": UNAVAILABLE}})
        finally:
            proxy.resume()
            dispose_engines(application)
    assert applied == [DATABASE_TIMEOUT]
    log = (tmp_path / "log" / "api.log").read_text()
    assert (KILL_FAILED in log) == kill_tried


@pytest.mark.mysql
@pytest.mark.parametrize("seconds", [1e-7, 4.9e-7])
def test_a_statement_limit_under_a_microsecond_still_limits(mysql_database_url, seconds):
    """MariaDB takes max_statement_time in microseconds, and 0 for no limit at all.

    A limit that rounds to 0 there is set to a microsecond, as MySQL's
    max_execution_time is to a millisecond.
    """
    engine = create_engine(mysql_database_url)
    limit_statement_time(engine, seconds)
    try:
        with engine.connect() as connection:
            if "mariadb" in connection.connection.dbapi_connection.get_server_info().lower():
                assert connection.scalar(text("SELECT @@max_statement_time")) == 0.000001
            else:
                assert connection.scalar(text("SELECT @@max_execution_time")) == 1
    finally:
        engine.dispose()
