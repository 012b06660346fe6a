"""lib/db_errors.py: a full disk told apart from other errors the server reports, hints, names."""
import json
import sqlite3
import struct
import subprocess
import sys

import pymysql
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from conf.settings import PROJECT_ROOT
from lib.db_errors import (
    describe_database_error, is_disk_full, is_lock_conflict, is_schema_error, name_database_error,
)

NO_SPACE = '28 "No space left on device"'


def server_error(code: int, message: str) -> DBAPIError:
    """The error as the code gets it: PyMySQL's, read from the packet, wrapped by SQLAlchemy."""
    packet = b"\xff" + struct.pack("<H", code) + b"#HY000" + message.encode()
    try:
        pymysql.err.raise_mysql_exception(packet)
    except pymysql.err.Error as orig:
        return DBAPIError.instance("INSERT INTO financial_data", {}, orig, pymysql.err.Error)
    raise AssertionError("PyMySQL raised nothing")


@pytest.mark.parametrize("code, message, conflict", [
    (1205, "Lock wait timeout exceeded; try restarting transaction", True),
    (1213, "Deadlock found when trying to get lock; try restarting transaction", True),
    (2013, "Lost connection to server during query", False),
    (1040, "Too many connections", False),
], ids=["1205", "1213", "2013", "1040"])
def test_a_lock_wait_timeout_and_a_deadlock_are_lock_conflicts(code, message, conflict):
    """The driver's own OperationalError, as a store's retry and a run's going on read it."""
    error = server_error(code, message)
    assert isinstance(error, OperationalError)
    assert is_lock_conflict(error) is conflict


@pytest.mark.parametrize("code, message", [
    (1021, f"Disk full (./financial/financial_data.ibd); waiting for someone to free some "
           f"space... (errno: {NO_SPACE})"),
    (1114, "The table 'financial_data' is full"),
    (1030, f"Got error {NO_SPACE} from storage engine InnoDB"),
    (1030, "Got error 28 - 'No space left on device' from storage engine"),  # MySQL's words
    (1026, f"Error writing file './financial/fetch_runs.MYD' (errno: {NO_SPACE})"),
    (1026, "Error writing file './financial/fetch_runs.MYD' (errno: 28 - No space left on "
           "device)"),
    (3, f"Error writing file '/tmp/MYfd=61' (Errcode: {NO_SPACE})"),
    (3, "Error writing file '/tmp/MYfd=61' (OS errno 28 - No space left on device)"),
], ids=["1021", "1114", "1030", "1030-mysql", "1026", "1026-mysql", "3", "3-mysql"])
def test_mysql_names_a_full_disk_by_its_code_or_by_errno_28(code, message):
    assert is_disk_full(server_error(code, message))


@pytest.mark.parametrize("code, message", [
    (1030, 'Got error 122 "Disk quota exceeded" from storage engine InnoDB'),
    (1030, 'Got error 128 "Too many active concurrent transactions" from storage engine '
           'InnoDB'),
    (1026, "Error writing file './financial/fetch_runs.MYD' (errno: 5 \"Input/output error\")"),
    (3, "Error writing file '/tmp/MYfd=61' (Errcode: 9 \"Bad file descriptor\")"),
    (1205, "Lock wait timeout exceeded; try restarting transaction"),
    (1062, "Duplicate entry 'IBM-2023-03-24' for key 'PRIMARY'; error 28"),
    (1030, 'Got error 280 "Unknown error 280" from storage engine InnoDB'),
], ids=["1030-quota", "1030-128", "1026-eio", "3-ebadf", "lock", "errno-28-of-another-code",
        "errno-280"])
def test_the_same_codes_with_another_os_error_are_not_a_full_disk(code, message):
    assert not is_disk_full(server_error(code, message))


@pytest.mark.parametrize("code, message, limit", [
    (1040, "Too many connections", "max_connections"),
    (1203, "User budget already has more than 'max_user_connections' active connections",
     "max_user_connections"),
])
def test_too_many_connections_names_the_settings_to_change(code, message, limit):
    assert describe_database_error(server_error(code, message)) == (
        f"OperationalError {code}: {message}; hint: too many connections: lower "
        f"GUNICORN_WORKERS or GUNICORN_THREADS, or raise {limit}")


def test_an_account_limit_names_the_settings_to_change():
    message = "User 'budget' has exceeded the 'max_user_connections' resource (current value: 3)"
    description = describe_database_error(server_error(1226, message))
    assert description.startswith(f"OperationalError 1226: {message}; hint: ")
    assert "lower GUNICORN_WORKERS or GUNICORN_THREADS, or raise the limit" in description


@pytest.mark.parametrize("code, message, name", [
    (1045, "Access denied for user 'api'@'10.0.0.5' (using password: YES)",
     "OperationalError 1045: authentication failed"),
    (1114, "The table 'financial_data' is full",
     "OperationalError 1114: the database's disk is full"),
    (3, f"Error writing file '/tmp/MYfd=61' (Errcode: {NO_SPACE})",
     "InternalError 3: the database's disk is full"),
    (1146, "Table 'financial.fetch_runs' doesn't exist",
     "ProgrammingError 1146: the schema is missing or behind the migrations"),
    (1213, "Deadlock found when trying to get lock; try restarting transaction",
     "OperationalError 1213: another transaction held the rows too long (a lock wait or a "
     "deadlock)"),
    (1205, "Lock wait timeout exceeded; try restarting transaction",
     "OperationalError 1205: another transaction held the rows too long (a lock wait or a "
     "deadlock)"),
    (2013, "Lost connection to server during query",
     "OperationalError 2013: the connection broke or the server did not answer in time"),
    (1062, "Duplicate entry 'IBM-2023-03-24' for key 'PRIMARY'", "IntegrityError 1062"),
], ids=["access denied", "table full", "errno 28", "no table", "deadlock", "lock wait",
        "lost connection", "unknown cause"])
def test_a_name_for_anyone_holds_the_code_and_our_words_never_the_drivers(code, message, name):
    """The run history, which the API serves, names failures so: no user, host or statement."""
    assert name_database_error(server_error(code, message)) == name


def test_a_sqlite_file_that_cannot_be_opened_names_its_folder_and_the_open_files_limit(
        tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'financial.db'}")
    with pytest.raises(OperationalError) as failure:
        engine.connect()
    engine.dispose()
    assert describe_database_error(failure.value) == (
        "OperationalError: unable to open database file; hint: the SQLite file cannot be "
        "opened: check that DATABASE_URL names a file in a folder this user may write, and "
        "the open files limit (ulimit -n)")
    assert name_database_error(failure.value) == (
        "OperationalError: the SQLite file cannot be opened")


def test_a_name_for_anyone_tells_a_lock_on_sqlite_and_a_full_pool():
    locked = OperationalError("INSERT INTO financial_data", {},
                              sqlite3.OperationalError("database is locked"))
    assert name_database_error(locked) == (
        "OperationalError: another transaction held the rows too long (a lock wait or a deadlock)")
    full_pool = PoolTimeoutError("QueuePool limit of size 5 overflow 0 reached")
    assert name_database_error(full_pool) == (
        "TimeoutError: no pooled connection became free in time; every connection is busy")


@pytest.mark.parametrize("statement", [
    "SELECT * FROM financial_data",
    "SELECT volume FROM fetch_runs",
    "INSERT INTO fetch_runs (volume) VALUES (1)",
], ids=["no table", "no column", "no column named"])
def test_a_sqlite_schema_behind_the_code_is_named_so_for_anyone(tmp_path, statement):
    engine = create_engine(f"sqlite:///{tmp_path / 'financial.db'}")
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE fetch_runs (id INTEGER PRIMARY KEY)"))
        with pytest.raises(OperationalError) as failure:
            connection.execute(text(statement))
    engine.dispose()
    assert name_database_error(failure.value) == (
        "OperationalError: the schema is missing or behind the migrations")
    assert describe_database_error(failure.value).endswith(
        "; hint: the schema is missing or behind the migrations: run them "
        "(flask --app app db upgrade)")


def test_a_full_pool_is_described_as_such_and_is_no_schema_error(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'financial.db'}", pool_size=1,
                           max_overflow=0, pool_timeout=0.01)
    with engine.connect(), pytest.raises(PoolTimeoutError) as failure:
        engine.connect()
    engine.dispose()
    assert not is_schema_error(failure.value), "a pool's error has no driver error behind it"
    assert describe_database_error(failure.value) == (
        "TimeoutError: no pooled connection became free in time; every connection is busy")


def test_a_driver_error_without_arguments_is_named_by_its_class():
    bare = OperationalError("SELECT 1", {}, sqlite3.OperationalError())
    assert name_database_error(bare) == "OperationalError"


_DISK_FULL_HINT = "hint: the database's disk is full: free space on it, or raise its quota"


def test_a_full_sqlite_disk_is_described_with_what_to_do(tmp_path):
    """SQLite's page limit makes it report SQLITE_FULL as a full disk does."""
    engine = create_engine(f"sqlite:///{tmp_path / 'financial.db'}")
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE prices (note TEXT)"))
        pages = connection.execute(text("PRAGMA page_count")).scalar_one()
        connection.execute(text(f"PRAGMA max_page_count = {pages}"))
        with pytest.raises(OperationalError) as failure:
            connection.execute(text("INSERT INTO prices VALUES (hex(zeroblob(100000)))"))
    engine.dispose()
    assert describe_database_error(failure.value) == (
        f"OperationalError: database or disk is full; {_DISK_FULL_HINT}")


def test_a_full_mysql_disk_is_described_with_what_to_do():
    message = f"Got error {NO_SPACE} from storage engine InnoDB"
    assert describe_database_error(server_error(1030, message)) == (
        f"OperationalError 1030: {message}; {_DISK_FULL_HINT}")


# Opens the database with a file size limit below its -shm file's 32 KiB, so
# SQLite cannot grow that file, as on a full disk (no root, no mount needed).
_READ_UNDER_A_FILE_SIZE_LIMIT = """
import json, resource, signal, sys
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from lib.db_errors import describe_database_error, name_database_error
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (16384, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    with create_engine(sys.argv[1]).connect() as connection:
        connection.execute(text("SELECT count(*) FROM prices"))
except OperationalError as exc:
    print(json.dumps([describe_database_error(exc), name_database_error(exc)]))
"""


def test_a_sqlite_file_whose_shm_file_cannot_grow_names_a_full_disk(tmp_path):
    """A process that opens a WAL database on a full disk cannot read it: not "disk I/O error"."""
    url = f"sqlite:///{tmp_path / 'financial.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("PRAGMA journal_mode = WAL"))
        connection.execute(text("CREATE TABLE prices (note TEXT)"))
    engine.dispose()  # the last connection closed removes the -shm file
    result = subprocess.run([sys.executable, "-c", _READ_UNDER_A_FILE_SIZE_LIMIT, url],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert json.loads(result.stdout) == [
        "OperationalError: disk I/O error; hint: SQLite cannot grow the -shm file beside the "
        "database file: its disk is probably full: free space on it",
        "OperationalError: SQLite cannot grow the -shm file beside the database file"]
