"""Create the financial_data table.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""
import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.env")

# Prices are DECIMAL(18,4); SQLite has no exact decimal, so there they are
# integers counting 1/10000 units (see lib.storage.ScaledDecimal).
PRICE = sa.Numeric(18, 4).with_variant(sa.BigInteger(), "sqlite")
VOLUME = sa.BigInteger().with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")


def upgrade():
    # The revision is recorded once this whole script has run, but MySQL and
    # SQLite's driver commit the CREATE TABLE at once: a run that stops after
    # it (killed, or a full disk refusing the index) leaves the table behind
    # with no revision, and creating it again would fail on every start.
    # Nothing writes to the table before its revision is recorded, so an empty
    # one is such a leftover and is created again; one holding rows is not
    # touched (creating it fails, as it always did). (No database to look at
    # when --sql prints the statements.)
    if not op.get_context().as_sql and _is_an_empty_leftover():
        logger.warning("financial_data is an empty table left by an unfinished first "
                       "migration: creating it again")
        op.drop_table("financial_data")
    op.create_table(
        "financial_data",
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("open_price", PRICE, nullable=False),
        sa.Column("close_price", PRICE, nullable=False),
        sa.Column("volume", VOLUME, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "date", name="pk_financial_data"),
    )
    op.create_index("ix_financial_data_date_symbol", "financial_data", ["date", "symbol"])


def _is_an_empty_leftover() -> bool:
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("financial_data"):
        return False
    return bind.execute(sa.text("SELECT 1 FROM financial_data LIMIT 1")).first() is None


def downgrade():
    # Each DROP commits on its own: a downgrade killed after the first left the
    # table without its index, the revision still 0001. The rerun drops the rest.
    # (No database to look at when --sql prints the statements.)
    inspector = None if op.get_context().as_sql else sa.inspect(op.get_bind())
    if inspector is not None and not inspector.has_table("financial_data"):
        return
    if inspector is None or "ix_financial_data_date_symbol" in {
            index["name"] for index in inspector.get_indexes("financial_data")}:
        op.drop_index("ix_financial_data_date_symbol", table_name="financial_data")
    op.drop_table("financial_data")
