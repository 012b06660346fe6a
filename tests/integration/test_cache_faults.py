"""The cache under faults and at scale: a stalled or dead Redis, shared Redis, many entries.

A Redis that stalls or dies is one of the test's own (``private_redis``),
alone or behind a proxy that stops forwarding; the shared Redis is never
frozen or stopped, only the proxy in front of it.
"""
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import update
from werkzeug.wrappers import Response

from app.api.caching import (
    RESPONSE_FORMAT_VERSION, cached_value, clear_cached_answers, clear_run_history_answers,
)
from app.extensions import cache, db
from financial.models import FinancialData
from lib.db import database_digest
from tests.fake_alphavantage import AAPL, ALPHAVANTAGE_FIXTURES, IBM
from tests.helpers import (
    HANG_GUARD_SECONDS, STATS_URL, build_app, call_guarded, change_open_price, data_commands,
    delete_redis_keys, insert_prices, migrate_database, open_price_of, run_job, sqlite_url, stored,
    wait_for,
)
from tests.servers import stalling_proxy

STATS_ENTRY = "statistics:IBM|2023-01-01|2023-01-31"
CACHE_LINE = "app.api.caching:"


def redis_cached_app(database_url: str, log_dir: Path, redis_url: str, **overrides):
    return build_app(database_url, log_dir, CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url,
                     **overrides)


def cache_log_lines(application) -> list[str]:
    text = (Path(application.config["LOG_DIR"]) / "api.log").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if CACHE_LINE in line]


def dispose(*applications) -> None:
    for application in applications:
        with application.app_context():
            db.engine.dispose()


@pytest.fixture
def private_api(app, private_redis, tmp_path, ibm_day, store_prices):
    """(app, its client, a client of the Redis it caches in): one IBM day stored, nothing cached."""
    store_prices([ibm_day])
    api = redis_cached_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "private-log",
                           private_redis.url)
    server = redis.Redis.from_url(private_redis.url)
    yield api, api.test_client(), server
    server.close()
    dispose(api)


def test_invalidation_is_one_small_write_whatever_the_number_of_entries(private_api):
    api, client, server = private_api
    costs = []
    for entries in (10, 5000):
        assert open_price_of(client) == 10.0
        server.mset({f"financial:filler:{n}": b"x" * 100 for n in range(entries)})
        server.config_resetstat()
        with api.app_context():
            assert clear_cached_answers() is True
        costs.append(data_commands(server))
    assert costs == [{"set": 1}, {"set": 1}]
    assert server.dbsize() > 5000, "nothing was deleted: stale entries expire on their own"
    change_open_price(api, "11.00")
    assert open_price_of(client) == 11.0, "yet the cached answer is gone"


def test_a_hit_costs_one_round_trip(private_api):
    api, client, server = private_api
    assert open_price_of(client) == 10.0
    server.config_resetstat()
    change_open_price(api, "11.00")
    assert [open_price_of(client) for _ in range(3)] == [10.0] * 3
    assert data_commands(server) == {"mget": 3}


@pytest.fixture
def shared_prefix(redis_url):
    """A key prefix of the test's own on the shared Redis; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    delete_redis_keys(redis_url, f"{prefix}*")


@pytest.mark.redis
def test_no_cache_entry_crosses_databases(app, redis_url, shared_prefix, tmp_path, ibm_day,
                                          store_prices):
    store_prices([ibm_day])
    other_url = sqlite_url(tmp_path)
    migrate_database(other_url, tmp_path / "migrate-log")
    here = redis_cached_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "here", redis_url,
                            CACHE_KEY_PREFIX=shared_prefix)
    there = redis_cached_app(other_url, tmp_path / "there", redis_url,
                             CACHE_KEY_PREFIX=shared_prefix)
    with there.app_context():
        insert_prices(db.session, [{**ibm_day, "open_price": Decimal("99.00")}])
        db.session.commit()
    try:
        assert open_price_of(here.test_client()) == 10.0
        assert open_price_of(there.test_client()) == 99.0
        assert open_price_of(here.test_client()) == 10.0
        change_open_price(here, "11.00")
        change_open_price(there, "98.00")
        with there.app_context():
            assert clear_cached_answers() is True
        assert open_price_of(there.test_client()) == 98.0
        assert open_price_of(here.test_client()) == 10.0, "the other database's clear is not ours"
    finally:
        dispose(here, there)


@pytest.mark.redis
def test_an_entry_of_another_response_format_is_never_served(
        app, redis_url, shared_prefix, tmp_path, ibm_day, store_prices):
    store_prices([ibm_day])
    api = redis_cached_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "log", redis_url,
                           CACHE_KEY_PREFIX=shared_prefix)
    client = api.test_client()
    namespace = database_digest(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        assert open_price_of(client) == 10.0
        with api.app_context():
            generation = cache.get(api.extensions["cached_answers"].generation_key)
            body = cache.get(f"{namespace}:v{RESPONSE_FORMAT_VERSION}:{generation}:{STATS_ENTRY}")
            forged = {**body, "data": {**body["data"], "average_daily_open_price": 77.0}}
            cache.set(f"{namespace}:v{RESPONSE_FORMAT_VERSION + 1}:{generation}:{STATS_ENTRY}",
                      forged)
        # Other spellings of the query: each misses the stored responses and
        # reads the answer cached for its normalized parameters.
        assert open_price_of(client, STATS_URL.replace("IBM", "ibm")) == 10.0
        with api.app_context():
            cache.set(f"{namespace}:v{RESPONSE_FORMAT_VERSION}:{generation}:{STATS_ENTRY}",
                      forged)
        assert open_price_of(client, STATS_URL.replace("IBM", "Ibm")) == 77.0, (
            "the key layout above is the one in use")
    finally:
        dispose(api)


def test_a_stalled_redis_is_left_alone_then_used_again(app, private_redis, tmp_path, ibm_day,
                                                       store_prices):
    store_prices([ibm_day])
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with stalling_proxy(private_redis.port) as proxy:
        proxied = f"redis://127.0.0.1:{proxy.port}/0"
        api = redis_cached_app(url, tmp_path / "log", proxied, CACHE_RETRY_WAIT=600)
        client = api.test_client()
        assert open_price_of(client) == 10.0
        proxy.stall()
        change_open_price(api, "11.00")
        assert call_guarded(open_price_of, client) == 11.0
        asked = proxy.received
        for value in ("12.00", "13.00", "14.00"):
            change_open_price(api, value)
            assert open_price_of(client) == float(value)
            assert client.get("/api/financial_data?symbol=IBM").status_code == 200
        assert proxy.received == asked, "no request asked the stalled cache again"
        # Redis's client closes a connection whose answer timed out: the first
        # request waited out one socket timeout, not one per lookup.
        wait_for(lambda: proxy.hung_up >= 1, "the proxy to see the client hang up",
                 HANG_GUARD_SECONDS)
        assert proxy.hung_up == 1
        [warning] = cache_log_lines(api)
        assert "the answer cache failed (TimeoutError: " in warning

        retrying = redis_cached_app(url, tmp_path / "retrying", proxied, CACHE_RETRY_WAIT=0.2)
        retrying_client = retrying.test_client()
        assert open_price_of(retrying_client) == 14.0
        proxy.resume()
        wait_for(lambda: open_price_of(retrying_client) and len(cache_log_lines(retrying)) == 2,
                 "the cache to be used again", 20)
        assert "the answer cache is back after " in cache_log_lines(retrying)[1]
        # Nothing invalidated the entry cached before the stall (the data changed
        # behind the cache's back): serving it proves the cache is used again.
        assert open_price_of(retrying_client) == 10.0
        dispose(api, retrying)


def test_a_cache_that_failed_while_an_answer_was_computed_is_not_written_to(
        app, private_redis, tmp_path):
    """As a page whose count's lookup timed out: its own write would wait once more."""
    with stalling_proxy(private_redis.port) as proxy:
        api = redis_cached_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "log",
                               f"redis://127.0.0.1:{proxy.port}/0")
        asked = []

        def count_then_page() -> int:
            proxy.stall()
            count = cached_value("count", ("IBM",), lambda: 1)  # times out: computed
            asked.append(proxy.received)
            return count + 1

        with api.app_context():
            assert cached_value("price_page", ("IBM",), count_then_page) == 2
        assert proxy.received == asked[0], "no write asked the stalled cache"
        dispose(api)


def test_a_redis_outage_logs_two_lines_whatever_the_traffic(app, private_redis, tmp_path,
                                                            ibm_day, store_prices):
    store_prices([ibm_day])
    api = redis_cached_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "log",
                           private_redis.url, CACHE_RETRY_WAIT=0.05)
    client = api.test_client()
    assert open_price_of(client) == 10.0
    private_redis.kill()
    requests = 0
    for _ in range(40):
        assert open_price_of(client) == 10.0
        assert client.get("/api/financial_data?symbol=IBM").status_code == 200
        requests += 2
    private_redis.start()
    wait_for(lambda: open_price_of(client) and len(cache_log_lines(api)) == 2,
             "the cache to come back", 20)
    log = (Path(api.config["LOG_DIR"]) / "api.log").read_text(encoding="utf-8")
    other_lines = [line for line in log.splitlines() if "app.requests:" not in line]
    gone, back = other_lines
    assert "WARNING app.api.caching: the answer cache failed (ConnectionError: " in gone
    assert "WARNING app.api.caching: the answer cache is back after " in back
    skipped = int(re.fullmatch(r".*; answers computed without it: (\d+)", back).group(1))
    assert 0 < skipped <= requests * 2, back
    assert "Traceback" not in log
    dispose(api)


def answer_then_fill(app, private_redis, tmp_path):
    """An API on ``private_redis`` that cached IBM's open price (10.00), then Redis filled up
    and the price changed to 11.00; return the API and its client."""
    api = redis_cached_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "log",
                           private_redis.url, CACHE_RETRY_WAIT=0.05)
    client = api.test_client()
    assert open_price_of(client) == 10.0
    private_redis.fill()
    change_open_price(api, "11.00")
    return api, client


def test_a_full_redis_still_serves_the_answers_it_holds_and_says_so_once(
        app, private_redis, tmp_path, ibm_day, store_prices):
    """Out of memory with noeviction, Redis refuses every write (OOM) and answers every read."""
    store_prices([ibm_day])
    api, client = answer_then_fill(app, private_redis, tmp_path)
    refused = private_redis.refused_for_memory()

    def served_with_writes_refused() -> bool:
        # A miss: computed, and its write refused whenever a try is due (each 0.05 s).
        assert client.get("/api/financial_data?symbol=IBM").status_code == 200
        assert open_price_of(client) == 10.0, "the hit is still served"
        return private_redis.refused_for_memory() - refused >= 3

    wait_for(served_with_writes_refused, "three tries to store an answer, each refused",
             HANG_GUARD_SECONDS)
    private_redis.make_room()
    wait_for(lambda: client.get("/api/financial_data?symbol=IBM").status_code == 200
             and len(cache_log_lines(api)) == 2, "answers to be stored again", 20)
    full, stored_again = cache_log_lines(api)
    assert ("WARNING app.api.caching: the answer cache refused to store an answer "
            "(OutOfMemoryError: ") in full
    assert "; the answers it holds are served, new ones not stored, next try in 0.05s" in full
    assert "Command #" not in full and "financial_data:" not in full, "no cache key quoted"
    assert "WARNING app.api.caching: the answer cache stores answers again after " in stored_again
    assert re.search(r"; answers not stored meanwhile: \d+$", stored_again)
    log = (Path(api.config["LOG_DIR"]) / "api.log").read_text(encoding="utf-8")
    assert "Traceback" not in log
    dispose(api)


def test_a_full_redis_still_serves_the_prices_after_the_run_history_is_cleared(
        app, private_redis, tmp_path, ibm_day, store_prices):
    """A run's clear deletes the history's generation, which a full Redis refuses to start
    again: the history's answers are computed, the prices' held answers still served."""
    store_prices([ibm_day])
    api, client = answer_then_fill(app, private_redis, tmp_path)
    with api.app_context():
        assert clear_run_history_answers() is True
    for _ in range(3):
        assert client.get("/api/fetch_runs").status_code == 200
        assert open_price_of(client) == 10.0, "held, and served while nothing changed"
    assert not [line for line in cache_log_lines(api) if "the answer cache failed" in line]
    dispose(api)


def test_after_a_refused_write_nothing_is_stored_until_the_wait_is_over(
        app, private_redis, tmp_path, ibm_day, store_prices):
    """Storing is left alone for CACHE_RETRY_WAIT, even once the cache has room again."""
    store_prices([ibm_day])
    api = redis_cached_app(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "log",
                           private_redis.url, CACHE_RETRY_WAIT=600)
    client = api.test_client()
    private_redis.fill()
    assert open_price_of(client) == 10.0, "computed, its write refused"
    private_redis.make_room()
    assert open_price_of(client) == 10.0, "computed, and not stored: the wait is not over"
    change_open_price(api, "11.00")
    assert open_price_of(client) == 11.0
    dispose(api)


def test_a_cache_lost_between_a_read_and_its_write_is_left_alone(private_api, private_redis):
    """A write that fails otherwise than by a refusal is an outage of the cache, not a full one."""
    api, client, _server = private_api

    def compute_then_lose_the_cache() -> str:
        private_redis.kill()
        return "computed"

    with api.app_context():
        assert cached_value("test", ("IBM",), compute_then_lose_the_cache) == "computed"
    [gone] = cache_log_lines(api)
    assert "WARNING app.api.caching: the answer cache failed (ConnectionError: " in gone
    assert open_price_of(client) == 10.0, "answered uncached"
    assert cache_log_lines(api) == [gone], "the cache left alone: no second line"


def test_a_full_redis_still_takes_a_clear(app, private_redis, tmp_path, ibm_day, store_prices):
    """It refuses a new generation but deletes the old one: no answer held is served again."""
    store_prices([ibm_day])
    api, client = answer_then_fill(app, private_redis, tmp_path)
    assert open_price_of(client) == 10.0, "held, and served while nothing changed"
    with api.app_context():
        assert clear_cached_answers() is True
    assert [open_price_of(client) for _ in range(3)] == [11.0] * 3, "computed, not stored"
    private_redis.make_room()
    change_open_price(api, "12.00")
    wait_for(lambda: open_price_of(client) == 12.0 and len(cache_log_lines(api)) == 2,
             "the cache to be back", 20)
    change_open_price(api, "13.00")
    assert open_price_of(client) == 12.0, "stored again, under a new generation"
    dispose(api)


def test_the_commands_say_whether_their_clear_reached_the_api(private_api, private_redis,
                                                              tmp_path):
    api, client, _server = private_api
    assert open_price_of(client) == 10.0
    with api.app_context():  # a change by hand, which refresh-sums then repairs
        db.session.execute(update(FinancialData).values(open_price=Decimal("30.00")))
        db.session.commit()
    # The command runs in a process of its own: an app of its own on the same Redis.
    command = redis_cached_app(api.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "cli-log",
                               private_redis.url).test_cli_runner()
    refreshed = command.invoke(args=["refresh-sums"])
    assert (refreshed.exit_code, refreshed.stdout, refreshed.stderr) == (
        0, "monthly sums recomputed; cached answers cleared\n", "")
    assert open_price_of(client) == 30.0

    private_redis.kill()
    pruned = command.invoke(args=["prune-runs", "--before", "2000-01-01"])
    assert (pruned.exit_code, pruned.stdout, pruned.stderr) == (
        0, "deleted 0 runs started before 2000-01-01 and 0 symbol outcomes\n",
        f"could not clear the cached answers (see the log); the API may serve answers up to "
        f"{api.config['CACHE_DEFAULT_TIMEOUT']}s old\n")
    # A command's clear is its last: it tries even while the cache is left alone.
    private_redis.start()
    refreshed = command.invoke(args=["refresh-sums"])
    assert (refreshed.exit_code, refreshed.stdout, refreshed.stderr) == (
        0, "monthly sums recomputed; cached answers cleared\n", "")
    dispose(command.app)


def saved_responses(folder: Path, symbols: list[str]) -> list[str]:
    """``--from-file`` arguments: the recorded IBM answer saved once per symbol, named as it."""
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    arguments = []
    for symbol in symbols:
        payload["Meta Data"]["2. Symbol"] = symbol
        path = folder / f"{symbol}.json"
        path.write_text(json.dumps(payload))
        arguments += ["--from-file", str(path)]
    return arguments


def behind(proxy, redis_url: str) -> str:
    """``redis_url`` (its database too) reached through ``proxy``."""
    return urlsplit(redis_url)._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


@pytest.mark.redis
def test_a_frozen_cache_costs_the_fetch_job_two_waits_and_one_warning_not_one_per_symbol(
        app, redis_url, job_env, capsys, monkeypatch, tmp_path):
    symbols = [f"S{number}" for number in range(10)]
    files = saved_responses(tmp_path, symbols)
    with stalling_proxy(urlsplit(redis_url).port or 6379) as proxy:
        monkeypatch.setenv("CACHE_TYPE", "RedisCache")
        monkeypatch.setenv("CACHE_REDIS_URL", behind(proxy, redis_url))
        proxy.stall()
        for changed in (True, False):  # each symbol stores new rows, then none
            accepted, waited = proxy.accepted, proxy.hung_up
            status, out, err = run_job(capsys, job_env, *files)
            assert (status, len(out.splitlines())) == (0, len(symbols)), err
            assert ("10 new" in out) is changed
            warnings = [line for line in err.splitlines() if "cached answers" in line]
            assert len(warnings) == 1, err
            assert "could not invalidate the cached answers (TimeoutError: " in warnings[0]
            assert "the API may serve answers up to CACHE_DEFAULT_TIMEOUT (300s) old" in err
            # Redis's client closes a connection whose answer timed out: the first
            # clear and the last wait out the socket timeout each; the 10 between
            # leave the cache alone, where a wait each would make 12. The job has
            # returned: once the proxy has seen each of its connections end, the
            # counts are final.
            wait_for(lambda: proxy.connected == 0, "the proxy to see the job's connections end",
                     HANG_GUARD_SECONDS)
            assert (proxy.accepted - accepted, proxy.hung_up - waited) == (2, 2)
    assert len(stored(app)) == 10 * len(symbols)


@pytest.mark.redis
def test_clears_put_off_while_the_cache_was_frozen_are_made_by_the_runs_last(
        redis_app, redis_url, job_env, capsys, monkeypatch, fake_alphavantage):
    worker = redis_app.test_client()
    url = "/api/statistics?symbol=IBM&start_date=2023-03-24&end_date=2023-03-24"
    payload = json.loads((ALPHAVANTAGE_FIXTURES / IBM).read_text())
    with stalling_proxy(urlsplit(redis_url).port or 6379) as proxy:
        monkeypatch.setenv("CACHE_TYPE", "RedisCache")
        monkeypatch.setenv("CACHE_REDIS_URL", behind(proxy, redis_url))
        fake_alphavantage.queue_json(payload)
        assert run_job(capsys, job_env, "--symbols", "IBM")[0] == 0
        assert worker.get(url).get_json()["data"]["average_daily_open_price"] == 123.36

        proxy.stall()  # the run's first clear fails, and opens the breaker for 30 s

        def thaw_then_answer(_request):
            proxy.resume()
            return Response((ALPHAVANTAGE_FIXTURES / AAPL).read_bytes(),
                            content_type="application/json")

        fake_alphavantage.queue_handler(thaw_then_answer)
        payload["Time Series (Daily)"]["2023-03-24"]["1. open"] = "124.00"
        fake_alphavantage.queue_json(payload)
        status, out, err = run_job(capsys, job_env, "--symbols", "AAPL,IBM")
    assert (status, out) == (0, "AAPL: 10 rows fetched, 10 new, 0 updated\n"
                                "IBM: 10 rows fetched, 0 new, 1 updated\n")
    assert worker.get(url).get_json()["data"]["average_daily_open_price"] == 124.0
    gone, back = [line for line in err.splitlines() if "cached answers" in line]
    assert "could not invalidate the cached answers (TimeoutError: " in gone
    assert "the cached answers are invalidated again after " in back
    assert back.endswith("; clears put off meanwhile: 2")


@pytest.mark.redis
def test_a_clear_put_off_is_made_by_the_next_that_tries(redis_app, redis_url, ibm_day,
                                                        store_prices, tmp_path):
    store_prices([ibm_day])
    worker = redis_app.test_client()
    assert open_price_of(worker) == 10.0
    change_open_price(redis_app, "11.00")
    with stalling_proxy(urlsplit(redis_url).port or 6379) as proxy:
        job = redis_cached_app(redis_app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "job",
                               behind(proxy, redis_url), CACHE_RETRY_WAIT=0)
        proxy.stall()
        with job.app_context():
            assert clear_cached_answers() is False
            proxy.resume()
            # Only the run history's answers are stale now, but the clear put
            # off made every answer stale: this one makes it.
            assert clear_run_history_answers() is True
            assert open_price_of(worker) == 11.0
            change_open_price(redis_app, "12.00")
            # Made, it is not made again: the run history's clears keep the prices.
            assert clear_run_history_answers() is True
            assert open_price_of(worker) == 11.0
        dispose(job)
