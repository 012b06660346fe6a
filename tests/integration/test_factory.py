"""The application factory: configuration, logging, CORS, request log lines."""
import gc
from pathlib import Path

import pytest
from flask_restx import Resource
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

import app as app_package
from app import create_app
from app.extensions import db
from conf.settings import ConfigError
from lib.db import engine_options
from tests.helpers import build_app, call_guarded, dispose_engines


def test_no_app_exists_at_import_time():
    assert not any(type(value).__name__ == "Flask" for value in vars(app_package).values())


def test_testing_config_and_overrides_apply(tmp_path):
    application = build_app(f"sqlite:///{tmp_path}/x.db", tmp_path / "log", HTTP_CACHE_MAX_AGE=7)
    assert application.config["TESTING"] is True
    assert application.config["HTTP_CACHE_MAX_AGE"] == 7
    assert application.config["SQLALCHEMY_ENGINE_OPTIONS"]["connect_args"]["timeout"] == 10


def test_development_is_the_default_and_uses_the_sqlite_file(monkeypatch, tmp_path):
    for name in ("APP_ENV", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    application = create_app(overrides={"LOG_DIR": str(tmp_path)})
    assert application.config["TESTING"] is False
    assert application.config["SQLALCHEMY_DATABASE_URI"].endswith("data/streaming/financial.db")


def test_production_without_database_url_refuses_to_start(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        create_app()


def test_mysql_engines_ping_recycle_and_bound_every_wait(tmp_path):
    application = build_app("mysql+pymysql://api@127.0.0.1:1/financial", tmp_path,
                            DATABASE_TIMEOUT=1.5, DATABASE_READ_TIMEOUT=1.5)
    options = application.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options == {"pool_pre_ping": True, "pool_recycle": 280, "pool_timeout": 2,
                       "pool_reset_on_return": None, "isolation_level": "REPEATABLE READ",
                       "connect_args": {"connect_timeout": 1.5, "read_timeout": 1.5,
                                        "write_timeout": 1.5}}


@pytest.mark.parametrize("timeout, pool_wait", [(0.5, 1), (1, 1), (1.5, 2)])
def test_an_sqlite_file_answers_503_once_no_pooled_connection_frees_in_time(
        tmp_path, timeout, pool_wait):
    application = build_app(f"sqlite:///{tmp_path}/pool.db", tmp_path / "log",
                            DATABASE_TIMEOUT=timeout)
    held = []
    with application.app_context():
        # The pool requests use waits DATABASE_TIMEOUT for a connection, not its own 30 s:
        # in whole seconds, rounded up, as Flask-SQLAlchemy makes it an int (0.5 to no wait).
        assert db.engine.pool.timeout() == pool_wait
        with pytest.raises(PoolTimeoutError):
            for _ in range(100):  # every pooled connection taken: the next wait times out
                held.append(db.engine.connect())
    try:
        response = call_guarded(application.test_client().get, "/api/financial_data")
    finally:
        for connection in held:
            connection.close()
    assert response.status_code == 503
    assert "TimeoutError" in (tmp_path / "log" / "api.log").read_text()


def test_an_in_memory_sqlite_database_takes_no_pool_timeout():
    assert "pool_timeout" not in engine_options("sqlite://", timeout=2)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    application = build_app(f"sqlite:///{tmp_path}/wal.db", tmp_path / "log")
    with application.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
    # Once the context has given the session's connection back: disposing before
    # leaves it to the garbage collector, which Python 3.13 warns about.
    dispose_engines(application)


def test_each_request_is_logged_once_with_status_and_duration(sqlite_client, sqlite_app):
    sqlite_client.get("/api/financial_data?limit=2")
    sqlite_client.get("/api/nothing")
    log = (Path(sqlite_app.config["LOG_DIR"]) / "api.log").read_text()
    assert "INFO app.requests: GET /api/financial_data?limit=2 200 " in log
    assert "INFO app.requests: GET /api/nothing 404 " in log
    assert log.count("GET /api/financial_data?limit=2 200") == 1


def test_cors_allows_only_the_configured_origins(sqlite_database_url, tmp_path):
    application = build_app(sqlite_database_url, tmp_path, CORS_ORIGINS=["https://good.example"])
    client = application.test_client()
    allowed = client.get("/api/health", headers={"Origin": "https://good.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://good.example"
    denied = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_an_ipv6_origin_is_allowed_as_written_not_read_as_a_pattern(sqlite_database_url,
                                                                    tmp_path):
    """Its brackets would make Flask-CORS read it as a class of one character."""
    application = build_app(sqlite_database_url, tmp_path,
                            CORS_ORIGINS=["http://[::1]:8080", "https://good.example"])
    client = application.test_client()
    for origin in ("http://[::1]:8080", "HTTP://[::1]:8080"):
        allowed = client.get("/api/health", headers={"Origin": origin})
        assert allowed.headers["Access-Control-Allow-Origin"] == origin
    for origin in ("http://1:8080", "http://[::1]:80800", "http://[::1]"):
        denied = client.get("/api/health", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in denied.headers, origin


@pytest.mark.parametrize("origins", [["https://good.example"],
                                     ["https://good.example", "https://other.example"]])
def test_every_api_answer_varies_by_origin_when_only_some_origins_are_allowed(
        sqlite_database_url, tmp_path, origins):
    """A shared cache must not hand the answer to one origin (or none) to another."""
    application = build_app(sqlite_database_url, tmp_path, CORS_ORIGINS=origins)
    client = application.test_client()
    tag = client.get("/api/financial_data").headers["ETag"]
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "https://good.example"},
                    {"Origin": "https://good.example", "If-None-Match": tag}):
        for path in ("/api/financial_data", "/api/nothing"):
            response = client.get(path, headers=headers)
            [vary] = response.headers.getlist("Vary")
            assert {value.strip() for value in vary.split(",")} == {"Accept-Encoding", "Origin"}


@pytest.mark.parametrize("origins", [["*"], ["https://good.example"]])
def test_cors_headers_are_the_apis_alone(sqlite_database_url, tmp_path, origins):
    """Outside /api (a path that merely starts with its letters too) no answer depends on Origin."""
    application = build_app(sqlite_database_url, tmp_path, CORS_ORIGINS=origins)
    client = application.test_client()
    origin = {"Origin": "https://good.example"}
    for path in ("/api", "/api/", "/api/nothing"):
        response = client.get(path, headers=origin)
        assert response.headers["Access-Control-Allow-Origin"] == "https://good.example", path
    for path in ("/apix", "/api.json", "/", "/static/nothing"):
        for headers in (origin, {}):
            response = client.get(path, headers=headers)
            cors = [name for name in response.headers.keys() if name.startswith("Access-Control-")]
            assert cors == [], path
            assert "Origin" not in response.headers.get("Vary", ""), path


def test_cors_defaults_to_any_origin_in_development(sqlite_client):
    response = sqlite_client.get("/api/health", headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://any.example")


def test_a_cors_preflight_is_told_the_api_only_reads(sqlite_client):
    response = sqlite_client.options("/api/financial_data", headers={
        "Origin": "https://any.example", "Access-Control-Request-Method": "GET"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://any.example")


def test_a_cors_preflight_to_an_unknown_api_path_lets_the_script_read_the_404(
        sqlite_database_url, tmp_path):
    """A browser fails a preflight that is no 2xx with a bare network error: the script of a
    mistyped URL that sends If-None-Match saw "Failed to fetch", never the JSON 404."""
    application = build_app(sqlite_database_url, tmp_path, CORS_ORIGINS=["https://good.example"])
    client = application.test_client()
    origin = {"Origin": "https://good.example"}
    preflight = client.options("/api/financal_data", headers={
        **origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "if-none-match"})
    assert (preflight.status_code, preflight.get_data()) == (204, b"")
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://good.example"
    assert preflight.headers["Access-Control-Allow-Headers"] == "if-none-match"
    answer = client.get("/api/financal_data", headers={**origin, "If-None-Match": 'W/"x"'})
    assert answer.status_code == 404
    assert answer.headers["Access-Control-Allow-Origin"] == "https://good.example"
    assert answer.get_json()["info"]["error"] == (
        "no endpoint at /api/financal_data; the API is documented at /api/docs")
    assert client.options("/api/financal_data", headers=origin).status_code == 404, (
        "an OPTIONS that is no preflight gets the 404 of a GET")
    assert client.options("/nothing", headers={
        **origin, "Access-Control-Request-Method": "GET"}).status_code == 404, "outside /api"


def test_a_cors_preflight_is_allowed_its_headers_as_written_for_two_hours(sqlite_database_url,
                                                                          tmp_path):
    """Without Access-Control-Max-Age a browser repeats the preflight before every request.

    The headers asked for come back as written, as nginx, which answers
    preflights while the API is down, can only write them: Flask-CORS sorted
    them, an empty item first ("a,,B" was ", B, a").
    """
    application = build_app(sqlite_database_url, tmp_path, CORS_ORIGINS=["https://good.example"])
    response = application.test_client().options("/api/financial_data", headers={
        "Origin": "https://good.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-request-id,,If-None-Match"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Max-Age"] == "7200"
    assert response.headers["Access-Control-Allow-Headers"] == "x-request-id,,If-None-Match"


def live_resources() -> int:
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, Resource))


def test_requests_leave_no_resource_behind(sqlite_client):
    """Flask-RESTX builds a resource per request; a long-running worker must not keep them."""
    sqlite_client.get("/api/symbols")
    before = live_resources()
    for limit in range(1, 41):  # a query string each: none is answered from the cache
        assert sqlite_client.get(f"/api/symbols?limit={limit}").status_code == 200
        assert sqlite_client.get(f"/api/financial_data?limit=0&page={limit}").status_code == 400
    assert live_resources() == before
