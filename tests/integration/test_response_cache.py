"""Stored responses: a repeated read answered before dispatch, as the first answer was."""
import datetime
import json
from decimal import Decimal

import pytest
import redis
from sqlalchemy import update

import get_raw_data
from app.api.caching import RESPONSE_FORMAT_VERSION
from app.extensions import cache, db
from financial.models import FinancialData
from financial.monthly_sums import refresh_monthly_sums
from tests.fake_alphavantage import ALPHAVANTAGE_FIXTURES
from tests.helpers import build_app, data_commands, isolated_environment

STATS_URL = "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-01-31"
LIST_URL = "/api/financial_data?symbol=IBM&fields=all&limit=3"
IBM_FILE = ALPHAVANTAGE_FIXTURES / "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"
# Headers whose values differ between any two requests.
PER_REQUEST = {"X-Request-ID", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Date"}


@pytest.fixture
def limited_app(app, tmp_path, make_price, store_prices):
    """An app with a rate limit (so its headers are there), IBM stored on two January days."""
    store_prices([make_price(symbol="IBM", date=datetime.date(2023, 1, day),
                             open_price=Decimal("10.00"), close_price=Decimal("20.00"))
                  for day in (3, 4)])
    application = build_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "limited-log",
                            RATE_LIMIT="100 per minute")
    yield application
    with application.app_context():
        db.engine.dispose()


def stored_responses(application) -> list[str]:
    """The keys of the responses the app's (per-process) cache holds."""
    return [key for key in application.extensions["cache"][cache]._cache
            if ":response:" in key]


def forget_answers_but_keep_responses(application) -> None:
    """Drop every cached value but the stored responses, and change the data behind them."""
    with application.app_context():
        backend = cache.cache._cache
        for key in [key for key in backend if ":response:" not in key]:
            del backend[key]
        db.session.execute(update(FinancialData).values(open_price=Decimal("99.00")))
        refresh_monthly_sums(db.session)
        db.session.commit()


@pytest.mark.parametrize("url", [STATS_URL, LIST_URL])
def test_a_hit_answers_the_same_bytes_headers_and_etag_as_the_miss(limited_app, url):
    client = limited_app.test_client()
    miss, hit = client.get(url), client.get(url)
    assert miss.status_code == hit.status_code == 200
    assert hit.data == miss.data
    assert [name for name, _ in hit.headers] == [name for name, _ in miss.headers]
    assert ({name: value for name, value in hit.headers if name not in PER_REQUEST}
            == {name: value for name, value in miss.headers if name not in PER_REQUEST})
    assert hit.headers["ETag"] == miss.headers["ETag"]
    assert hit.headers["X-RateLimit-Remaining"] == "98", "a hit is counted like any request"
    assert hit.headers["X-Request-ID"] != miss.headers["X-Request-ID"]

    forget_answers_but_keep_responses(limited_app)
    assert client.get(url).data == miss.data, "the hit came from the stored response"


def test_parameters_in_another_order_share_one_stored_response(limited_app):
    client = limited_app.test_client()
    first = client.get(STATS_URL)
    forget_answers_but_keep_responses(limited_app)
    reordered = client.get("/api/statistics?end_date=2023-01-31&symbol=IBM&start_date=2023-01-01")
    assert reordered.data == first.data
    assert reordered.headers["ETag"] == first.headers["ETag"]
    assert len(stored_responses(limited_app)) == 1


@pytest.mark.parametrize("refused, problem", [
    (STATS_URL + "&symbol=IBM", "symbol: is given more than once"),
    (STATS_URL + "&extra=1", "extra: is not a known parameter"),
    (STATS_URL.replace("2023-01-31", "2023-13-31"), "end_date: is not a valid calendar date"),
    (STATS_URL.replace("start_date=2023-01-01&", ""), "start_date: is required"),
])
def test_a_refused_query_never_gets_a_stored_answer(limited_app, refused, problem):
    client = limited_app.test_client()
    assert client.get(STATS_URL).status_code == 200
    assert client.get(STATS_URL).status_code == 200, "now stored"
    for _ in range(2):
        response = client.get(refused)
        assert response.status_code == 400
        assert response.get_json() == {"data": {}, "info": {"error": problem}}
        assert "ETag" not in response.headers
    assert len(stored_responses(limited_app)) == 1, "only the accepted query was stored"


def test_a_stored_answer_to_head_and_to_if_none_match(limited_app):
    client = limited_app.test_client()
    first = client.get(LIST_URL)
    forget_answers_but_keep_responses(limited_app)
    head = client.head(LIST_URL)
    assert (head.status_code, head.data) == (200, b"")
    assert head.headers["ETag"] == first.headers["ETag"]
    assert head.headers["Content-Length"] == first.headers["Content-Length"]
    assert head.headers["ETag"] == first.headers["ETag"], "the stored response answered"
    again = client.get(LIST_URL, headers={"If-None-Match": first.headers["ETag"]})
    assert (again.status_code, again.data) == (304, b"")


def test_the_rate_limit_refuses_stored_answers_too(app, tmp_path, make_price, store_prices):
    store_prices([make_price(symbol="IBM", date=datetime.date(2023, 1, 3))])
    application = build_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "log",
                            RATE_LIMIT="2 per minute")
    client = application.test_client()
    assert [client.get(STATS_URL).status_code for _ in range(3)] == [200, 200, 429]
    with application.app_context():
        db.engine.dispose()


def test_entries_carry_the_response_format_version(limited_app):
    limited_app.test_client().get(STATS_URL)
    [key] = stored_responses(limited_app)
    assert f":v{RESPONSE_FORMAT_VERSION}:" in key
    assert key.endswith(":response:/api/statistics?end_date=2023-01-31&start_date=2023-01-01"
                        "&symbol=IBM")


def test_the_fetch_job_s_clear_reaches_stored_responses(app, private_redis, monkeypatch, tmp_path,
                                                        capsys):
    """The job invalidates through Redis; the API's stored responses answer no more."""
    payload = json.loads(IBM_FILE.read_text(encoding="utf-8"))
    environment = isolated_environment(
        APP_ENV="testing", DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        LOG_DIR=str(tmp_path / "joblog"), CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=private_redis.url)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    def fetch(open_price: str) -> None:
        payload["Time Series (Daily)"]["2023-03-13"]["1. open"] = open_price
        saved = tmp_path / f"ibm-{open_price}.json"
        saved.write_text(json.dumps(payload), encoding="utf-8")
        assert get_raw_data.main(["--from-file", str(saved)]) == 0
        capsys.readouterr()

    fetch("126.0001")
    api = build_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "api-log",
                    CACHE_TYPE="RedisCache", CACHE_REDIS_URL=private_redis.url)
    client = api.test_client()
    url = "/api/financial_data?symbol=IBM&start_date=2023-03-13&limit=1"
    server = redis.Redis.from_url(private_redis.url)
    try:
        assert client.get(url).get_json()["data"][0]["open_price"] == "126.0001"
        server.config_resetstat()
        assert client.get(url).get_json()["data"][0]["open_price"] == "126.0001"
        assert data_commands(server) == {"mget": 1}, "answered from the stored response"

        fetch("126.0002")
        assert client.get(url).get_json()["data"][0]["open_price"] == "126.0002"
    finally:
        server.close()
        with api.app_context():
            db.engine.dispose()


def test_a_variant_s_response_answers_the_query_spelled_normalized(limited_app):
    """Statistics read the same however the query is spelled: the normalized one gets them too."""
    client = limited_app.test_client()
    computed = client.get(STATS_URL)
    with limited_app.app_context():
        cache.clear()
    variant = client.get(STATS_URL.replace("symbol=IBM", "symbol=ibm"))
    forget_answers_but_keep_responses(limited_app)
    normalized = client.get(STATS_URL)
    assert normalized.data == variant.data, "answered from the variant's stored response"
    assert normalized.data == computed.data
    assert ([(name, value) for name, value in normalized.headers if name not in PER_REQUEST]
            == [(name, value) for name, value in computed.headers if name not in PER_REQUEST])
    assert len(stored_responses(limited_app)) == 2


def test_a_normalized_statistics_query_that_missed_reads_the_cache_once(
        app, private_redis, tmp_path, make_price, store_prices):
    """Its value, if stored, is stored with the response it missed: no second MGET for it."""
    store_prices([make_price(symbol="IBM", date=datetime.date(2023, 1, 3))])
    api = build_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "api-log",
                    CACHE_TYPE="RedisCache", CACHE_REDIS_URL=private_redis.url)
    client = api.test_client()
    server = redis.Redis.from_url(private_redis.url)
    try:
        # A first response stored makes the route's responses looked up before dispatch.
        assert client.get(STATS_URL.replace("2023-01-31", "2023-01-30")).status_code == 200
        server.config_resetstat()
        assert client.get(STATS_URL).status_code == 200
        assert data_commands(server)["mget"] == 1

        server.config_resetstat()
        assert client.get(STATS_URL.replace("symbol=IBM", "symbol=ibm")).status_code == 200
        assert data_commands(server)["mget"] == 2, "its response, then the value"
    finally:
        server.close()
        with api.app_context():
            db.engine.dispose()
