"""Database engines shared by the API and the fetch job: URL checks, engine options, SQLite set-up.

Framework-free: callers pass URLs and engines in.
"""
import hashlib
import logging
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from lib.folders import folder_problem

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
MYSQL_POOL_RECYCLE_SECONDS = 280
# A request's reads (a page and its count, an export, its row cap and
# X-Row-Count) must see one state of the database: MySQL's default, pinned
# here against a server configured for READ COMMITTED. A connection set to
# another level for a while (the lock's AUTOCOMMIT) gets it back on return.
SERVER_ISOLATION_LEVEL = "REPEATABLE READ"
# The statements before which pysqlite opens a transaction (compared in ASCII).
_SQLITE_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE | re.ASCII)


# Query options the drivers take a password from (PyMySQL's ``password`` and ``passwd``).
_PASSWORD_OPTIONS = frozenset({"password", "passwd"})


def url_for_the_log(url: URL) -> str:
    """Return ``url`` as a log line names it: its password hidden, in the query too (``***``).

    Hidden query options come last, as SQLAlchemy would quote a ``***`` of its own.
    """
    hidden = [name for name in url.query if name.lower() in _PASSWORD_OPTIONS]
    text = url.difference_update_query(hidden).render_as_string(hide_password=True)
    if not hidden:
        return text
    return text + ("&" if "?" in text else "?") + "&".join(f"{name}=***" for name in hidden)


def engine_options(url: str, *, timeout: float, read_timeout: float | None = None) -> dict:
    """Return create_engine keyword arguments suited to the URL's backend.

    MySQL drops idle connections (wait_timeout), so the pool pings before use
    and recycles connections before the server would close them. A server
    that stops answering must not hang a request: connecting, each answer
    (``read_timeout``, default ``timeout``) and waiting for a pooled
    connection are bounded, and PyMySQL waits forever without them. The
    isolation level is pinned (SERVER_ISOLATION_LEVEL), whatever the server's.
    """
    parsed = make_url(url)
    # Whole seconds, rounded up: Flask-SQLAlchemy builds its engines with
    # engine_from_config, which makes pool_timeout an int (0.5 would wait not at all).
    pool_timeout = math.ceil(timeout)
    if parsed.get_backend_name() == "sqlite":
        sqlite_options: dict = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
        # A file gets a pool of connections, whose wait is bounded like MySQL's;
        # an in-memory database one connection per thread, which takes no timeout.
        dialect = cast(type[DefaultDialect], parsed.get_dialect())
        if issubclass(dialect.get_pool_class(parsed), QueuePool):
            sqlite_options["pool_timeout"] = pool_timeout
        return sqlite_options
    # Every connection is used through a Connection or Session, which ends its
    # transaction as it returns the connection; the pool's own rollback on
    # return would be a second round trip on every request.
    options: dict = {"pool_pre_ping": True, "pool_recycle": MYSQL_POOL_RECYCLE_SECONDS,
                     "pool_timeout": pool_timeout, "pool_reset_on_return": None,
                     "isolation_level": SERVER_ISOLATION_LEVEL}
    if parsed.get_driver_name() == "pymysql":
        answer_timeout = read_timeout or timeout
        options["connect_args"] = {"connect_timeout": timeout, "read_timeout": answer_timeout,
                                   "write_timeout": answer_timeout}
    return options


@contextmanager
def batch_engine(engine: Engine, *, timeout: float, read_timeout: float) -> Iterator[Engine]:
    """Yield an engine to ``engine``'s database whose answers may take ``read_timeout``.

    For a batch command run through the API's app (``flask db upgrade``,
    ``flask refresh-sums``), whose answers time out after a few seconds: a
    statement over every stored day takes longer on a big table. ``engine``
    itself where answers take no timeout (SQLite); any other is disposed of
    at the end.
    """
    if engine.dialect.name == "sqlite":
        yield engine
        return
    url = engine.url.render_as_string(hide_password=False)
    batch = create_engine(url, **engine_options(url, timeout=timeout, read_timeout=read_timeout))
    try:
        yield batch
    finally:
        batch.dispose()


class DatabaseUrlError(ValueError):
    """A database URL that cannot work whatever the server's state; the message says why.

    Messages never repeat the URL, which may hold a password, and read as
    the continuation of the setting's name ("DATABASE_URL is not ...").
    """


def check_database_url(url: str) -> None:
    """Check that ``url`` can work at all; create nothing.

    A server that is down is not checked here: that is a 503 until it is back.
    Raises DatabaseUrlError for a malformed URL, an unknown dialect or driver,
    a driver that is not installed, a server URL naming no database, or a
    query option the driver refuses.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseUrlError("is not a database URL; expected e.g. mysql+pymysql://user@host"
                               ":3306/db or sqlite:///path/file.db") from None
    _check_driver(parsed)
    if parsed.get_backend_name() != "sqlite" and not parsed.database:
        raise DatabaseUrlError("names no database; put its name after the server, e.g. "
                               "mysql+pymysql://user@host:3306/financial")


def _check_driver(parsed: URL) -> None:
    """Check that the driver is known, installed and accepts the URL's query options."""
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        raise DatabaseUrlError(f"names an unknown database driver {parsed.drivername!r}") from None
    except ImportError as exc:
        raise DatabaseUrlError(f"needs the driver module {exc.name!r}, which is not installed; "
                               "use e.g. mysql+pymysql://") from None
    try:
        cargs, cparams = dialect().create_connect_args(parsed)
        if dialect.driver == "pymysql":
            # PyMySQL checks its options (names, charset, TLS files) when its
            # connection is made, and connects only when asked to. Given no
            # TLS option, here or in an option file, it would still build a
            # default TLS context, to try TLS when it connects (this one never
            # does): 30-60 ms of reading the system's certificates, in every start.
            if not any(name.startswith(("ssl", "read_default")) for name in cparams):
                cparams = {**cparams, "ssl_disabled": True}
            dialect.import_dbapi().connect(*cargs, **cparams, defer_connect=True)
    except (ArgumentError, TypeError, ValueError, LookupError, AttributeError, OSError) as exc:
        options = ", ".join(sorted(parsed.query)) or "none"
        raise DatabaseUrlError(f"has a query option the driver cannot use (options: {options}; "
                               f"{exc.__class__.__name__})") from None


def check_sqlite_folder(url: str) -> None:
    """Check that the folder of the SQLite file ``url`` names can be created; create nothing.

    ``url`` is one check_database_url passed. Raises DatabaseUrlError as
    create_sqlite_folder would.
    """
    folder = _sqlite_folder(url)
    if folder is None:
        return
    problem = folder_problem(folder, writable=False)
    if problem:
        raise DatabaseUrlError(_folder_refusal(folder, problem))


def create_sqlite_folder(url: str) -> None:
    """Create the folder of the SQLite file ``url`` names, a URL check_database_url passed.

    Nothing for an in-memory database or another backend. Raises
    DatabaseUrlError when the folder cannot be created.
    """
    folder = _sqlite_folder(url)
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUrlError(_folder_refusal(
            folder, exc.strerror or exc.__class__.__name__)) from None


def _sqlite_folder(url: str) -> Path | None:
    """Return the folder of the SQLite file ``url`` names; None for memory or another backend."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return None
    return Path(database).parent


def _folder_refusal(folder: Path, reason: str) -> str:
    return f"points into the folder {folder}, which cannot be created ({reason})"


def limit_statement_time(engine: Engine, seconds: float) -> None:
    """Have a MySQL or MariaDB server end each statement after ``seconds``, as the client does.

    PyMySQL's read timeout only stops the client waiting: the server runs the
    statement on to its end (a sort of every matching row may take minutes) on
    a connection the pool has dropped. Each request answered 503 so would leave
    the server that work and a connection, and a client repeating it would pile
    them up. MariaDB's ``max_statement_time`` (every statement) and MySQL's
    ``max_execution_time`` (SELECTs) end it on the server at the same time.
    A limit under their unit (MariaDB's microsecond, MySQL's millisecond) is
    set to one unit: written as 0 it would mean no limit at all.
    PyMySQL only: the one driver given a read timeout (``engine_options``).
    """
    if engine.dialect.name != "mysql" or engine.dialect.driver != "pymysql":
        return

    @event.listens_for(engine, "connect")
    def _limit_statement_time(dbapi_connection, _connection_record):
        cursor = dbapi_connection.cursor()
        if "mariadb" in dbapi_connection.get_server_info().lower():
            cursor.execute(f"SET SESSION max_statement_time = {max(seconds, 1e-6):f}")
        else:
            cursor.execute(f"SET SESSION max_execution_time = {max(1, math.ceil(seconds * 1000))}")
        cursor.close()


def wait_for_slow_readers(engine: Engine, seconds: int) -> None:
    """Have a MySQL or MariaDB server wait ``seconds`` for ``engine``'s client to take its rows.

    The server drops a connection whose client has taken none of the rows
    it sends for ``net_write_timeout`` seconds (60 by default). A client
    that reads a streamed result only as fast as it can pass the rows on
    (the CSV export, to its HTTP client) takes none while that client
    pauses: past that time its answer would be cut short.
    """
    if engine.dialect.name not in ("mysql", "mariadb"):
        return

    @event.listens_for(engine, "connect")
    def _wait_for_slow_readers(dbapi_connection, _connection_record):
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET SESSION net_write_timeout = {int(seconds)}")
        cursor.close()


def end_timed_out_statements(engine: Engine, *, killer: Engine) -> None:
    """Have a MySQL or MariaDB server end a statement ``engine``'s client stopped waiting for.

    For an engine whose statements have no time limit on the server (the CSV
    export's: its rows stream for as long as the client reads them), where
    ``limit_statement_time`` cannot be used. PyMySQL's read timeout drops
    the connection, and the server runs the statement (a sort of every
    matching row) on to its end: ``KILL QUERY`` from a connection of
    ``killer`` ends it. That waits as long as ``killer``'s timeouts allow,
    when the server does not answer at all. PyMySQL only, like the read timeout.
    """
    if engine.dialect.name != "mysql" or engine.dialect.driver != "pymysql":
        return

    @event.listens_for(engine, "handle_error")
    def _end_timed_out_statement(context):
        # PyMySQL raises its "Lost connection" from the socket's TimeoutError.
        if context.connection is None or not isinstance(
                context.original_exception.__context__, TimeoutError):
            return  # no statement (connecting, a ping), or the connection itself broke
        thread = context.connection.connection.dbapi_connection.thread_id()
        try:
            with killer.connect() as connection:
                connection.exec_driver_sql(f"KILL QUERY {int(thread)}")
        except SQLAlchemyError as exc:
            logger.warning("a statement the client stopped waiting for could not be ended on "
                           "the server (%s); it runs on to its end", exc.__class__.__name__)


def configure_engine(engine: Engine, *, reads_one_snapshot: Callable[[], bool]) -> None:
    """Put SQLite connections in WAL mode with a busy timeout.

    WAL lets the fetch job write while API workers keep reading; the busy
    timeout makes a second writer wait instead of failing at once. In WAL
    mode, synchronous=NORMAL syncs the log at checkpoints instead of at every
    commit (the fetch job commits once per symbol): a process that dies
    loses nothing, and the file stays consistent even through a power loss,
    which may only undo the last commits (the next run fetches them again).

    A transaction begun while ``reads_one_snapshot()`` is true opens at once,
    so all its reads see one state of the database, as on MySQL.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _set_sqlite_pragmas(dbapi_connection, _connection_record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    # pysqlite opens a transaction only before a write: until then each read
    # sees the database as of that statement, so a page and its count could
    # straddle a commit of the fetch job. Writers keep pysqlite's way: a read
    # transaction that later writes fails at once if another commit came first.
    @event.listens_for(engine, "begin")
    def _begin_reads_at_once(connection):
        if reads_one_snapshot():
            connection.exec_driver_sql("BEGIN")

    # pysqlite spots a write by comparing its first word with the C library's
    # tolower(): under a Turkish or Azerbaijani locale (LANG=tr_TR.UTF-8) "I"
    # is not "i" there, so on Python 3.11 and 3.12 every INSERT would commit on
    # its own, and a symbol that failed half-way would keep the rows written before.
    # Open the transaction here as pysqlite means to; Python 3.13 does itself,
    # and no statement pays for the check there.
    if sys.version_info >= (3, 13):
        return

    @event.listens_for(engine, "before_cursor_execute")
    def _begin_before_writes(_connection, cursor, statement, *_):
        dbapi_connection = cursor.connection
        if (dbapi_connection.isolation_level is not None and not dbapi_connection.in_transaction
                and _SQLITE_WRITE.match(statement)):
            dbapi_connection.execute(f"BEGIN {dbapi_connection.isolation_level}")


def database_digest(url: str) -> str:
    """Return a short digest naming the database: its URL without the password.

    The API and the fetch job get the same URL (the password may come from a
    file), so they agree on it; another database never does. It names the
    database in the keys its deployments write to a shared Redis: cached
    answers, rate-limit counters.
    """
    identity = make_url(url).set(password=None).render_as_string(hide_password=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
