"""Add high, low, adjusted close, dividend and split coefficient to financial_data.

All nullable: rows stored before have no high and low until the next fetch
fills them, and only TIME_SERIES_DAILY_ADJUSTED answers carry the rest.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# On SQLite exact decimals are integers counting 10**-scale units (see
# lib.storage.ScaledDecimal): 1/10000 for prices, 10**-8 for the split coefficient,
# whose DECIMAL(18,8) maximum (10**18 - 1 units) fits a 64-bit integer.
PRICE = sa.Numeric(18, 4).with_variant(sa.BigInteger(), "sqlite")
RATIO = sa.Numeric(18, 8).with_variant(sa.BigInteger(), "sqlite")
NEW_COLUMNS = (
    ("high_price", PRICE),
    ("low_price", PRICE),
    ("adjusted_close_price", PRICE),
    ("dividend_amount", PRICE),
    ("split_coefficient", RATIO),
)
# The copy of the table batch mode makes on SQLite (Alembic's name for it).
BATCH_COPY = "_alembic_tmp_financial_data"


def upgrade():
    # MySQL commits each ALTER TABLE: a run killed before its end leaves some
    # of the columns added (all null), with the revision still 0001. The
    # rerun adds the others. (No database to look at when --sql prints the
    # statements.)
    present = set() if op.get_context().as_sql else {
        column["name"] for column in sa.inspect(op.get_bind()).get_columns("financial_data")}
    for name, column_type in NEW_COLUMNS:
        if name in present:
            continue
        op.add_column("financial_data", sa.Column(name, column_type, nullable=True))


def downgrade():
    # Batch mode: older SQLite cannot drop a column, so the table is copied there.
    # A downgrade killed midway left the revision at 0002 and, on MySQL, which
    # commits each ALTER TABLE, some of the columns dropped; on SQLite the empty
    # copy, created before the transaction that fills it and replaces the table.
    # The rerun drops that copy and the columns left. (No database to look at
    # when --sql prints the statements.)
    present = {name for name, _ in NEW_COLUMNS}
    if not op.get_context().as_sql:
        bind = op.get_bind()
        if sa.inspect(bind).has_table(BATCH_COPY) and bind.execute(
                sa.text(f"SELECT 1 FROM {BATCH_COPY} LIMIT 1")).first() is None:
            op.drop_table(BATCH_COPY)
        present &= {column["name"] for column in sa.inspect(bind).get_columns("financial_data")}
    with op.batch_alter_table("financial_data") as batch:
        for name, _ in reversed(NEW_COLUMNS):
            if name in present:
                batch.drop_column(name)
