"""Per-client rate limit: 429 in the envelope, exemptions, the proxy, shared and failing storage."""
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from flask import request

from app.envelope import RETRY_AFTER_SECONDS
from app.rate_limits import STORAGE_TIMEOUT_SECONDS
from conf.settings import ConfigError
from tests.helpers import (
    HANG_GUARD_SECONDS, ManualClock, build_app, call_guarded, delete_redis_keys, free_port,
    migrate_database, sqlite_url, wait_for,
)
from tests.servers import stalling_proxy

LIMIT = "3 per minute"
OVER_LIMIT = ("too many requests: at most 3 per minute per client; "
              "retry after the number of seconds in the Retry-After header")
STATS_URL = "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-01-31"


@pytest.fixture
def limited_app(sqlite_database_url, tmp_path):
    return build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage(request) -> Iterator[dict[str, str]]:
    """Where the limiter counts: each worker's memory, or the shared Redis (TEST_REDIS_URL).

    On Redis, under a key prefix of the test's own, its keys deleted afterwards.
    """
    if request.param == "memory":
        yield {"RATELIMIT_STORAGE_URI": "memory://"}
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield {"RATELIMIT_STORAGE_URI": url, "RATELIMIT_KEY_PREFIX": prefix}
    delete_redis_keys(url, f"*{prefix}*")


def get_from(client, path: str, address: str = "192.0.2.1", **headers):
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": address})


def assert_waits_out_the_minute(refused) -> None:
    """A 429 of LIMIT says to wait until its window's end (X-RateLimit-Reset, a whole second
    after it at most), rounded up: 60 s to 61 s after the window's first request."""
    assert 0 < int(refused.headers["Retry-After"]) <= 61


def test_the_request_after_the_limit_gets_429_in_the_envelope(limited_app):
    client = limited_app.test_client()
    answered = [get_from(client, "/api/financial_data") for _ in range(3)]
    assert [response.status_code for response in answered] == [200, 200, 200]
    assert [response.headers["X-RateLimit-Remaining"] for response in answered] == ["2", "1", "0"]

    refused = get_from(client, "/api/financial_data")
    assert refused.status_code == 429
    assert refused.get_json() == {"data": [], "pagination": None, "info": {"error": OVER_LIMIT}}
    assert_waits_out_the_minute(refused)
    assert refused.headers["Cache-Control"] == "no-store"
    other_endpoint = get_from(client, STATS_URL)
    assert other_endpoint.status_code == 429, "one budget for the whole API"
    assert other_endpoint.get_json() == {"data": {}, "info": {"error": OVER_LIMIT}}


def test_only_a_refusal_says_when_to_retry_every_counted_answer_its_budget(
        sqlite_database_url, tmp_path, storage):
    """Retry-After means something on a 429 or a 503 only (RFC 9110 10.2.3), not on a 200."""
    client = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                       **storage).test_client()
    answered = get_from(client, "/api/financial_data")
    unchanged = get_from(client, "/api/financial_data",
                         **{"If-None-Match": answered.headers["ETag"]})
    not_found = get_from(client, "/api/nothing")
    refused = get_from(client, "/api/financial_data")
    answers = [answered, unchanged, not_found, refused]
    assert [answer.status_code for answer in answers] == [200, 304, 404, 429]
    assert [(answer.headers["X-RateLimit-Limit"], answer.headers["X-RateLimit-Remaining"])
            for answer in answers] == [("3", "2"), ("3", "1"), ("3", "0"), ("3", "0")]
    assert all(answer.headers["X-RateLimit-Reset"].isdigit() for answer in answers)
    assert ["Retry-After" in answer.headers for answer in answers] == [False, False, False, True]
    assert_waits_out_the_minute(refused)


def test_a_database_outage_says_its_own_retry_after_not_the_window(tmp_path, storage):
    application = build_app(f"mysql+pymysql://api@127.0.0.1:{free_port()}/financial",
                            tmp_path / "log", RATE_LIMIT=LIMIT, **storage)
    unavailable = get_from(application.test_client(), "/api/financial_data")
    assert (unavailable.status_code, unavailable.get_json()) == (503, {
        "data": [], "pagination": None,
        "info": {"error": "the database is unavailable, please retry later"}})
    assert unavailable.headers["Retry-After"] == RETRY_AFTER_SECONDS
    assert unavailable.headers["X-RateLimit-Remaining"] == "2", "counted like any request"


def test_a_refusal_is_logged_once_by_the_request_line(limited_app, tmp_path):
    client = limited_app.test_client()
    statuses = [get_from(client, "/api/financial_data").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count(" GET /api/financial_data 429 ") == 1
    assert "exceeded" not in log, "no second line from Flask-Limiter"


def test_each_client_has_its_own_budget(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        get_from(client, "/api/financial_data", "192.0.2.1")
    assert get_from(client, "/api/financial_data", "192.0.2.1").status_code == 429
    assert get_from(client, "/api/financial_data", "192.0.2.2").status_code == 200


def test_health_and_metrics_are_never_limited(limited_app):
    client = limited_app.test_client()
    for _ in range(3):
        get_from(client, "/api/financial_data")
    for _ in range(5):
        assert get_from(client, "/api/health").status_code == 200
        assert get_from(client, "/metrics").status_code == 200
    assert get_from(client, "/api/financial_data").status_code == 429


def test_static_files_are_never_limited(limited_app):
    client = limited_app.test_client()
    for _ in range(5):
        with get_from(client, "/static/dashboard/dashboard.css") as static_file:
            assert static_file.status_code == 200
    assert [get_from(client, "/api/financial_data").status_code for _ in range(4)] == [
        200, 200, 200, 429]


def test_the_html_pages_are_never_limited_but_what_they_load_is(limited_app):
    """A reload over the limit shows the page, which says so, rather than a bare JSON 429."""
    client = limited_app.test_client()
    for _ in range(3):
        get_from(client, "/api/financial_data")
    for path in ("/", "/api/docs"):
        page = get_from(client, path)
        assert (page.status_code, page.mimetype) == (200, "text/html"), path
    assert get_from(client, "/api/swagger.json").status_code == 429
    assert get_from(client, "/api/symbols").status_code == 429


def test_cors_preflights_are_never_limited(limited_app):
    client = limited_app.test_client()
    preflight = {"Origin": "https://any.example", "Access-Control-Request-Method": "GET"}
    for _ in range(5):
        answer = client.options("/api/financial_data", headers=preflight,
                                environ_base={"REMOTE_ADDR": "192.0.2.1"})
        assert answer.status_code != 429
    assert [get_from(client, "/api/financial_data").status_code for _ in range(4)] == [
        200, 200, 200, 429], "preflights spent none of the budget"


@pytest.mark.parametrize(("hops", "forwarded_for", "client_address"), [
    (0, "198.51.100.7", "192.0.2.1"),
    (1, "198.51.100.7", "198.51.100.7"),
    # What a client writes itself comes first; only the trusted proxies' entries count.
    (1, "203.0.113.66, 198.51.100.7", "198.51.100.7"),
    (2, "203.0.113.66, 198.51.100.7", "203.0.113.66"),
])
def test_the_client_is_the_address_trusted_proxies_forward(sqlite_database_url, tmp_path, hops,
                                                           forwarded_for, client_address):
    application = build_app(sqlite_database_url, tmp_path / "log", TRUSTED_PROXY_HOPS=hops)
    get_from(application.test_client(), "/api/health", "192.0.2.1",
             **{"X-Forwarded-For": forwarded_for, "X-Request-ID": "proxy-test"})
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert f" client={client_address} request_id=proxy-test" in log


def test_behind_a_proxy_each_forwarded_client_has_its_budget(sqlite_database_url, tmp_path):
    application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                            TRUSTED_PROXY_HOPS=1)
    client = application.test_client()
    proxy = "10.0.0.2"
    for _ in range(3):
        get_from(client, "/api/financial_data", proxy, **{"X-Forwarded-For": "198.51.100.7"})
    spoofed = get_from(client, "/api/financial_data", proxy,
                       **{"X-Forwarded-For": "203.0.113.66, 198.51.100.7"})
    assert spoofed.status_code == 429, "a forged first entry does not buy a new budget"
    neighbour = get_from(client, "/api/financial_data", proxy,
                         **{"X-Forwarded-For": "198.51.100.8"})
    assert neighbour.status_code == 200


def test_unknown_paths_and_wrong_methods_count_too(limited_app):
    client = limited_app.test_client()
    assert get_from(client, "/api/nothing").status_code == 404
    assert client.delete("/api/financial_data",
                         environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 405
    assert get_from(client, "/api/financial_data").status_code == 200
    assert get_from(client, "/api/nothing").status_code == 429


def test_no_limit_unless_configured(sqlite_client):
    responses = [get_from(sqlite_client, "/api/financial_data") for _ in range(10)]
    assert {response.status_code for response in responses} == {200}
    assert "X-RateLimit-Limit" not in responses[-1].headers


def test_an_unreachable_storage_never_fails_a_request(sqlite_database_url, tmp_path):
    application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                            RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0")
    client = application.test_client()
    statuses = [get_from(client, "/api/financial_data").status_code for _ in range(3)]
    assert statuses == [200, 200, 200], "counted in memory while the storage is down"
    refused = get_from(client, STATS_URL)
    assert refused.status_code == 429, "one budget for the whole API in memory too"
    assert refused.get_json() == {"data": {}, "info": {"error": OVER_LIMIT}}
    assert_waits_out_the_minute(refused)


# A scheme nobody knows (the password must not reach the message), and an
# asynchronous storage, which the limiter of a WSGI app cannot use.
@pytest.mark.parametrize("uri", ["cache://user:s3cret@host/0", "async+memory://"])
def test_an_unknown_storage_stops_the_start(sqlite_database_url, tmp_path, uri):
    with pytest.raises(ConfigError, match="^RATELIMIT_STORAGE_URI names an unknown storage; "
                                          "expected e.g. memory:// or redis://host:6379/1$"):
        build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                  RATELIMIT_STORAGE_URI=uri)


def test_a_storage_url_its_storage_refuses_stops_the_start_in_one_line(
        sqlite_database_url, tmp_path):
    """redis-py refuses a port that is no number: named, not a traceback."""
    with pytest.raises(ConfigError, match="^RATELIMIT_STORAGE_URI is not a URL its storage "
                                          "can use; expected e.g. redis://host:6379/1$") as refused:
        build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                  RATELIMIT_STORAGE_URI="redis://user:s3cret@cache:port/1")
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


@pytest.mark.parametrize("value", ["lots", "5 per fortnight", "per minute"])
def test_a_malformed_rate_limit_stops_the_start(sqlite_database_url, tmp_path, value):
    with pytest.raises(ConfigError, match=f"RATE_LIMIT must be a limit such as '600 per "
                                          f"minute', got '{value}'"):
        build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=value)


@pytest.mark.parametrize("value", ["0 per second", "10 per second;0 per hour"])
def test_a_rate_limit_allowing_nothing_stops_the_start(sqlite_database_url, tmp_path, value):
    with pytest.raises(ConfigError, match=f"^RATE_LIMIT must allow at least 1 request, got "
                                          f"'{value}'; leave it empty for no limit$"):
        build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=value)


@pytest.mark.parametrize("limit, first, waited", [
    ("1 per second", 1_000_000.5, 0.95),  # the window's last second: it said 0
    ("1 per 2 seconds", 1_000_000.9, 0.5),  # 1.5 s left: it said 1
])
def test_a_refusal_never_says_to_retry_within_its_window(
        sqlite_database_url, tmp_path, monkeypatch, limit, first, waited):
    """Flask-Limiter cut the seconds to the window's end down: a client retrying then was
    refused."""
    clock = ManualClock(first)
    shared_time = SimpleNamespace(time=clock, monotonic=time.monotonic, sleep=time.sleep)
    for module in ("flask_limiter._extension", "limits.storage.memory", "app.rate_limits"):
        monkeypatch.setattr(f"{module}.time", shared_time)
    client = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=limit,
                       RATELIMIT_STORAGE_URI="memory://").test_client()
    assert get_from(client, "/api/financial_data").status_code == 200
    clock.now += waited
    refused = get_from(client, "/api/financial_data")
    assert refused.status_code == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    clock.now += retry_after
    assert get_from(client, "/api/financial_data").status_code == 200, "the wait was enough"


def test_deployments_sharing_a_redis_count_apart(sqlite_database_url, tmp_path, private_redis):
    """Replicas of a deployment share its database and one budget; another database, its own."""
    (tmp_path / "staging").mkdir()
    urls = [sqlite_database_url, sqlite_url(tmp_path / "staging")]
    migrate_database(urls[1], tmp_path / "log-migrate")
    deployments = [build_app(url, tmp_path / f"log-{n}", RATE_LIMIT=LIMIT,
                             RATELIMIT_STORAGE_URI=private_redis.url)
                   for n, url in enumerate(urls)]
    clients = [deployment.test_client() for deployment in deployments]
    for _ in range(3):
        assert get_from(clients[0], "/api/financial_data").status_code == 200
    assert get_from(clients[0], "/api/financial_data").status_code == 429
    staging = get_from(clients[1], "/api/financial_data")
    assert (staging.status_code, staging.headers["X-RateLimit-Remaining"]) == (200, "2")


def storage_pool(application) -> Any:
    """Return the pool of connections to Redis of ``application``'s rate limit storage."""
    [limiter] = application.extensions["limiter"]
    return limiter.storage.storage.connection_pool


def test_workers_sharing_a_redis_count_one_budget(sqlite_database_url, tmp_path, private_redis):
    workers = [build_app(sqlite_database_url, tmp_path / f"log-{n}", RATE_LIMIT=LIMIT,
                         RATELIMIT_STORAGE_URI=private_redis.url) for n in range(2)]
    clients = [worker.test_client() for worker in workers]
    answers = [get_from(clients[0], "/api/financial_data"),
               get_from(clients[1], "/api/financial_data"),
               get_from(clients[0], "/api/symbols"),
               get_from(clients[1], "/api/financial_data")]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers] == [
        "2", "1", "0", "0"]
    # The window's end is now plus the key's TTL, which Redis counts in whole
    # seconds: one window's end, as reported, may move by a second.
    resets = [int(answer.headers["X-RateLimit-Reset"]) for answer in answers]
    assert max(resets) - min(resets) <= 1, "every worker reports the one window's end"
    assert answers[-1].get_json()["info"]["error"] == OVER_LIMIT
    assert get_from(clients[0], "/api/financial_data", "192.0.2.2").status_code == 200


def test_a_stalled_storage_costs_seconds_then_the_limit_is_counted_in_memory(
        sqlite_database_url, tmp_path, private_redis):
    with stalling_proxy(private_redis.port) as proxy:
        application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                                RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{proxy.port}/0")
        client = application.test_client()
        assert get_from(client, "/api/financial_data").headers["X-RateLimit-Remaining"] == "2"
        # The socket a stalled count will wait on gives up after the storage's timeout.
        assert [connection._sock.gettimeout() for connection
                in storage_pool(application)._available_connections] == [STORAGE_TIMEOUT_SECONDS]
        proxy.stall()
        answers = [call_guarded(get_from, client, path) for path in [
            "/api/financial_data", "/api/financial_data", "/api/symbols", STATS_URL]]
        assert [answer.status_code for answer in answers] == [200, 200, 200, 429], (
            "a new count in memory, one budget for the whole API")
        assert answers[-1].get_json() == {"data": {}, "info": {"error": OVER_LIMIT}}

        proxy.resume()
        wait_for(lambda: get_from(client, "/api/financial_data").status_code == 200,
                 "the count in Redis (one request so far) to be used again", 20)
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count("Rate limit storage unreachable") == 1, "one line for the outage"
    assert log.count("Rate limit storage recovered") == 1, "one line for its end"


def test_a_stalled_tls_storage_costs_seconds_too(sqlite_database_url, tmp_path):
    """rediss:// gets the same timeouts: a server that never answers the handshake."""
    with stalling_proxy(free_port()) as proxy:
        proxy.stall()
        application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                                RATELIMIT_STORAGE_URI=f"rediss://127.0.0.1:{proxy.port}/0")
        options = storage_pool(application).connection_kwargs
        assert (options["socket_connect_timeout"], options["socket_timeout"]) == (
            STORAGE_TIMEOUT_SECONDS, STORAGE_TIMEOUT_SECONDS)
        assert call_guarded(get_from, application.test_client(),
                            "/api/financial_data").status_code == 200
        wait_for(lambda: proxy.hung_up >= 1, "the storage's client to give up the handshake",
                 HANG_GUARD_SECONDS)


def test_the_storage_is_healthy_only_while_it_takes_a_count(sqlite_database_url, tmp_path,
                                                            private_redis):
    """The health check Flask-Limiter asks before it uses the storage again, on a real Redis.

    A full Redis that never evicts answers PING but refuses every count: the
    check must fail then, or each check would bring it back for one request.
    """
    application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                            RATELIMIT_STORAGE_URI=private_redis.url)
    [limiter] = application.extensions["limiter"]
    server = redis.Redis.from_url(private_redis.url)
    try:
        assert limiter.storage.check() is True
        private_redis.fill()
        assert server.ping() is True, "the full Redis still answers PING"
        assert limiter.storage.check() is False
        private_redis.make_room()
        assert limiter.storage.check() is True
    finally:
        server.close()


@pytest.fixture
def probe_only_redis(redis_url) -> Iterator[tuple[str, str]]:
    """TEST_REDIS_URL as a user of the test's own, allowed only the probe key: (URL, user).

    The storage's tries (a count of that key, which limits prefixes with
    ``LIMITS:``) succeed; every client's count is refused (NOPERM), as by a
    Redis Cluster whose node holding the client's key is down.
    """
    user, password = f"test-probe-only-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    server = redis.Redis.from_url(redis_url)
    try:
        server.acl_setuser(user, enabled=True, passwords=[f"+{password}"],
                           keys=["LIMITS:rate-limit-storage-probe"], commands=["+@all"])
        address = urlsplit(redis_url)
        host = address.netloc.rpartition("@")[2]
        yield address._replace(netloc=f"{user}:{password}@{host}").geturl(), user
    finally:
        server.acl_deluser(user)
        server.close()


def refused_commands(redis_url: str, user: str) -> int:
    """Return how many commands of ``user`` Redis refused, as its ACL LOG counts them."""
    with redis.Redis.from_url(redis_url) as server:
        return sum(entry["count"] for entry in server.acl_log(count=128)
                   if entry["username"] == user)


@pytest.mark.redis
def test_a_storage_refusing_the_count_after_taking_its_try_is_tried_once_per_request(
        sqlite_database_url, tmp_path, monkeypatch, redis_url, probe_only_redis):
    """A request whose count the storage failed is counted in memory without trying it again.

    Flask-Limiter's fallback tries the storage as soon as its backoff allows
    (here always: its clock moves a minute, past any backoff, at each read);
    the try succeeds, the count fails, and so on, within the one request.
    """
    url, user = probe_only_redis
    clock = itertools.count(time.time(), 60)
    monkeypatch.setattr("flask_limiter._extension.time", SimpleNamespace(time=partial(next, clock)))
    client = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                       RATELIMIT_STORAGE_URI=url).test_client()
    answers, counts_tried = [], []
    for _ in range(3):
        refused_before = refused_commands(redis_url, user)
        answers.append(get_from(client, "/api/financial_data"))
        counts_tried.append(refused_commands(redis_url, user) - refused_before)
    assert counts_tried == [1, 1, 1], "each request's count tried on the storage once"
    empty_page = {"data": [], "pagination": {"count": 0, "page": 1, "limit": 5, "pages": 0},
                  "info": {"error": ""}}
    assert [(answer.status_code, answer.get_json()) for answer in answers] == [
        (200, empty_page)] * 3
    assert [(answer.headers["X-RateLimit-Limit"], answer.headers["X-RateLimit-Remaining"])
            for answer in answers] == [("3", "2"), ("3", "1"), ("3", "0")], "counted in memory"
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count("Rate limit storage recovered") == 2, "the later requests' tries, taken"


def test_a_full_storage_is_counted_in_memory_and_logged_once_not_per_request(
        sqlite_database_url, tmp_path, private_redis, monkeypatch):
    """A Redis out of memory that never evicts answers PING but refuses every count.

    Counting in memory, the limiter tries the storage again once its clock
    has moved past a wait (1 s, then 2 s, 4 s, 8 s): moved past each between
    requests, every request tries it.
    """
    clock = ManualClock(time.time())
    monkeypatch.setattr("flask_limiter._extension.time", SimpleNamespace(time=clock))
    application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT=LIMIT,
                            RATELIMIT_STORAGE_URI=private_redis.url)
    client = application.test_client()
    assert get_from(client, "/api/financial_data").headers["X-RateLimit-Remaining"] == "2"
    private_redis.fill()
    answers, refused = [], []
    for path, wait in [("/api/financial_data", 1), ("/api/financial_data", 2),
                       ("/api/symbols", 4), (STATS_URL, 8)]:
        refused_before = private_redis.refused_for_memory()
        answers.append(get_from(client, path))
        refused.append(private_redis.refused_for_memory() - refused_before)
        clock.now += wait + 0.5
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429], (
        "a new count in memory, one budget for the whole API")
    assert refused == [1, 1, 1, 1], "each request tried the storage once: its count, then a check"

    private_redis.make_room()
    assert get_from(client, "/api/financial_data").status_code == 200, (
        "the count in Redis (one request so far) used again")
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count("Rate limit storage unreachable") == 1, "one line for the outage"
    assert log.count("Rate limit storage recovered") == 1, "one line for its end"


class _SlowToSayItsGone(logging.Handler):
    """Takes its time over the line saying the storage is gone: the other threads failing
    meanwhile, which find the storage not yet marked gone, would each say so too."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Rate limit storage unreachable"):
            time.sleep(0.3)


@pytest.fixture
def slow_to_say_its_gone() -> Iterator[None]:
    handler = _SlowToSayItsGone()
    logging.getLogger("flask-limiter").addHandler(handler)
    yield
    logging.getLogger("flask-limiter").removeHandler(handler)


def test_requests_waiting_on_the_storage_as_it_stalls_are_each_counted_in_memory(
        sqlite_database_url, tmp_path, private_redis, slow_to_say_its_gone):
    """The first request whose count times out falls back to memory; the others waiting on
    the storage then (a worker's other threads) time out after it, and are counted too.
    The worker says once that the storage is gone, however close their failures."""
    with stalling_proxy(private_redis.port) as proxy:
        application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT="60 per minute",
                                RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{proxy.port}/0")
        client = application.test_client()
        assert get_from(client, "/api/financial_data").status_code == 200
        proxy.stall()
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda path: get_from(application.test_client(), path),
                                    ["/api/financial_data", "/api/symbols",
                                     "/api/financial_data?limit=5", "/api/fetch_runs"]))
        assert [answer.status_code for answer in answers] == [200] * 4
        assert [answer.headers["X-RateLimit-Limit"] for answer in answers] == ["60"] * 4
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count("Rate limit storage unreachable") == 1, "one line for the outage"
    assert "Traceback" not in log


def test_a_request_whose_headers_wait_on_the_storage_as_it_stalls_keeps_its_answer(
        sqlite_database_url, tmp_path, private_redis):
    """A request counted in Redis reads its budget for the headers after its answer; another
    request finding the storage gone meanwhile leaves it to read them from memory."""
    with stalling_proxy(private_redis.port) as proxy:
        application = build_app(sqlite_database_url, tmp_path / "log", RATE_LIMIT="60 per minute",
                                RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{proxy.port}/0")
        answered, go_on = threading.Event(), threading.Event()

        @application.after_request  # registered last: runs before the limiter's headers
        def hold(response):
            if request.path == "/api/symbols":
                answered.set()
                assert go_on.wait(10)
            return response

        with ThreadPoolExecutor(2) as pool:
            held = pool.submit(get_from, application.test_client(), "/api/symbols")
            assert answered.wait(10), "counted in Redis, then held before its headers"
            proxy.stall()
            asked = proxy.received
            other = pool.submit(get_from, application.test_client(), "/api/financial_data")
            wait_for(lambda: proxy.received > asked, "the other's count to reach the storage",
                     HANG_GUARD_SECONDS)
            # Both wait STORAGE_TIMEOUT_SECONDS on the stalled storage: half of it
            # between their starts is what makes the other's count time out first.
            time.sleep(STORAGE_TIMEOUT_SECONDS / 2)
            go_on.set()
            assert [held.result().status_code, other.result().status_code] == [200, 200]
        assert held.result().headers["X-RateLimit-Limit"] == "60"
    log = (tmp_path / "log" / "api.log").read_text(encoding="utf-8")
    assert log.count("Rate limit storage unreachable") == 1, "one line for the outage"
    assert "Traceback" not in log
