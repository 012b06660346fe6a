"""The parser's bounds follow the table's columns: a migration changing one fails here first.

``lib`` may not import ``financial`` (import-linter's layers), so the bounds of
``lib/alphavantage/payload.py`` are written out there and compared here with
the column types of ``financial.models.FinancialData``.
"""
import dataclasses

import pytest
from sqlalchemy.dialects import mysql, sqlite

from financial.models import FinancialData
from lib.alphavantage.payload import _ADJUSTED_PRICE, _MAX_VOLUME, _PRICE, _RATIO
from lib.avantage_api import DailyBar
from lib.storage import ScaledDecimal

# The bound the parser checks each decimal field of a bar against.
PARSER_COLUMNS = {
    "open_price": _PRICE, "high_price": _PRICE, "low_price": _PRICE, "close_price": _PRICE,
    "adjusted_close_price": _ADJUSTED_PRICE, "dividend_amount": _PRICE,
    "split_coefficient": _RATIO,
}
# The values an integer column holds, by its type as each database creates it.
INTEGER_RANGES = {
    "SMALLINT": (-2**15, 2**15 - 1), "SMALLINT UNSIGNED": (0, 2**16 - 1),
    "INTEGER": (-2**31, 2**31 - 1), "INTEGER UNSIGNED": (0, 2**32 - 1),
    "BIGINT": (-2**63, 2**63 - 1), "BIGINT UNSIGNED": (0, 2**64 - 1),
}
DIALECTS = [sqlite.dialect(), mysql.dialect(), mysql.dialect(is_mariadb=True)]


def test_every_decimal_column_is_a_field_the_parser_bounds():
    decimal_columns = {column.name for column in FinancialData.__table__.columns
                       if isinstance(column.type, ScaledDecimal)}
    assert decimal_columns == set(PARSER_COLUMNS)
    assert set(PARSER_COLUMNS) < {field.name for field in dataclasses.fields(DailyBar)}


@pytest.mark.parametrize("field", sorted(PARSER_COLUMNS))
def test_a_decimal_field_has_its_columns_precision_and_scale(field):
    column_type = FinancialData.__table__.columns[field].type
    bound = PARSER_COLUMNS[field]
    assert (bound.precision, bound.places) == (column_type.precision, column_type.scale)
    assert bound.sql_type == f"DECIMAL({column_type.precision},{column_type.scale})"
    # The largest value accepted, 10**integer_digits less one unit of the scale, fits.
    assert bound.integer_digits + bound.places <= column_type.precision


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda dialect: dialect.name)
def test_the_volumes_accepted_fit_the_volume_column(dialect):
    """The parser takes volumes from 0 to _MAX_VOLUME (digits only, no sign)."""
    column_type = FinancialData.__table__.columns["volume"].type
    low, high = INTEGER_RANGES[column_type.compile(dialect=dialect)]
    assert low <= 0 and _MAX_VOLUME <= high
