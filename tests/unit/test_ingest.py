"""Window selection and record shaping (financial/ingest.py), no database."""
import datetime
import json
from decimal import Decimal

import pytest

from financial.ingest import ROW_COLUMNS, _row, recent_days, to_records
from financial.models import FinancialData
from lib.avantage_api import DailyBar, DailySeries, parse_daily_series
from tests.fake_alphavantage import ALPHAVANTAGE_FIXTURES

D = datetime.date


def bar(day: datetime.date, open_price: str = "1.00", close_price: str = "2.00") -> DailyBar:
    return DailyBar(date=day, open_price=Decimal(open_price), high_price=Decimal("3.00"),
                    low_price=Decimal("0.50"), close_price=Decimal(close_price), volume=3)


def series_of(*days: datetime.date) -> DailySeries:
    bars = tuple(bar(day) for day in sorted(days, reverse=True))
    return DailySeries("IBM", "TIME_SERIES_DAILY", bars)


def weekdays(start: datetime.date, end: datetime.date, holidays=()) -> list[datetime.date]:
    days, day = [], start
    while day <= end:
        if day.weekday() < 5 and day not in holidays:
            days.append(day)
        day += datetime.timedelta(days=1)
    return days


def load(name: str) -> DailySeries:
    return parse_daily_series(json.loads((ALPHAVANTAGE_FIXTURES / name).read_text()))


def test_window_is_the_fourteen_days_ending_at_the_newest_day():
    bars = recent_days(series_of(*weekdays(D(2024, 5, 1), D(2024, 6, 18))))
    assert [bar.date for bar in bars] == weekdays(D(2024, 6, 5), D(2024, 6, 18))
    assert len(bars) == 10


def test_newest_day_on_a_friday_before_a_weekend_run_keeps_two_full_weeks():
    # Data ends Friday 2023-03-24; a run on Sunday still keeps 03-13..03-24.
    bars = recent_days(series_of(*weekdays(D(2023, 2, 1), D(2023, 3, 24))))
    assert bars[0].date == D(2023, 3, 13)
    assert len(bars) == 10


def test_a_holiday_inside_the_window_leaves_nine_days():
    memorial_day = D(2024, 5, 27)
    days = weekdays(D(2024, 5, 1), D(2024, 6, 4), holidays={memorial_day})
    bars = recent_days(series_of(*days))
    assert [bar.date for bar in bars] == weekdays(D(2024, 5, 22), D(2024, 6, 4), {memorial_day})
    assert len(bars) == 9


def test_window_bounds_are_exclusive_then_inclusive():
    bars = recent_days(series_of(D(2024, 1, 1), D(2024, 1, 2), D(2024, 1, 15)))
    assert [bar.date for bar in bars] == [D(2024, 1, 2), D(2024, 1, 15)]


@pytest.mark.parametrize("days, expected", [(1, 1), (3, 2), (7, 5), (None, 100)])
def test_days_changes_the_window_and_none_keeps_everything(days, expected):
    bars = recent_days(load("IBM_TIME_SERIES_DAILY_compact_2024-06-18.json"), days)
    assert len(bars) == expected
    assert bars[-1].date == D(2024, 6, 18)
    dates = [bar.date for bar in bars]
    assert dates == sorted(set(dates))


@pytest.mark.parametrize("days, expected", [
    (14, [D(1, 1, 1), D(1, 1, 5)]),  # the window would start before year 1
    (5, [D(1, 1, 1), D(1, 1, 5)]),   # the day before 0001-01-01 is no date either
    (4, [D(1, 1, 5)]),               # 0001-01-01 is the window's excluded first day
])
def test_a_window_reaching_before_year_one_keeps_the_days_within_it(days, expected):
    bars = recent_days(series_of(D(1, 1, 1), D(1, 1, 5)), days)
    assert [bar.date for bar in bars] == expected


@pytest.mark.parametrize("days", [14, None])
def test_an_empty_series_keeps_nothing(days):
    assert recent_days(series_of(), days) == []


def test_records_are_exact_strings_oldest_first_with_the_raw_close():
    records = to_records("IBM", recent_days(
        load("IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json")))
    assert len(records) == 10
    assert records[0]["date"] == "2023-03-13"
    assert records[-1] == {"symbol": "IBM", "date": "2023-03-24", "open_price": "123.36",
                           "high_price": "125.40", "low_price": "122.88",
                           "close_price": "125.29", "adjusted_close_price": "125.29",
                           "volume": "3812644", "dividend_amount": "0.00",
                           "split_coefficient": "1.0"}
    assert [r["date"] for r in records] == sorted(r["date"] for r in records)


def test_dividend_day_keeps_the_raw_close_not_the_adjusted_one():
    bars = recent_days(load("IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"), None)
    by_date = {record["date"]: record for record in to_records("IBM", bars)}
    raw = json.loads((ALPHAVANTAGE_FIXTURES / "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24"
                      ".json").read_text())["Time Series (Daily)"]["2023-02-08"]
    assert raw["4. close"] != raw["5. adjusted close"]
    assert Decimal(by_date["2023-02-08"]["close_price"]) == Decimal(raw["4. close"])


def test_four_decimal_prices_survive_unrounded():
    bars = (bar(D(2024, 1, 2), open_price="12.3456", close_price="2.1000"),)
    record = to_records("X", recent_days(DailySeries("X", "TIME_SERIES_DAILY", bars)))[0]
    assert (record["open_price"], record["close_price"]) == ("12.3456", "2.10")


@pytest.mark.parametrize("name, day, record", [
    ("IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json", "2022-11-09",
     {"symbol": "IBM", "date": "2022-11-09", "open_price": "137.95", "high_price": "138.90",
      "low_price": "136.94", "close_price": "137.39", "adjusted_close_price": "135.7157",
      "volume": "4720007", "dividend_amount": "1.65", "split_coefficient": "1.0"}),
    ("AAPL_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json", "2022-12-23",
     {"symbol": "AAPL", "date": "2022-12-23", "open_price": "130.92", "high_price": "132.415",
      "low_price": "129.64", "close_price": "131.86", "adjusted_close_price": "131.6595",
      "volume": "63814893", "dividend_amount": "0.1667", "split_coefficient": "1.0"}),
    ("IBM_TIME_SERIES_DAILY_compact_2024-06-18.json", "2024-06-18",
     {"symbol": "IBM", "date": "2024-06-18", "open_price": "170.00", "high_price": "170.75",
      "low_price": "168.38", "close_price": "170.55", "adjusted_close_price": None,
      "volume": "3386442", "dividend_amount": None, "split_coefficient": None}),
])
def test_records_carry_every_field_in_the_contract_order(name, day, record):
    series = load(name)
    by_date = {r["date"]: r for r in to_records(series.symbol, recent_days(series, None))}
    assert list(by_date[day].items()) == list(record.items())


def test_a_row_holds_each_bar_value_under_its_column_in_the_tables_order():
    """The upsert writes the table's columns, in its order (``row_codec``'s), not the records'."""
    fields = dict(date=D(2024, 6, 18), open_price=Decimal("1.1"), high_price=Decimal("2.2"),
                  low_price=Decimal("3.3"), close_price=Decimal("4.4"),
                  adjusted_close_price=Decimal("5.5"), volume=6,
                  dividend_amount=Decimal("7.7"), split_coefficient=Decimal("8.8"))
    row = _row("IBM", DailyBar(**fields))
    assert dict(zip(ROW_COLUMNS, row, strict=True)) == {"symbol": "IBM", **fields}
    assert ROW_COLUMNS == tuple(FinancialData.__table__.c.keys())
