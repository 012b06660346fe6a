"""RowCodec on SQLite: rows encoded a column at a time, exactly as each value on its own."""
import datetime
from decimal import Decimal

import pytest
from sqlalchemy.dialects import sqlite

from financial.ingest import ROW_COLUMNS
from financial.models import FinancialData
from lib.storage import RowCodec, ScaledDecimal

CODEC = RowCodec(sqlite.dialect(), FinancialData.__table__, tuple(ROW_COLUMNS))
DAY = datetime.date(2023, 3, 24)


def one_by_one(row: tuple) -> tuple:
    return tuple(CODEC.encode_value(name, value) for name, value in zip(CODEC.columns, row))


def day_of(open_price="137.95", close="137.39", **changes) -> tuple:
    values = {"symbol": "IBM", "date": DAY, "open_price": Decimal(open_price),
              "high_price": Decimal("138.9"), "low_price": Decimal("136.94"),
              "close_price": Decimal(close), "adjusted_close_price": Decimal("135.7157"),
              "volume": 4720007, "dividend_amount": Decimal("1.6500"),
              "split_coefficient": Decimal("0.33333333"), **changes}
    return tuple(values[name] for name in CODEC.columns)


@pytest.mark.parametrize("rows", [
    [day_of(), day_of(open_price="0", close="1E+2", date=DAY + datetime.timedelta(days=1))],
    # TIME_SERIES_DAILY leaves the adjusted values out; old rows may lack high and low.
    [day_of(adjusted_close_price=None, dividend_amount=None, split_coefficient=None),
     day_of(high_price=None, low_price=None)],
    # Not a Decimal: encoded as the column type would (Decimal(value)).
    [day_of(open_price="12", high_price=13, low_price="11.5")],
    # Integers, a negative zero and the column's extremes, scaled a column at a time.
    [day_of(open_price=Decimal("-0.0000"), high_price=True, close=Decimal(10**14 - 1)),
     day_of(open_price=Decimal("99999999999999.9999"), high_price=0, close="-0.0001",
            date=DAY + datetime.timedelta(days=1))],
])
def test_a_column_at_a_time_encodes_as_each_value_alone(rows):
    assert CODEC.encode(rows) == [one_by_one(row) for row in rows]
    assert CODEC.encode(iter(rows)) == CODEC.encode(rows)


def test_the_value_named_with_too_many_places_is_the_first_row_by_row():
    rows = [day_of(), day_of(close="137.39001"), day_of(open_price="137.95001")]
    with pytest.raises(ValueError, match=r"^137\.39001 has more than 4 decimal places$"):
        CODEC.encode(rows)


def test_an_infinite_value_after_a_bad_row_does_not_change_the_error():
    rows = [day_of(close="137.39001"), day_of(open_price="Infinity")]
    with pytest.raises(ValueError, match=r"^137\.39001 has more than 4 decimal places$"):
        CODEC.encode(rows)


def test_rows_of_other_lengths_keep_every_value():
    rows = [day_of() + ("extra",), day_of()]
    assert CODEC.encode(rows) == [one_by_one(rows[0]) + ("extra",), one_by_one(rows[1])]


def test_columns_of_decimals_or_of_nones_take_no_call_per_value(monkeypatch):
    """Tens of thousands of values a full history: C calls alone, no to_units for each.

    TIME_SERIES_DAILY's rows leave the adjusted columns None.
    """
    def one_value(self, value):
        raise AssertionError(f"{value} encoded on its own")

    monkeypatch.setattr(ScaledDecimal, "to_units", one_value)
    codec = RowCodec(sqlite.dialect(), FinancialData.__table__, tuple(ROW_COLUMNS))
    daily = {"adjusted_close_price": None, "dividend_amount": None, "split_coefficient": None}
    rows = [day_of(**daily), day_of(close="138", date=DAY + datetime.timedelta(days=1), **daily)]
    assert codec.encode(rows) == [
        ("IBM", "2023-03-24", 1379500, 1389000, 1369400, 1373900, None, 4720007, None, None),
        ("IBM", "2023-03-25", 1379500, 1389000, 1369400, 1380000, None, 4720007, None, None)]


def test_no_rows_encode_to_none():
    assert CODEC.encode([]) == []
