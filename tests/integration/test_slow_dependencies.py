"""A Redis that answers, but slowly: left alone as one that fails, not waited on by every request.

The Redis is one of the test's own (``private_redis``) behind a proxy that
holds each reply for a while, under the socket timeout. What the API asked
of it is counted by the proxy (``received``), not timed.
"""
from pathlib import Path
from time import time as wall_clock

import pytest
import redis

from app import rate_limits
from app.api.caching import REDIS_SOCKET_TIMEOUT_SECONDS, SLOW_REPLY_SECONDS, cached_value
from app.extensions import db
from tests.helpers import STATS_URL, build_app, change_open_price, open_price_of, wait_for
from tests.servers import stalling_proxy

# Slow past the threshold (the proxy's delay is the least a reply takes), and as far
# inside the socket timeout as that leaves, so a busy machine still sees a reply, not a timeout.
SLOW_REPLY_DELAY = SLOW_REPLY_SECONDS + 0.1
assert SLOW_REPLY_DELAY < REDIS_SOCKET_TIMEOUT_SECONDS
assert (rate_limits.SLOW_REPLY_SECONDS < SLOW_REPLY_DELAY
        < rate_limits.STORAGE_TIMEOUT_SECONDS), "the rate limit's storage: slow too"
PRICES_URL = "/api/financial_data?symbol=IBM"
CACHE_LINE = "app.api.caching:"


@pytest.fixture
def slow_redis(private_redis):
    """A proxy to ``private_redis`` that forwards at once until its ``delay`` is set."""
    with stalling_proxy(private_redis.port) as proxy:
        yield proxy


def cached_app(app, log_dir: Path, proxy, retry_wait: float):
    """An API on ``app``'s database that caches in the Redis behind ``proxy``."""
    return build_app(app.config["SQLALCHEMY_DATABASE_URI"], log_dir, CACHE_TYPE="RedisCache",
                     CACHE_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
                     CACHE_RETRY_WAIT=retry_wait)


def cache_log_lines(application) -> list[str]:
    text = (Path(application.config["LOG_DIR"]) / "api.log").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if CACHE_LINE in line]


def assert_left_alone_after_a_slow_reply(api, proxy, asked: int) -> None:
    """Nothing more reached the slow cache since ``asked`` bytes, and its outage is one line."""
    assert proxy.received == asked, "no call asked the slow cache again"
    [warning] = cache_log_lines(api)
    assert "the answer cache failed (slow: a reply took " in warning


def uncached_bodies(app, log_dir: Path) -> dict[str, dict]:
    """The answers of STATS_URL and PRICES_URL as an API with an empty cache computes them."""
    reference = build_app(app.config["SQLALCHEMY_DATABASE_URI"], log_dir)
    client = reference.test_client()
    bodies = {url: client.get(url).get_json() for url in (STATS_URL, PRICES_URL)}
    dispose(reference)
    return bodies


def dispose(*applications) -> None:
    for application in applications:
        with application.app_context():
            db.engine.dispose()


def test_after_a_slow_reply_the_cache_is_left_alone_and_answers_are_computed(
        app, slow_redis, tmp_path, ibm_day, store_prices):
    store_prices([ibm_day])
    api = cached_app(app, tmp_path / "api-log", slow_redis, retry_wait=600)
    client = api.test_client()
    assert open_price_of(client) == 10.0, "cached, with its response"
    slow_redis.delay = SLOW_REPLY_DELAY
    change_open_price(api, "11.00")
    assert open_price_of(client) == 10.0, "a slow reply is still a reply: its response is served"
    asked = slow_redis.received
    for value in ("12.00", "13.00"):
        change_open_price(api, value)
        expected = uncached_bodies(app, tmp_path / f"reference-{value}")
        assert {url: client.get(url).get_json() for url in expected} == expected
    assert slow_redis.received == asked, "no request asked the slow cache again"
    [warning] = cache_log_lines(api)
    assert "WARNING app.api.caching: the answer cache failed (slow: a reply took " in warning
    assert warning.endswith("s); answering without it, next try in 600s")
    dispose(api)


def test_a_slow_lookup_serves_its_value_then_leaves_the_cache_alone(sqlite_app, slow_redis,
                                                                    tmp_path):
    api = cached_app(sqlite_app, tmp_path / "api-log", slow_redis, retry_wait=600)
    with api.app_context():
        assert cached_value("count", ("IBM",), lambda: 1) == 1
        slow_redis.delay = SLOW_REPLY_DELAY
        assert cached_value("count", ("IBM",), lambda: 2) == 1, "read slowly, and served"
        asked = slow_redis.received
        assert cached_value("count", ("IBM",), lambda: 3) == 3, "computed: the cache left alone"
    assert_left_alone_after_a_slow_reply(api, slow_redis, asked)
    dispose(api)


def test_a_slow_write_leaves_the_cache_alone(sqlite_app, slow_redis, tmp_path):
    """The lookup answered at once, then the cache became slow while the answer was computed."""
    api = cached_app(sqlite_app, tmp_path / "api-log", slow_redis, retry_wait=600)

    def slow_down_then_compute() -> int:
        slow_redis.delay = SLOW_REPLY_DELAY
        return 1

    with api.app_context():
        assert cached_value("count", ("IBM",), slow_down_then_compute) == 1
        asked = slow_redis.received
        assert cached_value("count", ("IBM",), lambda: 2) == 2, "computed: the cache left alone"
    assert_left_alone_after_a_slow_reply(api, slow_redis, asked)
    dispose(api)


def test_a_redis_fast_again_is_used_again(app, slow_redis, tmp_path, ibm_day, store_prices):
    store_prices([ibm_day])
    api = cached_app(app, tmp_path / "api-log", slow_redis, retry_wait=0.2)
    client = api.test_client()
    assert open_price_of(client) == 10.0
    slow_redis.delay = SLOW_REPLY_DELAY
    change_open_price(api, "11.00")
    assert open_price_of(client) == 10.0, "read slowly, and served"
    slow_redis.delay = 0
    wait_for(lambda: open_price_of(client) and len(cache_log_lines(api)) == 2,
             "the cache to be used again", 20)
    gone, back = cache_log_lines(api)
    assert "the answer cache failed (slow: a reply took " in gone
    assert "WARNING app.api.caching: the answer cache is back after " in back
    # Nothing invalidated the entry cached before the slowdown (the data changed
    # behind the cache's back): serving it proves the cache is used again.
    assert open_price_of(client) == 10.0
    dispose(api)


def test_a_slow_rate_limit_storage_is_left_for_a_count_in_memory(
        sqlite_database_url, tmp_path, private_redis, slow_redis):
    application = build_app(sqlite_database_url, tmp_path / "api-log", RATE_LIMIT="3 per minute",
                            RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{slow_redis.port}/0")
    client = application.test_client()
    assert client.get(PRICES_URL).headers["X-RateLimit-Remaining"] == "2", "counted in Redis"
    slow_redis.delay = SLOW_REPLY_DELAY
    answers = [client.get(path) for path in (PRICES_URL, PRICES_URL, "/api/symbols", STATS_URL)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429], (
        "a new count in memory, one budget for the whole API")
    asked = slow_redis.received
    wait_for(lambda: client.get(PRICES_URL).status_code == 429 and slow_redis.received > asked,
             "Flask-Limiter to try the storage again", 30)
    server = redis.Redis.from_url(private_redis.url)
    # Only its tries (a count of their own, slow too) reached the storage; of
    # the requests, the first slow one's count, which came back too late.
    counts = [int(server.get(key)) for key in server.keys() if b"probe" not in key]
    assert counts == [2]

    slow_redis.delay = 0
    wait_for(lambda: client.get(PRICES_URL).status_code == 200,
             "the count in Redis (two requests so far) to be used again", 60)
    assert [int(server.get(key)) for key in server.keys() if b"probe" not in key] == [3]
    server.close()
    log = (tmp_path / "api-log" / "api.log").read_text(encoding="utf-8")
    assert log.count("Rate limit storage unreachable") == 1, "one line for the slowdown"
    assert log.count("Rate limit storage recovered") == 1, "one line for its end"
    assert "Traceback" not in log
    dispose(application)


def test_a_count_in_memory_that_took_long_is_no_slow_storage(sqlite_database_url, tmp_path,
                                                             monkeypatch):
    """In memory, a slow count is a stalled process: the budgets are kept, nothing is logged."""

    class StalledClock:
        """A clock on which every reading comes a slow reply later than the one before;
        the wall clock (a 429's Retry-After) as it is."""

        now = 0.0
        time = staticmethod(wall_clock)

        @classmethod
        def monotonic(cls) -> float:
            cls.now += rate_limits.SLOW_REPLY_SECONDS + 0.1
            return cls.now

    monkeypatch.setattr(rate_limits, "time", StalledClock)
    application = build_app(sqlite_database_url, tmp_path / "api-log", RATE_LIMIT="2 per minute",
                            RATELIMIT_STORAGE_URI="memory://")
    client = application.test_client()
    assert [client.get(PRICES_URL).status_code for _ in range(3)] == [200, 200, 429]
    log = (tmp_path / "api-log" / "api.log").read_text(encoding="utf-8")
    assert "Rate limit storage unreachable" not in log
    dispose(application)
