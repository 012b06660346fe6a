"""Config selection and environment parsing (conf/settings.py)."""
import dataclasses
import inspect
import os

import pytest
import redis.connection
from sqlalchemy.engine import make_url

from conf import settings
from conf.settings import (
    DEFAULT_SQLITE_PATH, PROJECT_ROOT, ConfigError, DevelopmentConfig, ProductionConfig,
    with_password,
)
from financial.fetch_run import RunSettings
from lib.avantage_api import AlphaVantageClient
from tests.helpers import get_config

ALL_VARIABLES = (
    "APP_ENV", "DATABASE_URL", "DATABASE_PASSWORD_FILE", "ALPHAVANTAGE_API_KEY",
    "ALPHAVANTAGE_API_KEY_FILE", "SYMBOLS", "CACHE_TYPE", "CACHE_REDIS_URL",
    "CACHE_DEFAULT_TIMEOUT", "CACHE_KEY_PREFIX", "CORS_ORIGINS", "LOG_DIR", "LOG_LEVEL",
    "FETCH_SCHEDULE",
    "FETCH_TIMEZONE", "FETCH_LOCK_TIMEOUT", "STALE_AFTER_SESSIONS", "DATABASE_TIMEOUT",
    "DATABASE_JOB_TIMEOUT", "CACHE_RETRY_WAIT", "FETCH_SYMBOL_DEADLINE", "FETCH_RUN_DEADLINE",
    "ALPHAVANTAGE_BASE_URL", "ALPHAVANTAGE_FUNCTION", "EXPORT_MAX_ROWS", "EXPORT_CONCURRENCY",
    "RATE_LIMIT", "RATELIMIT_STORAGE_URI", "REDIS_PASSWORD_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name, config_class", [
    (None, DevelopmentConfig), ("development", DevelopmentConfig),
    ("testing", settings.TestingConfig),
])
def test_get_config_picks_the_class_of_app_env(monkeypatch, name, config_class):
    if name:
        monkeypatch.setenv("APP_ENV", name)
    assert type(get_config()) is config_class


def test_unknown_app_env_is_a_config_error_naming_it(monkeypatch):
    monkeypatch.setenv("APP_ENV", "staging")
    with pytest.raises(ConfigError, match="APP_ENV must be one of development, production"):
        get_config()


def test_defaults_are_the_contracts():
    config = get_config("development")
    assert config.SQLALCHEMY_DATABASE_URI == f"sqlite:///{DEFAULT_SQLITE_PATH}"
    assert str(DEFAULT_SQLITE_PATH).endswith("data/streaming/financial.db")
    assert config.SYMBOLS == ["IBM", "AAPL"]
    assert config.CACHE_TYPE == "SimpleCache"
    assert config.CACHE_DEFAULT_TIMEOUT == 300
    assert config.CACHE_KEY_PREFIX == "financial:"
    assert config.CORS_ORIGINS == ["*"]
    assert config.LOG_LEVEL == "INFO"
    assert config.ALPHAVANTAGE_API_KEY is None
    assert config.ALPHAVANTAGE_BASE_URL == "https://www.alphavantage.co/query"
    assert config.FETCH_SCHEDULE == "30 18 * * 1-5"
    assert config.FETCH_TIMEZONE == "America/New_York"
    assert (config.FETCH_LOCK_TIMEOUT, config.STALE_AFTER_SESSIONS) == (300, 1)
    assert config.ALPHAVANTAGE_FUNCTION == "TIME_SERIES_DAILY_ADJUSTED"
    assert config.CACHE_REDIS_URL is None
    assert config.LOG_DIR == str(PROJECT_ROOT / "data" / "log")
    assert (config.EXPORT_MAX_ROWS, config.EXPORT_CONCURRENCY) == (1_000_000, 2)
    assert (config.RATE_LIMIT, config.RATELIMIT_STORAGE_URI) == ("", "memory://")


def test_the_settings_hold_the_only_defaults_of_the_url_function_and_lock_wait():
    """The client and the run loop take them from the caller: no second default to drift."""
    client = inspect.signature(AlphaVantageClient).parameters
    assert client["base_url"].default is inspect.Parameter.empty
    assert client["function"].default is inspect.Parameter.empty
    run = {field.name: field for field in dataclasses.fields(RunSettings)}
    assert run["lock_timeout"].default is dataclasses.MISSING


def test_values_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SYMBOLS", " msft, IBM ,,")
    monkeypatch.setenv("CACHE_DEFAULT_TIMEOUT", "42")
    monkeypatch.setenv("CACHE_KEY_PREFIX", "site-b:")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("EXPORT_MAX_ROWS", "250")
    monkeypatch.setenv("EXPORT_CONCURRENCY", "3")
    config = get_config("development")
    assert config.SYMBOLS == ["msft", "IBM"]
    assert config.CACHE_DEFAULT_TIMEOUT == 42
    assert config.CACHE_KEY_PREFIX == "site-b:"
    assert config.CORS_ORIGINS == ["https://a.example", "https://b.example"]
    assert config.LOG_LEVEL == "DEBUG"
    assert (config.EXPORT_MAX_ROWS, config.EXPORT_CONCURRENCY) == (250, 3)


def test_malformed_integer_names_the_variable(monkeypatch):
    monkeypatch.setenv("CACHE_DEFAULT_TIMEOUT", "five")
    with pytest.raises(ConfigError, match="CACHE_DEFAULT_TIMEOUT must be an integer"):
        get_config("development")


@pytest.mark.parametrize("name, value, description", [
    ("STALE_AFTER_SESSIONS", "1_0", "an integer"), ("STALE_AFTER_SESSIONS", "٣", "an integer"),
    ("STALE_AFTER_SESSIONS", "2.0", "an integer"), ("DATABASE_TIMEOUT", "1_0", "a number"),
    ("DATABASE_TIMEOUT", "١.٥", "a number"), ("DATABASE_TIMEOUT", "0x10", "a number"),
    ("STALE_AFTER_SESSIONS", "9" * 5000, "an integer"),  # past what int() converts
])
def test_a_number_is_read_in_ascii_digits_only(monkeypatch, name, value, description):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name} must be {description}, got '{value}'$"):
        get_config("development")


@pytest.mark.parametrize("name, value, expected", [
    ("STALE_AFTER_SESSIONS", "+2", 2), ("STALE_AFTER_SESSIONS", " 3 ", 3),
    ("DATABASE_TIMEOUT", "1.5", 1.5), ("DATABASE_TIMEOUT", ".5", 0.5),
    ("DATABASE_TIMEOUT", "2.", 2.0), ("DATABASE_TIMEOUT", "1e1", 10.0),
])
def test_a_number_in_ascii_digits_is_read(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    assert getattr(get_config("development"), name) == expected


def test_database_timeouts_are_short_for_the_api_and_long_for_batch_programs(monkeypatch):
    config = get_config("development")
    assert (config.DATABASE_TIMEOUT, config.DATABASE_READ_TIMEOUT) == (2.0, 2.0)
    assert config.job_overrides() == {"DATABASE_READ_TIMEOUT": 600.0}
    monkeypatch.setenv("DATABASE_TIMEOUT", "0.5")
    monkeypatch.setenv("DATABASE_JOB_TIMEOUT", "900")
    config = get_config("development")
    assert (config.DATABASE_TIMEOUT, config.DATABASE_READ_TIMEOUT) == (0.5, 0.5)
    assert config.job_overrides() == {"DATABASE_READ_TIMEOUT": 900.0}


def test_fault_limits_have_defaults_and_come_from_the_environment(monkeypatch):
    config = get_config("development")
    assert (config.CACHE_RETRY_WAIT, config.FETCH_SYMBOL_DEADLINE,
            config.FETCH_RUN_DEADLINE) == (30.0, 90.0, 3600.0)
    for name, value in (("CACHE_RETRY_WAIT", "5"), ("FETCH_SYMBOL_DEADLINE", "20"),
                        ("FETCH_RUN_DEADLINE", "600")):
        monkeypatch.setenv(name, value)
    config = get_config("development")
    assert (config.CACHE_RETRY_WAIT, config.FETCH_SYMBOL_DEADLINE,
            config.FETCH_RUN_DEADLINE) == (5.0, 20.0, 600.0)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_timeout_must_be_positive(monkeypatch, value):
    monkeypatch.setenv("DATABASE_TIMEOUT", value)
    with pytest.raises(ConfigError, match="DATABASE_TIMEOUT must be a positive number of seconds"):
        get_config("development")


@pytest.mark.parametrize("name", ["DATABASE_TIMEOUT", "ALPHAVANTAGE_RETRY_WAIT"])
@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999"])
def test_a_number_that_is_not_finite_is_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name} must be a number, got '{value}'$"):
        get_config("development")


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_cache_timeout_of_zero_or_less_is_refused(monkeypatch, value):
    monkeypatch.setenv("CACHE_DEFAULT_TIMEOUT", value)
    with pytest.raises(ConfigError, match="CACHE_DEFAULT_TIMEOUT must be 1 or more seconds"):
        get_config("development")


def test_production_requires_database_url():
    with pytest.raises(ConfigError, match="DATABASE_URL must be set in production"):
        get_config("production")


def test_production_has_no_cors_origins_by_default(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://api@db:3306/financial")
    config = get_config("production")
    assert isinstance(config, ProductionConfig)
    assert config.CORS_ORIGINS == []


@pytest.mark.parametrize("value", [
    "https://a.example,http://localhost:3000", "http://[::1]:8080", "HTTPS://A.Example", "*",
    "http://web_app:3000", "https://xn--bcher-kva.example", "http://a.example:443",
    "https://[::80]",
])
def test_cors_origins_are_exact_origins_or_a_star(monkeypatch, value):
    monkeypatch.setenv("CORS_ORIGINS", value)
    assert get_config("development").CORS_ORIGINS == value.split(",")


@pytest.mark.parametrize("value, problem", [
    # Flask-CORS would read these as regular expressions; nginx compares them as text.
    (r"https://.*\.example", r"got 'https://.*\\.example'"),
    ("https://a.example,https://(b|c).example", "got 'https://(b|c).example'"),
    ("https://a.example/", "got 'https://a.example/'"),  # no Origin has a path
    ("a.example", "got 'a.example'"),
    ("*,https://a.example", ": * allows every origin, so it takes no other entries"),
    ("https://a.example,null", "it is refused; use * to allow every origin"),
    ("https://a.example:443", "so write 'https://a.example'; got 'https://a.example:443'"),
    ("HTTP://[::1]:80", "so write 'HTTP://[::1]'; got 'HTTP://[::1]:80'"),
])
def test_a_cors_origin_no_browser_sends_is_refused_naming_it(monkeypatch, value, problem):
    monkeypatch.setenv("CORS_ORIGINS", value)
    with pytest.raises(ConfigError) as raised:
        get_config("development")
    (message,) = raised.value.problems
    assert message.startswith("CORS_ORIGINS") and message.endswith(problem), message


def test_api_key_is_read_from_the_secret_file(monkeypatch, tmp_path):
    secret = tmp_path / "key"
    secret.write_text("FILEKEY\n")
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY_FILE", str(secret))
    assert get_config("development").ALPHAVANTAGE_API_KEY == "FILEKEY"
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "ENVKEY")
    assert get_config("development").ALPHAVANTAGE_API_KEY == "ENVKEY"


def test_unreadable_secret_file_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="ALPHAVANTAGE_API_KEY_FILE cannot be read"):
        get_config("development")


def test_every_bad_setting_is_named_in_one_go_in_the_order_read(monkeypatch, tmp_path):
    """One start-up tells the operator all that is wrong, each setting once."""
    for name, value in {"DATABASE_TIMEOUT": "0", "ALPHAVANTAGE_API_KEY_FILE": str(tmp_path / "no"),
                        "ALPHAVANTAGE_RETRY_WAIT": "soon", "STALE_AFTER_SESSIONS": "many",
                        "EXPORT_MAX_ROWS": "0", "EXPORT_CONCURRENCY": "0",
                        "LOG_LEVEL": "loud"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        get_config("production")
    assert refused.value.problems == (
        "DATABASE_TIMEOUT must be a positive number of seconds, got 0",
        "ALPHAVANTAGE_API_KEY_FILE cannot be read (No such file or directory)",
        "ALPHAVANTAGE_RETRY_WAIT must be a number, got 'soon'",
        "EXPORT_MAX_ROWS must be 1 or more, got 0",
        "EXPORT_CONCURRENCY must be 1 or more, got 0",
        "STALE_AFTER_SESSIONS must be an integer, got 'many'",
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        "DATABASE_URL must be set in production",
    )
    assert str(refused.value) == "; ".join(refused.value.problems)


@pytest.mark.parametrize("name", ["ALPHAVANTAGE_API_KEY_FILE", "DATABASE_PASSWORD_FILE",
                                  "REDIS_PASSWORD_FILE"])
def test_a_secret_file_that_is_not_utf8_is_a_config_error_naming_the_variable(
        monkeypatch, tmp_path, name):
    secret = tmp_path / "secret"
    secret.write_text("FILEKEY\n", encoding="utf-16")  # Windows Notepad's "Unicode"
    monkeypatch.setenv(name, str(secret))
    with pytest.raises(ConfigError, match=f"^{name} is not UTF-8 text") as raised:
        get_config("development")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_byte_order_mark_is_not_part_of_the_key(monkeypatch, tmp_path):
    secret = tmp_path / "key"
    secret.write_text("FILEKEY\r\n", encoding="utf-8-sig")
    monkeypatch.setenv("ALPHAVANTAGE_API_KEY_FILE", str(secret))
    assert get_config("development").ALPHAVANTAGE_API_KEY == "FILEKEY"


@pytest.mark.parametrize("url, expected", [
    ("mysql+pymysql://api@db:3306/financial",
     "mysql+pymysql://api:p%40ss%2Fword@db:3306/financial"),
    # One urllib refuses is left as it is, for the start-up check to name.
    ("mysql+pymysql://api@[::1/financial", "mysql+pymysql://api@[::1/financial"),
], ids=["filled", "malformed"])
def test_database_password_file_fills_the_url(monkeypatch, tmp_path, url, expected):
    secret = tmp_path / "db_password"
    secret.write_text("p@ss/word\n")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret))
    assert get_config("development").SQLALCHEMY_DATABASE_URI == expected


@pytest.mark.parametrize("url, expected", [
    ("redis://redis:6379/0", "redis://:p%40ss%2Fword@redis:6379/0"),
    ("rediss://cache.example:6380/1", "rediss://:p%40ss%2Fword@cache.example:6380/1"),
    ("redis://default@redis:6379/0", "redis://default:p%40ss%2Fword@redis:6379/0"),
    ("redis://:@redis:6379/0", "redis://:p%40ss%2Fword@redis:6379/0"),
    ("redis://default:@redis:6379/0", "redis://default:p%40ss%2Fword@redis:6379/0"),
    # One that holds a password keeps it; what is no Redis URL is left alone.
    ("redis://:given@redis:6379/0", "redis://:given@redis:6379/0"),
    ("memory://", "memory://"),
    ("redis+unix:///run/redis.sock", "redis+unix:///run/redis.sock"),
    ("redis://[::1/0", "redis://[::1/0"),
], ids=["cache", "tls", "user", "empty", "user, empty", "given", "memory", "socket",
        "malformed"])
def test_redis_password_file_fills_the_cache_and_rate_limit_urls(monkeypatch, tmp_path,
                                                                 url, expected):
    secret = tmp_path / "redis_password"
    secret.write_text("p@ss/word\n")
    monkeypatch.setenv("CACHE_REDIS_URL", url)
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", url)
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(secret))
    config = get_config("development")
    assert config.CACHE_REDIS_URL == config.RATELIMIT_STORAGE_URI == expected
    if expected != url:
        assert redis.connection.parse_url(expected)["password"] == "p@ss/word"


def test_without_redis_password_file_the_redis_urls_stay_as_written(monkeypatch):
    monkeypatch.setenv("CACHE_REDIS_URL", "redis://redis:6379/0")
    config = get_config("development")
    assert (config.CACHE_REDIS_URL, config.RATELIMIT_STORAGE_URI) == (
        "redis://redis:6379/0", "memory://")


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///data/mine.db", f"sqlite:///{PROJECT_ROOT}/data/mine.db"),
    ("sqlite:///mine.db?timeout=3", f"sqlite:///{PROJECT_ROOT}/mine.db?timeout=3"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ("sqlite://", "sqlite://"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("mysql+pymysql://api@db:3306/relative", "mysql+pymysql://api@db:3306/relative"),
    ("not a url", "not a url"),
])
def test_a_relative_sqlite_path_is_taken_from_the_project_root(monkeypatch, url, expected):
    monkeypatch.setenv("DATABASE_URL", url)
    assert get_config("development").SQLALCHEMY_DATABASE_URI == expected


@pytest.mark.parametrize("value, expected", [
    ("logs", f"{PROJECT_ROOT}/logs"), ("/var/log/financial", "/var/log/financial"),
])
def test_a_relative_log_dir_is_taken_from_the_project_root(monkeypatch, tmp_path, value,
                                                           expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOG_DIR", value)
    assert get_config("development").LOG_DIR == expected


@pytest.mark.parametrize("name, read", [
    ("ALPHAVANTAGE_API_KEY_FILE", lambda config: config.ALPHAVANTAGE_API_KEY),
    ("DATABASE_PASSWORD_FILE", lambda config: make_url(config.SQLALCHEMY_DATABASE_URI).password),
])
def test_a_relative_secret_file_is_taken_from_the_project_root(monkeypatch, tmp_path, name, read):
    """As LOG_DIR and the SQLite file are: the API and the fetch job, started from anywhere."""
    secret = tmp_path / "secrets" / "secret"
    secret.parent.mkdir()
    secret.write_text("FROMFILE\n")
    monkeypatch.chdir(secret.parent)  # the path read from here would name no file
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://api@db:3306/financial")
    monkeypatch.setenv(name, os.path.relpath(secret, PROJECT_ROOT))
    assert read(get_config("development")) == "FROMFILE"


@pytest.mark.parametrize("url", [
    "mysql+pymysql://api:given@db/financial", "sqlite:////tmp/x.db",
])
def test_with_password_keeps_urls_that_need_none(url):
    assert with_password(url, "other") == url


@pytest.mark.parametrize("name, value", [("FETCH_LOCK_TIMEOUT", "-1"),
                                         ("STALE_AFTER_SESSIONS", "-2"),
                                         ("ALPHAVANTAGE_RETRY_WAIT", "-1"),
                                         ("ALPHAVANTAGE_RATE_LIMIT_RETRIES", "-1"),
                                         ("ALPHAVANTAGE_BACKOFF_FACTOR", "-0.5"),
                                         ("ALPHAVANTAGE_REQUEST_INTERVAL", "-1")])
def test_negative_waits_and_thresholds_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name} must be 0 or more"):
        get_config("development")


def test_fetch_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FETCH_SCHEDULE", "0 22 * * 1-5")
    monkeypatch.setenv("FETCH_TIMEZONE", "Europe/Zurich")
    monkeypatch.setenv("FETCH_LOCK_TIMEOUT", "12.5")
    monkeypatch.setenv("STALE_AFTER_SESSIONS", "3")
    config = get_config("development")
    assert (config.FETCH_SCHEDULE, config.FETCH_TIMEZONE, config.FETCH_LOCK_TIMEOUT,
            config.STALE_AFTER_SESSIONS) == ("0 22 * * 1-5", "Europe/Zurich", 12.5, 3)


@pytest.mark.parametrize("value", ["verbose", "WARN", "10"])
def test_an_unknown_log_level_is_refused(monkeypatch, value):
    monkeypatch.setenv("LOG_LEVEL", value)
    with pytest.raises(ConfigError, match="^LOG_LEVEL must be one of DEBUG, INFO, WARNING, "
                                          f"ERROR, CRITICAL, got '{value.upper()}'$"):
        get_config("development")


def test_the_log_level_is_read_in_any_case(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert get_config("development").LOG_LEVEL == "DEBUG"


@pytest.mark.parametrize("value", ["127.0.0.1:5321/query", "ftp://example.com/query",
                                   "https:///query", "http://user:s3cret@/query",
                                   "http://user:s3cret@[::1/query",
                                   "http://user:s3cret@127.0.0.1:abc/query",
                                   "http://127.0.0.1:99999/query"])
def test_an_alphavantage_url_that_is_no_http_url_is_refused(monkeypatch, value):
    monkeypatch.setenv("ALPHAVANTAGE_BASE_URL", value)
    with pytest.raises(ConfigError, match="^ALPHAVANTAGE_BASE_URL must be an http:// or "
                                          "https:// URL") as refused:
        get_config("development")
    assert "s3cret" not in str(refused.value)
