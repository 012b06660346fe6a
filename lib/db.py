"""Database helpers shared by the API and the fetch job: engine options, upserts.

Framework-free: callers pass URLs, engines and sessions in.
"""
import datetime
import functools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import cast

from sqlalchemy import Table, create_engine, event, func, text
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, Engine, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import (
    ArgumentError, DBAPIError, InterfaceError, NoSuchModuleError, OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import BigInteger, Date, Numeric, TypeDecorator

SQLITE_BUSY_TIMEOUT_MS = 10_000
MYSQL_POOL_RECYCLE_SECONDS = 280
UPSERT_CHUNK_SIZE = 500
# Errors that mean the database cannot be reached or used right now (retry later),
# as opposed to a bad query.
DATABASE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)
_MYSQL_LOCK_ERRORS = (1205, 1213)  # lock wait timeout, deadlock
_MYSQL_DISK_FULL_ERRORS = (1021, 1114)  # disk full, table full
DISK_FULL = "the database's disk is full"
# A schema the code does not match: MySQL's "no such table" and "unknown column",
# and SQLite's words for them.
_MYSQL_SCHEMA_ERRORS = (1146, 1054)
_SQLITE_SCHEMA_ERRORS = ("no such table", "no such column", "has no column named")
MIGRATE_COMMAND = "flask --app app db upgrade"
SCHEMA_HINT = f"the schema is missing or behind the migrations: run them ({MIGRATE_COMMAND})"
NEWER_SCHEMA = ("the database's schema is at revision %s, which this release does not know "
                "(a newer release migrated it): using it as it is")
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
        sqlite_options: dict = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
        # A file gets a pool of connections, whose wait is bounded like MySQL's;
        # an in-memory database one connection per thread, which takes no timeout.
        dialect = cast(type[DefaultDialect], parsed.get_dialect())
        if issubclass(dialect.get_pool_class(parsed), QueuePool):
            sqlite_options["pool_timeout"] = timeout
        return sqlite_options
    # Every connection is used through a Connection or Session, which ends its
    # transaction as it returns the connection; the pool's own rollback on
    # return would be a second round trip on every request.
    options: dict = {"pool_pre_ping": True, "pool_recycle": MYSQL_POOL_RECYCLE_SECONDS,
                     "pool_timeout": timeout, "pool_reset_on_return": None}
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
        cargs, cparams = dialect().create_connect_args(parsed)
        if dialect.driver == "pymysql":
            # PyMySQL checks its options (names, charset, TLS files) when its
            # connection is made, and connects only when asked to.
            dialect.import_dbapi().connect(*cargs, **cparams, defer_connect=True)
    except (ArgumentError, TypeError, ValueError, LookupError, AttributeError, OSError) as exc:
        options = ", ".join(sorted(parsed.query)) or "none"
        raise DatabaseUrlError(f"has a query option the driver cannot use (options: {options}; "
                               f"{exc.__class__.__name__})") from None


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
        return self.to_units(value)

    def to_units(self, value) -> int:
        """Return ``value`` as an integer count of 10**-scale; ValueError if it has more places."""
        scaled = (value if value.__class__ is Decimal else Decimal(value)).scaleb(self.scale)
        units = int(scaled)
        if units != scaled:
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        return units

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
    and PostgreSQL, ``ON DUPLICATE KEY UPDATE`` on MySQL/MariaDB), inside the
    caller's transaction. Every non-key column of the rows is updated, except
    that a null in a ``keep_when_null`` column keeps the stored value
    (``COALESCE(new, stored)``). Rows are dicts of Python values, all with
    the same keys.
    """
    if not rows:
        return
    codec = row_codec(session, model, rows[0])
    upsert_encoded(session, codec, codec.encode(tuple(row[name] for name in codec.columns)
                                                for row in rows), key_columns, keep_when_null)


class RowCodec:
    """Writes rows of ``columns`` as the database stores them, for the driver's batch path.

    Tens of thousands of rows at once are written with the DBAPI's own
    ``executemany`` on an SQL text compiled once: SQLAlchemy's executemany
    costs more per row in Python than the driver and the database together.
    ``encode`` does what the column types would do to each value, the way
    this project's types need it: a ScaledDecimal becomes its integer count
    and a date its ISO text on SQLite; the MySQL driver takes both as they are.
    """

    def __init__(self, dialect: Dialect, table: Table, columns: tuple[str, ...]) -> None:
        self.dialect = dialect
        self.table = table
        self.columns = columns
        self._encoders = [_encoder(table.c[name].type, dialect) for name in columns]
        self._encoded = [(index, encode) for index, encode in enumerate(self._encoders) if encode]
        # The table again, without column types: what is read through it comes
        # back as stored, to compare with encoded values.
        self.stored = sa_table(table.name, *(sa_column(name) for name in table.c.keys()))

    def encode(self, rows: Iterable[Sequence]) -> list[tuple]:
        """Return ``rows`` (values in ``columns`` order) in the database's representation."""
        if not self._encoded:
            return [tuple(row) for row in rows]
        encoded = []
        for row in rows:
            values = list(row)
            for index, encode in self._encoded:
                if values[index] is not None:
                    values[index] = encode(values[index])
            encoded.append(tuple(values))
        return encoded

    def encode_value(self, name: str, value):
        """Return one value of column ``name`` in the database's representation."""
        encode = self._encoders[self.columns.index(name)]
        return value if encode is None or value is None else encode(value)


def row_codec(session: Session, model: type[DeclarativeBase], columns: Iterable[str]) -> RowCodec:
    """Return the codec of ``columns`` of ``model``'s table for the session's database.

    Its ``columns`` are in the table's order, whatever the order given.
    """
    table = cast(Table, model.__table__)
    wanted = set(columns)
    ordered = tuple(name for name in table.c.keys() if name in wanted)
    return _row_codec(session.get_bind().dialect, table, ordered)


@functools.lru_cache(maxsize=64)
def _row_codec(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> RowCodec:
    return RowCodec(dialect, table, columns)


def _encoder(column_type, dialect) -> Callable | None:
    if dialect.name != "sqlite":
        return None
    if isinstance(column_type, ScaledDecimal):
        return column_type.to_units
    if isinstance(column_type, Date):
        return datetime.date.isoformat
    return None


def upsert_encoded(session: Session, codec: RowCodec, rows: Sequence[tuple],
                   key_columns: Iterable[str], keep_when_null: Iterable[str] = ()) -> None:
    """Upsert ``rows`` already in the database's representation (``RowCodec.encode``)."""
    if not rows:
        return
    sql, positional = _upsert_sql(codec, frozenset(key_columns), frozenset(keep_when_null))
    params = rows if positional else [dict(zip(codec.columns, row)) for row in rows]
    connection = session.connection()
    for start in range(0, len(params), UPSERT_CHUNK_SIZE):
        connection.exec_driver_sql(sql, params[start:start + UPSERT_CHUNK_SIZE])


@functools.lru_cache(maxsize=64)
def _upsert_sql(codec: RowCodec, keys: frozenset[str], keep: frozenset[str]) -> tuple[str, bool]:
    """Compile the upsert of ``codec``'s columns once; return its SQL and if it is positional."""
    dialect, table = codec.dialect, codec.table
    update_names = [name for name in codec.columns if name not in keys]

    def updated(name: str, proposed):
        return func.coalesce(proposed, table.c[name]) if name in keep else proposed

    if dialect.name in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        stmt = stmt.on_duplicate_key_update(
            {name: updated(name, stmt.inserted[name]) for name in update_names})
    else:
        dml = {"sqlite": sqlite, "postgresql": postgresql}.get(dialect.name)
        if dml is None:
            raise NotImplementedError(f"no upsert for the {dialect.name} dialect")
        stmt = dml.insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=sorted(keys),
            set_={name: updated(name, stmt.excluded[name]) for name in update_names})
    compiled = stmt.compile(dialect=dialect, column_keys=list(codec.columns))
    if compiled.positiontup is not None and list(compiled.positiontup) != list(codec.columns):
        raise NotImplementedError("the compiled upsert takes its parameters in another order")
    return str(compiled), dialect.positional


def schema_revision(engine: Engine) -> str | None:
    """Return the Alembic revision the database's schema is at; None if it has none (yet).

    Raises the database's error when the connection broke or timed out: a
    stalled server would only hold the migration's connection as long again.
    """
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError as exc:  # no such table, or no database: migrating will say which
        if exc.connection_invalidated:
            raise
        return None


def unknown_revision(engine: Engine, directory: str) -> str | None:
    """Return the schema's revision when the migrations in ``directory`` do not know it.

    A newer release migrated the database (a rolling upgrade, a rollback):
    Alembic cannot upgrade from a revision it has no script for, so this
    release must leave the schema alone and work on it as it is. None when
    the schema is missing, current or behind.
    """
    revision = schema_revision(engine)
    if revision is None or schema_state({revision}, directory) != "newer":
        return None
    return revision


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


@functools.cache
def migration_revisions(directory: str) -> tuple[frozenset[str], frozenset[str]]:
    """Return the head revisions and every revision of the Alembic scripts in ``directory``.

    Read once per process: the scripts do not change while it runs.
    """
    # Imported here: the fetch job, which needs Alembic only to migrate, imports this module.
    from alembic.script import ScriptDirectory
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


def is_disk_full(exc: Exception) -> bool:
    """Tell a write refused for want of room (SQLite's SQLITE_FULL, MySQL's disk or table full).

    Such a database answers at once: naming it sends an operator to the disk,
    not to a server that "stopped answering".
    """
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return bool(orig.args) and orig.args[0] in _MYSQL_DISK_FULL_ERRORS
