"""GET /api/financial_data through the test client, on every database backend."""
import datetime
from decimal import Decimal

import pytest
from requests.utils import parse_header_links
from sqlalchemy import insert, update

from app.api.params import MAX_PAGE
from app.extensions import db
from financial.models import FinancialData, MonthlyPriceSums
from tests.helpers import every_listed_row

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
    # A leading zero is the same number, as most APIs read it.
    assert client.get("/api/financial_data?limit=03&page=007").get_json() == last
    assert client.get("/api/financial_data?limit=3&page=" + "0" * 4300 + "7").get_json() == last
    past = client.get("/api/financial_data?limit=3&page=8")
    assert past.status_code == 200
    assert past.get_json() == {"data": [], "info": {"error": ""},
                               "pagination": {"count": 20, "page": 8, "limit": 3, "pages": 7}}
    # Any page past the last (contract: page >= 1), up to the largest JSON keeps exactly.
    assert client.get(f"/api/financial_data?limit=1000&page={MAX_PAGE}").get_json() == {
        "data": [], "info": {"error": ""},
        "pagination": {"count": 20, "page": MAX_PAGE, "limit": 1000, "pages": 1}}


def test_empty_table_has_zero_pages(client):
    body = client.get("/api/financial_data").get_json()
    assert body == {"data": [], "pagination": {"count": 0, "page": 1, "limit": 5, "pages": 0},
                    "info": {"error": ""}}


def page_links(response) -> dict[str, str]:
    """The Link header's targets by relation, as a client's HTTP library reads them."""
    return {link["rel"]: link["url"] for link in parse_header_links(response.headers["Link"])}


def test_following_the_next_links_visits_every_page_once_with_the_same_filters(
        client, twenty_rows):
    url, seen = "/api/financial_data?symbol=IBM,aapl&start_date=2023-01-03&limit=3", []
    while url:
        response = client.get(url)
        seen += keys_of(response.get_json())
        url = page_links(response).get("next")
    assert seen == expected_order(twenty_rows)[2:]
    assert response.get_json()["pagination"] == {"count": 18, "page": 6, "limit": 3, "pages": 6}


def test_link_targets_hold_no_comma_a_naive_parser_would_split_on(client, twenty_rows):
    response = client.get("/api/financial_data?symbol=IBM,aapl&fields=date,volume&limit=3")
    assert [link.split(";")[0] for link in response.headers["Link"].split(", ")] == [
        "</api/financial_data?symbol=IBM%2Caapl&fields=date%2Cvolume&limit=3&page=1>",
        "</api/financial_data?symbol=IBM%2Caapl&fields=date%2Cvolume&limit=3&page=2>",
        "</api/financial_data?symbol=IBM%2Caapl&fields=date%2Cvolume&limit=3&page=7>"]


def test_link_targets_name_each_item_of_a_list_once_as_first_spelled(client, twenty_rows):
    """Repeats are ignored; written back as sent, each link would repeat them all."""
    response = client.get("/api/financial_data?symbol=IBM,aapl,ibm,AAPL,IBM"
                          "&fields=volume,date,volume&limit=3&page=2")
    assert page_links(response) == {
        rel: f"/api/financial_data?symbol=IBM%2Caapl&fields=volume%2Cdate&limit=3&page={page}"
        for rel, page in (("first", 1), ("prev", 1), ("next", 3), ("last", 7))}
    many = ",".join(["ibm"] * 900)
    assert page_links(client.get(f"/api/financial_data?symbol={many}&limit=3")) == {
        "first": "/api/financial_data?symbol=ibm&limit=3&page=1",
        "next": "/api/financial_data?symbol=ibm&limit=3&page=2",
        "last": "/api/financial_data?symbol=ibm&limit=3&page=4"}


def test_a_middle_page_links_the_first_previous_next_and_last_pages(client, twenty_rows):
    response = client.get("/api/financial_data?limit=3&page=4&fields=all")
    assert page_links(response) == {
        "first": "/api/financial_data?limit=3&fields=all&page=1",
        "prev": "/api/financial_data?limit=3&fields=all&page=3",
        "next": "/api/financial_data?limit=3&fields=all&page=5",
        "last": "/api/financial_data?limit=3&fields=all&page=7"}
    assert client.head("/api/financial_data?limit=3&page=4&fields=all").headers["Link"] == (
        response.headers["Link"]), "HEAD answers the headers of GET"


def test_the_first_page_has_no_previous_and_a_page_past_the_last_only_first_and_last(
        client, twenty_rows):
    assert page_links(client.get("/api/financial_data?limit=10")) == {
        "first": "/api/financial_data?limit=10&page=1",
        "next": "/api/financial_data?limit=10&page=2",
        "last": "/api/financial_data?limit=10&page=2"}
    assert page_links(client.get("/api/financial_data?page=9&limit=10")) == {
        "first": "/api/financial_data?limit=10&page=1",
        "last": "/api/financial_data?limit=10&page=2"}


def test_nothing_to_page_through_has_no_link_header(client):
    assert "Link" not in client.get("/api/financial_data?symbol=IBM").headers


def test_a_cached_answer_keeps_its_links(client, twenty_rows):
    url = "/api/financial_data?symbol=IBM&limit=2&page=2"
    first = client.get(url)
    again = client.get(url)
    assert again.get_data() == first.get_data()
    assert page_links(again) == page_links(first) == {
        "first": "/api/financial_data?symbol=IBM&limit=2&page=1",
        "prev": "/api/financial_data?symbol=IBM&limit=2&page=1",
        "next": "/api/financial_data?symbol=IBM&limit=2&page=3",
        "last": "/api/financial_data?symbol=IBM&limit=2&page=5"}


def test_scripts_on_other_origins_may_read_the_links(sqlite_client):
    response = sqlite_client.get("/api/financial_data", headers={"Origin": "https://any.example"})
    assert "Link" in response.headers["Access-Control-Expose-Headers"].split(", ")


def test_a_wide_count_adds_up_the_monthly_sums_a_narrow_one_and_the_export_count_rows(
        app, client, twenty_rows):
    """A sums row edited by hand shows in the wide count only, as in statistics."""
    with app.app_context():
        db.session.execute(update(MonthlyPriceSums).where(MonthlyPriceSums.symbol == "IBM")
                           .values(days=MonthlyPriceSums.days + 100))
        db.session.commit()
    wide = client.get("/api/financial_data").get_json()["pagination"]
    narrow = client.get("/api/financial_data?symbol=IBM&start_date=2023-01-02"
                        "&end_date=2023-01-31").get_json()["pagination"]
    export = client.head("/api/financial_data/export")
    assert (wide["count"], narrow["count"], export.headers["X-Row-Count"]) == (120, 10, "20")


def test_date_range_is_inclusive_and_symbol_case_insensitive(client, twenty_rows):
    url = "/api/financial_data?symbol=ibm&start_date=2023-01-03&end_date=2023-01-05&limit=100"
    body = client.get(url).get_json()
    assert keys_of(body) == [("2023-01-03", "IBM"), ("2023-01-04", "IBM"), ("2023-01-05", "IBM")]
    assert body["pagination"]["count"] == 3


def test_a_one_sided_date_range_bounds_only_that_side(client, twenty_rows):
    start = client.get("/api/financial_data?start_date=2023-01-10&limit=100").get_json()
    assert {row["date"] for row in start["data"]} == {"2023-01-10", "2023-01-11"}
    end = client.get("/api/financial_data?end_date=2023-01-02&limit=100").get_json()
    assert keys_of(end) == [("2023-01-02", "AAPL"), ("2023-01-02", "IBM")]


def test_unknown_symbol_is_an_empty_page(client, twenty_rows):
    body = client.get("/api/financial_data?symbol=MSFT").get_json()
    assert body["data"] == [] and body["pagination"]["count"] == 0


def test_values_are_exact_strings(app, make_price):
    # The columns' extremes, far beyond what the fetch job accepts: inserted
    # without their monthly sums, which SQLite's 64-bit integers could not hold.
    with app.app_context():
        db.session.execute(insert(FinancialData), [
            make_price(symbol="IBM", date=D(2023, 2, 14), open_price=Decimal("150.1000"),
                       close_price=Decimal("12.3456"), volume=62199013),
            make_price(symbol="IBM", date=D(2023, 2, 15), open_price=Decimal("0.0100"),
                       close_price=Decimal("99999999999999.9999"), volume=9223372036854775807),
        ])
        db.session.commit()
    client = app.test_client()
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


# --- fields and symbol lists, on the recorded AlphaVantage answers ------------------------------

ALL_FIELDS_ORDER = ["symbol", "date", "open_price", "high_price", "low_price", "close_price",
                    "adjusted_close_price", "volume", "dividend_amount", "split_coefficient"]
DIVIDEND_DAYS = [
    {"symbol": "AAPL", "date": "2022-11-04", "open_price": "142.09", "high_price": "142.67",
     "low_price": "134.38", "close_price": "138.38", "adjusted_close_price": "137.9951",
     "volume": "140814796", "dividend_amount": "0.23", "split_coefficient": "1.0"},
    {"symbol": "IBM", "date": "2022-11-09", "open_price": "137.95", "high_price": "138.90",
     "low_price": "136.94", "close_price": "137.39", "adjusted_close_price": "135.7157",
     "volume": "4720007", "dividend_amount": "1.65", "split_coefficient": "1.0"},
    {"symbol": "AAPL", "date": "2022-12-23", "open_price": "130.92", "high_price": "132.415",
     "low_price": "129.64", "close_price": "131.86", "adjusted_close_price": "131.6595",
     "volume": "63814893", "dividend_amount": "0.1667", "split_coefficient": "1.0"},
    {"symbol": "IBM", "date": "2023-02-09", "open_price": "134.99", "high_price": "135.73",
     "low_price": "133.34", "close_price": "133.75", "adjusted_close_price": "133.75",
     "volume": "3918817", "dividend_amount": "1.65", "split_coefficient": "1.0"},
    {"symbol": "AAPL", "date": "2023-02-10", "open_price": "149.46", "high_price": "151.3401",
     "low_price": "149.22", "close_price": "151.01", "adjusted_close_price": "151.01",
     "volume": "57450708", "dividend_amount": "0.23", "split_coefficient": "1.0"},
]


def test_fields_all_gives_the_recorded_values_exactly(client, recorded_prices):
    rows = every_listed_row(client, "symbol=IBM,AAPL&fields=all&end_date=2023-03-24")
    assert len(rows) == 200
    assert all(list(row) == ALL_FIELDS_ORDER for row in rows)
    assert [row for row in rows if row["dividend_amount"] != "0.00"] == DIVIDEND_DAYS


def test_unknown_values_are_null(client, recorded_prices):
    body = client.get("/api/financial_data?fields=all&symbol=IBM,MSFT&start_date=2023-03-24"
                      "&end_date=2024-01-26").get_json()
    assert body["data"] == [
        {"symbol": "IBM", "date": "2023-03-24", "open_price": "123.36", "high_price": "125.40",
         "low_price": "122.88", "close_price": "125.29", "adjusted_close_price": "125.29",
         "volume": "3812644", "dividend_amount": "0.00", "split_coefficient": "1.0"},
        {"symbol": "MSFT", "date": "2023-03-24", "open_price": "277.24", "high_price": None,
         "low_price": None, "close_price": "280.57", "adjusted_close_price": None,
         "volume": "28199180", "dividend_amount": None, "split_coefficient": None},
        {"symbol": "IBM", "date": "2024-01-26", "open_price": "191.31", "high_price": "192.3896",
         "low_price": "186.16", "close_price": "187.42", "adjusted_close_price": None,
         "volume": "9895941", "dividend_amount": None, "split_coefficient": None},
    ]


def test_the_default_is_the_original_five_fields(client, recorded_prices):
    body = client.get("/api/financial_data?symbol=IBM&start_date=2022-11-09&limit=1").get_json()
    assert body["data"] == [{"symbol": "IBM", "date": "2022-11-09", "open_price": "137.95",
                             "close_price": "137.39", "volume": "4720007"}]


@pytest.mark.parametrize("fields, keys", [
    ("volume,symbol,close_price", ["symbol", "close_price", "volume"]),
    ("split_coefficient,date,split_coefficient,high_price", ["date", "high_price",
                                                             "split_coefficient"]),
    ("low_price", ["low_price"]),
    ("volume,all", ALL_FIELDS_ORDER),
])
def test_fields_come_in_the_contract_order_whatever_the_order_asked(client, recorded_prices,
                                                                    fields, keys):
    body = client.get(f"/api/financial_data?symbol=AAPL&start_date=2022-12-23&limit=2"
                      f"&fields={fields}").get_json()
    assert [list(row) for row in body["data"]] == [keys, keys]
    assert body["data"][0] == {key: DIVIDEND_DAYS[2][key] for key in keys}


def test_a_symbol_list_with_repeats_and_mixed_case_lists_each_symbol_once(client,
                                                                          recorded_prices):
    query = "start_date=2023-03-23&end_date=2023-12-31&limit=3"
    body = client.get(f"/api/financial_data?symbol=ibm,AAPL,IBM,aapl,nope&{query}").get_json()
    assert keys_of(body) == [("2023-03-23", "AAPL"), ("2023-03-23", "IBM"),
                             ("2023-03-24", "AAPL")]
    assert body["pagination"] == {"count": 4, "page": 1, "limit": 3, "pages": 2}
    second = client.get(f"/api/financial_data?symbol=aapl,ibm&{query}&page=2").get_json()
    assert keys_of(second) == [("2023-03-24", "IBM")]


def test_a_symbol_list_pages_like_the_whole_table(client, recorded_prices):
    listed = every_listed_row(client, "symbol=MSFT,AAPL,IBM")
    assert listed == every_listed_row(client, "fields=symbol,date,open_price,close_price,volume")
    assert len(listed) == 301
    assert [(r["date"], r["symbol"]) for r in listed] == sorted(
        (r["date"], r["symbol"]) for r in listed)


def test_a_hundred_distinct_symbols_are_accepted_even_with_repeats(client, recorded_prices):
    symbols = ["IBM"] + [f"X{n}" for n in range(99)]
    query = ",".join(symbols + [s.lower() for s in symbols[:50]])
    body = client.get(f"/api/financial_data?symbol={query}").get_json()
    assert body["pagination"]["count"] == 200


def test_fields_are_part_of_the_cached_answer(client, recorded_prices):
    url = "/api/financial_data?symbol=IBM&start_date=2023-02-09&limit=1"
    assert list(client.get(url).get_json()["data"][0]) == [
        "symbol", "date", "open_price", "close_price", "volume"]
    assert client.get(url + "&fields=dividend_amount").get_json()["data"] == [
        {"dividend_amount": "1.65"}]
    assert client.get(url + "&fields=all").get_json()["data"] == [DIVIDEND_DAYS[3]]
