"""GET /api/financial_data through the test client, on every database backend."""
import datetime
from decimal import Decimal

import pytest

D = datetime.date


@pytest.fixture
def twenty_rows(make_price, store_prices):
    """Ten days of IBM and AAPL (2023-01-02..2023-01-11), stored shuffled."""
    records = [make_price(symbol=symbol, date=D(2023, 1, 2) + datetime.timedelta(days=offset))
               for offset in range(10) for symbol in ("IBM", "AAPL")]
    store_prices(list(reversed(records)))
    return records


def expected_order(records):
    return [(r["date"].isoformat(), r["symbol"])
            for r in sorted(records, key=lambda r: (r["date"], r["symbol"]))]


def keys_of(body):
    return [(row["date"], row["symbol"]) for row in body["data"]]


def test_defaults_to_the_first_five_rows_by_date_then_symbol(client, twenty_rows):
    response = client.get("/api/financial_data")
    assert response.status_code == 200
    body = response.get_json()
    assert keys_of(body) == expected_order(twenty_rows)[:5]
    assert body["pagination"] == {"count": 20, "page": 1, "limit": 5, "pages": 4}
    assert body["info"] == {"error": ""}


def test_contract_example_page_two_of_seven(client, twenty_rows):
    body = client.get("/api/financial_data?limit=3&page=2").get_json()
    assert body["pagination"] == {"count": 20, "page": 2, "limit": 3, "pages": 7}
    assert keys_of(body) == expected_order(twenty_rows)[3:6]


def test_pages_together_hold_every_row_once_in_order(client, twenty_rows):
    seen = []
    for page in range(1, 8):
        seen += keys_of(client.get(f"/api/financial_data?limit=3&page={page}").get_json())
    assert seen == expected_order(twenty_rows)


def test_last_page_is_partial_and_past_the_end_is_empty(client, twenty_rows):
    last = client.get("/api/financial_data?limit=3&page=7").get_json()
    assert len(last["data"]) == 2
    past = client.get("/api/financial_data?limit=3&page=8")
    assert past.status_code == 200
    assert past.get_json() == {"data": [], "info": {"error": ""},
                               "pagination": {"count": 20, "page": 8, "limit": 3, "pages": 7}}
    huge = client.get(f"/api/financial_data?page={10**30}").get_json()
    assert huge["data"] == [] and huge["pagination"]["count"] == 20


def test_empty_table_has_zero_pages(client):
    body = client.get("/api/financial_data").get_json()
    assert body == {"data": [], "pagination": {"count": 0, "page": 1, "limit": 5, "pages": 0},
                    "info": {"error": ""}}


def test_date_range_is_inclusive_and_symbol_case_insensitive(client, twenty_rows):
    url = "/api/financial_data?symbol=ibm&start_date=2023-01-03&end_date=2023-01-05&limit=100"
    body = client.get(url).get_json()
    assert keys_of(body) == [("2023-01-03", "IBM"), ("2023-01-04", "IBM"), ("2023-01-05", "IBM")]
    assert body["pagination"]["count"] == 3


def test_one_sided_ranges(client, twenty_rows):
    start = client.get("/api/financial_data?start_date=2023-01-10&limit=100").get_json()
    assert {row["date"] for row in start["data"]} == {"2023-01-10", "2023-01-11"}
    end = client.get("/api/financial_data?end_date=2023-01-02&limit=100").get_json()
    assert keys_of(end) == [("2023-01-02", "AAPL"), ("2023-01-02", "IBM")]


def test_unknown_symbol_is_an_empty_page(client, twenty_rows):
    body = client.get("/api/financial_data?symbol=MSFT").get_json()
    assert body["data"] == [] and body["pagination"]["count"] == 0


def test_values_are_exact_strings(client, make_price, store_prices):
    store_prices([
        make_price(symbol="IBM", date=D(2023, 2, 14), open_price=Decimal("150.1000"),
                   close_price=Decimal("12.3456"), volume=62199013),
        make_price(symbol="IBM", date=D(2023, 2, 15), open_price=Decimal("0.0100"),
                   close_price=Decimal("99999999999999.9999"), volume=9223372036854775807),
    ])
    body = client.get("/api/financial_data?symbol=IBM").get_json()
    assert body["data"] == [
        {"symbol": "IBM", "date": "2023-02-14", "open_price": "150.10",
         "close_price": "12.3456", "volume": "62199013"},
        {"symbol": "IBM", "date": "2023-02-15", "open_price": "0.01",
         "close_price": "99999999999999.9999", "volume": "9223372036854775807"},
    ]


def test_symbols_with_dots_are_accepted(client, make_price, store_prices):
    store_prices([make_price(symbol="BRK.B", date=D(2023, 1, 3))])
    body = client.get("/api/financial_data?symbol=brk.b").get_json()
    assert [row["symbol"] for row in body["data"]] == ["BRK.B"]


def test_successful_responses_may_be_cached_by_clients(sqlite_client):
    response = sqlite_client.get("/api/financial_data")
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert response.content_type == "application/json"
