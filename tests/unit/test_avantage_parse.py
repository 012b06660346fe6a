"""Parsing and classification of AlphaVantage payloads, without any HTTP."""

from __future__ import annotations

import json
from datetime import date
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
)
from tests.fake_alphavantage import ALPHAVANTAGE_ERROR_BODIES, ALPHAVANTAGE_FIXTURES

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
    assert series.bars[0] == DailyBar(date(2023, 3, 24), Decimal("123.36"), Decimal("125.29"),
                                      3812644)
    assert series.bars[-1] == DailyBar(date(2022, 10, 31), Decimal("138.06"), Decimal("138.29"),
                                       4915270)
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
    assert newest == DailyBar(date(2024, 6, 18), Decimal("170.0000"), Decimal("170.5500"), 3386442)
    assert str(newest.open_price) == "170.0000"
    assert series.bars[-1].date == date(2024, 1, 26)


def test_parses_aapl_adjusted_fixture() -> None:
    series = parse_daily_series(load(AAPL_ADJUSTED))

    assert series.symbol == "AAPL"
    assert series.bars[0] == DailyBar(date(2023, 3, 24), Decimal("158.86"), Decimal("160.25"),
                                      59256343)


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
    bar = parse_daily_series(with_field("1. open", raw)).bars[0]

    assert isinstance(bar.open_price, Decimal)
    assert str(bar.open_price) == expected


@pytest.mark.parametrize("raw", ["0", "99999999999999", "000123"])
def test_volume_limits_accepted(raw: str) -> None:
    assert parse_daily_series(with_field("5. volume", raw)).bars[0].volume == int(raw)


# --- malformed payloads ------------------------------------------------------------------------

PER_DAY_CASES = {
    "entry not an object": minimal_daily(fields=["123.36"]),
    "missing open": without_field("1. open"),
    "missing close": without_field("4. close"),
    "missing volume": without_field("5. volume"),
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
    "volume not a string": with_field("5. volume", 3812644),
}


@pytest.mark.parametrize("payload", PER_DAY_CASES.values(), ids=PER_DAY_CASES.keys())
def test_malformed_day_names_symbol_and_day(payload: dict[str, Any]) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_daily_series(payload)

    assert "IBM 2023-03-24" in str(caught.value)
    assert caught.value.symbol == "IBM"


def test_adjusted_payload_needs_six_volume() -> None:
    payload = load(IBM_ADJUSTED)
    del payload["Time Series (Daily)"]["2023-03-01"]["6. volume"]

    with pytest.raises(MalformedResponseError, match="IBM 2023-03-01: field '6. volume' is"):
        parse_daily_series(payload)


@pytest.mark.parametrize(
    "day", ["2023-13-01", "2023-02-30", "2023-3-24", "20230324", "yesterday", "2023-03-24T00:00",
            "2023-W12-5", ""],
)
def test_bad_date_key_is_named(day: str) -> None:
    with pytest.raises(MalformedResponseError) as caught:
        parse_daily_series(minimal_daily(day=day))

    assert str(caught.value).startswith("IBM: day ")
    assert repr(day) in str(caught.value)


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
        (["not", "an", "object"], "payload: the response is not a JSON object"),
    ],
)
def test_malformed_series(payload: Any, message: str) -> None:
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
def test_exception_tree(exc_type: type) -> None:
    error = exc_type("message", "IBM")

    assert isinstance(error, AlphaVantageError)
    assert error.symbol == "IBM"
    assert str(error) == "message"
