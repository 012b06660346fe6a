"""Store the run history's text in utf8mb4 on MySQL, whatever the database's default.

0003 created fetch_runs and fetch_run_symbols in the database's default
character set: on a database created as latin1 (MySQL 5.7's default) or
utf8mb3, a reason quoting a file name or an answer in another script
(株価.json) could not be stored, and with it the run's end. A table whose
columns and default are utf8mb4 already is left alone; SQLite stores any text.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("fetch_runs", "fetch_run_symbols")


def upgrade():
    if op.get_context().dialect.name not in ("mysql", "mariadb"):
        return
    for table in TABLES:
        # One statement a table, each committed at once: a run killed midway
        # converts the rest when it runs again. (No database to look at when
        # --sql prints the statements: both are converted.)
        if op.get_context().as_sql or _holds_other_text(table):
            op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4")


def _holds_other_text(table: str) -> bool:
    """Tell whether a text column of ``table``, or its default for new ones, is not utf8mb4."""
    bind, names = op.get_bind(), {"table": table}
    columns = bind.execute(sa.text(
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() "
        "AND table_name = :table AND character_set_name <> 'utf8mb4'"), names).scalar()
    # A collation's name starts with its character set's: utf8mb4_general_ci, utf8mb4_bin.
    default = bind.execute(sa.text(
        "SELECT table_collation FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name = :table"), names).scalar()
    return bool(columns) or not (default or "").startswith("utf8mb4_")


def downgrade():
    pass  # utf8mb4 holds all the text the older releases write
