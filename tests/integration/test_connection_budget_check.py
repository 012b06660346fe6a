"""The connection budget gunicorn checks at start, against the real server (MariaDB/MySQL).

The server's max_connections is never lowered (other tests share the
server): an account of the test's own with MAX_USER_CONNECTIONS stands in.
"""
import logging

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import Pool

from lib import connection_budget
from lib.connection_budget import (
    CHECK_TIMEOUT_SECONDS, ConnectionLimit, ConnectionPlan, read_connection_limit,
    warn_if_over_budget,
)
from tests.helpers import HANG_GUARD_SECONDS, call_guarded, wait_for
from tests.servers import production_gunicorn, stalling_proxy

BUDGET_LOGGER = "lib.connection_budget"


@pytest.mark.mysql
def test_gunicorn_warns_at_start_when_its_workers_may_open_more_than_allowed(
        limited_user_url, tmp_path):
    url = limited_user_url(5)
    log_dir = tmp_path / "log"
    with production_gunicorn(log_dir, APP_ENV="production", DATABASE_URL=url,
                             GUNICORN_WORKERS="2", GUNICORN_THREADS="2",
                             CACHE_TYPE="SimpleCache"):
        pass
    output = (log_dir / "gunicorn.out").read_text(errors="replace")
    [warning] = [line for line in output.splitlines() if "connection budget" in line]
    assert f" WARNING {BUDGET_LOGGER}: connection budget: 2 workers x 4 (2 threads, each with " \
           "a request and a CSV export connection) + 2 for the fetch job = 10 database " \
           "connections may be open at once, more than the 5 the server allows " \
           "(max_user_connections); " in warning
    assert "lower GUNICORN_WORKERS or GUNICORN_THREADS, or raise max_user_connections" in warning
    assert make_url(url).password not in output + (log_dir / "api.log").read_text()


@pytest.mark.mysql
def test_the_limit_read_is_the_user_own_where_tighter_else_the_server(limited_user_url,
                                                                      mysql_database_url):
    assert read_connection_limit(limited_user_url(5)) == ConnectionLimit(5, "max_user_connections")
    # The app takes a mariadb:// URL as well (lib.storage, lib.locks): it is checked alike.
    mariadb = make_url(limited_user_url(5)).set(drivername="mariadb+pymysql")
    assert read_connection_limit(mariadb.render_as_string(hide_password=False)) == (
        ConnectionLimit(5, "max_user_connections"))
    server = create_engine(mysql_database_url)
    try:
        with server.connect() as connection:
            max_connections = connection.execute(text("SELECT @@GLOBAL.max_connections")).scalar()
    finally:
        server.dispose()
    assert read_connection_limit(mysql_database_url) == ConnectionLimit(
        max_connections, "max_connections")


@pytest.mark.mysql
def test_a_plan_within_the_limit_logs_nothing(limited_user_url, caplog):
    caplog.set_level(logging.INFO, logger=BUDGET_LOGGER)
    url = limited_user_url(10)
    warn_if_over_budget(url, ConnectionPlan(workers=2, threads=2, exports=True))  # 10
    assert caplog.records == []
    # The limit was read, not passed over: one connection more is warned of.
    warn_if_over_budget(url, ConnectionPlan(workers=9, threads=1, exports=False))  # 11
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "= 11 database connections" in record.getMessage()


def test_sqlite_has_no_connection_limit_to_check(sqlite_database_url, caplog):
    caplog.set_level(logging.INFO, logger=BUDGET_LOGGER)
    assert read_connection_limit(sqlite_database_url) is None
    warn_if_over_budget(sqlite_database_url, ConnectionPlan(workers=1000, threads=100,
                                                            exports=False))
    assert caplog.records == []


def test_an_unreachable_database_is_left_unchecked_at_once(caplog):
    caplog.set_level(logging.INFO, logger=BUDGET_LOGGER)
    attempts: list[dict] = []

    def connecting(_dialect, _record, _args, params) -> None:
        attempts.append(params)

    event.listen(Engine, "do_connect", connecting)
    try:
        warn_if_over_budget("mysql+pymysql://api:secret@127.0.0.1:1/financial",
                            ConnectionPlan(workers=1000, threads=100, exports=True))
    finally:
        event.remove(Engine, "do_connect", connecting)
    assert len(attempts) == 1, "one refused connection, no retry"
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(
        "connection budget not checked: OperationalError 2003: Can't connect to MySQL server")
    assert "secret" not in record.getMessage()


@pytest.mark.mysql
def test_a_server_refusing_the_question_is_left_unchecked(mysql_database_url, caplog,
                                                          monkeypatch):
    """A MySQL-speaking proxy may not know the variables: the start goes on, unchecked."""
    # A statement the server cannot parse: a ProgrammingError, not an outage.
    monkeypatch.setattr(connection_budget, "LIMIT_QUERY", "SELECT @@GLOBAL.max_connections FROM")
    caplog.set_level(logging.INFO, logger=BUDGET_LOGGER)
    warn_if_over_budget(mysql_database_url, ConnectionPlan(workers=1000, threads=100,
                                                           exports=True))
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("connection budget not checked: ")
    assert "ProgrammingError 1064" in record.getMessage()


@pytest.mark.mysql
@pytest.mark.parametrize("answer", ["NULL, NULL", "'many', 0"])
def test_a_server_answering_no_number_is_left_unchecked(mysql_database_url, caplog,
                                                        monkeypatch, answer):
    monkeypatch.setattr(connection_budget, "LIMIT_QUERY", f"SELECT {answer}")
    caplog.set_level(logging.INFO, logger=BUDGET_LOGGER)
    warn_if_over_budget(mysql_database_url, ConnectionPlan(workers=1000, threads=100,
                                                           exports=True))
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.INFO, "connection budget not checked: the server's limits are not numbers")]


@pytest.mark.mysql
@pytest.mark.parametrize("frozen", ["connecting", "asking"])
def test_a_frozen_database_is_given_up_on_after_the_checks_timeout(mysql_database_url, caplog,
                                                                   frozen):
    """The check's timeout is the one its driver and its socket get, and it ends the wait.

    Frozen as the connection is made, or once it is and the limits are asked.
    """
    caplog.set_level(logging.INFO, logger=BUDGET_LOGGER)
    url = make_url(mysql_database_url)
    asked: list[dict] = []  # what the driver was asked to connect with
    sockets: list[float | None] = []  # the timeout of each connected socket

    def connecting(_dialect, _record, _args, params) -> None:
        asked.append(dict(params))

    def connected(dbapi_connection, _record) -> None:
        sockets.append(dbapi_connection._sock.gettimeout())
        proxy.stall()

    with stalling_proxy(url.port or 3306, url.host or "127.0.0.1") as proxy:
        if frozen == "connecting":
            proxy.stall()
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        event.listen(Engine, "do_connect", connecting)
        event.listen(Pool, "connect", connected)
        try:
            call_guarded(warn_if_over_budget, proxied,
                         ConnectionPlan(workers=1000, threads=100, exports=True))
        finally:
            event.remove(Engine, "do_connect", connecting)
            event.remove(Pool, "connect", connected)
        wait_for(lambda: proxy.hung_up == 1, "the check to close its connection",
                 HANG_GUARD_SECONDS)
        assert proxy.accepted == 1, "one connection, no retry"
    assert [(params["connect_timeout"], params["read_timeout"]) for params in asked] == [
        (CHECK_TIMEOUT_SECONDS, CHECK_TIMEOUT_SECONDS)]
    assert sockets == ([] if frozen == "connecting" else [CHECK_TIMEOUT_SECONDS])
    [record] = caplog.records
    assert record.getMessage().startswith("connection budget not checked: OperationalError 2013")
