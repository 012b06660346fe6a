"""Database helpers shared by the API and the fetch job: engine options, upserts.

Framework-free: callers pass URLs, engines and sessions in.
"""
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from functools import cache
from pathlib import Path

from alembic.script import ScriptDirectory

from sqlalchemy import event, func, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError, InterfaceError, NoSuchModuleError, OperationalError, ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import BigInteger, Numeric, TypeDecorator

SQLITE_BUSY_TIMEOUT_MS = 10_000
MYSQL_POOL_RECYCLE_SECONDS = 280
UPSERT_CHUNK_SIZE = 500
MIGRATION_LOCK_TIMEOUT_SECONDS = 300
# Errors that mean the database cannot be reached or used right now (retry later),
# as opposed to a bad query.
DATABASE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)
_MYSQL_LOCK_ERRORS = (1205, 1213)  # lock wait timeout, deadlock
# A schema the code does not match: MySQL's "no such table" and "unknown column",
# and SQLite's words for them.
_MYSQL_SCHEMA_ERRORS = (1146, 1054)
_SQLITE_SCHEMA_ERRORS = ("no such table", "no such column", "has no column named")
MIGRATE_COMMAND = "flask --app app db upgrade"
SCHEMA_HINT = f"the schema is missing or behind the migrations: run them ({MIGRATE_COMMAND})"
_POOL_EXHAUSTED = "no pooled connection became free in time; every connection is busy"
# What an operator should check for the MySQL client and server error codes
# a deployment meets: wrong credentials, names, addresses, a stalled server.
_DRIVER_HINTS = {
    1040: "the server has too many connections: fewer workers x threads, or raise "
          "max_connections",
    1044: "the user may not use this database: check its grants",
    1045: "authentication failed: check the user name and the password "
          "(DATABASE_PASSWORD_FILE)",
    1049: "unknown database: create it, or fix its name in DATABASE_URL",
    2002: "cannot connect: check the host and port in DATABASE_URL and that the server runs",
    2003: "cannot connect: check the host and port in DATABASE_URL and that the server runs",
    2005: "unknown host: check the host name in DATABASE_URL",
    2006: "the server closed the connection: it restarted or dropped idle connections",
    2013: "the connection broke or the server did not answer in time (DATABASE_TIMEOUT; "
          "DATABASE_JOB_TIMEOUT in the fetch job): it is stalled, overloaded or unreachable",
    **dict.fromkeys(_MYSQL_SCHEMA_ERRORS, SCHEMA_HINT),
}


def engine_options(url: str, *, timeout: float, read_timeout: float | None = None) -> dict:
    """Return create_engine keyword arguments suited to the URL's backend.

    MySQL drops idle connections (wait_timeout), so the pool pings before use
    and recycles connections before the server would close them. A server
    that stops answering must not hang a request: connecting, each answer
    (``read_timeout``, default ``timeout``) and waiting for a pooled
    connection are bounded, and PyMySQL waits forever without them.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    options: dict = {"pool_pre_ping": True, "pool_recycle": MYSQL_POOL_RECYCLE_SECONDS,
                     "pool_timeout": timeout}
    if parsed.get_driver_name() == "pymysql":
        answer_timeout = read_timeout or timeout
        options["connect_args"] = {"connect_timeout": timeout, "read_timeout": answer_timeout,
                                   "write_timeout": answer_timeout}
    return options


class DatabaseUrlError(ValueError):
    """A database URL that cannot work whatever the server's state; the message says why.

    Messages never repeat the URL, which may hold a password, and read as
    the continuation of the setting's name ("DATABASE_URL is not ...").
    """


def check_database_url(url: str) -> None:
    """Check that ``url`` can work at all and create the folder of an SQLite file.

    A server that is down is not checked here: that is a 503 until it is back.
    Raises DatabaseUrlError for a malformed URL, an unknown dialect or driver,
    a driver that is not installed, a server URL naming no database, a query
    option the driver refuses, or an SQLite folder that cannot be created.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise DatabaseUrlError("is not a database URL; expected e.g. mysql+pymysql://user@host"
                               ":3306/db or sqlite:///path/file.db") from None
    _check_driver(parsed)
    if parsed.get_backend_name() == "sqlite":
        _prepare_sqlite_folder(parsed.database)
    elif not parsed.database:
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
        dialect().create_connect_args(parsed)
    except (ArgumentError, TypeError, ValueError) as exc:
        raise DatabaseUrlError(f"has a query option the driver cannot use "
                               f"({exc.__class__.__name__})") from None


def _prepare_sqlite_folder(database: str | None) -> None:
    """Create the folder of an SQLite file (not of an in-memory database)."""
    if database in (None, "", ":memory:"):
        return
    folder = Path(database).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseUrlError(f"points into the folder {folder}, which cannot be created "
                               f"({exc.strerror or exc.__class__.__name__})") from None


def configure_engine(engine: Engine) -> None:
    """Put SQLite connections in WAL mode with a busy timeout.

    WAL lets the fetch job write while API workers keep reading; the busy
    timeout makes a second writer wait instead of failing at once.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _set_sqlite_pragmas(dbapi_connection, _connection_record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


class ScaledDecimal(TypeDecorator):
    """An exact DECIMAL(precision, scale) that stays exact on SQLite too.

    SQLite has no decimal type: NUMERIC columns hold binary floats and SUM
    adds floats. There the value is stored as an integer count of
    10**-scale units, so storage and SUM are exact; other databases use
    a native DECIMAL. Python always sees ``Decimal``.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int = 18, scale: int = 4) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "sqlite":
            return value
        scaled = Decimal(value).scaleb(self.scale)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        return int(scaled)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            # int() refuses what is not an integer (a damaged row) with a ValueError.
            return Decimal(value if type(value) is int else int(value)).scaleb(-self.scale)
        return Decimal(value)


def upsert_rows(
    session: Session,
    model: type[DeclarativeBase],
    rows: Sequence[Mapping],
    key_columns: Iterable[str],
    keep_when_null: Iterable[str] = (),
) -> None:
    """Insert ``rows`` into ``model``'s table, updating in place on a key conflict.

    Uses the dialect's native construct (``ON CONFLICT DO UPDATE`` on SQLite
    and PostgreSQL, ``ON DUPLICATE KEY UPDATE`` on MySQL/MariaDB), in chunks,
    inside the caller's transaction. Every non-key column of the rows is
    updated, except that a null in a ``keep_when_null`` column keeps the
    stored value (``COALESCE(new, stored)``).
    """
    keys, keep = set(key_columns), set(keep_when_null)
    for start in range(0, len(rows), UPSERT_CHUNK_SIZE):
        chunk = rows[start:start + UPSERT_CHUNK_SIZE]
        session.execute(_upsert_statement(session, model, chunk, keys, keep))


def _upsert_statement(session: Session, model: type[DeclarativeBase], chunk: Sequence[Mapping],
                      keys: set[str], keep: set[str]):
    dialect = session.get_bind().dialect.name
    update_names = [name for name in chunk[0] if name not in keys]
    stored = model.__table__.c

    def updated(name: str, proposed):
        return func.coalesce(proposed, stored[name]) if name in keep else proposed

    if dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(model).values(list(chunk))
        return stmt.on_duplicate_key_update(
            {name: updated(name, stmt.inserted[name]) for name in update_names})
    dml = {"sqlite": sqlite, "postgresql": postgresql}.get(dialect)
    if dml is None:
        raise NotImplementedError(f"no upsert for the {dialect} dialect")
    stmt = dml.insert(model).values(list(chunk))
    return stmt.on_conflict_do_update(
        index_elements=sorted(keys),
        set_={name: updated(name, stmt.excluded[name]) for name in update_names},
    )


def describe_database_error(exc: Exception) -> str:
    """Name a database failure for the log: the error, the driver's code and message, a hint.

    Never the URL: SQLAlchemy's own text carries the statement and its
    parameters, and a URL may carry the password. The driver's message
    names the user and host at most.
    """
    if isinstance(exc, PoolTimeoutError):
        return f"{exc.__class__.__name__}: {_POOL_EXHAUSTED}"
    name = exc.__class__.__name__
    orig = getattr(exc, "orig", None)
    if orig is None:
        return name
    args: tuple = orig.args
    if not (len(args) > 1 and isinstance(args[0], int)):
        return f"{name}: {orig}" + (f"; hint: {SCHEMA_HINT}" if is_schema_error(exc) else "")
    code, message = args[0], args[1]
    hint = _DRIVER_HINTS.get(code)
    return f"{name} {code}: {message}" + (f"; hint: {hint}" if hint else "")


def is_schema_error(exc: Exception) -> bool:
    """Tell a missing table or column (the migrations were not run) from other failures."""
    if not isinstance(exc, (OperationalError, ProgrammingError)) or exc.orig is None:
        return False
    args = exc.orig.args
    if args and args[0] in _MYSQL_SCHEMA_ERRORS:
        return True
    return any(words in str(exc.orig) for words in _SQLITE_SCHEMA_ERRORS)


@cache
def migration_revisions(directory: str) -> tuple[frozenset[str], frozenset[str]]:
    """Return the head revisions and every revision of the Alembic scripts in ``directory``.

    Read once per process: the scripts do not change while it runs.
    """
    scripts = ScriptDirectory(directory)
    return (frozenset(scripts.get_heads()),
            frozenset(script.revision for script in scripts.walk_revisions()))


def schema_state(versions: set[str], directory: str) -> str:
    """Compare the database's Alembic ``versions`` with the scripts in ``directory``.

    Returns "current" (at the heads), "missing" (never migrated), "behind"
    (older revisions: run the migrations) or "newer" (revisions these
    scripts do not know, e.g. a newer release migrated the database).
    """
    heads, known = migration_revisions(directory)
    if not versions:
        return "missing"
    if versions == heads:
        return "current"
    return "behind" if versions <= known else "newer"


def is_lock_conflict(exc: OperationalError) -> bool:
    """Tell a deadlock or lock timeout, which a retried transaction may pass, from other errors."""
    orig = exc.orig
    code = orig.args[0] if orig is not None and orig.args else None
    return code in _MYSQL_LOCK_ERRORS or "database is locked" in str(orig)


class MigrationLockTimeout(Exception):
    """Another process held the migration lock for too long."""


def lock_name(database: str, purpose: str = "migrate") -> str:
    """Return the name of a MySQL named lock: one per database, as locks are server-wide."""
    return f"financial-{purpose}:{database}"[:64]


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold a MySQL named lock for the block; elsewhere just run the block.

    API replicas and fetch jobs may start together on a fresh database; the
    lock makes them apply migrations one at a time. SQLite serializes DDL itself.

    Raises MigrationLockTimeout when the lock is not granted in time.
    """
    if engine.dialect.name not in ("mysql", "mariadb"):
        yield
        return
    name = lock_name(engine.url.database or "")
    with engine.connect() as connection:
        granted = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"),
            {"name": name, "timeout": MIGRATION_LOCK_TIMEOUT_SECONDS},
        ).scalar()
        if granted != 1:
            raise MigrationLockTimeout(f"migration lock {name!r} not granted "
                                       f"within {MIGRATION_LOCK_TIMEOUT_SECONDS}s")
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
