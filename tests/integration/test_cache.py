"""Cached answers: hits, invalidation shared through Redis, TTL, outage tolerance."""
import datetime
import time

import pytest
import redis

from app.api.caching import cached_value, clear_cached_answers, clear_run_history_answers
from app.extensions import cache, db
from financial.models import FAILED
from financial.runs import RunRecorder, SymbolOutcome
from tests.helpers import STATS_URL, build_app, change_open_price, open_price_of


def test_redis_replies_are_parsed_in_c():
    """hiredis is installed: redis-py, the cache's and the rate limit's client, parses with it.

    Its pure-Python parser costs a fifth more instructions per round trip.
    """
    connection = redis.Redis.from_url("redis://127.0.0.1:6379/0").connection_pool.make_connection()
    assert type(connection._parser).__name__ == "_HiredisParser"


def test_statistics_are_served_from_the_cache_until_it_is_cleared(app, ibm_day, store_prices):
    store_prices([ibm_day])
    client = app.test_client()
    assert open_price_of(client) == 10.0
    change_open_price(app, "11.00")
    assert open_price_of(client) == 10.0
    with app.app_context():
        assert clear_cached_answers() is True
    assert open_price_of(client) == 11.0


def test_list_pages_are_cached_per_normalized_parameters(app, ibm_day, store_prices):
    store_prices([ibm_day])
    client = app.test_client()
    first = client.get("/api/financial_data?symbol=IBM").get_json()
    change_open_price(app, "12.00")
    assert client.get("/api/financial_data?symbol=ibm").get_json() == first
    fresh = client.get("/api/financial_data?symbol=IBM&limit=6").get_json()
    assert fresh["data"][0]["open_price"] == "12.00"


def _counts_per_date_range(application, make_price, store_prices) -> dict[str, int]:
    """Ask one symbol's rows over several date ranges on one cache; return each pagination.count.

    The row count is cached apart from the page, per filter: ranges that
    differ only in end_date, or only in start_date, must not share it.
    """
    days = [datetime.date(2023, 1, day) for day in (3, 4, 5, 6)]
    store_prices([make_price(symbol="IBM", date=day) for day in days])
    client = application.test_client()
    queries = ["end_date=2023-01-03", "end_date=2023-01-05",
               "start_date=2023-01-04", "start_date=2023-01-06",
               "start_date=2023-01-04&end_date=2023-01-04",
               "start_date=2023-01-03&end_date=2023-01-04"]
    return {query: client.get(f"/api/financial_data?symbol=IBM&limit=1&{query}")
            .get_json()["pagination"]["count"] for query in queries}


EXPECTED_COUNTS = {"end_date=2023-01-03": 1, "end_date=2023-01-05": 3,
                   "start_date=2023-01-04": 3, "start_date=2023-01-06": 1,
                   "start_date=2023-01-04&end_date=2023-01-04": 1,
                   "start_date=2023-01-03&end_date=2023-01-04": 2}


def test_the_row_count_is_cached_per_date_range(app, make_price, store_prices):
    assert _counts_per_date_range(app, make_price, store_prices) == EXPECTED_COUNTS


@pytest.mark.redis
def test_the_shared_row_count_is_cached_per_date_range(redis_app, make_price, store_prices):
    assert _counts_per_date_range(redis_app, make_price, store_prices) == EXPECTED_COUNTS


def test_errors_are_not_cached(app, ibm_day, store_prices):
    client = app.test_client()
    assert client.get(STATS_URL).status_code == 404
    store_prices([ibm_day])
    assert client.get(STATS_URL).status_code == 200


@pytest.mark.redis
def test_redis_is_shared_by_workers_and_cleared_for_all(redis_app, ibm_day, store_prices,
                                                        tmp_path):
    store_prices([ibm_day])
    other_worker = build_app(redis_app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "w2",
                             CACHE_TYPE="RedisCache",
                             CACHE_REDIS_URL=redis_app.config["CACHE_REDIS_URL"],
                             CACHE_KEY_PREFIX=redis_app.config["CACHE_KEY_PREFIX"])
    assert open_price_of(redis_app.test_client()) == 10.0
    change_open_price(redis_app, "13.00")
    assert open_price_of(other_worker.test_client()) == 10.0, "the worker reuses the shared hit"
    with other_worker.app_context():
        assert clear_cached_answers() is True
        db.engine.dispose()
    assert open_price_of(redis_app.test_client()) == 13.0


@pytest.mark.redis
def test_deployments_with_their_own_key_prefix_share_no_entries(
        redis_app, ibm_day, store_prices, tmp_path):
    """Two deployments whose DATABASE_URLs read the same, on one Redis."""
    store_prices([ibm_day])
    other_site = build_app(redis_app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "b",
                           CACHE_TYPE="RedisCache",
                           CACHE_REDIS_URL=redis_app.config["CACHE_REDIS_URL"],
                           CACHE_KEY_PREFIX=redis_app.config["CACHE_KEY_PREFIX"] + "site-b:")
    assert open_price_of(redis_app.test_client()) == 10.0
    change_open_price(redis_app, "13.00")
    assert open_price_of(other_site.test_client()) == 13.0, "not the other site's entry"
    with other_site.app_context():
        db.engine.dispose()


@pytest.mark.redis
def test_redis_entries_expire_after_the_configured_timeout(database_url, tmp_path, redis_url,
                                                           ibm_day, store_prices):
    prefix = "test-ttl:"
    app = build_app(database_url, tmp_path / "log", CACHE_TYPE="RedisCache",
                    CACHE_REDIS_URL=redis_url, CACHE_KEY_PREFIX=prefix, CACHE_DEFAULT_TIMEOUT=7)
    store_prices([ibm_day])
    client = redis.Redis.from_url(redis_url)
    try:
        assert app.test_client().get(STATS_URL).status_code == 200
        ttls = [client.ttl(key) for key in client.scan_iter(f"{prefix}*")]
        assert ttls and all(0 < ttl <= 7 for ttl in ttls if ttl != -1)
        assert any(0 < ttl <= 7 for ttl in ttls)
    finally:
        with app.app_context():
            cache.clear()
            db.engine.dispose()
        client.close()


def test_a_cache_outage_degrades_to_uncached_answers(database_url, tmp_path, ibm_day,
                                                     store_prices, caplog):
    app = build_app(database_url, tmp_path / "log", CACHE_TYPE="RedisCache",
                    CACHE_REDIS_URL="redis://127.0.0.1:1/0")
    store_prices([ibm_day])
    client = app.test_client()
    response = client.get(STATS_URL)
    assert response.status_code == 200
    assert response.get_json()["data"]["average_daily_open_price"] == 10.0
    assert client.get("/api/financial_data").status_code == 200
    assert caplog.text.count("the answer cache failed (ConnectionError: ") == 1
    with app.app_context():
        db.engine.dispose()


def _per_process_cache_of_twenty(tmp_path) -> tuple:
    """An app whose SimpleCache holds 20 entries, and that cache's entries as stored."""
    application = build_app(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path / "log",
                            CACHE_THRESHOLD=20)
    return application, application.extensions["cache"][cache]._cache


def test_a_full_per_process_cache_makes_room_for_a_batch_of_answers(tmp_path):
    """Full, it drops the entries expiring first down to PRUNED_FILL of CACHE_THRESHOLD at once.

    cachelib's own SimpleCache dropped one per write, sorting every entry each time.
    """
    application, entries = _per_process_cache_of_twenty(tmp_path)
    with application.app_context():
        for number in range(21):  # one past the threshold: it prunes before a write
            cache.set(f"entry{number}", number, timeout=100 + number)
        cache.set("entry21", 21, timeout=200)
        assert set(entries) == {f"entry{number}" for number in range(3, 22)}
        cache.set("entry22", 22, timeout=200)
        cache.set("entry23", 23, timeout=200)
        assert len(entries) == 21, "no more than cachelib's own keeps"
        cache.set("entry24", 24, timeout=200)
        assert len(entries) == 19
        assert cache.get("entry24") == 24 and cache.get("entry3") is None


def test_a_full_per_process_cache_makes_room_for_a_batch_when_few_entries_expired(
        tmp_path, monkeypatch):
    """Entries expiring one by one must not bring back a scan of every entry on every write."""
    application, entries = _per_process_cache_of_twenty(tmp_path)
    with application.app_context():
        cache.set("entry0", 0, timeout=1)
        for number in range(1, 21):
            cache.set(f"entry{number}", number, timeout=100 + number)
        later = time.time() + 10
        monkeypatch.setattr(time, "time", lambda: later)
        cache.set("entry21", 21, timeout=200)
        assert set(entries) == {f"entry{number}" for number in range(3, 22)}


def test_a_full_per_process_cache_drops_every_expired_entry_not_only_a_batch(
        tmp_path, monkeypatch):
    """More entries expired than the batch holds: all of them go, and no live one."""
    application, entries = _per_process_cache_of_twenty(tmp_path)
    with application.app_context():
        for number in range(15):
            cache.set(f"expired{number}", number, timeout=1)
        for number in range(6):
            cache.set(f"live{number}", number, timeout=100)
        later = time.time() + 10
        monkeypatch.setattr(time, "time", lambda: later)
        cache.set("live6", 6, timeout=100)
        assert set(entries) == {f"live{number}" for number in range(7)}


def _history_clear_keeps_price_answers(application, ibm_day, store_prices) -> None:
    """A symbol recorded without changing rows: the history's answers are fresh, prices kept."""
    store_prices([ibm_day])
    client = application.test_client()
    assert open_price_of(client) == 10.0
    assert client.get("/api/fetch_runs").get_json()["data"] == []
    assert client.get("/api/symbols").get_json()["data"][0]["last_fetch_status"] is None
    change_open_price(application, "11.00")
    with application.app_context():
        RunRecorder.open(db.session, "manual").add(SymbolOutcome("IBM", FAILED, error="no"))
        db.session.commit()
        assert clear_run_history_answers() is True
    [run] = client.get("/api/fetch_runs").get_json()["data"]
    assert [(entry["symbol"], entry["status"]) for entry in run["symbols"]] == [("IBM", "failed")]
    assert client.get("/api/symbols").get_json()["data"][0]["last_fetch_status"] == "failed"
    assert open_price_of(client) == 10.0, "a price answer outlives a clear of the history's"
    with application.app_context():
        assert clear_cached_answers() is True
    assert open_price_of(client) == 11.0


def test_clearing_the_run_history_answers_keeps_price_answers(app, ibm_day, store_prices):
    _history_clear_keeps_price_answers(app, ibm_day, store_prices)


@pytest.mark.redis
def test_clearing_the_shared_run_history_answers_keeps_price_answers(
        redis_app, ibm_day, store_prices):
    _history_clear_keeps_price_answers(redis_app, ibm_day, store_prices)


def _answer_computed_across_a_fetch(application) -> tuple[str, str]:
    """Compute an answer that a fetch invalidates midway; return it and the next answer."""
    with application.test_request_context():
        def old_answer_while_a_fetch_lands() -> str:
            clear_cached_answers()  # the fetch job commits and invalidates
            assert cached_value("race", (1,), lambda: "NEW DATA") == "NEW DATA"
            return "OLD DATA"

        first = cached_value("race", (1,), old_answer_while_a_fetch_lands)
        return first, cached_value("race", (1,), lambda: "computed again")


def test_an_answer_computed_before_a_fetch_is_not_stored_as_current(app):
    assert _answer_computed_across_a_fetch(app) == ("OLD DATA", "NEW DATA")


@pytest.mark.redis
def test_an_answer_computed_before_a_fetch_is_not_shared_as_current(redis_app):
    assert _answer_computed_across_a_fetch(redis_app) == ("OLD DATA", "NEW DATA")


@pytest.mark.redis
def test_an_answer_is_read_under_the_generations_its_own_request_read(redis_app):
    """A worker's other thread, storing the generations it read before a clear, changes nothing.

    Threads share the generations last seen; each stores those its read
    found, and one that read before a clear may store them last.
    """
    state = redis_app.extensions["cached_answers"]
    with redis_app.test_request_context():
        assert cached_value("symbols", (1,), lambda: "before the clear") == "before the clear"
        before = dict(state.generations)
        assert clear_cached_answers() is True

        class OtherThreadStoresLast(dict):
            def __setitem__(self, key: str, value: str) -> None:
                super().__setitem__(key, value)
                if key == state.history_generation_key:
                    super().__setitem__(state.generation_key, before[state.generation_key])

        state.generations = OtherThreadStoresLast(before)
        assert cached_value("symbols", (1,), lambda: "after the clear") == "after the clear"
