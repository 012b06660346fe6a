"""Record every fetch run: fetch_runs and fetch_run_symbols.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

from lib.migration_refused import MigrationRefused

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Written out rather than imported from the models, so this revision stays
# what it was when the models change. op.f(): the names are final, the
# models' naming convention must not prefix them again.
TRIGGERS = "`trigger` IN ('manual', 'schedule')"
RUN_STATUSES = "status IN ('running', 'ok', 'partial', 'failed', 'interrupted')"
SYMBOL_STATUSES = "status IN ('ok', 'failed', 'not_fetched')"


def upgrade():
    # MySQL commits each DDL statement: a run killed before its end leaves
    # some of the tables behind, empty (no release before this one writes
    # them), with the revision still 0002. They are created again. Tables
    # holding runs are not this revision's leftovers (an older dump restored
    # into a newer database, a revision stamped back): they are never dropped.
    # (No database to look at when --sql prints the statements.)
    tables = [] if op.get_context().as_sql else sa.inspect(op.get_bind()).get_table_names()
    leftovers = [table for table in ("fetch_run_symbols", "fetch_runs") if table in tables]
    filled = [table for table in leftovers if _holds_rows(table)]
    if filled:
        raise MigrationRefused(
            f"{' and '.join(filled)} already hold fetch runs, though the database records "
            "revision 0002 (an older dump restored, or the revision stamped back): they are "
            "kept and the upgrade stopped before 0003. If they are this release's run "
            "history, run `flask db stamp 0003`, then `flask db upgrade`; to start the "
            "history afresh, drop fetch_run_symbols and fetch_runs first")
    for table in leftovers:
        op.drop_table(table)
    op.create_table(
        "fetch_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_new", sa.Integer(), nullable=False),
        sa.Column("rows_updated", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=True),
        sa.CheckConstraint(TRIGGERS, name=op.f("ck_fetch_runs_trigger")),
        sa.CheckConstraint(RUN_STATUSES, name=op.f("ck_fetch_runs_status")),
        sa.PrimaryKeyConstraint("id", name="pk_fetch_runs"),
    )
    op.create_index("ix_fetch_runs_started_at_id", "fetch_runs", ["started_at", "id"])
    op.create_table(
        "fetch_run_symbols",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows_fetched", sa.Integer(), nullable=False),
        sa.Column("rows_new", sa.Integer(), nullable=False),
        sa.Column("rows_updated", sa.Integer(), nullable=False),
        sa.Column("newest_date", sa.Date(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.CheckConstraint(SYMBOL_STATUSES, name=op.f("ck_fetch_run_symbols_status")),
        sa.ForeignKeyConstraint(["run_id"], ["fetch_runs.id"],
                                name="fk_fetch_run_symbols_run_id_fetch_runs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "symbol", name="pk_fetch_run_symbols"),
    )
    op.create_index("ix_fetch_run_symbols_symbol_run_id", "fetch_run_symbols",
                    ["symbol", "run_id"])


def _holds_rows(table: str) -> bool:
    return op.get_bind().execute(sa.text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None


def downgrade():
    # Each DROP commits on its own: a downgrade killed midway left some of them
    # done, the revision still 0003. The rerun drops what is left. (No database
    # to look at when --sql prints the statements.)
    inspector = None if op.get_context().as_sql else sa.inspect(op.get_bind())
    for table, index in (("fetch_run_symbols", "ix_fetch_run_symbols_symbol_run_id"),
                         ("fetch_runs", "ix_fetch_runs_started_at_id")):
        if inspector is not None and not inspector.has_table(table):
            continue
        if inspector is None or index in {found["name"]
                                          for found in inspector.get_indexes(table)}:
            op.drop_index(index, table_name=table)
        op.drop_table(table)
