"""count_prices and list_prices called directly on every database backend."""
import datetime
from decimal import Decimal

import pytest
from sqlalchemy import insert

from financial.models import FinancialData
from financial.queries import count_prices, list_prices

D = datetime.date
SYMBOLS = ("AAPL", "BRK.B", "IBM")
DAYS = [D(2023, 1, 2) + datetime.timedelta(days=n) for n in range(10)]


@pytest.fixture
def stored_rows(db_session):
    """Three symbols x ten days; prices encode the row so a mix-up shows."""
    rows = [{"symbol": symbol, "date": day,
             "open_price": Decimal(f"{index}.{day.day:02d}"),
             "close_price": Decimal(f"{index}.5{day.day:02d}"), "volume": index * 1000 + day.day}
            for index, symbol in enumerate(SYMBOLS, start=1) for day in DAYS]
    db_session.execute(insert(FinancialData), rows)
    db_session.flush()
    return rows


def keys(rows) -> list[tuple[str, datetime.date]]:
    return [(row.symbol, row.date) for row in rows]


@pytest.mark.parametrize("symbol, start, end, expected", [
    (None, None, None, 30),
    ("IBM", None, None, 10),
    ("MSFT", None, None, 0),
    (None, D(2023, 1, 4), D(2023, 1, 4), 3),
    ("IBM", D(2023, 1, 4), None, 8),
    (None, None, D(2023, 1, 3), 6),
    ("AAPL", D(2023, 1, 5), D(2023, 1, 1), 0),
])
def test_count_prices_counts_the_inclusive_filters(db_session, stored_rows, symbol, start, end,
                                                   expected):
    assert count_prices(db_session, symbol=symbol, start_date=start, end_date=end) == expected


def test_count_prices_of_an_empty_table_is_zero(db_session):
    assert count_prices(db_session, symbol=None, start_date=None, end_date=None) == 0


def test_list_prices_orders_by_date_then_symbol_and_pages(db_session, stored_rows):
    everything = list_prices(db_session, symbol=None, start_date=None, end_date=None,
                             limit=1000, offset=0)
    expected = [(symbol, day) for day in DAYS for symbol in SYMBOLS]
    assert keys(everything) == expected
    pages = [keys(list_prices(db_session, symbol=None, start_date=None, end_date=None,
                              limit=7, offset=offset)) for offset in range(0, 30, 7)]
    assert [key for page in pages for key in page] == expected
    assert [len(page) for page in pages] == [7, 7, 7, 7, 2]


def test_list_prices_returns_the_stored_values_exactly(db_session, stored_rows):
    (row,) = list_prices(db_session, symbol="BRK.B", start_date=D(2023, 1, 5),
                         end_date=D(2023, 1, 5), limit=5, offset=0)
    assert (row.symbol, row.date, row.open_price, row.close_price, row.volume) == (
        "BRK.B", D(2023, 1, 5), Decimal("2.05"), Decimal("2.505"), 2005)


def test_list_prices_filters_by_symbol_and_range(db_session, stored_rows):
    rows = list_prices(db_session, symbol="IBM", start_date=D(2023, 1, 9), end_date=D(2023, 1, 11),
                       limit=10, offset=1)
    assert keys(rows) == [("IBM", D(2023, 1, 10)), ("IBM", D(2023, 1, 11))]


def test_list_prices_past_the_end_is_empty(db_session, stored_rows):
    assert list_prices(db_session, symbol=None, start_date=None, end_date=None,
                       limit=5, offset=30) == []
