"""A lock per database that serializes work across processes: one holder at a time.

MySQL/MariaDB use a named lock (GET_LOCK), held by a connection of its own:
the server frees it when that connection closes, so a killed holder never
leaves it taken, and it outlives the server's idle timeout, so a long run
keeps it. A SQLite file is locked through a lock file beside it (portalocker:
flock, or msvcrt.locking on Windows; the system frees it when the holder dies).
An in-memory SQLite database belongs to one process and needs no lock.

Framework-free: callers pass the engine and the waiting policy in.
"""
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import portalocker
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from lib.db_errors import DATABASE_ERRORS
from lib.schema import unknown_revision

logger = logging.getLogger(__name__)
POLL_SECONDS = 0.5
MIGRATION_LOCK_TIMEOUT_SECONDS = 300
MIGRATION_LOCK = "migrate"
MIGRATION_WAIT = "another process is migrating the database; waiting up to %ds for it"
RUN_LOCK = "fetch"
RUN_WAIT = "a fetch run is in progress; the migration waits up to %gs for its end"
# The lock's connection is idle while the work runs, for hours in a full fetch;
# the server closes idle connections after wait_timeout (8 h by default, often
# set lower), which would free the lock mid-run. The most MySQL and MariaDB allow.
LOCK_CONNECTION_WAIT_TIMEOUT = 31_536_000
# MySQL's longest lock name; a longer one ends in a digest of the whole name.
MAX_LOCK_NAME = 64
# The databases whose migration lock this thread holds (migration_lock is re-entrant).
_migration_locks_held = threading.local()


class LockTimeout(Exception):
    """The lock was not granted within the timeout."""


class LockWaitStopped(Exception):
    """The caller asked to stop while waiting for the lock."""


class MigrationLockTimeout(Exception):
    """Another process held the migration lock for too long."""


class FetchRunInProgress(MigrationLockTimeout):
    """A fetch run held the run lock for longer than a migration waits."""


class LockFileError(Exception):
    """The SQLite database's lock file cannot be opened: its folder is read-only or full.

    Nothing can be written to that database then either; the message names
    the file and the system's reason, for a one-line error.
    """


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's migration lock for the block (``database_lock``'s ``migrate``).

    API replicas and fetch jobs may start together on a fresh database; the
    lock makes them apply migrations one at a time, on SQLite too, whose DDL
    statements commit one by one: two migrating processes would interleave.
    Re-entrant within a thread: migrations/env.py takes it for every upgrade
    (``flask db upgrade`` too), also inside ``migrate_unless_newer``'s.

    Raises MigrationLockTimeout when the lock is not granted in time,
    LockFileError when a SQLite database's lock file cannot be opened.
    """
    held = _migration_locks_held.__dict__.setdefault("databases", set())
    database = engine.url.render_as_string(hide_password=True)
    if database in held:
        yield
        return
    held.add(database)
    try:
        with database_lock(engine, MIGRATION_LOCK, MIGRATION_LOCK_TIMEOUT_SECONDS,
                           on_wait=lambda: logger.info(MIGRATION_WAIT,
                                                       MIGRATION_LOCK_TIMEOUT_SECONDS)):
            yield
    except LockTimeout as exc:
        raise MigrationLockTimeout(str(exc)) from None
    finally:
        held.discard(database)


@contextmanager
def between_runs(engine: Engine, timeout: float) -> Iterator[None]:
    """Hold the fetch job's run lock for the block: a migration waits for the run in progress.

    A run of an older release checked the schema at its start and goes on
    writing as that release knows how: a migration that derives data from
    the stored rows (0004 the monthly sums) would miss those the run stores
    after it. Raises FetchRunInProgress after ``timeout`` seconds.
    """
    try:
        with database_lock(engine, RUN_LOCK, timeout,
                           on_wait=lambda: logger.info(RUN_WAIT, timeout)):
            yield
    except LockTimeout:
        raise FetchRunInProgress(f"a fetch run still held the run lock after {timeout:g}s "
                                 "(FETCH_LOCK_TIMEOUT); the schema is migrated between "
                                 "runs") from None


def migrate_unless_newer(engine: Engine, directory: str,
                         upgrade: Callable[[], object]) -> str | None:
    """Run ``upgrade`` under the migration lock unless a newer release migrated the database.

    The schema is read under the lock: a release that found it behind may
    have waited there while a newer one migrated it. Returns the revisions
    of such a newer schema as NEWER_SCHEMA names them ("revision 0099"),
    left as it is (``directory``'s scripts do not know it), else None.

    Raises MigrationLockTimeout when the lock is not granted in time,
    LockFileError when a SQLite database's lock file cannot be opened.
    """
    with migration_lock(engine):
        newer = unknown_revision(engine, directory)
        if newer is None:
            upgrade()
    return newer


@contextmanager
def database_lock(
    engine: Engine,
    purpose: str,
    timeout: float,
    *,
    on_wait: Callable[[], object] = lambda: None,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[Callable[[], bool]]:
    """Hold the ``purpose`` lock of ``engine``'s database for the block.

    Tries at once, then every POLL_SECONDS until ``timeout`` seconds have
    passed; ``on_wait`` is called once, when the first try finds the lock
    taken. Polling (rather than one blocking call) lets a stop request end
    the wait. Yields ``still_held()``: a named lock goes with its connection
    (a server restarted, a connection killed), and another process may take
    it while the block goes on; it tells whether the lock is still this
    block's, taking it again at once if it was lost and is free (raising
    the database's error when it cannot be reached for that).

    Raises LockTimeout when the lock stays taken, LockWaitStopped when
    ``should_stop()`` turns true while waiting, LockFileError when a SQLite
    database's lock file cannot be opened.
    """
    lock = _lock_for(engine, purpose)
    try:
        deadline = clock() + timeout
        if not lock.try_acquire():
            on_wait()
            while not lock.try_acquire():
                if should_stop():
                    raise LockWaitStopped(purpose)
                if clock() >= deadline:
                    raise LockTimeout(f"{purpose} lock not granted within {timeout:g}s")
                sleep(POLL_SECONDS)
            if should_stop():  # asked while the lock came free: it goes back, untouched
                raise LockWaitStopped(purpose)
        yield lock.still_held
    finally:
        lock.close()


def lock_name(database: str, purpose: str) -> str:
    """Return the name of a MySQL named lock: one per database, as locks are server-wide.

    Database names may be 64 characters long: a name that does not fit keeps
    its start and ends in a digest, so two long names never share a lock.
    """
    name = f"financial-{purpose}:{database}"
    if len(name) <= MAX_LOCK_NAME:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{name[:MAX_LOCK_NAME - len(digest) - 1]}~{digest}"


class _NoLock:
    """An in-memory database: nothing to share, nothing to lock."""

    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def close(self) -> None:
        return None


class _NamedLock:
    """A MySQL/MariaDB named lock on a connection of its own."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.held = False
        self.connection = self._connect()

    def _connect(self) -> Connection:
        # Autocommit: the connection stays open for the whole block and must
        # not hold a transaction (and its snapshot) all that time.
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            connection.execute(text(f"SET SESSION wait_timeout = {LOCK_CONNECTION_WAIT_TIMEOUT}"))
        except BaseException:
            connection.invalidate()
            connection.close()
            raise
        return connection

    def try_acquire(self) -> bool:
        self.held = self.connection.execute(
            text("SELECT GET_LOCK(:name, 0)"), {"name": self.name}).scalar() == 1
        return self.held

    def still_held(self) -> bool:
        """Tell whether the lock is still ours; one lost with its connection is taken again,
        if free. Raises the database's error when it cannot be reached to take it again."""
        try:
            if self.connection.execute(text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()"),
                                       {"name": self.name}).scalar() == 1:
                return True
        except DATABASE_ERRORS as exc:
            logger.warning("the %s lock's connection was lost (%s); taking the lock again",
                           self.name, exc.__class__.__name__)
        self.held = False
        self._discard()
        self.connection = self._connect()
        return self.try_acquire()

    def close(self) -> None:
        try:
            if self.held:
                self.connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self.name})
        except DATABASE_ERRORS as exc:  # the work is done; the server freed the lock with it
            logger.warning("the %s lock's connection was lost before its release (%s)",
                           self.name, exc.__class__.__name__)
        finally:
            self._discard()

    def _discard(self) -> None:
        """Close the connection for good: its session's wait_timeout must not reach the pool."""
        if self.connection.closed:  # discarded already: its lock was lost
            return
        self.connection.invalidate()
        self.connection.close()


class _FileLock:
    """Exclusive locks on lock files beside the SQLite database, on any OS.

    Each path is tried in turn without waiting; one already taken frees
    those taken before it, so two holders never wait on each other.
    """

    def __init__(self, paths: list[Path]) -> None:
        self.handles: list[TextIO] = []
        for path in paths:
            try:
                self.handles.append(open(path, "a", encoding="utf-8"))
            except OSError as exc:
                self._close_files()
                raise LockFileError(f"the lock file {path} cannot be opened "
                                    f"({exc.strerror or exc.__class__.__name__})") from None
        self.held = False

    def still_held(self) -> bool:
        """The system keeps a file lock as long as its holder lives."""
        return self.held

    def try_acquire(self) -> bool:
        taken: list[TextIO] = []
        for handle in self.handles:
            try:
                portalocker.lock(handle, portalocker.LockFlags.EXCLUSIVE
                                 | portalocker.LockFlags.NON_BLOCKING)
            except portalocker.AlreadyLocked:
                for other in taken:
                    portalocker.unlock(other)
                return False
            taken.append(handle)
        self.held = True
        return True

    def close(self) -> None:
        try:
            if self.held:
                for handle in self.handles:
                    portalocker.unlock(handle)
        finally:
            self._close_files()

    def _close_files(self) -> None:
        for handle in self.handles:
            handle.close()


def _lock_for(engine: Engine, purpose: str) -> _NoLock | _NamedLock | _FileLock:
    if engine.dialect.name in ("mysql", "mariadb"):
        return _NamedLock(engine, lock_name(engine.url.database or "", purpose))
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
        # Beside the file itself: a link to it, or another spelling of its path, is the
        # same database, and must find the same lock. realpath, unlike Path.resolve,
        # leaves a loop of links as it is, for SQLite to refuse in one line. Through a
        # link, also beside the path as written, where releases before 2026-12-02 lock
        # it: a migration waits for their runs too.
        real = os.path.realpath(database)
        written = os.path.join(os.path.realpath(os.path.dirname(database) or "."),
                               os.path.basename(database))
        paths = [real] if written == real else [written, real]
        return _FileLock([Path(f"{path}.{purpose}-lock") for path in paths])
    return _NoLock()
