"""Exact price strings (financial/records.py) and the API's serializers."""
import datetime
from decimal import Decimal

import pytest

from app.api.serializers import page_envelope, pagination, price_row, statistics_record
from financial.records import (
    DEFAULT_FIELDS, RECORD_FIELDS, format_price, format_ratio, price_record,
)
from financial.stats import PriceStatistics


@pytest.mark.parametrize("stored, shown", [
    ("150.1000", "150.10"), ("12.3456", "12.3456"), ("0.0100", "0.01"), ("153.08", "153.08"),
    ("100", "100.00"), ("1E+2", "100.00"), ("0.0000", "0.00"), ("123.4000", "123.40"),
    ("0.0005", "0.0005"), ("99999999999999.9999", "99999999999999.9999"),
])
def test_format_price_is_exact_with_at_least_two_decimals(stored, shown):
    assert format_price(Decimal(stored)) == shown


@pytest.mark.parametrize("count, limit, pages", [
    (0, 5, 0), (1, 5, 1), (5, 5, 1), (6, 5, 2), (20, 3, 7), (1000, 1000, 1), (1001, 1000, 2),
])
def test_pages_is_the_ceiling_of_count_over_limit(count, limit, pages):
    assert pagination(count, 2, limit) == {"count": count, "page": 2, "limit": limit,
                                           "pages": pages}


def test_a_page_envelope_records_the_items_read_at_its_offset():
    body = page_envelope(7, 2, 3, lambda offset: range(offset, offset + 3), lambda n: {"n": n})
    assert body == {"data": [{"n": 3}, {"n": 4}, {"n": 5}],
                    "pagination": {"count": 7, "page": 2, "limit": 3, "pages": 3},
                    "info": {"error": ""}}


def test_a_page_past_the_last_is_answered_without_reading():
    def fetch(offset):
        raise AssertionError(f"read at offset {offset}")

    assert page_envelope(6, 3, 3, fetch, dict) == {
        "data": [], "pagination": {"count": 6, "page": 3, "limit": 3, "pages": 2},
        "info": {"error": ""}}


@pytest.mark.parametrize("stored, shown", [
    ("1.00000000", "1.0"), ("1.0", "1.0"), ("4", "4.0"), ("0.50000000", "0.5"),
    ("0.33333333", "0.33333333"), ("1.5E+1", "15.0"),
    ("9999999999.99999999", "9999999999.99999999"),
])
def test_format_ratio_is_exact_with_at_least_one_decimal(stored, shown):
    assert format_ratio(Decimal(stored)) == shown


STORED = {"symbol": "IBM", "date": datetime.date(2023, 2, 14), "open_price": Decimal("153.0800"),
          "high_price": Decimal("155.0000"), "low_price": None, "close_price": Decimal("154.5200"),
          "adjusted_close_price": Decimal("152.1234"), "volume": 62199013,
          "dividend_amount": Decimal("0.0000"), "split_coefficient": Decimal("1.00000000")}


def test_price_record_has_only_strings_by_default():
    assert price_record(STORED, DEFAULT_FIELDS) == {
        "symbol": "IBM", "date": "2023-02-14", "open_price": "153.08", "close_price": "154.52",
        "volume": "62199013"}


def test_price_record_of_every_field_keeps_nulls_and_the_contract_order():
    record = price_record(STORED, RECORD_FIELDS)
    assert list(record.items()) == [
        ("symbol", "IBM"), ("date", "2023-02-14"), ("open_price", "153.08"),
        ("high_price", "155.00"), ("low_price", None), ("close_price", "154.52"),
        ("adjusted_close_price", "152.1234"), ("volume", "62199013"),
        ("dividend_amount", "0.00"), ("split_coefficient", "1.0")]


def test_price_row_serializes_the_fields_asked_of_a_row_mapping():
    class Row:
        _mapping = {"close_price": Decimal("154.5200"), "split_coefficient": None}

    assert price_row(Row, ("close_price", "split_coefficient")) == {
        "close_price": "154.52", "split_coefficient": None}


def test_statistics_record_gives_json_numbers():
    stats = PriceStatistics(Decimal("123.45"), Decimal("0.10"), 1000000)
    record = statistics_record(stats, "IBM", datetime.date(2023, 1, 1), datetime.date(2023, 1, 31))
    assert record == {"start_date": "2023-01-01", "end_date": "2023-01-31", "symbol": "IBM",
                      "average_daily_open_price": 123.45, "average_daily_close_price": 0.1,
                      "average_daily_volume": 1000000}
    assert isinstance(record["average_daily_volume"], int)
