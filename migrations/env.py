"""Alembic environment, run by Flask-Migrate inside the app context.

Unlike the generated template it does not call ``logging.config.fileConfig``,
which would disable the loggers the app configured before the migration ran.
"""
import logging
from contextlib import AbstractContextManager, ExitStack, nullcontext

import click
from alembic import context
from flask import current_app
from sqlalchemy.engine import Engine

from lib.db import batch_engine
from lib.db_errors import DATABASE_ERRORS, describe_database_error
from lib.locks import (
    FetchRunInProgress, LockFileError, MigrationLockTimeout, between_runs, migration_lock,
)
from lib.storage import ScaledDecimal

logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db


def render_item(type_: str, obj: object, _autogen_context: object) -> str | bool:
    """Write a ScaledDecimal out as the types it stores, as migration 0002 does.

    A migration keeps the types of its day, so it never imports the app's
    code; autogenerate would otherwise write ``lib.storage.ScaledDecimal``
    without importing it, and the new migration would fail on its first run.
    """
    if type_ == "type" and isinstance(obj, ScaledDecimal):
        return (f"sa.Numeric({obj.precision}, {obj.scale})"
                '.with_variant(sa.BigInteger(), "sqlite")')
    return False  # Alembic's own rendering


def run_migrations_offline() -> None:
    """Emit SQL for the configured URL without connecting (``flask db upgrade --sql``)."""
    context.configure(
        url=target_db.engine.url,
        target_metadata=target_db.metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations one process at a time (the migration lock, lib/locks.py), between
    fetch runs (the run lock) when they change the schema."""
    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("compare_type", True)
    conf_args.setdefault("render_item", render_item)
    try:
        # Under the lock, Alembic reads the revision another process may have just moved on.
        with (
            migration_engine() as engine,
            migration_lock(engine),
            engine.connect() as connection,
            ExitStack() as between,
        ):
            context.configure(connection=connection, target_metadata=target_db.metadata,
                              **conf_args)
            if changes_schema():
                connection.rollback()  # the revision just read: no snapshot held while waiting
                between.enter_context(
                    between_runs(engine, current_app.config["FETCH_LOCK_TIMEOUT"]))
            with context.begin_transaction():
                context.run_migrations()
    except FetchRunInProgress as exc:
        if click.get_current_context(silent=True) is None:
            raise  # the job and the container's start say it in their own line
        raise click.ClickException(f"{exc}: run it again once the run has ended") from None
    except MigrationLockTimeout as exc:
        # Outermost only for `flask db ...`: the job and the container's start
        # hold the lock already, and say it their own way.
        raise click.ClickException(f"{exc}: another process is still migrating the database; "
                                   "run it again once it has finished") from None
    except LockFileError as exc:
        raise click.ClickException(f"{exc}; nothing was migrated") from None
    except DATABASE_ERRORS as exc:
        if click.get_current_context(silent=True) is None:
            raise  # the job and the container's start say it in their own line
        # Every migration runs again from where it stopped, so a rerun is safe.
        raise click.ClickException(
            f"database error: {describe_database_error(exc)}; the migration stopped: "
            "run it again once the database can be used") from None


def changes_schema() -> bool:
    """Tell whether this command moves the schema to another revision.

    ``flask db upgrade`` on a current schema (every start of the API) and the
    commands that only read it (``current``, ``check``) need not wait for a
    fetch run in progress.
    """
    migration = context.get_context()
    if "destination_rev" not in migration.opts:
        return False
    destination = context.get_revision_argument()
    wanted = set(destination) if isinstance(destination, tuple) else {destination} - {None}
    return wanted != set(migration.get_current_heads())


def migration_engine() -> AbstractContextManager[Engine]:
    """Give the app's engine, or one whose answers may take DATABASE_JOB_TIMEOUT.

    A data migration reads every stored day (0004 sums them): under the
    API's DATABASE_READ_TIMEOUT, a few seconds, ``flask db upgrade`` on
    MySQL would lose its connection midway. The fetch job and the
    container's start already raise it (``job_overrides``).
    """
    config = current_app.config
    if config["DATABASE_READ_TIMEOUT"] >= config["DATABASE_JOB_TIMEOUT"]:
        return nullcontext(target_db.engine)
    return batch_engine(target_db.engine, timeout=config["DATABASE_TIMEOUT"],
                        read_timeout=config["DATABASE_JOB_TIMEOUT"])


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
