"""Add 0002's price columns to a financial_data that lacks them at a later revision.

For a while the history chained 0003 straight after 0001: a database migrated
then records 0003 without the columns of 0002, which Alembic, taking 0003 to
follow 0002 now, never adds. Every fetch failed on them while ``flask db
upgrade`` found nothing to do. Any other database has them: nothing changes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

logger = logging.getLogger("alembic.env")

# Written out as 0002 writes them: a migration keeps the types of its day.
PRICE = sa.Numeric(18, 4).with_variant(sa.BigInteger(), "sqlite")
RATIO = sa.Numeric(18, 8).with_variant(sa.BigInteger(), "sqlite")
COLUMNS_OF_0002 = (
    ("high_price", PRICE),
    ("low_price", PRICE),
    ("adjusted_close_price", PRICE),
    ("dividend_amount", PRICE),
    ("split_coefficient", RATIO),
)


def upgrade():
    # Each column is added on its own, committed at once on MySQL: a run killed
    # midway adds the others when it runs again. (No database to look at when
    # --sql prints the statements; a database lacking them is migrated online.)
    if op.get_context().as_sql:
        return
    present = {column["name"]
               for column in sa.inspect(op.get_bind()).get_columns("financial_data")}
    missing = [(name, column_type) for name, column_type in COLUMNS_OF_0002
               if name not in present]
    if missing:
        logger.warning("financial_data lacks %s, which migration 0002 adds (an older history "
                       "recorded 0003 after 0001): adding them",
                       ", ".join(name for name, _ in missing))
    for name, column_type in missing:
        op.add_column("financial_data", sa.Column(name, column_type, nullable=True))


def downgrade():
    pass  # the columns are 0002's, whose downgrade drops them
