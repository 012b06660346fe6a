"""Prepare the database before the API serves: wait until it answers, then migrate.

The container entrypoint runs ``python -m scripts.prestart``. A setting that
cannot work stops it with one clear line (status 2), a database that refuses
the settings (wrong user or password, no such database) too, at once, and a
migration that fails with status 1. The wait is bounded: a
database that does not answer in time is status 3, on which the entrypoint
starts the API anyway (it answers 503 until the database is back). API
replicas may start together; on MySQL a named lock makes them apply
migrations one at a time, and a fetch run in progress is waited for
(FETCH_LOCK_TIMEOUT), then status 1.
"""
import argparse
import logging
import sys
import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from app import MIGRATIONS_DIR, MigrationHistoryError, create_app, upgrade_to_head
from app.extensions import db
from conf.settings import ConfigError, read_config
from lib.db import engine_options, url_for_the_log
from lib.db_errors import DATABASE_ERRORS, describe_database_error, is_definite_refusal
from lib.locks import LockFileError, MigrationLockTimeout, migrate_unless_newer
from lib.schema import NEWER_SCHEMA

logger = logging.getLogger("prestart")

RETRY_INTERVAL_SECONDS = 1.0
# The longest one try waits to connect and for the answer; the wait as a whole
# still ends with --timeout.
TRY_TIMEOUT_SECONDS = 5.0
EXIT_READY, EXIT_FAILED, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    """Wait for the database and migrate it; return the process exit status."""
    args = parse_args(argv)
    try:
        config = read_config()  # its problems are named with the app's, below
        # Migrations wait on a lock and may rewrite big tables: the job's timeouts.
        app = create_app(config, overrides=config.job_overrides())
    except ConfigError as exc:
        print(f"prestart: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    with app.app_context():
        try:
            return prepare_database(db.engine, args.timeout)
        finally:
            db.engine.dispose()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the database (default 60)")
    return parser.parse_args(argv)


def prepare_database(engine: Engine, timeout: float) -> int:
    """Wait for ``engine``'s database, then apply pending migrations; return the exit status."""
    where = url_for_the_log(engine.url)
    error = wait_for_database(engine, timeout)
    if error is not None and is_definite_refusal(error):
        logger.error("database %s refused this configuration: %s", where,
                     describe_database_error(error))
        return EXIT_CONFIG
    if error is not None:
        logger.error("database %s was not ready within %gs: %s", where, timeout,
                     describe_database_error(error))
        return EXIT_UNREACHABLE
    try:
        newer = migrate_unless_newer(engine, str(MIGRATIONS_DIR), upgrade_to_head)
    except MigrationLockTimeout as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    except LockFileError as exc:
        logger.error("%s; nothing was migrated", exc)
        return EXIT_FAILED
    except SQLAlchemyError as exc:  # a migration failed, or the database went away meanwhile
        logger.error("migrating database %s failed: %s", where, describe_database_error(exc))
        return EXIT_FAILED
    except MigrationHistoryError as exc:
        logger.error("migrating database %s failed: %s", where, exc)
        return EXIT_FAILED
    if newer is not None:
        logger.warning(NEWER_SCHEMA, newer)
    logger.info("database %s is ready and migrated", where)
    return EXIT_READY


def wait_for_database(engine: Engine, timeout: float) -> Exception | None:
    """Poll the database until it answers or ``timeout`` seconds pass; return the last error.

    A refusal waiting cannot change (``is_definite_refusal``) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            _try_database(engine, min(TRY_TIMEOUT_SECONDS, max(deadline - time.monotonic(), 0.1)))
            return None
        except DATABASE_ERRORS as exc:
            if time.monotonic() >= deadline or is_definite_refusal(exc):
                return exc
            if not announced:
                logger.info("waiting up to %gs for the database: %s", timeout,
                            describe_database_error(exc))
                announced = True
        time.sleep(RETRY_INTERVAL_SECONDS)


def _try_database(engine: Engine, timeout: float) -> None:
    """Ask ``engine``'s database for one answer, waiting at most about ``timeout`` seconds.

    The try has an engine of its own: ``engine`` waits DATABASE_JOB_TIMEOUT
    (600 s) for each answer, as the migrations need, and a stalled server
    would hold the first try that long, past the wait's own timeout.
    """
    url = engine.url.render_as_string(hide_password=False)
    probe = create_engine(engine.url, **engine_options(url, timeout=timeout))
    try:
        with probe.connect() as connection:
            connection.execute(text("SELECT 1"))
    finally:
        probe.dispose()


if __name__ == "__main__":
    sys.exit(main())
