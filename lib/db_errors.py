"""Database failures told apart, described for the log (never with the URL) and named for anyone.

Framework-free: callers pass the exceptions in.
"""
import re
import sqlite3

from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from lib.schema import MIGRATE_COMMAND

# Errors that mean the database cannot be reached or used right now (retry later),
# as opposed to a bad query.
DATABASE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError)
_MYSQL_LOCK_ERRORS = (1205, 1213)  # lock wait timeout, deadlock
# Refusals waiting does not change: no grant on the database, a wrong user or
# password, no such database. MariaDB answers 1698 rather than 1045 to some user
# names it does not know (`financial` among them) and to an account that logs in
# through another plugin (unix_socket, e.g. Debian's root@localhost).
_MYSQL_REFUSAL_ERRORS = (1044, 1045, 1049, 1698)
_MYSQL_DISK_FULL_ERRORS = (1021, 1114)  # disk full, table full
# Errors that mean a full disk only when the OS error behind them is ENOSPC (28):
# a storage engine's error (1030), a file the server writes (1026) or a temporary
# file (3, the server's own "Errcode"). MariaDB writes `errno: 28 "No space left
# on device"`, MySQL `errno: 28 - No space left on device`.
_MYSQL_OS_ERRORS = (3, 1026, 1030)
_ENOSPC = re.compile(r"\b(?:error|errno|errcode):? 28\b", re.IGNORECASE)
DISK_FULL = "the database's disk is full"
_DISK_FULL_HINT = (DISK_FULL, "free space on it, or raise its quota")
# A schema the code does not match: MySQL's "no such table" and "unknown column",
# and SQLite's words for them.
_MYSQL_SCHEMA_ERRORS = (1146, 1054)
_SQLITE_SCHEMA_ERRORS = ("no such table", "no such column", "has no column named")
_MISSING_SCHEMA = ("the schema is missing or behind the migrations",
                   f"run them ({MIGRATE_COMMAND})")
_POOL_EXHAUSTED = "no pooled connection became free in time; every connection is busy"
# SQLite's SQLITE_CANTOPEN: a missing or unwritable folder, or no file descriptor left.
_SQLITE_CANNOT_OPEN = ("the SQLite file cannot be opened",
                       "check that DATABASE_URL names a file in a folder this user may write, "
                       "and the open files limit (ulimit -n)")
# SQLite's SQLITE_IOERR_SHMSIZE: a WAL database is read through its -shm file,
# which the first connection to the database grows: on a full disk a process
# that opens the database (an API restarted, the fetch job) cannot even read.
_SQLITE_SHM_CANNOT_GROW = ("SQLite cannot grow the -shm file beside the database file",
                           "its disk is probably full: free space on it")
_SQLITE_HINTS: dict[int | None, tuple[str, str]] = {
    sqlite3.SQLITE_CANTOPEN: _SQLITE_CANNOT_OPEN,
    sqlite3.SQLITE_IOERR_SHMSIZE: _SQLITE_SHM_CANNOT_GROW}
# A deadlock, a lock wait timed out, SQLite's "database is locked": once retries ran out.
_LOCK_CONFLICT = "another transaction held the rows too long (a lock wait or a deadlock)"
# The API's workers may open more connections than the server or the user allows
# (the warning gunicorn logs at start says how many).
_TOO_MANY_CONNECTIONS = "too many connections"
_FEWER_CONNECTIONS = "lower GUNICORN_WORKERS or GUNICORN_THREADS, or raise {limit}"
_AUTHENTICATION_FAILED = ("authentication failed",
                          "check the user name and the password (DATABASE_PASSWORD_FILE)")
_CANNOT_CONNECT = ("cannot connect",
                   "check the host and port in DATABASE_URL and that the server runs")
# The MySQL client and server error codes a deployment meets (wrong credentials,
# names, addresses, a stalled server): the cause in our own words, which name
# no user, host or statement, and what an operator should check.
_DRIVER_CAUSES = {
    1040: (_TOO_MANY_CONNECTIONS, _FEWER_CONNECTIONS.format(limit="max_connections")),
    1044: ("the user may not use this database", "check its grants"),
    1045: _AUTHENTICATION_FAILED,
    1049: ("unknown database", "create it, or fix its name in DATABASE_URL"),
    1203: (_TOO_MANY_CONNECTIONS, _FEWER_CONNECTIONS.format(limit="max_user_connections")),
    # A per-account limit: MAX_USER_CONNECTIONS, or a count per hour the message names.
    1226: ("the user reached a resource limit of its account",
           "for max_user_connections, " + _FEWER_CONNECTIONS.format(limit="the limit")),
    1698: _AUTHENTICATION_FAILED,
    2002: _CANNOT_CONNECT,
    2003: _CANNOT_CONNECT,
    2005: ("unknown host", "check the host name in DATABASE_URL"),
    2006: ("the server closed the connection", "it restarted or dropped idle connections"),
    2013: ("the connection broke or the server did not answer in time",
           "it is stalled, overloaded or unreachable (DATABASE_TIMEOUT; DATABASE_JOB_TIMEOUT "
           "in the fetch job)"),
    # MariaDB's and MySQL's: the statement outran the time limit lib.db.limit_statement_time sets.
    **dict.fromkeys((1969, 3024), (
        "the statement ran longer than its answer is waited for, so the server ended it",
        "a request that reads this much takes too long (DATABASE_TIMEOUT; DATABASE_JOB_TIMEOUT "
        "in the fetch job)")),
    **dict.fromkeys(_MYSQL_SCHEMA_ERRORS, _MISSING_SCHEMA),
}


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
    hint: tuple[str, str] | None
    if len(args) > 1 and isinstance(args[0], int):
        name, text = f"{name} {args[0]}", args[1]
    else:  # SQLite's: its message alone
        text = str(orig)
    hint = _hint(exc)
    return f"{name}: {text}" + (f"; hint: {': '.join(hint)}" if hint else "")


def _hint(exc: Exception) -> tuple[str, str] | None:
    """Return the cause of a database failure and what to check, None if it is not known."""
    if is_disk_full(exc):
        return _DISK_FULL_HINT
    code = _driver_code(exc)
    if isinstance(code, int):
        return _DRIVER_CAUSES.get(code)
    if is_schema_error(exc):
        return _MISSING_SCHEMA
    return _SQLITE_HINTS.get(_sqlite_code(exc))


def name_database_error(exc: Exception) -> str:
    """Name a database failure for anyone to read: its class, MySQL's code, the cause.

    The cause in our own words only (a full disk, a missing schema, a known
    code), never the driver's message, which may name the database user and
    host, nor SQLAlchemy's, which holds the statement: the fetch job's run
    history, which the API serves, records it.
    """
    code = _driver_code(exc)
    name = exc.__class__.__name__
    if isinstance(code, int):  # MySQL's; SQLite's first argument is its message
        name = f"{name} {code}"
    cause = _cause(exc)
    return f"{name}: {cause}" if cause else name


def _cause(exc: Exception) -> str | None:
    """Return the cause of a database failure in our own words, None if it is not known."""
    if isinstance(exc, PoolTimeoutError):
        return _POOL_EXHAUSTED
    if is_disk_full(exc):
        return DISK_FULL
    if is_schema_error(exc):
        return _MISSING_SCHEMA[0]
    if isinstance(exc, OperationalError) and is_lock_conflict(exc):
        return _LOCK_CONFLICT
    sqlite_hint = _SQLITE_HINTS.get(_sqlite_code(exc))
    if sqlite_hint is not None:
        return sqlite_hint[0]
    code = _driver_code(exc)
    return _DRIVER_CAUSES[code][0] if isinstance(code, int) and code in _DRIVER_CAUSES else None


def _driver_code(exc: Exception) -> object:
    """Return the driver's error code behind ``exc`` (MySQL's number), None if it has none."""
    orig = getattr(exc, "orig", None)
    return orig.args[0] if orig is not None and orig.args else None


def _sqlite_code(exc: Exception) -> int | None:
    """Return SQLite's (extended) result code behind ``exc``, None if it has none."""
    return getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)


def is_schema_error(exc: Exception) -> bool:
    """Tell a missing table or column (the migrations were not run) from other failures."""
    if not isinstance(exc, (OperationalError, ProgrammingError)) or exc.orig is None:
        return False
    if _driver_code(exc) in _MYSQL_SCHEMA_ERRORS:
        return True
    return any(words in str(exc.orig) for words in _SQLITE_SCHEMA_ERRORS)


def is_lock_conflict(exc: OperationalError) -> bool:
    """Tell a deadlock or lock timeout, which a retried transaction may pass, from other errors."""
    return _driver_code(exc) in _MYSQL_LOCK_ERRORS or "database is locked" in str(exc.orig)


def is_definite_refusal(exc: Exception) -> bool:
    """Tell a server that answered and refused our settings from one that is down or busy.

    Only a change of the settings (or of the server's users and databases)
    ends it: a program should say so and stop, not wait it out as an outage.
    """
    return isinstance(exc, OperationalError) and _driver_code(exc) in _MYSQL_REFUSAL_ERRORS


def is_disk_full(exc: Exception) -> bool:
    """Tell a write refused for want of room: SQLite's SQLITE_FULL, MySQL's disk or table full.

    MySQL also reports a full disk as an OS error 28 (ENOSPC) behind a storage
    engine's or a file's error; the same codes carry other OS errors too.

    Such a database answers at once: naming it sends an operator to the disk,
    not to a server that "stopped answering".
    """
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if _sqlite_code(exc) == sqlite3.SQLITE_FULL:
        return True
    code = _driver_code(exc)
    if code in _MYSQL_DISK_FULL_ERRORS:
        return True
    return code in _MYSQL_OS_ERRORS and bool(
        _ENOSPC.search(" ".join(map(str, orig.args[1:]))))
