"""Exact price strings (financial/records.py) and the API's serializers."""
import datetime
from decimal import Decimal

import pytest

from app.api.serializers import pagination, price_row, statistics_record
from financial.records import format_price
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


def test_price_record_has_only_strings():
    class Row:
        symbol, date = "IBM", datetime.date(2023, 2, 14)
        open_price, close_price, volume = Decimal("153.0800"), Decimal("154.5200"), 62199013

    assert price_row(Row) == {"symbol": "IBM", "date": "2023-02-14", "open_price": "153.08",
                              "close_price": "154.52", "volume": "62199013"}


def test_statistics_record_gives_json_numbers():
    stats = PriceStatistics(Decimal("123.45"), Decimal("0.10"), 1000000)
    record = statistics_record(stats, "IBM", datetime.date(2023, 1, 1), datetime.date(2023, 1, 31))
    assert record == {"start_date": "2023-01-01", "end_date": "2023-01-31", "symbol": "IBM",
                      "average_daily_open_price": 123.45, "average_daily_close_price": 0.1,
                      "average_daily_volume": 1000000}
    assert isinstance(record["average_daily_volume"], int)
