"""GET /api/statistics through the test client, on every database backend."""
import datetime
from decimal import Decimal

D = datetime.date
URL = "/api/statistics?symbol={symbol}&start_date={start}&end_date={end}"


def prices(make_price, symbol, rows):
    """Records for (date, open, close, volume) tuples."""
    return [make_price(symbol=symbol, date=day, open_price=Decimal(op), close_price=Decimal(cl),
                       volume=vol) for day, op, cl, vol in rows]


def test_averages_over_the_inclusive_range(client, make_price, store_prices):
    store_prices(prices(make_price, "IBM", [
        (D(2023, 1, 2), "10.00", "20.00", 100),
        (D(2023, 1, 3), "20.00", "30.00", 200),
        (D(2023, 1, 4), "30.00", "40.00", 300),
        (D(2023, 1, 5), "1000.00", "1000.00", 99999),
    ]) + prices(make_price, "AAPL", [(D(2023, 1, 3), "500.00", "500.00", 5)]))
    response = client.get(URL.format(symbol="ibm", start="2023-01-02", end="2023-01-04"))
    assert response.status_code == 200
    assert response.get_json() == {
        "data": {"start_date": "2023-01-02", "end_date": "2023-01-04", "symbol": "IBM",
                 "average_daily_open_price": 20.0, "average_daily_close_price": 30.0,
                 "average_daily_volume": 200},
        "info": {"error": ""},
    }


def test_a_range_of_one_day_starts_and_ends_on_it(client, make_price, store_prices):
    store_prices(prices(make_price, "IBM", [(D(2023, 1, 2), "10.00", "20.00", 100),
                                            (D(2023, 1, 3), "20.00", "30.00", 200)]))
    response = client.get(URL.format(symbol="IBM", start="2023-01-03", end="2023-01-03"))
    assert response.status_code == 200
    assert response.get_json()["data"] == {
        "start_date": "2023-01-03", "end_date": "2023-01-03", "symbol": "IBM",
        "average_daily_open_price": 20.0, "average_daily_close_price": 30.0,
        "average_daily_volume": 200}


def test_rounds_half_away_from_zero_from_the_exact_mean(client, make_price, store_prices):
    store_prices(prices(make_price, "IBM", [
        (D(2023, 1, 2), "0.0050", "2.1240", 1),
        (D(2023, 1, 3), "0.0000", "2.1260", 2),
    ]))
    body = client.get(URL.format(symbol="IBM", start="2023-01-01", end="2023-01-31")).get_json()
    # open: 0.0025 -> 0.00; close: exactly 2.125 -> 2.13 (banker's rounding would give 2.12);
    # volume: exactly 1.5 -> 2 (banker's rounding would also give 2, see the next test).
    assert body["data"]["average_daily_open_price"] == 0.0
    assert body["data"]["average_daily_close_price"] == 2.13
    assert body["data"]["average_daily_volume"] == 2


def test_half_cases_that_floats_and_bankers_rounding_get_wrong(client, make_price, store_prices):
    store_prices(prices(make_price, "IBM", [
        (D(2023, 1, 2), "1.0050", "0.1150", 2),
        (D(2023, 1, 3), "1.0050", "0.1150", 3),
        (D(2023, 1, 4), "1.0050", "0.1150", 2),
        (D(2023, 1, 5), "1.0050", "0.1150", 3),
    ]))
    body = client.get(URL.format(symbol="IBM", start="2023-01-02", end="2023-01-05")).get_json()
    # float(1.005) rounds to 1.0 and float(0.115) to 0.11; the exact mean rounds up.
    assert body["data"]["average_daily_open_price"] == 1.01
    assert body["data"]["average_daily_close_price"] == 0.12
    # volume mean 2.5 -> 3 (round-half-even would give 2)
    assert body["data"]["average_daily_volume"] == 3


def test_no_stored_day_is_a_404_naming_symbol_and_range(client, make_price, store_prices):
    store_prices(prices(make_price, "IBM", [(D(2023, 1, 2), "1.00", "1.00", 1)]))
    response = client.get(URL.format(symbol="aapl", start="2023-01-01", end="2023-01-31"))
    assert response.status_code == 404
    assert response.get_json() == {
        "data": {},
        "info": {"error": "no data for symbol AAPL between 2023-01-01 and 2023-01-31"},
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_range_outside_the_stored_days_is_a_404(client, make_price, store_prices):
    store_prices(prices(make_price, "IBM", [(D(2023, 1, 2), "1.00", "1.00", 1)]))
    response = client.get(URL.format(symbol="IBM", start="2023-01-03", end="2023-01-31"))
    assert response.status_code == 404
