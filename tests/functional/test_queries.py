"""count_prices, list_prices and stream_prices called directly on every database backend."""
import datetime
import random
from decimal import Decimal

import pytest
from sqlalchemy import insert, text

from financial import queries
from financial.models import FinancialData
from financial.months import last_day_of_month
from financial.queries import (
    DEEP_OFFSET, count_listed_prices, count_prices, count_prices_by_months, list_prices,
    stream_prices,
)
from financial.records import DEFAULT_FIELDS, RECORD_FIELDS
from tests.helpers import insert_prices

D = datetime.date
SYMBOLS = ("AAPL", "BRK.B", "IBM")
DAYS = [D(2023, 1, 2) + datetime.timedelta(days=n) for n in range(10)]


@pytest.fixture
def stored_rows(db_session):
    """Three symbols x ten days; prices encode the row so a mix-up shows."""
    rows = [{"symbol": symbol, "date": day,
             "open_price": Decimal(f"{index}.{day.day:02d}"),
             "high_price": Decimal(f"{index + 1}.{day.day:02d}"),
             "low_price": Decimal(f"{index - 1}.{day.day:02d}"),
             "close_price": Decimal(f"{index}.5{day.day:02d}"),
             "adjusted_close_price": Decimal(f"{index}.4{day.day:02d}") if day.day % 2 else None,
             "volume": index * 1000 + day.day,
             "dividend_amount": Decimal("0.0000") if day.day % 2 else None,
             "split_coefficient": Decimal(f"{day.day}.12345678") if day.day % 2 else None}
            for index, symbol in enumerate(SYMBOLS, start=1) for day in DAYS]
    db_session.execute(insert(FinancialData), rows)
    db_session.flush()
    return rows


def keys(rows) -> list[tuple[str, datetime.date]]:
    return [(row.symbol, row.date) for row in rows]


def page(db_session, *, symbols=None, start=None, end=None, fields=DEFAULT_FIELDS, limit=1000,
         offset=0):
    return list_prices(db_session, symbols=symbols, start_date=start, end_date=end, fields=fields,
                       limit=limit, offset=offset)


@pytest.mark.parametrize("symbols, start, end, expected", [
    (None, None, None, 30),
    (("IBM",), None, None, 10),
    (("MSFT",), None, None, 0),
    (("AAPL", "IBM"), None, None, 20),
    (("AAPL", "IBM", "MSFT"), D(2023, 1, 4), None, 16),
    (None, D(2023, 1, 4), D(2023, 1, 4), 3),
    (("IBM",), D(2023, 1, 4), None, 8),
    (None, None, D(2023, 1, 3), 6),
    (("AAPL",), D(2023, 1, 5), D(2023, 1, 1), 0),
])
def test_count_prices_counts_the_inclusive_filters(db_session, stored_rows, symbols, start, end,
                                                   expected):
    assert count_prices(db_session, symbols=symbols, start_date=start, end_date=end) == expected


def test_count_prices_of_an_empty_table_is_zero(db_session):
    assert count_prices(db_session, symbols=None, start_date=None, end_date=None) == 0


def test_list_prices_orders_by_date_then_symbol_and_pages(db_session, stored_rows):
    expected = [(symbol, day) for day in DAYS for symbol in SYMBOLS]
    assert keys(page(db_session)) == expected
    pages = [keys(page(db_session, limit=7, offset=offset)) for offset in range(0, 30, 7)]
    assert [key for rows in pages for key in rows] == expected
    assert [len(rows) for rows in pages] == [7, 7, 7, 7, 2]


def test_list_prices_returns_the_stored_values_exactly(db_session, stored_rows):
    (row,) = page(db_session, symbols=("BRK.B",), start=D(2023, 1, 5), end=D(2023, 1, 5),
                  fields=RECORD_FIELDS)
    assert tuple(row) == ("BRK.B", D(2023, 1, 5), Decimal("2.05"), Decimal("3.05"),
                          Decimal("1.05"), Decimal("2.505"), Decimal("2.405"), 2005,
                          Decimal("0"), Decimal("5.12345678"))
    (even,) = page(db_session, symbols=("BRK.B",), start=D(2023, 1, 6), end=D(2023, 1, 6),
                   fields=RECORD_FIELDS)
    assert (even.adjusted_close_price, even.dividend_amount, even.split_coefficient) == (
        None, None, None)


def test_list_prices_reads_only_the_fields_asked(db_session, stored_rows):
    (row,) = page(db_session, symbols=("IBM",), start=D(2023, 1, 3), end=D(2023, 1, 3),
                  fields=("close_price", "split_coefficient"))
    assert row._fields == ("close_price", "split_coefficient")
    assert tuple(row) == (Decimal("3.503"), Decimal("3.12345678"))


def test_list_prices_filters_by_symbol_and_range(db_session, stored_rows):
    rows = page(db_session, symbols=("IBM",), start=D(2023, 1, 9), end=D(2023, 1, 11), limit=10,
                offset=1)
    assert keys(rows) == [("IBM", D(2023, 1, 10)), ("IBM", D(2023, 1, 11))]


def test_list_prices_of_several_symbols_keeps_date_then_symbol_order(db_session, stored_rows):
    rows = page(db_session, symbols=("IBM", "AAPL", "MSFT"), start=D(2023, 1, 10), limit=3,
                offset=1)
    assert keys(rows) == [("IBM", D(2023, 1, 10)), ("AAPL", D(2023, 1, 11)),
                          ("IBM", D(2023, 1, 11))]


def test_list_prices_of_several_symbols_without_dates_pages_in_date_then_symbol_order(
        db_session, stored_rows):
    # No date to filter on: the page's keys are still cut from date, then symbol order,
    # not from whichever index picks the symbols.
    expected = [(symbol, day) for day in DAYS for symbol in ("AAPL", "IBM")]
    pages = [keys(page(db_session, symbols=("AAPL", "IBM"), limit=3, offset=offset))
             for offset in range(0, 20, 3)]
    assert [key for rows in pages for key in rows] == expected


def test_list_prices_past_the_end_is_empty(db_session, stored_rows):
    assert page(db_session, limit=5, offset=30) == []


DEEP_SYMBOLS = ("AAPL", "BRK.B", "IBM", "KO", "MSFT", "T", "X", "XOM")


@pytest.fixture
def deep_rows(db_session):
    """Eight symbols with most of 2,500 days each, more rows than DEEP_OFFSET.

    Days missing here and there make months and dates uneven; the symbols
    sharing a date are the ties the order breaks by symbol. Inserted in
    random order, with the monthly sums the fetch job keeps.
    """
    rng = random.Random(3)
    rows = [{"symbol": symbol, "date": D(2015, 1, 1) + datetime.timedelta(days=day),
             "open_price": Decimal(rng.randrange(1, 10**7)).scaleb(-4),
             "close_price": Decimal(rng.randrange(1, 10**7)).scaleb(-4),
             "volume": rng.randrange(10**12)}
            for day in range(2500) for symbol in DEEP_SYMBOLS if rng.random() < 0.9]
    rng.shuffle(rows)
    insert_prices(db_session, rows)
    db_session.flush()
    return rows


@pytest.mark.parametrize("symbols, start, end", [
    (DEEP_SYMBOLS[1:7], None, None),
    (DEEP_SYMBOLS, D(2015, 3, 17), D(2021, 8, 12)),
    (DEEP_SYMBOLS[:7], D(2015, 2, 1), D(2021, 10, 31)),
    (("T", "AAPL", "XOM", "IBM", "KO", "ZZZ", "X"), None, D(2021, 6, 30)),
    (None, None, None),
    (None, D(2015, 3, 17), D(2021, 8, 12)),
])
def test_a_deep_page_is_the_slice_of_all_matching_rows_sorted(
        db_session, deep_rows, monkeypatch, symbols, start, end):
    # Without a symbol filter, pages are deep from an offset these rows do not reach.
    monkeypatch.setattr(queries, "DEEP_OFFSET_ALL_SYMBOLS", DEEP_OFFSET)
    expected = sorted(
        ((row["date"], row["symbol"]), (row["symbol"], row["date"], row["open_price"],
                                        row["close_price"], row["volume"]))
        for row in deep_rows if (symbols is None or row["symbol"] in symbols)
        and (start is None or row["date"] >= start) and (end is None or row["date"] <= end))
    expected_rows = [values for _, values in expected]
    assert len(expected_rows) > DEEP_OFFSET + 1000
    count = len(expected_rows)
    for offset, limit in ((DEEP_OFFSET, 1), (DEEP_OFFSET + 1, 7), (DEEP_OFFSET + 13, 1000),
                          (count - 1000, 1000), (count - 100, 1000), (count - 1, 5)):
        rows = page(db_session, symbols=symbols, start=start, end=end, limit=limit,
                    offset=offset)
        assert [tuple(row) for row in rows] == expected_rows[offset:offset + limit], offset


@pytest.mark.parametrize("symbols, start, end", [
    (DEEP_SYMBOLS[1:7], None, None),
    (DEEP_SYMBOLS[:7], D(2015, 2, 1), D(2021, 10, 31)),
])
def test_a_deep_page_past_the_last_row_is_empty(db_session, deep_rows, symbols, start, end):
    count = count_prices(db_session, symbols=symbols, start_date=start, end_date=end)
    assert count > DEEP_OFFSET
    for offset in (count, count + 1000):
        assert page(db_session, symbols=symbols, start=start, end=end, limit=10,
                    offset=offset) == [], offset


@pytest.mark.mysql
@pytest.mark.parametrize("database_url", ["mysql"], indirect=True)
@pytest.mark.parametrize("start, end, from_end", [
    (None, None, False),
    # A range that starts and ends within a month; a page among the last
    # rows, in the partial month at its end.
    (D(2015, 3, 17), D(2021, 8, 12), False),
    (D(2015, 3, 17), D(2021, 8, 12), True),
])
def test_a_deep_page_reads_a_few_months_of_rows_not_every_row_before_it(
        db_session, deep_rows, start, end, from_end):
    """MariaDB's handler counters count the rows and index entries a statement reads."""
    def rows_read() -> int:
        status = db_session.execute(text("SHOW SESSION STATUS LIKE 'Handler_read%'")).all()
        return sum(int(value) for _, value in status)
    symbols = DEEP_SYMBOLS[1:7]
    count = count_prices(db_session, symbols=symbols, start_date=start, end_date=end)
    offset = count - 150 if from_end else DEEP_OFFSET + 500
    before = rows_read()
    rows = page(db_session, symbols=symbols, start=start, end=end, limit=100, offset=offset)
    read = rows_read() - before
    assert len(rows) == 100
    assert read < DEEP_OFFSET / 4, read


COUNT_SYMBOLS = ("AAPL", "BRK.B", "IBM", "KO", "MSFT")
COUNT_FIRST_DAY = D(2020, 11, 20)


@pytest.fixture
def count_rows(db_session):
    """Five symbols over three years from mid-month, days missing at random, with their sums."""
    rng = random.Random(5)
    rows = [{"symbol": symbol, "date": COUNT_FIRST_DAY + datetime.timedelta(days=day),
             "open_price": Decimal("1.5"), "close_price": Decimal("2.5"), "volume": day}
            for day in range(1100) for symbol in COUNT_SYMBOLS if rng.random() < 0.7]
    insert_prices(db_session, rows)
    db_session.flush()
    return rows


def random_day(rng: random.Random) -> datetime.date | None:
    """A day in or around the stored years, often at or next to a month's end, or None."""
    day = COUNT_FIRST_DAY + datetime.timedelta(days=rng.randrange(-70, 1170))
    first, last = day.replace(day=1), last_day_of_month(day)
    one = datetime.timedelta(days=1)
    return rng.choice([None, day, day, first, first + one, last, last - one])


def random_range(rng: random.Random) -> tuple[datetime.date | None, datetime.date | None]:
    """Open, wide, single-day, within one month or reversed: every shape a range takes."""
    start, end = random_day(rng), random_day(rng)
    shape = rng.randrange(4)
    if shape == 0 and start is not None:
        return start, start
    if shape == 1 and start is not None:
        return start, rng.choice([last_day_of_month(start),
                                  start + datetime.timedelta(days=rng.randrange(28))])
    return start, end


def random_symbols(rng: random.Random) -> tuple[str, ...] | None:
    """None, or one to five tickers drawn with repeats, sometimes unknown ones."""
    if rng.random() < 0.25:
        return None
    return tuple(rng.choice(COUNT_SYMBOLS + ("ZZZ", "BRK.A"))
                 for _ in range(rng.randrange(1, 6)))


def test_counting_by_months_equals_counting_the_rows(db_session, count_rows):
    rng = random.Random(17)
    for _ in range(300):
        symbols = random_symbols(rng)
        start, end = random_range(rng)
        expected = sum(1 for row in count_rows
                       if (symbols is None or row["symbol"] in symbols)
                       and (start is None or row["date"] >= start)
                       and (end is None or row["date"] <= end))
        found = [count(db_session, symbols=symbols, start_date=start, end_date=end)
                 for count in (count_prices, count_prices_by_months, count_listed_prices)]
        assert found == [expected] * 3, (symbols, start, end)


def test_stream_prices_yields_every_matching_row_in_list_order(db_session, stored_rows):
    result = stream_prices(db_session, symbols=("IBM", "BRK.B"), start_date=D(2023, 1, 3),
                           end_date=None, fields=RECORD_FIELDS, batch_size=4)
    streamed = result.all()
    listed = page(db_session, symbols=("IBM", "BRK.B"), start=D(2023, 1, 3), fields=RECORD_FIELDS)
    assert len(streamed) == 18
    assert [tuple(row) for row in streamed] == [tuple(row) for row in listed]


def test_stream_prices_of_nothing_is_empty(db_session, stored_rows):
    result = stream_prices(db_session, symbols=("MSFT",), start_date=None, end_date=None,
                           fields=("symbol",), batch_size=10)
    assert result.all() == []
