"""What the shared cache stores in Redis: data the API reads back exactly, never code it runs."""
import datetime
import pickle
import re
import uuid

import pytest
import redis
from cachelib.serializers import SimpleSerializer

from app.api.caching import _VALUE_TYPES, cached_value
from app.extensions import cache, db
from lib.cache_codec import MARK, MessagePackRedisSerializer, pack
from tests.helpers import (
    STATS_URL, build_app, change_open_price, delete_redis_keys, insert_prices, open_price_of,
    scrape,
)
from tests.unit.test_cache_codec import VALUES, Planted, types_of

# A request of each kind the API caches: its stored response, and the values
# it is computed from (a page's count, a list's page, the statistics).
CACHED_URLS = (STATS_URL, "/api/financial_data?symbol=IBM&fields=all&limit=3",
               "/api/financial_data?limit=2&page=2", "/api/symbols", "/api/fetch_runs")
# Headers whose values differ between any two requests.
PER_REQUEST = {"X-Request-ID", "Date"}
LOOKUPS = "financial_cache_lookups_total"


@pytest.fixture
def prefix(redis_url):
    """A key prefix of the test's own on the shared Redis; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    delete_redis_keys(redis_url, f"{prefix}*")


@pytest.fixture
def redis_api(sqlite_app, redis_url, prefix, tmp_path, ibm_day, make_price):
    """(app on the shared Redis, a client of that Redis): two symbols stored, nothing cached.

    What Redis holds is the same whatever the database: SQLite only.
    """
    with sqlite_app.app_context():
        insert_prices(db.session, [ibm_day, make_price(symbol="AAPL",
                                                       date=datetime.date(2023, 1, 4))])
        db.session.commit()
    api = build_app(sqlite_app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "redis-log",
                    CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url, CACHE_KEY_PREFIX=prefix)
    server = redis.Redis.from_url(redis_url)
    yield api, server
    server.close()
    with api.app_context():
        db.engine.dispose()


def lookups(client, result: str) -> float:
    """The statistics lookups counted so far with ``result`` (hit or miss), in this process."""
    return scrape(client).get((LOOKUPS, (("kind", "statistics"), ("result", result))), 0.0)


@pytest.mark.redis
@pytest.mark.parametrize("planted_in", ["the entries", "every key, generations too"])
def test_a_pickle_planted_in_redis_never_runs_and_reads_as_a_miss(redis_api, prefix, tmp_path,
                                                                  planted_in):
    """Whoever can write to the cache's Redis stores a pickle under the keys the API reads."""
    api, server = redis_api
    client = api.test_client()
    first = client.get(STATS_URL)
    keys = list(server.scan_iter(f"{prefix}*"))
    assert {b":response:", b":statistics:", b":generation"} <= {
        part for key in keys for part in (b":response:", b":statistics:", b":generation")
        if part in key}
    marker = tmp_path / "ran"
    # As Flask-Caching's own serializer (cachelib's RedisSerializer) stores a value.
    planted = b"!" + pickle.dumps(Planted(marker), pickle.HIGHEST_PROTOCOL)
    for key in keys:
        if planted_in.startswith("every") or not key.endswith(b"generation"):
            server.set(key, planted)
    misses = lookups(client, "miss")

    again = client.get(STATS_URL)
    assert not marker.exists(), "the pickle was loaded"
    assert again.status_code == 200
    assert again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
    assert lookups(client, "miss") == misses + 1
    change_open_price(api, "11.00")
    hits = lookups(client, "hit")
    assert open_price_of(client) == 10.0, "what was computed then is cached again"
    assert lookups(client, "hit") == hits + 1
    assert not marker.exists()


FOREIGN = [b"", b"42", b"garbage", b"!garbage", b"\x80\x05", MARK, MARK + b"\xc1",
           MARK + b"\x92\xc4",
           # Values the codec reads, of a type no kind has, or no stored response's shape.
           *(MARK + pack(value) for value in ("x", 1.5, True, [1, 2, 3], [b"x", [["a", 1]]],
                                              [b"x", [["a"]]], [b"x", "y"]))]


@pytest.mark.redis
@pytest.mark.parametrize("planted_in", ["the entries", "every key, generations too"])
@pytest.mark.parametrize("foreign", FOREIGN)
def test_any_other_value_under_the_keys_reads_as_a_miss(redis_api, prefix, foreign, planted_in):
    api, server = redis_api
    client = api.test_client()
    answers = [client.get(url) for url in CACHED_URLS]
    for key in server.scan_iter(f"{prefix}*"):
        if planted_in.startswith("every") or not key.endswith(b"generation"):
            server.set(key, foreign)
    for url, answer in zip(CACHED_URLS, answers):
        again = client.get(url)
        assert again.status_code == 200, url
        assert again.data == answer.data, url
    assert api.extensions["cached_answers"].breaker.is_closed, "no lookup failed"
    change_open_price(api, "11.00")
    assert open_price_of(client) == 10.0, "cached again"


@pytest.mark.redis
def test_a_value_the_codec_does_not_keep_is_computed_each_time_and_said_once(
        redis_api, caplog):
    """No fault of Redis: the cache stays on for every other answer."""
    api, _ = redis_api
    with api.test_request_context():
        for _ in range(2):
            assert cached_value("count", ("IBM",), lambda: 2 ** 70) == 2 ** 70
        assert api.extensions["cached_answers"].breaker.is_closed
    assert [record.getMessage() for record in caplog.records
            if record.name == "app.api.caching"] == [
        "an answer could not be cached (the cache does not store values of type int); "
        "it is computed each time"]
    client = api.test_client()
    hits = lookups(client, "hit")
    assert client.get(STATS_URL).status_code == client.get(STATS_URL).status_code == 200
    assert lookups(client, "hit") == hits + 1


def stored_values(application, keys) -> dict[str, object]:
    """Each entry the app's cache holds, by its name past the generation, as the app reads it."""
    with application.app_context():
        return {re.sub(r"^.*?:v\d+:[0-9a-f.]+:", "", key): cache.get(key)
                for key in keys if ":v" in key}


@pytest.mark.redis
def test_every_value_the_api_caches_reads_back_from_redis_as_a_process_keeps_it(
        redis_api, prefix, sqlite_app):
    """The values of a per-process cache are never encoded: Redis's must read as the same."""
    api, server = redis_api
    local = build_app(sqlite_app.config["SQLALCHEMY_DATABASE_URI"],
                      api.config["LOG_DIR"] + "-local")
    for url in CACHED_URLS:
        assert api.test_client().get(url).status_code == 200
        assert local.test_client().get(url).status_code == 200
    in_redis = stored_values(api, [key.decode().removeprefix(prefix)
                                   for key in server.scan_iter(f"{prefix}*")])
    with local.app_context():
        local_keys = [key.removeprefix(local.config["CACHE_KEY_PREFIX"])
                      for key in cache.cache._cache]
    in_process = stored_values(local, local_keys)
    kinds = {name.split(":")[0] for name in in_redis}
    assert kinds == {"response", "statistics", "price_page", "count", "symbols", "fetch_runs"}
    # Each kind's type is known, so a value of another type left in Redis reads as a miss.
    assert {name: type(value) for name, value in in_redis.items()
            if not name.startswith("response:")} == {
        name: _VALUE_TYPES[name.split(":")[0]] for name in in_redis
        if not name.startswith("response:")}
    # Per request: the stored response's Date and request ID are never stored, nor read.
    assert in_redis.keys() == in_process.keys()
    for name, value in in_redis.items():
        assert value == in_process[name], name
        assert types_of(value) == types_of(in_process[name]), name
    with local.app_context():
        db.engine.dispose()


@pytest.mark.redis
@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_every_type_reads_back_from_redis_as_written(redis_api, value):
    api, _ = redis_api
    with api.app_context():
        cache.set_many({"value": value, "beside": [value]})
        assert cache.get_many("value", "beside") == [value, [value]]
        read = cache.get("value")
        assert types_of(read) == types_of(value)
        assert repr(read) == repr(value), "decimals keep their places, datetimes their offsets"


@pytest.mark.redis
@pytest.mark.parametrize("url", CACHED_URLS)
def test_a_redis_hit_answers_the_same_bytes_headers_and_etag_as_the_miss(redis_api, url):
    api, _ = redis_api
    client = api.test_client()
    miss, hit = client.get(url), client.get(url)
    assert miss.status_code == hit.status_code == 200
    assert hit.data == miss.data
    assert ([(name, value) for name, value in hit.headers if name not in PER_REQUEST]
            == [(name, value) for name, value in miss.headers if name not in PER_REQUEST])
    assert hit.headers["ETag"] == miss.headers["ETag"]
    not_modified = client.get(url, headers={"If-None-Match": miss.headers["ETag"]})
    assert not_modified.status_code == 304


@pytest.mark.redis
def test_a_per_process_cache_keeps_cachelibs_own_serializer(sqlite_app, redis_url):
    """Only the process itself writes to it; Redis's is the one anyone on its network can reach."""
    with sqlite_app.app_context():
        assert type(cache.cache.serializer) is SimpleSerializer
    shared = build_app(sqlite_app.config["SQLALCHEMY_DATABASE_URI"],
                       sqlite_app.config["LOG_DIR"] + "-shared",
                       CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_url)
    with shared.app_context():
        assert type(cache.cache.serializer) is MessagePackRedisSerializer
        db.engine.dispose()
