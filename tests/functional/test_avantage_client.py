"""AlphaVantageClient against a real local HTTP server (the ``fake_alphavantage`` fixture)."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
import traceback
from datetime import date
from decimal import Decimal
from urllib.parse import quote, quote_plus

import pytest
import requests
from werkzeug.wrappers import Request, Response

from lib.avantage_api import (
    TIME_SERIES_DAILY,
    TIME_SERIES_DAILY_ADJUSTED,
    AlphaVantageClient,
    AlphaVantageError,
    AlphaVantageTransportError,
    InvalidApiKeyError,
    InvalidSymbolError,
    MalformedResponseError,
    PremiumOnlyError,
    RateLimitError,
    parse_daily_series,
)
from lib.alphavantage.payload import MAX_ANSWER_BYTES
from lib.alphavantage.redaction import (
    hide_from_urllib3_logs, load_json_masked, mask_secret, mask_secret_in_payload,
)
from tests.fake_alphavantage import ALPHAVANTAGE_FIXTURES
from tests.helpers import naming_a_day_twice, naming_twice

API_KEY = "SECRETKEY123"
IBM_ADJUSTED = "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"
IBM_DAILY = "IBM_TIME_SERIES_DAILY_compact_2024-06-18.json"
FALLBACK_TEXT = "falls back to TIME_SERIES_DAILY"


class SleepRecorder:
    """Stands in for time.sleep: records the waits and when each was asked, never sleeps."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.asked_at: list[float] = []  # time.monotonic(), the clock the client spaces by

    def __call__(self, seconds: float) -> None:
        self.asked_at.append(time.monotonic())
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(fake_alphavantage, sleeps):
    """Build clients aimed at the fake server, fast by default, closed after the test."""
    clients: list[AlphaVantageClient] = []

    def make(**options) -> AlphaVantageClient:
        settings = {"base_url": fake_alphavantage.url, "function": TIME_SERIES_DAILY_ADJUSTED,
                    "backoff_factor": 0, "sleep": sleeps, "rate_limit_wait": 7.5,
                    "timeout": (1, 5), **options}
        client = AlphaVantageClient(API_KEY, **settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(autouse=True)
def capture_everything(caplog):
    """Log at DEBUG so urllib3's URL-bearing records are captured and checked for the key."""
    caplog.set_level(logging.DEBUG)


def assert_key_hidden(exc: BaseException, caplog) -> None:
    """The key must not appear in the exception, its chain, its traceback, or any log record."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        assert API_KEY not in str(current)
        assert API_KEY not in repr(current)
        current = current.__cause__ or current.__context__
    assert API_KEY not in "".join(traceback.format_exception(exc))
    assert API_KEY not in caplog.text


def functions_asked(fake) -> list[str]:
    return [request.params["function"] for request in fake.requests]


# --- success -----------------------------------------------------------------------------------

def test_success_sends_exact_query_with_key_as_param(fake_alphavantage, make_client, caplog):
    fake_alphavantage.queue_fixture(IBM_ADJUSTED)

    series = make_client().fetch_daily("ibm")

    assert series.symbol == "IBM"
    assert series.function == TIME_SERIES_DAILY_ADJUSTED
    assert len(series.bars) == 100
    assert series.bars[0].date == date(2023, 3, 24)
    assert series.bars[0].open_price == Decimal("123.36")
    [request] = fake_alphavantage.requests
    assert request.method == "GET"
    assert request.path == "/query"
    assert request.params == {
        "function": "TIME_SERIES_DAILY_ADJUSTED",
        "symbol": "IBM",
        "outputsize": "compact",
        "apikey": API_KEY,
        "datatype": "json",
    }
    assert request.query_string.count("apikey=") == 1
    assert API_KEY not in caplog.text


def test_the_key_is_sent_without_the_whitespace_around_it(fake_alphavantage):
    fake_alphavantage.queue_fixture(IBM_DAILY)
    with AlphaVantageClient(f" {API_KEY}\n", base_url=fake_alphavantage.url,
                            function=TIME_SERIES_DAILY_ADJUSTED) as client:
        client.fetch_daily("IBM")

    [request] = fake_alphavantage.requests
    assert request.params["apikey"] == API_KEY


def test_full_asks_for_full_output(fake_alphavantage, make_client):
    fake_alphavantage.queue_fixture(IBM_DAILY)

    series = make_client(function=TIME_SERIES_DAILY).fetch_daily("IBM", full=True)

    assert series.function == TIME_SERIES_DAILY
    assert series.bars[0].open_price == Decimal("170.0000")
    [request] = fake_alphavantage.requests
    assert request.params["outputsize"] == "full"
    assert request.params["function"] == TIME_SERIES_DAILY


def test_injected_session_is_used(fake_alphavantage, make_client):
    session = requests.Session()
    session.headers["User-Agent"] = "stock-service-test"
    fake_alphavantage.queue_fixture(IBM_DAILY)

    make_client(session=session, function=TIME_SERIES_DAILY).fetch_daily("IBM")

    assert fake_alphavantage.requests[0].headers["User-Agent"] == "stock-service-test"
    session.close()


class CountingSession(requests.Session):
    """A caller's session that counts how often it is closed."""

    closes = 0

    def close(self) -> None:
        self.closes += 1
        super().close()


def test_closing_the_client_leaves_an_injected_session_open(fake_alphavantage):
    session = CountingSession()
    fake_alphavantage.queue_fixture(IBM_DAILY)
    with AlphaVantageClient(API_KEY, base_url=fake_alphavantage.url,
                            function=TIME_SERIES_DAILY_ADJUSTED, session=session) as client:
        client.fetch_daily("IBM")

    assert session.closes == 0, "the caller's session is the caller's to close"
    session.close()


# --- AlphaVantage's in-body errors -------------------------------------------------------------

def test_minute_note_is_waited_out_then_succeeds(fake_alphavantage, make_client, sleeps, caplog):
    fake_alphavantage.queue_error("minute_limit")
    fake_alphavantage.queue_fixture(IBM_ADJUSTED)

    series = make_client().fetch_daily("IBM")

    assert series.bars[0].close_price == Decimal("125.29")
    assert sleeps.calls == [7.5]
    assert len(fake_alphavantage.requests) == 2
    assert "short-term rate limit for IBM" in caplog.text
    assert API_KEY not in caplog.text


def test_burst_limit_exhausted_raises_after_bounded_retries(fake_alphavantage, make_client,
                                                            sleeps, caplog):
    for _ in range(4):
        fake_alphavantage.queue_error("burst_limit")
    fake_alphavantage.queue_fixture(IBM_ADJUSTED)  # must never be reached

    with pytest.raises(RateLimitError) as caught:
        make_client(rate_limit_retries=3).fetch_daily("IBM")

    assert caught.value.is_daily_quota is False
    assert caught.value.symbol == "IBM"
    assert len(fake_alphavantage.requests) == 4
    assert sleeps.calls == [7.5, 7.5, 7.5]
    assert_key_hidden(caught.value, caplog)


def test_burst_limit_after_one_wait_says_one_wait(fake_alphavantage, make_client, sleeps):
    for _ in range(2):
        fake_alphavantage.queue_error("burst_limit")

    with pytest.raises(RateLimitError, match="persisted after 1 wait$"):
        make_client(rate_limit_retries=1).fetch_daily("IBM")


def test_daily_quota_fails_at_once(fake_alphavantage, make_client, sleeps, caplog):
    fake_alphavantage.queue_error("daily_quota")

    with pytest.raises(RateLimitError, match="daily quota is spent") as caught:
        make_client().fetch_daily("IBM")

    assert caught.value.is_daily_quota is True
    assert len(fake_alphavantage.requests) == 1
    assert sleeps.calls == []
    assert_key_hidden(caught.value, caplog)


def test_unknown_symbol_raises_invalid_symbol_after_one_request(
        fake_alphavantage, make_client, caplog):
    fake_alphavantage.queue_error("invalid_symbol")

    with pytest.raises(InvalidSymbolError, match="invalid symbol NOPE") as caught:
        make_client().fetch_daily("nope")

    assert caught.value.symbol == "NOPE"
    assert len(fake_alphavantage.requests) == 1
    assert_key_hidden(caught.value, caplog)


@pytest.mark.parametrize("case", ["invalid_key", "demo_key"])
def test_rejected_or_demo_key_raises_invalid_api_key_without_retry(
        fake_alphavantage, make_client, caplog, case):
    fake_alphavantage.queue_error(case)

    with pytest.raises(InvalidApiKeyError) as caught:
        make_client().fetch_daily("IBM")

    assert len(fake_alphavantage.requests) == 1
    assert_key_hidden(caught.value, caplog)


def test_key_echoed_by_alphavantage_is_redacted(fake_alphavantage, make_client, caplog):
    fake_alphavantage.queue_error("invalid_key", text=f"the parameter apikey {API_KEY} is invalid")

    with pytest.raises(InvalidApiKeyError) as caught:
        make_client().fetch_daily("IBM")

    assert "[redacted]" in str(caught.value)
    assert_key_hidden(caught.value, caplog)


@pytest.mark.parametrize("quoting", [quote_plus, lambda key: quote(key, safe="")])
def test_key_echoed_url_encoded_is_redacted(fake_alphavantage, quoting, caplog):
    """AlphaVantage may quote the request's URL back: the key then reads as encoded."""
    key = "AbC+d/e f%g"
    fake_alphavantage.queue_error("invalid_key",
                                  text=f"Invalid API call: /query?apikey={quoting(key)}")
    client = AlphaVantageClient(key, base_url=fake_alphavantage.url,
                                function=TIME_SERIES_DAILY_ADJUSTED, backoff_factor=0)
    with pytest.raises(InvalidApiKeyError) as caught:
        client.fetch_daily("IBM")
    client.close()

    assert "apikey=[redacted]" in str(caught.value)
    for form in (key, quote_plus(key), quote(key, safe="")):
        assert form not in str(caught.value) and form not in caplog.text


def test_unknown_error_text_is_a_plain_alphavantage_error(fake_alphavantage, make_client, caplog):
    fake_alphavantage.queue_error("unknown_function")

    with pytest.raises(AlphaVantageError, match=r"This API function \(\) does not exist") as caught:
        make_client().fetch_daily("IBM")

    assert type(caught.value) is AlphaVantageError
    assert_key_hidden(caught.value, caplog)


@pytest.mark.parametrize("text", [
    "Our standard API rate limit is 1 request per second.",
    "Please consider spreading out your free API requests more sparingly.",
    "Our standard API call frequency is 5 calls per minute.",
], ids=["per second", "sparingly", "per minute"])
def test_each_short_term_wording_alone_is_waited_out(fake_alphavantage, make_client, sleeps,
                                                     text):
    fake_alphavantage.queue_error("burst_limit", text=text)
    fake_alphavantage.queue_fixture(IBM_DAILY)

    make_client(function=TIME_SERIES_DAILY).fetch_daily("IBM")

    assert sleeps.calls == [7.5]


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("Error Message", "The API key given is invalid.", InvalidApiKeyError),
    ("Information", "The apikey parameter is invalid or missing.", InvalidApiKeyError),
    ("Information", "This key is for demo purposes only.", InvalidApiKeyError),
    # Premium is told before the quota: refusing a premium endpoint may name the free quota.
    ("Information", "This is a premium endpoint; a free key has 25 requests per day.",
     PremiumOnlyError),
    ("Note", {"detail": "a notice that is no string"}, AlphaVantageError),
], ids=["error names the api key", "notice names the apikey", "demo", "premium naming the quota",
        "not a string"])
def test_each_wording_is_told_apart_after_one_request(fake_alphavantage, make_client, key, value,
                                                      expected):
    fake_alphavantage.queue_json({key: value})

    with pytest.raises(AlphaVantageError) as caught:
        make_client(function=TIME_SERIES_DAILY).fetch_daily("IBM")

    assert type(caught.value) is expected
    assert len(fake_alphavantage.requests) == 1


# --- premium fallback --------------------------------------------------------------------------

def test_premium_adjusted_falls_back_once_for_the_whole_run(fake_alphavantage, make_client, caplog):
    fake_alphavantage.queue_error("premium_endpoint")
    fake_alphavantage.queue_fixture(IBM_DAILY)
    fake_alphavantage.queue_fixture(IBM_DAILY)
    client = make_client()

    ibm = client.fetch_daily("IBM")
    aapl = client.fetch_daily("AAPL")

    assert functions_asked(fake_alphavantage) == [
        TIME_SERIES_DAILY_ADJUSTED, TIME_SERIES_DAILY, TIME_SERIES_DAILY]
    assert [r.params["symbol"] for r in fake_alphavantage.requests] == ["IBM", "IBM", "AAPL"]
    assert (ibm.symbol, ibm.function) == ("IBM", TIME_SERIES_DAILY)
    assert (aapl.symbol, aapl.function) == ("AAPL", TIME_SERIES_DAILY)
    fallbacks = [r for r in caplog.records if FALLBACK_TEXT in r.getMessage()]
    assert len(fallbacks) == 1
    assert fallbacks[0].levelno == logging.WARNING
    assert fallbacks[0].name == "lib.alphavantage.client"


def test_requests_are_spaced_by_the_interval_the_fallback_included(fake_alphavantage,
                                                                   make_client, sleeps):
    fake_alphavantage.queue_error("premium_endpoint")
    fake_alphavantage.queue_fixture(IBM_DAILY)
    fake_alphavantage.queue_fixture(IBM_DAILY)
    client = make_client(request_interval=30)

    started = time.monotonic()
    client.fetch_daily("IBM")
    client.fetch_daily("AAPL")

    assert len(fake_alphavantage.requests) == 3
    assert len(sleeps.calls) == 2, "before the fallback and before the next symbol"
    # Each wait ends 30 s after the request before it went out, however long the
    # requests took: the first went after ``started``, the second after the first wait.
    went_out = [started, sleeps.asked_at[0]]
    assert all(0 < wait <= 30 and asked + wait >= before + 30 - 1e-6
               for wait, asked, before in zip(sleeps.calls, sleeps.asked_at, went_out)), (
        sleeps.calls, sleeps.asked_at, went_out)


def test_an_interval_under_a_second_is_waited_too(fake_alphavantage, make_client, sleeps):
    fake_alphavantage.queue_fixture(IBM_DAILY)
    fake_alphavantage.queue_fixture(IBM_DAILY)

    def sleep(seconds: float) -> None:
        sleeps(seconds)
        time.sleep(seconds)

    client = make_client(request_interval=0.99, sleep=sleep)

    started = time.monotonic()
    client.fetch_daily("IBM")
    client.fetch_daily("AAPL")

    # Really waited, so however long the first fetch took, the second request
    # reached the server no sooner than 0.99 s after the first went out.
    first, second = fake_alphavantage.requests
    assert second.received_at - started >= 0.99, (first.received_at - started, sleeps.calls)
    assert all(0 < wait <= 0.99 for wait in sleeps.calls), sleeps.calls


def test_a_transport_retry_waits_the_interval_too(fake_alphavantage):
    """urllib3 sends its first retry at once; a rate-limited server would refuse it again."""
    fake_alphavantage.queue_response("busy", status=503)
    fake_alphavantage.queue_fixture(IBM_DAILY)
    client = AlphaVantageClient(API_KEY, base_url=fake_alphavantage.url,
                                function=TIME_SERIES_DAILY_ADJUSTED, backoff_factor=0,
                                request_interval=0.3)
    client.fetch_daily("IBM")
    client.close()
    first, retry = fake_alphavantage.requests
    assert retry.received_at - first.received_at >= 0.3


def test_premium_full_output_on_daily_is_final(fake_alphavantage, make_client, caplog):
    fake_alphavantage.queue_error("premium_full_output")

    with pytest.raises(PremiumOnlyError) as caught:
        make_client(function=TIME_SERIES_DAILY).fetch_daily("IBM", full=True)

    assert len(fake_alphavantage.requests) == 1
    assert FALLBACK_TEXT not in caplog.text
    assert_key_hidden(caught.value, caplog)


def test_full_on_adjusted_falls_back_then_fails_on_premium_output(fake_alphavantage, make_client,
                                                                  caplog):
    fake_alphavantage.queue_error("premium_endpoint")
    fake_alphavantage.queue_error("premium_full_output")

    with pytest.raises(PremiumOnlyError, match="outputsize=full"):
        make_client().fetch_daily("IBM", full=True)

    assert functions_asked(fake_alphavantage) == [TIME_SERIES_DAILY_ADJUSTED, TIME_SERIES_DAILY]
    assert [r.params["outputsize"] for r in fake_alphavantage.requests] == ["full", "full"]


# --- transport ---------------------------------------------------------------------------------

def test_server_error_then_success_is_retried_by_urllib3(fake_alphavantage, make_client, caplog):
    fake_alphavantage.queue_response("upstream trouble", status=500, content_type="text/plain")
    fake_alphavantage.queue_fixture(IBM_ADJUSTED)

    series = make_client(max_retries=2).fetch_daily("IBM")

    assert series.bars[0].volume == 3812644
    assert len(fake_alphavantage.requests) == 2
    assert any(r.name.startswith("urllib3") and "Retry" in r.getMessage() for r in caplog.records)
    assert API_KEY not in caplog.text


def test_a_status_that_is_not_transient_fails_at_once(fake_alphavantage, make_client):
    fake_alphavantage.queue_response("no such page", status=404, content_type="text/plain")

    with pytest.raises(AlphaVantageTransportError) as caught:
        make_client(max_retries=2).fetch_daily("IBM")

    assert str(caught.value) == "HTTP 404 from AlphaVantage for IBM"
    assert len(fake_alphavantage.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_so_the_key_goes_nowhere_else(fake_alphavantage, make_client,
                                                                 status):
    # As a server that keeps the query string would send it: the key in the next URL.
    elsewhere = f"{fake_alphavantage.url}-elsewhere?apikey={API_KEY}"
    fake_alphavantage.queue_handler(
        lambda _request: Response("", status=status, headers={"Location": elsewhere}))
    fake_alphavantage.queue_fixture(IBM_ADJUSTED)

    with pytest.raises(AlphaVantageTransportError) as caught:
        make_client(max_retries=2).fetch_daily("IBM")

    assert str(caught.value) == (
        f"HTTP {status} from AlphaVantage for IBM: a redirect, which the client does not "
        "follow (check ALPHAVANTAGE_BASE_URL)")
    assert len(fake_alphavantage.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_each_transient_http_status_is_retried(fake_alphavantage, make_client, status):
    fake_alphavantage.queue_response("busy", status=status, content_type="text/plain")
    fake_alphavantage.queue_fixture(IBM_ADJUSTED)

    assert make_client(max_retries=1).fetch_daily("IBM").bars[0].volume == 3812644
    assert len(fake_alphavantage.requests) == 2


def test_server_errors_exhaust_retries(fake_alphavantage, make_client, caplog):
    for _ in range(3):
        fake_alphavantage.queue_response("busy", status=503, content_type="text/plain")

    with pytest.raises(AlphaVantageTransportError, match="HTTP 503 .* IBM after 2 retries") as exc:
        make_client(max_retries=2).fetch_daily("IBM")

    assert len(fake_alphavantage.requests) == 3
    assert_key_hidden(exc.value, caplog)


@pytest.mark.parametrize("max_retries", [0, 1])
def test_read_timeout_is_a_transport_error_after_the_retries(
        fake_alphavantage, make_client, caplog, max_retries):
    release = threading.Event()

    def stall(_request: Request) -> Response:
        release.wait(10)
        return Response("{}", content_type="application/json")

    for _ in range(max_retries + 1):
        fake_alphavantage.queue_handler(stall)

    try:
        with pytest.raises(AlphaVantageTransportError, match="ReadTimeout") as caught:
            make_client(timeout=(1, 0.2), max_retries=max_retries).fetch_daily("IBM")
    finally:
        release.set()

    assert f"network failure for IBM after {max_retries} retries" in str(caught.value)
    assert len(fake_alphavantage.requests) == max_retries + 1
    assert caught.value.__context__ is None
    assert_key_hidden(caught.value, caplog)


def test_refused_connection_is_a_transport_error_without_the_url(make_client, caplog):
    with socket.socket() as probe:  # an ephemeral port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(AlphaVantageTransportError, match="network failure for IBM") as caught:
        make_client(base_url=f"http://127.0.0.1:{port}/query", max_retries=1).fetch_daily("IBM")

    assert caught.value.__context__ is None
    assert_key_hidden(caught.value, caplog)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("<html><body>Service Unavailable</body></html>", "text/html"), ("", "application/json"),
     ("{not json", "application/json"),
     ("[" * 100_000, "application/json")],  # nested deeper than the decoder goes
)
def test_non_json_body_is_malformed_after_one_request(
        fake_alphavantage, make_client, caplog, body, content_type):
    fake_alphavantage.queue_response(body, content_type=content_type)

    with pytest.raises(MalformedResponseError, match="not JSON") as caught:
        make_client().fetch_daily("IBM")

    assert len(fake_alphavantage.requests) == 1
    assert_key_hidden(caught.value, caplog)


def test_json_without_series_is_malformed(fake_alphavantage, make_client, caplog):
    fake_alphavantage.queue_json({"Meta Data": {"2. Symbol": "IBM"}})

    with pytest.raises(MalformedResponseError, match="IBM: the response has no") as caught:
        make_client().fetch_daily("IBM")

    assert_key_hidden(caught.value, caplog)


DAY = {"1. open": "1.00", "2. high": "2.00", "3. low": "0.50", "4. close": "1.50",
       "5. volume": "100"}


def test_an_answer_naming_a_day_twice_is_malformed(fake_alphavantage, make_client, caplog):
    payload = {"Meta Data": {"2. Symbol": "IBM"},
               "Time Series (Daily)": {"2023-03-24": DAY, "2023-03-23": DAY}}
    fake_alphavantage.queue_response(naming_a_day_twice(payload, "2023-03-23", DAY))

    with pytest.raises(MalformedResponseError) as caught:
        make_client().fetch_daily("IBM")

    assert (caught.value.message, caught.value.symbol) == (
        "IBM: day '2023-03-23' is named more than once in 'Time Series (Daily)'", "IBM")
    assert len(fake_alphavantage.requests) == 1
    assert_key_hidden(caught.value, caplog)


TWO_DAYS = {"Meta Data": {"1. Information": "Daily Prices", "2. Symbol": "IBM"},
            "Time Series (Daily)": {"2023-03-24": DAY, "2023-03-23": DAY}}


@pytest.mark.parametrize("where, key, first, message", [
    ((), "Time Series (Daily)", {}, "IBM: the response names 'Time Series (Daily)' more than once"),
    ((), "Meta Data", {"2. Symbol": "AAPL"}, "IBM: the response names 'Meta Data' more than once"),
    (("Meta Data",), "2. Symbol", "AAPL", "IBM: 'Meta Data' names '2. Symbol' more than once"),
    (("Time Series (Daily)", "2023-03-23"), "1. open", "1.10",
     "IBM: day '2023-03-23' names '1. open' more than once"),
], ids=["series at the top", "meta data at the top", "meta data's symbol", "a day's open"])
def test_an_answer_naming_a_key_twice_is_malformed_naming_where(
        fake_alphavantage, make_client, caplog, where, key, first, message):
    """The symbol asked for names the answer, even one that names its own twice."""
    fake_alphavantage.queue_response(naming_twice(TWO_DAYS, where, key, first))

    with pytest.raises(MalformedResponseError) as caught:
        make_client().fetch_daily("IBM")

    assert (caught.value.message, caught.value.symbol) == (message, "IBM")
    assert len(fake_alphavantage.requests) == 1
    assert_key_hidden(caught.value, caplog)


@pytest.mark.parametrize("where, message", [
    ((), "IBM: the response names '[redacted]' more than once"),
    (("Meta Data",), "IBM: 'Meta Data' names '[redacted]' more than once"),
    (("Time Series (Daily)", "2023-03-23"),
     "IBM: day '2023-03-23' names '[redacted]' more than once"),
], ids=["at the top", "in meta data", "in a day"])
def test_key_named_twice_as_a_key_is_redacted(fake_alphavantage, make_client, caplog, where,
                                              message):
    payload = json.loads(json.dumps(TWO_DAYS))
    target = payload
    for step in where:
        target = target[step]
    target[API_KEY] = "echo"
    fake_alphavantage.queue_response(naming_twice(payload, where, API_KEY, "echo"))

    with pytest.raises(MalformedResponseError) as caught:
        make_client().fetch_daily("IBM")

    assert caught.value.message == message
    assert_key_hidden(caught.value, caplog)


@pytest.mark.parametrize("body, content_type", [
    ({"Time Series (Daily)": {API_KEY: DAY}}, "application/json"),
    ({"Time Series (Daily)": {"2023-03-24": {**DAY, "1. open": API_KEY}}}, "application/json"),
    ("<html>Service Unavailable</html>", f"text/html; charset=utf-8; x={API_KEY}"),
])
def test_key_echoed_elsewhere_in_an_answer_is_redacted(fake_alphavantage, make_client, caplog,
                                                       body, content_type):
    """A proxy or gateway may echo the key anywhere; a message quoting the answer must not."""
    fake_alphavantage.queue_response(body if isinstance(body, str) else json.dumps(body),
                                     content_type=content_type)

    with pytest.raises(MalformedResponseError) as caught:
        make_client().fetch_daily("IBM")

    assert "[redacted]" in str(caught.value) and "[redacted]" in caught.value.message
    assert_key_hidden(caught.value, caplog)


def test_key_echoed_in_a_long_value_is_redacted_before_the_quote_is_cut(
        fake_alphavantage, make_client, caplog):
    """A quote is cut at 37 characters: half a key must not survive the cut."""
    echo = f"upstream gateway echo: apikey={API_KEY}"
    fake_alphavantage.queue_response(json.dumps(
        {"Time Series (Daily)": {"2023-03-24": {**DAY, "1. open": echo}}}))

    with pytest.raises(MalformedResponseError) as caught:
        make_client().fetch_daily("IBM")

    assert "upstream gateway echo: apikey=[" in caught.value.message
    assert API_KEY[:6] not in caught.value.message
    assert_key_hidden(caught.value, caplog)


def escaped(text: str) -> str:
    """Write ``text`` as a JSON encoder may, each character a \\u escape."""
    return "".join(f"\\u{ord(char):04x}" for char in text)


ECHO = "upstream gateway echo: apikey="  # quoted, the key then straddles the cut at 37


@pytest.mark.parametrize("body", [
    '{"Time Series (Daily)": {"2023-03-24": {"1. open": "%s%s"}}}' % (ECHO, escaped(API_KEY)),
    '{"Time Series (Daily)": {"%s%s": {}}}' % (ECHO, escaped(API_KEY)),
    json.dumps({"Time Series (Daily)": {"2023-03-24": {**DAY, "1. open": ECHO + API_KEY}}},
               ).encode("utf-16"),
], ids=["escaped value", "escaped day", "utf-16 body"])
def test_key_echoed_in_other_bytes_is_redacted_before_the_quote_is_cut(
        fake_alphavantage, make_client, caplog, body):
    """JSON decodes escapes and UTF-16 alike, so the key is masked in what was decoded."""
    fake_alphavantage.queue_response(body)

    with pytest.raises(MalformedResponseError) as caught:
        make_client().fetch_daily("IBM")

    assert f"{ECHO}[" in caught.value.message
    assert API_KEY[:6] not in caught.value.message
    assert_key_hidden(caught.value, caplog)


def test_key_that_json_and_quotes_escape_is_redacted(fake_alphavantage, caplog):
    """A quote or backslash in the key is escaped in the body and again in a quoted value."""
    key = 'Ab"C\\d/e f%g'
    fake_alphavantage.queue_json({"Time Series (Daily)": {"2023-03-24": {**DAY, "1. open": key}}})
    client = AlphaVantageClient(key, base_url=fake_alphavantage.url,
                                function=TIME_SERIES_DAILY_ADJUSTED, backoff_factor=0)
    with pytest.raises(MalformedResponseError) as caught:
        client.fetch_daily("IBM")
    client.close()

    assert "'1. open' is '[redacted]'" in caught.value.message
    for form in (key, repr(key)[1:-1], json.dumps(key)[1:-1]):
        assert form not in caught.value.message and form not in caplog.text


@pytest.fixture
def raw_server():
    """Start servers that each answer one request with the given bytes, then close.

    For answers werkzeug will not send: a header line with no name, no
    Content-Type, a body cut short. With ``hold`` the connection stays open
    until the test ends, so an answer missing bytes stalls instead.
    """
    release = threading.Event()
    started: list[tuple[socket.socket, threading.Thread]] = []

    def start(answer: bytes, *, hold: bool = False) -> str:
        server = socket.create_server(("127.0.0.1", 0))

        def answer_once() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(answer)
                if hold:
                    release.wait(10)

        thread = threading.Thread(target=answer_once, daemon=True)
        thread.start()
        started.append((server, thread))
        return f"http://127.0.0.1:{server.getsockname()[1]}/query"

    yield start
    release.set()
    for server, thread in started:
        thread.join(timeout=5)
        server.close()


@pytest.fixture
def broken_header_server(raw_server):
    """A raw socket server whose one answer has a header line with no name.

    urllib3 then logs a WARNING naming the full request URL (key included)
    from ``urllib3.connection``, a logger the client must filter as well.
    """
    body = b'{"Error Message": "Invalid API call. Please retry."}'
    return raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n: odd\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def test_key_is_masked_in_urllib3_header_warnings(broken_header_server, caplog):
    client = AlphaVantageClient(API_KEY, base_url=broken_header_server,
                                function=TIME_SERIES_DAILY_ADJUSTED, max_retries=0)
    with pytest.raises(InvalidSymbolError) as raised:
        client.fetch_daily("IBM")
    client.close()
    assert "Failed to parse headers" in caplog.text
    assert "apikey=[redacted]" in caplog.text
    assert_key_hidden(raised.value, caplog)


# --- reading the answer ------------------------------------------------------------------------

def test_an_answer_that_is_not_json_is_named_by_its_type_and_size(fake_alphavantage, make_client):
    body = "<html><body>Service Unavailable</body></html>"
    fake_alphavantage.queue_response(body, content_type="text/html")

    with pytest.raises(MalformedResponseError) as caught:
        make_client().fetch_daily("IBM")

    assert caught.value.message == ("AlphaVantage answered IBM with a body that is not JSON "
                                    f"(text/html, {len(body)} bytes)")
    assert caught.value.symbol == "IBM"


def test_an_answer_without_a_content_type_says_so(raw_server, make_client):
    url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    with pytest.raises(MalformedResponseError) as caught:
        make_client(base_url=url, max_retries=0).fetch_daily("IBM")

    assert caught.value.message == ("AlphaVantage answered IBM with a body that is not JSON "
                                    "(no content type, 5 bytes)")


def test_a_gzip_answer_is_decoded(fake_alphavantage, make_client):
    """requests asks for gzip; AlphaVantage, or a proxy before it, may send it."""
    fixture = ALPHAVANTAGE_FIXTURES / IBM_DAILY
    fake_alphavantage.queue_handler(lambda _request: Response(
        gzip.compress(fixture.read_bytes()), content_type="application/json",
        headers={"Content-Encoding": "gzip"}))

    series = make_client(function=TIME_SERIES_DAILY).fetch_daily("IBM")

    assert series == parse_daily_series(json.loads(fixture.read_bytes()), "IBM")
    assert "gzip" in fake_alphavantage.requests[0].headers["Accept-Encoding"]


def test_an_answer_past_its_size_limit_is_refused_before_it_fills_the_memory(
        fake_alphavantage, make_client):
    """A small compressed body can decode to gigabytes: reading stops at the limit."""
    bomb = gzip.compress(b" " * (MAX_ANSWER_BYTES + 1), compresslevel=1)
    fake_alphavantage.queue_handler(lambda _request: Response(
        bomb, content_type="application/json", headers={"Content-Encoding": "gzip"}))

    with pytest.raises(MalformedResponseError) as caught:
        make_client(function=TIME_SERIES_DAILY).fetch_daily("IBM")

    assert caught.value.message == ("AlphaVantage answered IBM with more than 64 MiB, far more "
                                    "than any price series")
    assert len(bomb) < MAX_ANSWER_BYTES // 100


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(("answer", "hold", "failure"), [
    (HEAD + b'Content-Length: 1000\r\n\r\n{"Time Series (Daily)": ', False, "ProtocolError"),
    (HEAD + b'Content-Length: 1000\r\n\r\n{"Time Series (Daily)": ', True, "ReadTimeoutError"),
    (HEAD + b"Content-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip", False,
     "DecodeError"),
], ids=["closed midway", "stalled midway", "broken gzip"])
def test_a_failure_while_reading_the_answer_is_a_transport_error_naming_it(
        raw_server, make_client, caplog, answer, hold, failure):
    """The body is read after urllib3's retries are done: its failures are named here."""
    url = raw_server(answer, hold=hold)

    with pytest.raises(AlphaVantageTransportError) as caught:
        make_client(base_url=url, max_retries=0, timeout=(1, 0.2)).fetch_daily("IBM")

    assert caught.value.message == (
        f"network failure for IBM while reading the answer ({failure})")
    assert caught.value.symbol == "IBM"
    assert caught.value.__context__ is None
    assert_key_hidden(caught.value, caplog)


# --- the client's own defaults ------------------------------------------------------------------
# The fetch job passes its settings to the client; these pin a client built without them.

def test_a_default_client_waits_out_a_short_term_limit_3_times_15_s_each(
        fake_alphavantage, sleeps):
    for _ in range(4):
        fake_alphavantage.queue_error("burst_limit")

    with AlphaVantageClient(API_KEY, base_url=fake_alphavantage.url,
                            function=TIME_SERIES_DAILY_ADJUSTED, sleep=sleeps) as client:
        with pytest.raises(RateLimitError, match="persisted after 3 waits$"):
            client.fetch_daily("IBM")

    assert sleeps.calls == [15.0, 15.0, 15.0]
    assert len(fake_alphavantage.requests) == 4


def test_a_default_client_does_not_space_its_requests(fake_alphavantage, sleeps):
    fake_alphavantage.queue_fixture(IBM_ADJUSTED)
    fake_alphavantage.queue_fixture(IBM_ADJUSTED)

    with AlphaVantageClient(API_KEY, base_url=fake_alphavantage.url,
                            function=TIME_SERIES_DAILY_ADJUSTED, sleep=sleeps) as client:
        client.fetch_daily("IBM")
        client.fetch_daily("IBM")

    assert sleeps.calls == []


def test_a_default_client_retries_3_times_the_first_at_once_then_after_1_and_2_s_jittered(
        fake_alphavantage, backoffs):
    for _ in range(4):
        fake_alphavantage.queue_response("busy", status=503)

    with AlphaVantageClient(API_KEY, base_url=fake_alphavantage.url,
                            function=TIME_SERIES_DAILY_ADJUSTED) as client:
        with pytest.raises(AlphaVantageTransportError, match="after 3 retries$"):
            client.fetch_daily("IBM")

    assert len(fake_alphavantage.requests) == 4
    second, third = backoffs  # urllib3 sleeps no backoff of 0 s
    assert 1.0 < second < 1.5 and 2.0 < third < 2.5, backoffs


def test_a_backoff_growing_past_30_s_is_cut_to_30_s(fake_alphavantage, backoffs):
    """``_BACKOFF_MAX_SECONDS``: 20 s doubled is 40 s, then 80 s, jitter added."""
    for _ in range(4):
        fake_alphavantage.queue_response("busy", status=503)

    with AlphaVantageClient(API_KEY, base_url=fake_alphavantage.url,
                            function=TIME_SERIES_DAILY_ADJUSTED, backoff_factor=20) as client:
        with pytest.raises(AlphaVantageTransportError):
            client.fetch_daily("IBM")

    assert backoffs == [30.0, 30.0]


# --- the masking itself ------------------------------------------------------------------------

def test_every_occurrence_and_form_of_the_key_is_masked():
    key = "AbC+d/e f%g"
    text = f"{key} {quote_plus(key)} {quote(key, safe='')} {key}"

    assert mask_secret(text, key) == " ".join(["[redacted]"] * 4)


def test_a_form_that_another_form_contains_is_masked_after_it():
    """``x%`` is the start of its encoded form ``x%25``: the longer one is masked first."""
    assert mask_secret("apikey=x%25&apikey=x%", "x%") == "apikey=[redacted]&apikey=[redacted]"


def test_the_key_is_masked_in_lists_and_in_every_form_in_a_payload():
    key = "AbC+d/e f%g"
    payload = {"Note": [key, {quote_plus(key): quote(key, safe="")}], "n": 1}

    assert mask_secret_in_payload(payload, key) == {
        "Note": ["[redacted]", {"[redacted]": "[redacted]"}], "n": 1}


@pytest.mark.parametrize("body", [
    json.dumps({"Note": "apikey=" + API_KEY}),
    json.dumps({"Note": "apikey=" + quote_plus(API_KEY)}),
    '{"Note": "apikey=%s"}' % escaped(API_KEY),
    json.dumps({"Note": "apikey=" + API_KEY}).encode(),
    json.dumps({"Note": "apikey=" + API_KEY}).encode("utf-16"),
    json.dumps({"Note": "apikey=" + API_KEY}).encode("utf-32-le"),
    ('{"Note": "apikey=%s"}' % escaped(API_KEY)).encode("utf-16-be"),
], ids=["text", "url-encoded", "escaped", "utf-8", "utf-16", "utf-32-le", "escaped utf-16-be"])
def test_a_body_read_as_text_or_bytes_in_any_json_encoding_has_the_key_masked(body):
    """Live answers are bytes, saved ones text: both are read by this one function."""
    assert load_json_masked(body, API_KEY) == {"Note": "apikey=[redacted]"}


@pytest.mark.parametrize("form", [quote_plus, lambda key: quote(key, safe="")],
                         ids=["form-encoded", "percent-encoded"])
def test_a_body_holding_only_an_encoded_form_of_the_key_has_it_masked(form):
    """No escape in the body: only the encoded form, unlike the key as written, shows the key."""
    key = "AbC+d/e f%g"
    body = json.dumps({"Note": "apikey=" + form(key)})

    assert "\\" not in body and key not in body
    assert load_json_masked(body, key) == {"Note": "apikey=[redacted]"}


def test_a_body_without_the_key_decodes_as_json_does():
    body = json.dumps({"Time Series (Daily)": {"2023-03-24": DAY}}).encode("utf-16")

    assert load_json_masked(body, API_KEY) == json.loads(body)
    assert load_json_masked(body.decode("utf-16"), None) == json.loads(body)


def test_urllib3_records_name_every_occurrence_of_the_key_masked():
    hide_from_urllib3_logs(API_KEY)
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                               "GET /query?apikey=%s&again=%s", (API_KEY, API_KEY), None)

    assert logging.getLogger("urllib3.connectionpool").filter(record)
    assert record.getMessage() == "GET /query?apikey=[redacted]&again=[redacted]"


@pytest.mark.parametrize("msg, args", [("%d", ("x",)), ("%z", (1,))],
                         ids=["TypeError", "ValueError"])
def test_an_urllib3_record_that_cannot_be_formatted_is_passed_on(msg, args):
    hide_from_urllib3_logs(API_KEY)
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, msg, args,
                               None)

    assert logging.getLogger("urllib3.connectionpool").filter(record)
    assert (record.msg, record.args) == (msg, args)


def test_an_empty_secret_leaves_urllib3_records_alone():
    hide_from_urllib3_logs("")
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                               "Starting new HTTP connection (%d)", (1,), None)

    assert logging.getLogger("urllib3.connectionpool").filter(record)
    assert record.getMessage() == "Starting new HTTP connection (1)"
