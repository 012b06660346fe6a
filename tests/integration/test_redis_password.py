"""A Redis that asks for a password (REDIS_PASSWORD_FILE): used by the app, shown nowhere."""
import uuid
from pathlib import Path

import pytest
import redis

from app.extensions import db
from tests.helpers import STATS_URL, build_app, insert_prices

RATE_LIMIT = "100 per minute"


@pytest.fixture
def guarded_redis(private_redis):
    """The test's own Redis, asking every client for a password: (server, its password)."""
    password = f"pw-{uuid.uuid4().hex}"
    with redis.Redis(port=private_redis.port) as client:
        client.config_set("requirepass", password)
    return private_redis, password


def guarded_app(sqlite_app, ibm_day, tmp_path, monkeypatch, server, password):
    """An app on SQLite whose Redis URLs (cache: db 0, rate limit: db 1) name no password."""
    with sqlite_app.app_context():
        insert_prices(db.session, [ibm_day])
        db.session.commit()
    secret = tmp_path / "redis_password"
    secret.write_text(password + "\n")
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("CACHE_REDIS_URL", server.url)
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", server.url.replace("/0", "/1"))
    return build_app(sqlite_app.config["SQLALCHEMY_DATABASE_URI"], tmp_path / "log",
                     CACHE_TYPE="RedisCache", RATE_LIMIT=RATE_LIMIT)


def everything_shown(application, client) -> str:
    """The log files, a scrape of /metrics, the health check and an answer, as one text."""
    shown = [client.get("/metrics").get_data(as_text=True),
             client.get("/api/health").get_data(as_text=True),
             client.get(STATS_URL).get_data(as_text=True)]
    shown += [path.read_text(encoding="utf-8", errors="replace")
              for path in Path(application.config["LOG_DIR"]).glob("*.log")]
    return "\n".join(shown)


def test_the_password_in_its_file_opens_redis_to_the_cache_and_the_rate_limit(
        sqlite_app, guarded_redis, ibm_day, tmp_path, monkeypatch):
    server, password = guarded_redis
    api = guarded_app(sqlite_app, ibm_day, tmp_path, monkeypatch, server, password)
    client = api.test_client()
    try:
        answers = [client.get(STATS_URL) for _ in range(2)]
        assert [answer.status_code for answer in answers] == [200, 200]
        assert answers[1].headers["X-RateLimit-Remaining"] == "98"
        with redis.Redis(port=server.port, password=password) as cache_db:
            assert any(b":response:" in key for key in cache_db.scan_iter("financial:*"))
        with redis.Redis(port=server.port, db=1, password=password) as limit_db:
            assert limit_db.dbsize() > 0, "the counts are in Redis, not in memory"
        assert api.extensions["cached_answers"].breaker.is_closed
        assert password not in everything_shown(api, client)
    finally:
        with api.app_context():
            db.engine.dispose()


def test_a_wrong_password_fails_nothing_and_is_shown_nowhere(
        sqlite_app, guarded_redis, ibm_day, tmp_path, monkeypatch):
    server, password = guarded_redis
    wrong = f"wrong-{uuid.uuid4().hex}"
    api = guarded_app(sqlite_app, ibm_day, tmp_path, monkeypatch, server, wrong)
    client = api.test_client()
    try:
        assert [client.get(STATS_URL).status_code for _ in range(2)] == [200, 200]
        assert not api.extensions["cached_answers"].breaker.is_closed, "the cache was refused"
        shown = everything_shown(api, client)
        assert "the answer cache" in shown, "the refusal is logged"
        assert wrong not in shown and password not in shown
    finally:
        with api.app_context():
            db.engine.dispose()
