"""Parsing and classification of AlphaVantage payloads, without any HTTP."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from lib.avantage_api import (
    TIME_SERIES_DAILY,
    TIME_SERIES_DAILY_ADJUSTED,
    AlphaVantageError,
    AlphaVantageTransportError,
    DailyBar,
    InvalidApiKeyError,
    InvalidSymbolError,
    MalformedResponseError,
    PremiumOnlyError,
    RateLimitError,
    classify_error_payload,
    parse_daily_series,
    read_saved_response,
)
from lib.alphavantage import payload as payload_module
from lib.alphavantage.payload import is_short_term_limit
from tests.fake_alphavantage import ALPHAVANTAGE_ERROR_BODIES, ALPHAVANTAGE_FIXTURES
from tests.helpers import naming_a_day_twice, naming_twice

IBM_ADJUSTED = "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"
IBM_DAILY = "IBM_TIME_SERIES_DAILY_compact_2024-06-18.json"
AAPL_ADJUSTED = "AAPL_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"

# The texts AlphaVantage sends (ERROR_TEXTS.md), shared with the fake server.
INVALID_SYMBOL = ALPHAVANTAGE_ERROR_BODIES["invalid_symbol"][1]
UNKNOWN_FUNCTION = ALPHAVANTAGE_ERROR_BODIES["unknown_function"][1]
INVALID_KEY = ALPHAVANTAGE_ERROR_BODIES["invalid_key"][1]
DEMO_KEY = ALPHAVANTAGE_ERROR_BODIES["demo_key"][1]
DAILY_QUOTA = ALPHAVANTAGE_ERROR_BODIES["daily_quota"][1]
BURST_LIMIT = ALPHAVANTAGE_ERROR_BODIES["burst_limit"][1]
MINUTE_LIMIT = ALPHAVANTAGE_ERROR_BODIES["minute_limit"][1]
PREMIUM_ENDPOINT = ALPHAVANTAGE_ERROR_BODIES["premium_endpoint"][1]
PREMIUM_FULL_OUTPUT = ALPHAVANTAGE_ERROR_BODIES["premium_full_output"][1]


def load(name: str) -> dict[str, Any]:
    return json.loads((ALPHAVANTAGE_FIXTURES / name).read_text())


def minimal_daily(fields: Any = None, day: Any = "2023-03-24") -> dict[str, Any]:
    """A one-day TIME_SERIES_DAILY payload for IBM; ``fields`` replaces the day's entry."""
    if fields is None:
        fields = {"1. open": "123.36", "2. high": "125.4", "3. low": "122.88",
                  "4. close": "125.29", "5. volume": "3812644"}
    return {
        "Meta Data": {"1. Information": "Daily Prices (open, high, low, close) and Volumes",
                      "2. Symbol": "IBM"},
        "Time Series (Daily)": {day: fields},
    }


def minimal_adjusted(**changes: str | None) -> dict[str, Any]:
    """A one-day TIME_SERIES_DAILY_ADJUSTED payload for IBM (the 2022-11-09 dividend day).

    Keywords ``_5="..."`` replace the field numbered 5; None removes it.
    """
    fields = {"1. open": "137.95", "2. high": "138.9", "3. low": "136.94", "4. close": "137.39",
              "5. adjusted close": "135.715749630724", "6. volume": "4720007",
              "7. dividend amount": "1.6500", "8. split coefficient": "1.0"}
    for number, value in changes.items():
        (key,) = [name for name in fields if name.startswith(number.lstrip("_") + ".")]
        if value is None:
            del fields[key]
        else:
            fields[key] = value
    payload = minimal_daily(fields)
    payload["Meta Data"]["1. Information"] = "Daily Time Series with Splits and Dividend Events"
    return payload


def with_field(key: str, value: Any) -> dict[str, Any]:
    payload = minimal_daily()
    payload["Time Series (Daily)"]["2023-03-24"][key] = value
    return payload


def without_field(key: str) -> dict[str, Any]:
    payload = minimal_daily()
    del payload["Time Series (Daily)"]["2023-03-24"][key]
    return payload


# --- recorded payloads -------------------------------------------------------------------------

def test_parses_ibm_adjusted_fixture_exactly() -> None:
    series = parse_daily_series(load(IBM_ADJUSTED))

    assert series.symbol == "IBM"
    assert series.function == TIME_SERIES_DAILY_ADJUSTED
    assert len(series.bars) == 100
    assert series.bars[0] == DailyBar(
        date=date(2023, 3, 24), open_price=Decimal("123.36"), high_price=Decimal("125.4"),
        low_price=Decimal("122.88"), close_price=Decimal("125.29"),
        adjusted_close_price=Decimal("125.29"), volume=3812644,
        dividend_amount=Decimal("0.0000"), split_coefficient=Decimal("1.0"))
    assert series.bars[-1] == DailyBar(
        date=date(2022, 10, 31), open_price=Decimal("138.06"), high_price=Decimal("138.7699"),
        low_price=Decimal("136.595"), close_price=Decimal("138.29"),
        adjusted_close_price=Decimal("134.9837"), volume=4915270,
        dividend_amount=Decimal("0.0000"), split_coefficient=Decimal("1.0"))
    assert all(isinstance(bar.open_price, Decimal) for bar in series.bars)
    assert all(type(bar.volume) is int for bar in series.bars)


def test_adjusted_close_is_the_raw_close_on_a_dividend_affected_day() -> None:
    payload = load(IBM_ADJUSTED)
    raw_day = payload["Time Series (Daily)"]["2023-02-08"]
    assert raw_day["5. adjusted close"] != raw_day["4. close"]  # the fixture really differs here

    bars = {bar.date: bar for bar in parse_daily_series(payload).bars}

    assert bars[date(2023, 2, 8)].close_price == Decimal("135.98")
    assert bars[date(2023, 2, 8)].volume == 4593748  # "6. volume", not "7. dividend amount"


def test_parses_ibm_daily_fixture_keeping_the_api_digits() -> None:
    series = parse_daily_series(load(IBM_DAILY))

    assert series.symbol == "IBM"
    assert series.function == TIME_SERIES_DAILY
    assert len(series.bars) == 100
    newest = series.bars[0]
    assert newest == DailyBar(
        date=date(2024, 6, 18), open_price=Decimal("170.0000"), high_price=Decimal("170.7500"),
        low_price=Decimal("168.3800"), close_price=Decimal("170.5500"), volume=3386442)
    assert (newest.adjusted_close_price, newest.dividend_amount, newest.split_coefficient) == (
        None, None, None)
    assert str(newest.open_price) == "170.0000"
    assert series.bars[-1].date == date(2024, 1, 26)


def test_parses_aapl_adjusted_fixture() -> None:
    series = parse_daily_series(load(AAPL_ADJUSTED))

    assert series.symbol == "AAPL"
    assert series.bars[0] == DailyBar(
        date=date(2023, 3, 24), open_price=Decimal("158.86"), high_price=Decimal("160.34"),
        low_price=Decimal("157.85"), close_price=Decimal("160.25"),
        adjusted_close_price=Decimal("160.25"), volume=59256343,
        dividend_amount=Decimal("0.0000"), split_coefficient=Decimal("1.0"))


@pytest.mark.parametrize("name", [IBM_ADJUSTED, IBM_DAILY, AAPL_ADJUSTED])
def test_bars_are_newest_first_whatever_the_payload_order(name: str) -> None:
    payload = load(name)
    days = payload["Time Series (Daily)"]
    payload["Time Series (Daily)"] = dict(reversed(list(days.items())))

    dates = [bar.date for bar in parse_daily_series(payload).bars]

    assert dates == sorted(dates, reverse=True)
    assert len(set(dates)) == 100


def test_adjusted_layout_is_recognised_without_meta_data() -> None:
    payload = load(IBM_ADJUSTED)
    del payload["Meta Data"]

    series = parse_daily_series(payload, "ibm")

    assert series.function == TIME_SERIES_DAILY_ADJUSTED
    assert series.bars[0].volume == 3812644


def test_given_symbol_wins_and_is_upper_cased() -> None:
    assert parse_daily_series(load(IBM_DAILY), " msft ").symbol == "MSFT"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("170.0000", "170.0000"), ("123.36", "123.36"), ("175", "175"), ("0", "0"),
     ("999999999.9999", "999999999.9999")],
)
def test_price_formats_parse_exactly(raw: str, expected: str) -> None:
    payload = minimal_daily({"1. open": raw, "2. high": raw, "3. low": raw, "4. close": raw,
                             "5. volume": "1"})
    bar = parse_daily_series(payload).bars[0]

    assert isinstance(bar.open_price, Decimal)
    assert [str(price) for price in (bar.open_price, bar.high_price, bar.low_price,
                                     bar.close_price)] == [expected] * 4


@pytest.mark.parametrize("raw", ["0", "99999999999999", "000123"])
def test_volumes_from_zero_to_the_column_maximum_are_accepted(raw: str) -> None:
    assert parse_daily_series(with_field("5. volume", raw)).bars[0].volume == int(raw)


def raw_days(name: str) -> dict[str, dict[str, str]]:
    return load(name)["Time Series (Daily)"]


@pytest.mark.parametrize("name", [IBM_ADJUSTED, IBM_DAILY, AAPL_ADJUSTED])
def test_high_and_low_keep_the_file_digits_on_every_day(name: str) -> None:
    days = raw_days(name)
    bars = parse_daily_series(load(name)).bars

    assert [(str(bar.high_price), str(bar.low_price)) for bar in bars] == [
        (days[bar.date.isoformat()]["2. high"], days[bar.date.isoformat()]["3. low"])
        for bar in bars]


@pytest.mark.parametrize("name", [IBM_ADJUSTED, AAPL_ADJUSTED])
def test_dividend_and_split_keep_the_file_digits_on_every_day(name: str) -> None:
    days = raw_days(name)
    bars = parse_daily_series(load(name)).bars

    assert [(str(bar.dividend_amount), str(bar.split_coefficient)) for bar in bars] == [
        (days[bar.date.isoformat()]["7. dividend amount"],
         days[bar.date.isoformat()]["8. split coefficient"]) for bar in bars]


@pytest.mark.parametrize(("name", "dividends"), [
    (IBM_ADJUSTED, {date(2023, 2, 9): "1.6500", date(2022, 11, 9): "1.6500"}),
    (AAPL_ADJUSTED, {date(2023, 2, 10): "0.2300", date(2022, 12, 23): "0.1667",
                     date(2022, 11, 4): "0.2300"}),
])
def test_the_recorded_dividends_are_exactly_those_of_the_file(name: str, dividends) -> None:
    bars = parse_daily_series(load(name)).bars

    assert {bar.date: str(bar.dividend_amount) for bar in bars if bar.dividend_amount} == dividends


@pytest.mark.parametrize(("name", "day", "adjusted"), [
    (IBM_ADJUSTED, date(2023, 3, 24), "125.29"),           # as sent: no rounding needed
    (IBM_ADJUSTED, date(2023, 2, 8), "134.3229"),          # "134.322932053176"
    (IBM_ADJUSTED, date(2022, 11, 9), "135.7157"),         # "135.715749630724"
    (IBM_ADJUSTED, date(2022, 12, 28), "138.3137"),        # "138.31370014771"
    (AAPL_ADJUSTED, date(2022, 12, 23), "131.6595"),       # "131.659472361809"
    (AAPL_ADJUSTED, date(2022, 11, 4), "137.9951"),        # "137.995100880558"
])
def test_adjusted_close_is_rounded_to_the_column_four_places(
        name: str, day: date, adjusted: str) -> None:
    bars = {bar.date: bar for bar in parse_daily_series(load(name)).bars}

    assert str(bars[day].adjusted_close_price) == adjusted


def test_adjusted_close_rounds_half_away_from_zero() -> None:
    def adjusted(raw: str) -> str:
        return str(parse_daily_series(minimal_adjusted(_5=raw)).bars[0].adjusted_close_price)

    assert adjusted("135.71235") == "135.7124"
    assert adjusted("135.71234999999999999999") == "135.7123"
    assert adjusted("135.7") == "135.7"


def test_one_decimal_prices_are_kept_as_sent() -> None:
    bar = parse_daily_series(load(IBM_ADJUSTED)).bars[0]

    assert (str(bar.high_price), str(bar.low_price)) == ("125.4", "122.88")


def test_daily_series_carry_no_adjusted_values() -> None:
    bars = parse_daily_series(load(IBM_DAILY)).bars

    assert {(bar.adjusted_close_price, bar.dividend_amount, bar.split_coefficient)
            for bar in bars} == {(None, None, None)}


# --- malformed payloads ------------------------------------------------------------------------

PER_DAY_CASES = {
    "entry not an object": minimal_daily(fields=["123.36"]),
    "missing open": without_field("1. open"),
    "missing close": without_field("4. close"),
    "missing volume": without_field("5. volume"),
    "missing high": without_field("2. high"),
    "missing low": without_field("3. low"),
    "high not a number": with_field("2. high", "n/a"),
    "low negative": with_field("3. low", "-122.88"),
    "high below low": minimal_daily({"1. open": "10", "2. high": "9", "3. low": "11",
                                     "4. close": "10", "5. volume": "1"}),
    "high below the close": with_field("2. high", "125.28"),
    "high below the open": with_field("2. high", "123.35"),
    "high below the open alone": with_field("1. open", "125.41"),
    "low above the open": with_field("3. low", "123.37"),
    "low above the close": minimal_daily({"1. open": "124", "2. high": "125.4",
                                          "3. low": "123.01", "4. close": "123",
                                          "5. volume": "1"}),
    "adjusted close not a number": minimal_adjusted(_5="x"),
    "adjusted close missing": minimal_adjusted(_5=None),
    "dividend missing": minimal_adjusted(_7=None),
    "split missing": minimal_adjusted(_8=None),
    "adjusted close negative": minimal_adjusted(_5="-1.5"),
    "adjusted close 21 decimals": minimal_adjusted(_5="1." + "1" * 21),
    "adjusted close exponent": minimal_adjusted(_5="1.3E+2"),
    "dividend five decimals": minimal_adjusted(_7="1.65001"),
    "dividend negative": minimal_adjusted(_7="-1.65"),
    "dividend empty": minimal_adjusted(_7=""),
    "split zero": minimal_adjusted(_8="0.0"),
    "split nine decimals": minimal_adjusted(_8="0.333333333"),
    "split of a billion": minimal_adjusted(_8="1000000000"),
    "split not a number": minimal_adjusted(_8="one"),
    "price not a number": with_field("1. open", "abc"),
    "price empty": with_field("4. close", ""),
    "price NaN": with_field("1. open", "NaN"),
    "price sNaN": with_field("1. open", "sNaN"),
    "price infinite": with_field("1. open", "Infinity"),
    "price minus infinite": with_field("4. close", "-Infinity"),
    "price negative": with_field("4. close", "-1.25"),
    "price negative zero": with_field("4. close", "-0"),
    "price exponent": with_field("1. open", "1E+2"),
    "price underscore": with_field("1. open", "1_000"),
    "price whitespace": with_field("1. open", " 12.5"),
    # The short way checks a field's values joined by spaces: a space inside one is no separator.
    "price holding a space": with_field("1. open", "123 36"),
    "two prices in one, one empty": minimal_daily({"1. open": "123.36 125.4", "2. high": "",
                                                   "3. low": "122.88", "4. close": "125.29",
                                                   "5. volume": "3812644"}),
    "volume holding a space": with_field("5. volume", "3812 644"),
    "dividend holding a space": minimal_adjusted(_7="1.65 1.0"),
    "split holding a space": minimal_adjusted(_8="1.0 "),
    "price five decimals": with_field("1. open", "123.36001"),
    "price of a billion": with_field("1. open", "1000000000"),
    "price float": with_field("1. open", 123.36),
    "price null": with_field("4. close", None),
    "volume negative": with_field("5. volume", "-1"),
    "volume fraction": with_field("5. volume", "1.5"),
    "volume word": with_field("5. volume", "many"),
    "volume empty": with_field("5. volume", ""),
    "volume of 10**14": with_field("5. volume", "100000000000000"),
    "volume huge": with_field("5. volume", "9" * 5000),
    "volume non-ascii digits": with_field("5. volume", "\u0663\u0664"),
    # Decimal() reads any script's digits; the column takes ASCII digits only.
    "price non-ascii digits": with_field("1. open", "\u0661\u0662\u0663.36"),
    "price non-ascii decimals": with_field("1. open", "123.\u0663\u0666"),
    "adjusted close non-ascii decimals": minimal_adjusted(_5="135.\u0667\u0661"),
    "volume not a string": with_field("5. volume", 3812644),
}


@pytest.mark.parametrize("payload", PER_DAY_CASES.values(), ids=PER_DAY_CASES.keys())
def test_malformed_day_names_symbol_and_day(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_daily_series(payload)

    assert "IBM 2023-03-24" in str(caught.value)
    assert caught.value.symbol == "IBM"


@pytest.mark.parametrize(("payload", "message"), [
    (minimal_daily({"1. open": "10", "2. high": "9", "3. low": "11", "4. close": "10",
                    "5. volume": "1"}), "IBM 2023-03-24: '2. high' 9 is below '3. low' 11"),
    (with_field("2. high", "125.28"),
     r"IBM 2023-03-24: '2. high' 125.28 is below the open or close \(125.29\)"),
    (with_field("3. low", "123.37"),
     r"IBM 2023-03-24: '3. low' 123.37 is above the open or close \(123.36\)"),
    (minimal_adjusted(_8="0.0"), "IBM 2023-03-24: '8. split coefficient' is '0.0', zero"),
    (minimal_daily(fields=["123.36"]), "IBM 2023-03-24: the day's entry is not a JSON object"),
    (minimal_adjusted(_7="1.65001"),
     r"'7. dividend amount' is '1.65001', more than 4 decimal places \(column is DECIMAL"),
    (with_field("1. open", "123.36001"),
     r"'1. open' is '123.36001', more than 4 decimal places \(column is DECIMAL\(18,4\)\)"),
    (minimal_adjusted(_8="0.333333333"),
     r"'8. split coefficient' is '0.333333333', more than 8 decimal places "
     r"\(column is DECIMAL\(18,8\)\)"),
    (minimal_adjusted(_5="1000000000"),
     "'5. adjusted close' is '1000000000', 1,000,000,000 or more, beyond any real value"),
    (minimal_adjusted(_5="999999999.99995"),
     "'5. adjusted close' is '999999999.99995', 1,000,000,000 or more once rounded to 4 "
     "places, beyond any real value"),
])
def test_malformed_values_are_explained(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message):
        parse_daily_series(payload)


# Quoted, "x" * 38 is 40 characters, the longest a message shows whole.
@pytest.mark.parametrize(("payload", "problem"), [
    (with_field("1. open", "abc"), "'1. open' is 'abc', not a number"),
    (with_field("1. open", "NaN"), "'1. open' is 'NaN', not a number (NaN)"),
    (with_field("1. open", "Infinity"), "'1. open' is 'Infinity', infinite"),
    (with_field("4. close", "-1.25"), "'4. close' is '-1.25', negative"),
    (with_field("1. open", "1E+2"), "'1. open' is '1E+2', not a plain decimal number"),
    (with_field("1. open", "1000000000"),
     "'1. open' is '1000000000', 1,000,000,000 or more, beyond any real value"),
    (with_field("1. open", 123.36), "'1. open' is 123.36, not a string"),
    (with_field("5. volume", "-1"), "'5. volume' is '-1', not a non-negative integer"),
    (with_field("5. volume", "100000000000000"),
     "'5. volume' is '100000000000000', beyond any real volume (max 99,999,999,999,999)"),
    (with_field("1. open", "x" * 38), f"'1. open' is '{'x' * 38}', not a number"),
    (with_field("1. open", "x" * 39), f"'1. open' is '{'x' * 36}..., not a number"),
])
def test_each_bad_value_is_named_with_its_problem(payload: dict[str, Any], problem: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_daily_series(payload)

    assert str(caught.value) == f"IBM 2023-03-24: {problem}"


def test_a_day_whose_high_or_low_equals_its_open_or_close_is_valid() -> None:
    payload = minimal_daily({"1. open": "10", "2. high": "10.0", "3. low": "10.0000",
                             "4. close": "10", "5. volume": "1"})

    bar = parse_daily_series(payload).bars[0]

    assert (bar.high_price, bar.low_price) == (Decimal(10), Decimal(10))


def test_adjusted_payload_needs_six_volume() -> None:
    payload = load(IBM_ADJUSTED)
    del payload["Time Series (Daily)"]["2023-03-01"]["6. volume"]

    with pytest.raises(MalformedResponseError, match="IBM 2023-03-01: field '6. volume' is"):
        parse_daily_series(payload)


def test_the_meta_description_names_the_adjusted_layout_even_without_its_fields() -> None:
    payload = minimal_adjusted(_5=None, _6=None)

    with pytest.raises(MalformedResponseError, match="IBM 2023-03-24: field '6. volume' is"):
        parse_daily_series(payload)


@pytest.mark.parametrize(
    "day", ["2023-13-01", "2023-02-30", "2023-3-24", "20230324", "yesterday", "2023-03-24T00:00",
            "2023-W12-5", "\uff12\uff10\uff12\uff13-\uff10\uff13-\uff12\uff14", ""],
)
@pytest.mark.parametrize("layout", [minimal_daily, minimal_adjusted])
def test_bad_date_key_is_named(day: str, layout: Callable[[], dict[str, Any]]) -> None:
    payload = layout()
    (fields,) = payload["Time Series (Daily)"].values()
    payload["Time Series (Daily)"] = {day: fields}

    with pytest.raises(MalformedResponseError) as caught:
        parse_daily_series(payload)

    assert str(caught.value).startswith("IBM: day ")
    assert repr(day) in str(caught.value)
    assert caught.value.symbol == "IBM"


def test_one_bad_day_rejects_the_whole_series() -> None:
    payload = load(IBM_DAILY)
    payload["Time Series (Daily)"]["2024-03-01"]["4. close"] = "n/a"

    with pytest.raises(MalformedResponseError, match=r"IBM 2024-03-01: '4. close' is 'n/a'"):
        parse_daily_series(payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"Meta Data": {"2. Symbol": "IBM"}}, r"IBM: the response has no '.*' object"),
        ({"Meta Data": {"2. Symbol": "IBM"}, "Time Series (Daily)": []}, "IBM: the response has"),
        ({"Meta Data": {"2. Symbol": "IBM"}, "Time Series (Daily)": {}}, "IBM: .* holds no days"),
        ({"Time Series (Daily)": {}}, "no symbol"),
        ({"Meta Data": {"2. Symbol": "  "}, "Time Series (Daily)": {}}, "no symbol"),
        ({"Meta Data": {"2. Symbol": "ibm corp; drop table x"}, "Time Series (Daily)": {}},
         "symbol 'ibm corp; drop table x' is not a ticker"),
        ({"Meta Data": {"2. Symbol": "A" * 17}, "Time Series (Daily)": {}}, "is not a ticker"),
        ({"Meta Data": {"2. Symbol": 42}, "Time Series (Daily)": {}},
         r"^the payload's symbol 42 is not a ticker$"),
        ({"Meta Data": {"2. Symbol": ["IBM"]}, "Time Series (Daily)": {}},
         r"^the payload's symbol \['IBM'\] is not a ticker$"),
        ({"Meta Data": {"2. Symbol": None}, "Time Series (Daily)": {}}, "^no symbol"),
        (["not", "an", "object"], "^the response is not a JSON object$"),
    ],
)
def test_malformed_series_is_refused_naming_the_fault(payload: Any, message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message):
        parse_daily_series(payload)


def test_malformed_message_cuts_long_values_short() -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_daily_series(with_field("1. open", "x" * 10_000))

    assert len(str(caught.value)) < 120


# --- error bodies ------------------------------------------------------------------------------

CLASSIFICATION = [
    ("Error Message", INVALID_SYMBOL, InvalidSymbolError),
    ("Error Message", UNKNOWN_FUNCTION, AlphaVantageError),
    ("Error Message", INVALID_KEY, InvalidApiKeyError),
    ("Information", DEMO_KEY, InvalidApiKeyError),
    ("Information", DAILY_QUOTA, RateLimitError),
    ("Note", DAILY_QUOTA, RateLimitError),
    ("Information", BURST_LIMIT, RateLimitError),
    ("Note", MINUTE_LIMIT, RateLimitError),
    ("Information", PREMIUM_ENDPOINT, PremiumOnlyError),
    ("Information", PREMIUM_FULL_OUTPUT, PremiumOnlyError),
    ("Information", "Something new from AlphaVantage.", AlphaVantageError),
]


@pytest.mark.parametrize(("key", "text", "expected"), CLASSIFICATION)
def test_every_known_text_maps_to_its_exception(key: str, text: str, expected: type) -> None:
    error = classify_error_payload({key: text}, "IBM")

    assert type(error) is expected
    assert error.symbol == "IBM"
    assert "IBM" in str(error)
    assert text in str(error)


@pytest.mark.parametrize(
    ("key", "text", "is_daily_quota"),
    [("Information", BURST_LIMIT, False), ("Note", MINUTE_LIMIT, False),
     ("Information", DAILY_QUOTA, True), ("Note", DAILY_QUOTA, True)],
)
def test_rate_limits_tell_burst_from_daily_quota(key: str, text: str, is_daily_quota: bool) -> None:
    error = classify_error_payload({key: text}, "IBM")

    assert isinstance(error, RateLimitError)
    assert error.is_daily_quota is is_daily_quota
    assert ("daily quota is spent" in str(error)) is is_daily_quota


@pytest.mark.parametrize(
    "payload",
    [load(IBM_DAILY), {**load(IBM_DAILY), "Information": PREMIUM_ENDPOINT}, {}, [], "text", None],
    ids=["series", "series with a notice", "empty", "list", "string", "null"],
)
def test_non_error_bodies_are_not_classified(payload: Any) -> None:
    assert classify_error_payload(payload, "IBM") is None


def test_error_message_wins_over_information() -> None:
    error = classify_error_payload({"Information": BURST_LIMIT, "Error Message": INVALID_SYMBOL},
                                   "IBM")

    assert type(error) is InvalidSymbolError


@pytest.mark.parametrize(
    "exc_type",
    [RateLimitError, InvalidSymbolError, InvalidApiKeyError, PremiumOnlyError,
     MalformedResponseError, AlphaVantageTransportError],
)
def test_every_client_error_is_an_alphavantage_error_with_its_symbol(exc_type: type) -> None:
    error = exc_type("message", "IBM")

    assert isinstance(error, AlphaVantageError)
    assert error.symbol == "IBM"
    assert str(error) == "message"


@pytest.mark.parametrize("name", [IBM_ADJUSTED, AAPL_ADJUSTED, IBM_DAILY])
def test_the_short_way_reads_every_recorded_day_as_the_full_checks_do(name):
    series = load(name)["Time Series (Daily)"]
    function = payload_module._series_function(load(name), series)
    short_way = payload_module._plain_series(series, function)
    checked = [payload_module._checked_bar("IBM", day, fields, function)
               for day, fields in series.items()]
    assert short_way is not None
    # repr shows each Decimal's digits: 125.4 and 125.4000 are equal, not the same.
    assert list(map(repr, short_way)) == list(map(repr, checked))


def outcome(payload: dict[str, Any]) -> str:
    """What parsing the payload gives: the series' repr, or the error's type and text."""
    try:
        return repr(parse_daily_series(payload))
    except MalformedResponseError as error:
        return f"{type(error).__name__}: {error}"


# Values at the edges of the columns' bounds, each inside some column and outside others.
EDGE_TEXTS = ["0", "0.0", "1.23456", "0.33333333", "0.333333333", "999999999.9999",
              "1000000000", "99999999999999", "100000000000000", "1." + "1" * 20,
              "1." + "1" * 21]
# Other odd values, valid or refused, many of them what a pattern checking a field's values
# joined could miss.
ODD_TEXTS: list[Any] = [
    *EDGE_TEXTS, "0000000123.45", "000000000000000123", "123.456789012345", "123.45665",
    "00", "-0", "-1.5", "1.", ".5", "1e5", "1E+2", "NaN", "Infinity", "1_000", " 1", "1 ",
    "1 2", "1  2", "", " ", "\u0661\u0662", "12.\u0663", "1\n2", 1.5, 7, None, [], ["1"],
    {"1": "2"}, True,
]
ODD_DATES = ["2023-02-30", "20230324", "2023-3-24", "2023-03-24 ", "2023-03-2\u0664", ""]
FIELD_KEYS = {
    TIME_SERIES_DAILY: ("1. open", "2. high", "3. low", "4. close", "5. volume"),
    TIME_SERIES_DAILY_ADJUSTED: ("1. open", "2. high", "3. low", "4. close",
                                 "5. adjusted close", "6. volume", "7. dividend amount",
                                 "8. split coefficient"),
}


def random_price(rng: random.Random) -> str:
    places = rng.choice([0, 1, 2, 4])
    text = str(rng.choice([0, rng.randint(0, 999), rng.randint(0, 999_999_999)]))
    return f"{text}.{rng.randint(0, 10**places - 1):0{places}d}" if places else text


def random_day(rng: random.Random, function: str, oddness: float) -> Any:
    """A day's entry: plain values, high and low mostly around open and close, some odd."""
    prices = [random_price(rng) for _ in range(4)]
    if rng.random() < 0.98:
        prices.sort(key=Decimal)
    low, open_price, close, high = prices
    if rng.random() < 0.5:
        open_price, close = close, open_price
    volume = str(rng.randint(0, 10**rng.randint(1, 14) - 1))
    more_places = close + ("" if "." in close else ".") + str(rng.randint(0, 10**8))
    values = {
        "1. open": open_price, "2. high": high, "3. low": low, "4. close": close,
        "5. adjusted close": rng.choice([close, random_price(rng), more_places]),
        "5. volume": volume, "6. volume": volume,
        "7. dividend amount": rng.choice(["0.0000", "0.0000", "0.5000", "1.65"]),
        "8. split coefficient": rng.choice(["1.0", "1.0", "2.0", "0.5"]),
    }
    fields = {key: values[key] for key in FIELD_KEYS[function]}
    for key in fields:
        if rng.random() < oddness:
            # An odd value, or the same with leading zeros: valid, not plain.
            fields[key] = ("0" * 15 + fields[key] if rng.random() < 0.3
                           else rng.choice(ODD_TEXTS))
    if rng.random() < oddness / 4:
        del fields[rng.choice(list(fields))]
    if rng.random() < oddness / 8:
        return rng.choice([[], "day", None, list(fields.values())])
    return fields


def random_payload(rng: random.Random) -> dict[str, Any]:
    function = rng.choice(list(FIELD_KEYS))
    # Series plain throughout or but for one value, and series with odd values here and there.
    oddness = rng.choice([0.0, 0.0, 0.0, 0.01, 0.05, 0.2])
    days = {}
    for offset in range(rng.randint(1, 12)):
        day = (date(2023, 1, 2) + timedelta(days=offset)).isoformat()
        if rng.random() < oddness:
            day = rng.choice(ODD_DATES)
        days[day] = random_day(rng, function, oddness)
    if oddness == 0.0 and rng.random() < 0.5:  # plain but for one value at a column's edge
        fields = rng.choice(list(days.values()))
        fields[rng.choice(list(fields))] = rng.choice(EDGE_TEXTS)
    information = ("Daily Time Series with Splits and Dividend Events"
                   if function == TIME_SERIES_DAILY_ADJUSTED else "Daily Prices")
    return {"Meta Data": {"1. Information": information, "2. Symbol": "IBM"},
            "Time Series (Daily)": days}


def test_the_short_way_and_the_full_checks_agree_on_varied_series(monkeypatch):
    """Each series gives the same bars, digits included, or the same refusal, either way."""
    rng = random.Random(41)
    payloads = [random_payload(rng) for _ in range(3000)]
    plain_series = payload_module._plain_series
    read_the_short_way = []

    def noting_the_short_way(series, function):
        bars = plain_series(series, function)
        read_the_short_way.append(bars is not None)
        return bars

    monkeypatch.setattr(payload_module, "_plain_series", noting_the_short_way)
    outcomes = [outcome(payload) for payload in payloads]
    monkeypatch.setattr(payload_module, "_plain_series", lambda series, function: None)
    for payload, expected in zip(payloads, outcomes):
        assert outcome(payload) == expected, payload
    # The seed reaches every way: series read the short way, and series refused by it
    # that the full checks read or refuse.
    assert sum(read_the_short_way) > 1000
    assert sum("MalformedResponseError" in text for text in outcomes) > 500
    assert sum("DailySeries" in text for text in outcomes) > sum(read_the_short_way) + 50


@pytest.mark.parametrize("payload", [minimal_adjusted(), minimal_daily()])
def test_a_day_read_the_short_way_is_a_bar_as_its_class_makes_it(payload):
    (bar,) = parse_daily_series(payload).bars
    made = DailyBar(**{name: getattr(bar, name) for name in DailyBar.__slots__})
    assert type(bar) is DailyBar
    assert (bar, repr(bar), hash(bar)) == (made, repr(made), hash(made))
    with pytest.raises(dataclasses.FrozenInstanceError):
        bar.volume = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", [IBM_ADJUSTED, IBM_DAILY])
def test_a_plain_day_s_bar_is_built_without_its_class_s_init(name, monkeypatch):
    """A frozen dataclass's __init__ sets each field through object.__setattr__: twice the cost."""
    def init(*args, **kwargs):
        raise AssertionError("a plain day's bar went through DailyBar.__init__")

    monkeypatch.setattr(DailyBar, "__init__", init)
    assert parse_daily_series(load(name)).bars


@pytest.mark.parametrize("name", [IBM_ADJUSTED, AAPL_ADJUSTED, IBM_DAILY])
def test_every_recorded_day_takes_the_short_way(name, monkeypatch):
    """The full checks are for the odd day: never a plain one, 12-decimal adjusted closes too."""
    def full_checks(*args):
        raise AssertionError(f"a plain day took the full checks: {args[1]}")

    monkeypatch.setattr(payload_module, "_checked_bar", full_checks)
    assert parse_daily_series(load(name)).bars


@pytest.mark.parametrize("raw, value", [
    ("0000000123.45", Decimal("123.45")),      # too many digits for the short way, still valid
    ("123.456789012345", Decimal("123.4568")),  # rounded half away from zero to 4 places
    ("123.45675", Decimal("123.4568")),
    ("123.45665", Decimal("123.4567")),
])
def test_values_off_the_short_way_are_read_as_before(raw, value):
    series = parse_daily_series(minimal_adjusted(_5=raw))
    assert series.bars[0].adjusted_close_price == value


@pytest.mark.parametrize("changes, field, value", [
    ({"_8": "0.33333333"}, "split_coefficient", Decimal("0.33333333")),
    ({"_8": "999999999.99999999"}, "split_coefficient", Decimal("999999999.99999999")),
    ({"_8": "100000000"}, "split_coefficient", Decimal("100000000")),
    ({"_5": "999999999.9999"}, "adjusted_close_price",
     Decimal("999999999.9999")),
    ({"_5": "999999999.99994999"}, "adjusted_close_price", Decimal("999999999.9999")),
    ({"_5": "100000000.5"}, "adjusted_close_price", Decimal("100000000.5")),
])
def test_values_just_inside_their_columns_are_kept_exactly(changes, field, value):
    assert getattr(parse_daily_series(minimal_adjusted(**changes)).bars[0], field) == value


def fully_checked(**changes: str) -> DailyBar:
    """Parse a one-day adjusted payload whose open has leading zeros, off the short way."""
    return parse_daily_series(minimal_adjusted(**{"_1": "0000000137.95", **changes})).bars[0]


def test_the_full_checks_round_half_away_from_zero_and_read_volumes_as_the_short_way():
    assert fully_checked(_5="123.45665").adjusted_close_price == Decimal("123.4567")
    assert fully_checked(_5="123.45664999").adjusted_close_price == Decimal("123.4566")
    assert fully_checked(_6="0").volume == 0
    assert fully_checked(_6="99999999999999").volume == 99999999999999
    assert fully_checked(_6="000000000000000123").volume == 123


def test_the_full_checks_accept_a_day_whose_high_equals_its_low():
    bar = fully_checked(_1="0000000010", _2="10", _3="10.00", _4="10")
    assert (bar.open_price, bar.high_price, bar.low_price, bar.close_price) == (Decimal(10),) * 4


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read a JSON response (IsADirectoryError)"),
    (b"{not json", "cannot read a JSON response (JSONDecodeError)"),
    (b"\xff{}", "cannot read a JSON response (UnicodeDecodeError)"),
])
def test_a_saved_file_that_cannot_be_read_says_why_leaving_the_file_to_its_caller(
        tmp_path, content, reason) -> None:
    saved = tmp_path / "broken.json"
    if content is None:
        saved.mkdir()
    else:
        saved.write_bytes(content)

    with pytest.raises(AlphaVantageError) as caught:
        read_saved_response(saved)

    assert (str(caught.value), caught.value.symbol) == (reason, None)


def test_a_saved_error_answer_raises_as_that_error_naming_no_symbol(tmp_path) -> None:
    key, text = ALPHAVANTAGE_ERROR_BODIES["daily_quota"]
    saved = tmp_path / "quota.json"
    saved.write_text(json.dumps({key: text}))

    with pytest.raises(RateLimitError) as caught:
        read_saved_response(saved)

    assert str(caught.value) == f"the AlphaVantage daily quota is spent: {text}"
    assert caught.value.is_daily_quota and caught.value.symbol is None


@pytest.mark.parametrize("payload, error_type, message", [
    ({"Error Message": INVALID_SYMBOL}, InvalidSymbolError,
     f"invalid symbol: AlphaVantage says: {INVALID_SYMBOL}"),
    ({"Error Message": UNKNOWN_FUNCTION}, AlphaVantageError,
     f"AlphaVantage error: {UNKNOWN_FUNCTION}"),
    ({"Error Message": INVALID_KEY}, InvalidApiKeyError,
     f"AlphaVantage rejected the API key: {INVALID_KEY}"),
    ({"Information": DEMO_KEY}, InvalidApiKeyError,
     f"AlphaVantage rejected the API key: {DEMO_KEY}"),
    ({"Information": BURST_LIMIT}, RateLimitError,
     f"AlphaVantage short-term rate limit: {BURST_LIMIT}"),
    ({"Information": PREMIUM_ENDPOINT}, PremiumOnlyError,
     f"premium-only AlphaVantage request: {PREMIUM_ENDPOINT}"),
    ({"Note": "Down for maintenance."}, AlphaVantageError,
     "AlphaVantage notice: Down for maintenance."),
])
def test_an_error_answer_asked_for_no_symbol_names_none(payload, error_type, message) -> None:
    error = classify_error_payload(payload, None)
    assert (type(error), error.message, error.symbol) == (error_type, message, None)


def test_a_saved_series_is_read_as_its_payload_is_parsed(tmp_path) -> None:
    saved = tmp_path / "ibm.json"
    saved.write_text(json.dumps(load(IBM_DAILY)))

    assert read_saved_response(saved) == parse_daily_series(load(IBM_DAILY))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be", "utf-32"])
def test_a_saved_series_in_another_json_encoding_reads_as_in_utf_8(tmp_path, encoding) -> None:
    """Editors and Windows PowerShell write a byte-order mark, or UTF-16; requests reads a
    live answer's the same way."""
    saved = tmp_path / "ibm.json"
    saved.write_bytes(json.dumps(load(IBM_DAILY), ensure_ascii=False).encode(encoding))

    assert read_saved_response(saved) == parse_daily_series(load(IBM_DAILY))


def test_a_saved_file_larger_than_any_answer_is_refused_unread(tmp_path, monkeypatch) -> None:
    """As a live answer is: far past a whole history it is no price series."""
    text = json.dumps(load(IBM_DAILY))
    monkeypatch.setattr(payload_module, "MAX_ANSWER_BYTES", len(text))
    saved = tmp_path / "ibm.json"
    saved.write_text(text)
    assert read_saved_response(saved) == parse_daily_series(load(IBM_DAILY))

    saved.write_text(text + " ")
    with pytest.raises(AlphaVantageError) as caught:
        read_saved_response(saved)
    assert str(caught.value) == (f"cannot read a JSON response: larger than "
                                 f"{len(text) // 2**20} MiB, far more than any price series")


ESCAPED_DAY = "".join(f"\\u{ord(char):04x}" for char in "2024-06-18")


@pytest.mark.parametrize("secret", [None, "KEY123"])  # with a key, the payload is walked to mask it
@pytest.mark.parametrize("written", [
    pytest.param(lambda text: text, id="as is"),
    pytest.param(lambda text: text.replace('"2024-06-18": {"1. open": "0.5"',
                                           f'"{ESCAPED_DAY}": {{"1. open": "0.5"', 1),
                 id="escaped"),
    pytest.param(lambda text: text.replace('"US/Eastern"', '"US/Eastern, 16:00:00"'),
                 id="a colon in a value"),
])
def test_a_saved_series_naming_a_day_twice_is_refused_naming_it(
        tmp_path, written, secret) -> None:
    """json.loads keeps the second; which one AlphaVantage meant is anyone's guess."""
    first = {"1. open": "0.5", "2. high": "0.6", "3. low": "0.4", "4. close": "0.5",
             "5. volume": "1"}
    saved = tmp_path / "ibm.json"
    saved.write_text(written(naming_a_day_twice(load(IBM_DAILY), "2024-06-18", first)))

    with pytest.raises(MalformedResponseError) as caught:
        read_saved_response(saved, secret)

    assert (str(caught.value), caught.value.symbol) == (
        "IBM: day '2024-06-18' is named more than once in 'Time Series (Daily)'", "IBM")


@pytest.mark.parametrize("first", ["0.5", [], {}, {"1. open": {"2. high": "0.6"}}],
                         ids=["a string", "a list", "an empty object", "a nested object"])
def test_a_day_named_twice_is_refused_whatever_its_first_value(tmp_path, first) -> None:
    saved = tmp_path / "ibm.json"
    saved.write_text(naming_a_day_twice(load(IBM_DAILY), "2024-06-17", first))

    with pytest.raises(MalformedResponseError, match="IBM: day '2024-06-17' is named more "
                                                     "than once in 'Time Series "):
        read_saved_response(saved)


@pytest.mark.parametrize("secret", [None, "KEY123"])  # with a key, the payload is walked to mask it
@pytest.mark.parametrize("where, key, first, message, symbol", [
    ((), "Time Series (Daily)", {},
     "IBM: the response names 'Time Series (Daily)' more than once", "IBM"),
    ((), "Meta Data", {"2. Symbol": "AAPL"},
     "the response names 'Meta Data' more than once", None),
    (("Meta Data",), "1. Information", "Daily Prices",
     "IBM: 'Meta Data' names '1. Information' more than once", "IBM"),
    (("Meta Data",), "2. Symbol", "AAPL",
     "'Meta Data' names '2. Symbol' more than once", None),
    (("Time Series (Daily)", "2024-06-18"), "1. open", "169.0000",
     "IBM: day '2024-06-18' names '1. open' more than once", "IBM"),
], ids=["series at the top", "meta data at the top", "meta data's information",
        "meta data's symbol", "a day's open"])
def test_a_saved_answer_naming_a_key_twice_is_refused_naming_where(
        tmp_path, where, key, first, message, symbol, secret) -> None:
    """Two Meta Data or two symbols leave the saved answer's symbol in doubt: it names none."""
    saved = tmp_path / "ibm.json"
    saved.write_text(naming_twice(load(IBM_DAILY), where, key, first))

    with pytest.raises(MalformedResponseError) as caught:
        read_saved_response(saved, secret)

    assert (str(caught.value), caught.value.symbol) == (message, symbol)


@pytest.mark.parametrize("key, first", [("Time Series (Daily)", {}), ("Extra", 1)],
                         ids=["the series", "another key"])
def test_a_saved_answer_naming_its_symbol_twice_names_none_whatever_else_it_repeats(
        tmp_path, key, first) -> None:
    """The top level's repeat is named, but the symbol read from two is still a guess."""
    payload = {**load(IBM_DAILY), "Extra": 2}
    text = naming_twice(payload, (), key, first)
    symbol = '"2. Symbol": "IBM"'
    assert text.count(symbol) == 1
    saved = tmp_path / "ibm.json"
    saved.write_text(text.replace(symbol, f'"2. Symbol": "AAPL", {symbol}'))

    with pytest.raises(MalformedResponseError) as caught:
        read_saved_response(saved)

    assert (str(caught.value), caught.value.symbol) == (
        f"the response names {key!r} more than once", None)


@pytest.mark.parametrize("name, day, key, first", [
    (IBM_DAILY, "2024-06-18", "1. open", "170.0000"),
    (IBM_DAILY, "2024-06-18", "4. close", "171.0000"),
    (IBM_DAILY, "2024-06-17", "5. volume", 3386442),
    (IBM_ADJUSTED, "2023-03-23", "5. adjusted close", "123.3700"),
    (IBM_ADJUSTED, "2023-03-23", "8. split coefficient", "2.0"),
], ids=["the same open", "another close", "a volume not a string", "an adjusted close",
        "a split"])
def test_a_day_naming_a_field_twice_is_refused_whatever_the_values(
        tmp_path, name, day, key, first) -> None:
    """Not read the short way: which price AlphaVantage meant is anyone's guess."""
    saved = tmp_path / "ibm.json"
    saved.write_text(naming_twice(load(name), ("Time Series (Daily)", day), key, first))

    with pytest.raises(MalformedResponseError) as caught:
        read_saved_response(saved)

    assert (str(caught.value), caught.value.symbol) == (
        f"IBM: day '{day}' names '{key}' more than once", "IBM")


@pytest.mark.parametrize("written", [
    pytest.param(lambda text: text.replace('"US/Eastern"', '"US/Eastern, 16:00:00"'),
                 id="a colon in a value"),
    pytest.param(lambda text: text.replace('"Meta Data": {', '"Meta Data": {"x": [{"y": 1}], '),
                 id="an object in a list"),
])
def test_a_saved_series_naming_each_day_once_reads_as_json_loads_reads_it(
        tmp_path, written) -> None:
    """The text the quick check cannot clear is decoded again, to the same series."""
    text = written(json.dumps(load(IBM_DAILY)))
    saved = tmp_path / "ibm.json"
    saved.write_text(text)

    assert read_saved_response(saved) == parse_daily_series(json.loads(text))


@pytest.mark.parametrize(("error", "short_term"), [
    (RateLimitError("burst", "IBM"), True),
    (RateLimitError("quota", "IBM", is_daily_quota=True), False),
    (InvalidApiKeyError("key", "IBM"), False),
    (AlphaVantageError("other", "IBM"), False),
])
def test_only_a_burst_or_per_minute_limit_is_short_term(error, short_term) -> None:
    assert is_short_term_limit(error) is short_term
