"""Values written as MySQL writes stored values as text, to compare rows without reading them."""
import datetime
from decimal import Decimal

import pytest
from sqlalchemy.types import BigInteger, Date, String

import lib.storage
from lib.storage import UNWRITTEN, ScaledDecimal, _text, _texts

PRICE, SPLIT = ScaledDecimal(18, 4), ScaledDecimal(18, 8)


@pytest.mark.parametrize("column_type, values, written", [
    (PRICE, ["10.5", "-1.50", "0", "0E-8", "99999999999999.9999"],
     ["10.5000", "-1.5000", "0.0000", "0.0000", "99999999999999.9999"]),
    (SPLIT, ["1.0", "0.33333333"], ["1.00000000", "0.33333333"]),
    # More places than the column keeps, too many digits, not finite: MySQL never writes them.
    (PRICE, ["1.5", "11.50001", "1E+30", "Infinity", "NaN"],
     ["1.5000", UNWRITTEN, UNWRITTEN, UNWRITTEN, UNWRITTEN]),
    # Every value with the column's places, as most columns are.
    (PRICE, ["10.5000", "0.0000", "99999999999999.9999"],
     ["10.5000", "0.0000", "99999999999999.9999"]),
    (SPLIT, ["1.00000000", "0.33333333"], ["1.00000000", "0.33333333"]),
    # The column's places, but the sign of a zero, or more digits than the context's precision.
    (PRICE, ["-0.0000", "-1.5000", f"{'9' * 30}.0000"], ["-0.0000", "-1.5000", UNWRITTEN]),
])
def test_decimals_are_written_with_the_column_s_places_or_not_at_all(column_type, values,
                                                                     written):
    values = [Decimal(value) for value in values]
    assert _texts(column_type, values) == written
    assert [_text(column_type, value) for value in values] == written
    assert _texts(column_type, values + [None]) == written + [""]


@pytest.mark.parametrize("places", range(0, 11))
def test_a_column_s_smallest_and_largest_values_are_written_without_an_exponent(places):
    column_type = ScaledDecimal(18, places)
    unit = Decimal(1).scaleb(-places)
    values = [unit, -unit, 0 * unit, (0 * unit).copy_negate(), Decimal(10**18 - 1).scaleb(-places)]
    written = [format(value, "f") for value in values]
    assert "E" not in "".join(written)
    assert _texts(column_type, values) == written
    assert [_text(column_type, value) for value in values] == written


def test_volumes_dates_and_nulls_are_written_as_mysql_writes_them():
    assert _texts(BigInteger(), [0, 2**64 - 1]) == ["0", "18446744073709551615"]
    assert _texts(Date(), [datetime.date(999, 1, 2)]) == ["0999-01-02"]
    assert _texts(PRICE, [None, None]) == ["", ""]


@pytest.mark.parametrize("column_type, value", [
    (BigInteger(), True), (BigInteger(), Decimal("1")), (PRICE, 12), (PRICE, "12.0000"),
    (Date(), datetime.datetime(2023, 1, 2)), (Date(), "2023-01-02"),
    (String(16), 5), (String(16), datetime.date(2023, 1, 2)),
])
def test_a_value_of_another_type_is_never_written_as_a_stored_value(column_type, value):
    assert _texts(column_type, [value]) == [UNWRITTEN]
    assert _texts(column_type, [value, None]) == [UNWRITTEN, ""]


@pytest.mark.parametrize("column_type, values", [
    (PRICE, ["10.5000", "0.0000", "99999999999999.9999"]),
    (SPLIT, ["1.00000000", "0.33333333", "999999999.99999999"]),
])
def test_a_column_with_the_column_s_places_is_written_without_quantizing_each_value(
        column_type, values, monkeypatch):
    """str() writes such values as MySQL does: one pattern checks the column."""
    def quantized(*args):
        raise AssertionError("a column written with its places was quantized value by value")

    monkeypatch.setattr(lib.storage, "_plain_decimal_texts", quantized)
    assert _texts(column_type, [Decimal(value) for value in values]) == values
