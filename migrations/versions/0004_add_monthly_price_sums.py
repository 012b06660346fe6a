"""Keep each symbol's monthly sums, so long-range statistics read months instead of days.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Written out rather than imported from the models, so this revision stays
# what it was when the models change. Sums of prices are DECIMAL(22,4); on
# SQLite, integers counting 1/10000 units (see lib.storage.ScaledDecimal).
PRICE_SUM = sa.Numeric(22, 4).with_variant(sa.BigInteger(), "sqlite")
VOLUME_SUM = sa.BigInteger().with_variant(mysql.BIGINT(unsigned=True), "mysql", "mariadb")
PRICES = sa.table("financial_data", sa.column("symbol"), sa.column("date", sa.Date()),
                  sa.column("open_price"), sa.column("close_price"), sa.column("volume"))


def upgrade():
    # MySQL commits each DDL statement, SQLite's driver a CREATE TABLE: a run
    # killed before its end leaves the table behind (its sums rolled back, the
    # revision still 0003), and creating it again would fail on every start.
    # The sums are derived from financial_data: they are counted again.
    # (No database to look at when --sql prints the statements.)
    if not op.get_context().as_sql and sa.inspect(op.get_bind()).has_table(
            "monthly_price_sums"):
        op.drop_table("monthly_price_sums")
    sums = op.create_table(
        "monthly_price_sums",
        sa.Column("symbol", sa.String(length=16), nullable=False),
        sa.Column("month", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("open_sum", PRICE_SUM, nullable=False),
        sa.Column("close_sum", PRICE_SUM, nullable=False),
        sa.Column("volume_sum", VOLUME_SUM, nullable=False),
        sa.PrimaryKeyConstraint("symbol", "month", name="pk_monthly_price_sums"),
    )
    month = (sa.extract("year", PRICES.c.date) * 100 + sa.extract("month", PRICES.c.date))
    op.execute(sums.insert().from_select(
        ["symbol", "month", "days", "open_sum", "close_sum", "volume_sum"],
        sa.select(PRICES.c.symbol, month, sa.func.count(), sa.func.sum(PRICES.c.open_price),
                  sa.func.sum(PRICES.c.close_price), sa.func.sum(PRICES.c.volume))
        .group_by(PRICES.c.symbol, month)))


def downgrade():
    # The DROP commits on its own (MySQL): a downgrade killed before the revision
    # moved to 0003 left the table gone, and the rerun failed on it.
    if op.get_context().as_sql or sa.inspect(op.get_bind()).has_table("monthly_price_sums"):
        op.drop_table("monthly_price_sums")
