"""Alembic environment, run by Flask-Migrate inside the app context.

Unlike the generated template it does not call ``logging.config.fileConfig``,
which would disable the loggers the app configured before the migration ran.
"""
import logging

from alembic import context
from flask import current_app

logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db


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
    """Apply migrations over a connection of the app's engine."""
    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("compare_type", True)
    with target_db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
