"""create_app refuses a setting that cannot work, naming it; a database that is down is none."""
import ssl
import subprocess
import sys

import click
import pytest

from app import StartupError, create_app
from conf.settings import PROJECT_ROOT, ConfigError
from lib.db import DatabaseUrlError, check_database_url
from scripts.prestart import EXIT_CONFIG
from tests.helpers import build_app, free_port, isolated_environment


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "DATABASE_URL is not a database URL; expected e.g. "
                  "mysql+pymysql://user@host:3306/db or sqlite:///path/file.db"),
    ("mysql+pymysql://user:s3cret@host:port/db", "DATABASE_URL is not a database URL"),
    ("oracle+nosuch://user:s3cret@host/db",
     "DATABASE_URL names an unknown database driver 'oracle+nosuch'"),
    ("mysql+mysqldb://user:s3cret@host/db",
     "DATABASE_URL needs the driver module 'MySQLdb', which is not installed; "
     "use e.g. mysql+pymysql://"),
    ("mysql+pymysql://user:s3cret@127.0.0.1:3306",
     "DATABASE_URL names no database; put its name after the server"),
    ("mysql+pymysql://user:s3cret@host/db?connect_timeout=soon",
     "DATABASE_URL has a query option the driver cannot use (options: connect_timeout; "
     "ValueError)"),
    ("sqlite:////tmp/financial.db?timeout=abc",
     "DATABASE_URL has a query option the driver cannot use (options: timeout; ValueError)"),
    # What PyMySQL itself refuses: an unknown option, charset or TLS file, a bad timeout.
    ("mysql+pymysql://user:s3cret@host/db?sslmode=require",
     "DATABASE_URL has a query option the driver cannot use (options: sslmode; TypeError)"),
    ("mysql+pymysql://user:s3cret@host/db?charset=nonsense",
     "DATABASE_URL has a query option the driver cannot use (options: charset; "
     "AttributeError)"),
    ("mysql+pymysql://user:s3cret@host/db?ssl_ca=/no/such/ca.pem&charset=utf8mb4",
     "DATABASE_URL has a query option the driver cannot use (options: charset, ssl_ca; "
     "FileNotFoundError)"),
    ("mysql+pymysql://user:s3cret@host/db?read_timeout=-1",
     "DATABASE_URL has a query option the driver cannot use (options: read_timeout; "
     "ValueError)"),
])
def test_an_unusable_database_url_is_named_without_its_password(tmp_path, url, message):
    with pytest.raises(StartupError) as refused:
        build_app(url, tmp_path)
    assert str(refused.value).startswith(message)
    assert "s3cret" not in str(refused.value)


def test_checking_a_url_without_tls_options_builds_no_tls_context(monkeypatch):
    """A default TLS context reads the system's certificates: 30-60 ms of every start.

    A URL with TLS options still has them checked (a missing file, above).
    """
    built, real = [], ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context",
                        lambda *args, **kwargs: built.append(kwargs) or real(*args, **kwargs))
    check_database_url("mysql+pymysql://user:s3cret@host/db?charset=utf8mb4&connect_timeout=3")
    assert built == []
    check_database_url("mysql+pymysql://user:s3cret@host/db?ssl_verify_cert=false")
    assert len(built) == 1


def test_tls_options_of_an_option_file_are_still_checked(tmp_path):
    """An option file may hold TLS options: a missing CA file in it is refused at start."""
    options = tmp_path / "my.cnf"
    options.write_text("[client]\nssl-ca=/no/such/ca.pem\n")
    with pytest.raises(DatabaseUrlError, match=r"options: read_default_file; FileNotFoundError"):
        check_database_url(f"mysql+pymysql://user:s3cret@host/db?read_default_file={options}")


def test_options_pymysql_takes_are_no_start_error(tmp_path):
    url = (f"mysql+pymysql://api@127.0.0.1:{free_port()}/financial?charset=utf8mb4"
           "&connect_timeout=3")
    assert build_app(url, tmp_path).test_client().get("/api/health").status_code == 503


def test_an_sqlite_folder_that_cannot_be_created_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(StartupError, match=f"^DATABASE_URL points into the folder {blocker}/sub, "
                                           r"which cannot be created \(Not a directory\)$"):
        build_app(f"sqlite:///{blocker}/sub/financial.db", tmp_path)


def test_an_sqlite_folder_that_is_a_file_is_named_with_the_others(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(StartupError) as refused:
        build_app(f"sqlite:///{blocker}/financial.db", tmp_path / "log", TRUSTED_PROXY_HOPS=-1)
    assert refused.value.problems == (
        f"DATABASE_URL points into the folder {blocker}, which cannot be created (File exists)",
        "TRUSTED_PROXY_HOPS must be 0 or more, got -1",
    )
    assert list(tmp_path.iterdir()) == [blocker]


def test_an_sqlite_folder_that_cannot_be_created_is_named_with_the_others(tmp_path):
    """Found before anything is created: no LOG_DIR is left behind either."""
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(StartupError) as refused:
        build_app(f"sqlite:///{blocker}/sub/financial.db", tmp_path / "log",
                  CACHE_TYPE="NoSuchCache", TRUSTED_PROXY_HOPS=-1)
    assert refused.value.problems == (
        f"DATABASE_URL points into the folder {blocker}/sub, which cannot be created "
        "(Not a directory)",
        "CACHE_TYPE 'NoSuchCache' is no cache backend installed here; expected e.g. "
        "SimpleCache or RedisCache",
        "TRUSTED_PROXY_HOPS must be 0 or more, got -1",
    )
    assert list(tmp_path.iterdir()) == [blocker]


def test_the_sqlite_folder_is_created(tmp_path):
    build_app(f"sqlite:///{tmp_path}/new/folder/financial.db", tmp_path / "log")
    assert (tmp_path / "new" / "folder").is_dir()


def test_the_refusal_is_a_config_error_the_flask_cli_prints_as_one_line(tmp_path):
    with pytest.raises(StartupError) as refused:
        build_app("nope://", tmp_path)
    assert isinstance(refused.value, ConfigError)
    assert isinstance(refused.value, click.ClickException)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


@pytest.mark.parametrize(("settings", "message"), [
    ({"CACHE_TYPE": "NoSuchCache"}, "CACHE_TYPE 'NoSuchCache' is no cache backend installed "
                                    "here; expected e.g. SimpleCache or RedisCache"),
    ({"CACHE_TYPE": "MemcachedCache"}, "CACHE_TYPE 'MemcachedCache' is no cache backend "
                                       "installed here"),
    ({"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": "cache.internal:6379"},
     "CACHE_REDIS_URL is not a Redis URL; expected e.g. redis://host:6379/0"),
    ({"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": "redis://user:s3cret@cache:port/0"},
     "CACHE_REDIS_URL is not a Redis URL"),
])
def test_an_unusable_cache_is_named_without_its_password(
        sqlite_database_url, tmp_path, settings, message):
    with pytest.raises(StartupError) as refused:
        build_app(sqlite_database_url, tmp_path, **settings)
    assert str(refused.value).startswith(message)
    assert "s3cret" not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_log_dir_that_cannot_be_created_is_named(sqlite_database_url, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(StartupError, match=f"^LOG_DIR {blocker}/log cannot hold the log files "
                                           r"\(Not a directory\)$"):
        build_app(sqlite_database_url, blocker / "log")


def test_a_log_dir_that_is_a_file_is_named(sqlite_database_url, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(StartupError, match=f"^LOG_DIR {blocker} cannot hold the log files "
                                           r"\(File exists\)$"):
        build_app(sqlite_database_url, blocker)


def test_a_negative_proxy_count_is_refused(sqlite_database_url, tmp_path):
    with pytest.raises(StartupError, match="^TRUSTED_PROXY_HOPS must be 0 or more, got -1$"):
        build_app(sqlite_database_url, tmp_path, TRUSTED_PROXY_HOPS=-1)


def test_a_database_that_is_down_is_no_start_error(tmp_path):
    application = build_app(f"mysql+pymysql://api@127.0.0.1:{free_port()}/financial", tmp_path)
    response = application.test_client().get("/api/financial_data")
    assert response.status_code == 503
    assert response.get_json()["info"]["error"] == "the database is unavailable, please retry later"


def test_every_setting_building_the_app_refuses_is_named_in_one_start(tmp_path):
    """One try tells the operator all: no restart per mistake."""
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(StartupError) as refused:
        build_app("oracle+nosuch://user:s3cret@host/db", blocker / "log",
                  CACHE_TYPE="NoSuchCache", TRUSTED_PROXY_HOPS=-1, RATE_LIMIT="lots",
                  RATELIMIT_STORAGE_URI="async+memory://")
    assert refused.value.problems == (
        f"LOG_DIR {blocker}/log cannot hold the log files (Not a directory)",
        "DATABASE_URL names an unknown database driver 'oracle+nosuch'",
        "CACHE_TYPE 'NoSuchCache' is no cache backend installed here; expected e.g. "
        "SimpleCache or RedisCache",
        "TRUSTED_PROXY_HOPS must be 0 or more, got -1",
        "RATE_LIMIT must be a limit such as '600 per minute', got 'lots'",
        "RATELIMIT_STORAGE_URI names an unknown storage; expected e.g. memory:// or "
        "redis://host:6379/1",
    )
    assert str(refused.value) == "; ".join(refused.value.problems)
    assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("uri, message", [
    ("foo://user:s3cret@x", "RATELIMIT_STORAGE_URI names an unknown storage; expected e.g. "
                            "memory:// or redis://host:6379/1"),
    ("redis://user:s3cret@cache:port/1", "RATELIMIT_STORAGE_URI is not a URL its storage can "
                                         "use; expected e.g. redis://host:6379/1"),
], ids=["unknown scheme", "refused by its storage"])
def test_a_rate_limit_storage_the_limiter_cannot_load_is_named_with_the_others(
        sqlite_database_url, tmp_path, uri, message):
    with pytest.raises(StartupError) as refused:
        build_app(sqlite_database_url, tmp_path, CACHE_TYPE="NoSuchCache", TRUSTED_PROXY_HOPS=-1,
                  RATE_LIMIT="5 per second", RATELIMIT_STORAGE_URI=uri)
    cache, proxies, storage = refused.value.problems
    assert (cache, proxies) == (
        "CACHE_TYPE 'NoSuchCache' is no cache backend installed here; expected e.g. "
        "SimpleCache or RedisCache",
        "TRUSTED_PROXY_HOPS must be 0 or more, got -1",
    )
    assert storage.startswith(message)
    assert "s3cret" not in str(refused.value)


def test_the_settings_problems_come_first_an_unknown_app_env_among_them(monkeypatch, tmp_path):
    for name, value in {"APP_ENV": "staging", "DATABASE_TIMEOUT": "soon",
                        "DATABASE_URL": "mysql+nodriver://user:s3cret@db/financial",
                        "LOG_DIR": str(tmp_path), "CACHE_TYPE": "SimpleCache",
                        "RATE_LIMIT": "5 per fortnight", "TRUSTED_PROXY_HOPS": "-2"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(StartupError) as refused:
        create_app()
    assert refused.value.problems == (
        "APP_ENV must be one of development, production, testing, got 'staging'",
        "DATABASE_TIMEOUT must be a number, got 'soon'",
        "DATABASE_URL names an unknown database driver 'mysql+nodriver'",
        "TRUSTED_PROXY_HOPS must be 0 or more, got -2",
        "RATE_LIMIT must be a limit such as '600 per minute', got '5 per fortnight'",
    )


def test_a_secret_file_that_cannot_be_read_is_not_blamed_on_database_url(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://api@127.0.0.1:1/financial")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(StartupError) as refused:
        create_app("testing", overrides={"LOG_DIR": str(tmp_path), "CACHE_TYPE": "SimpleCache",
                                         "TRUSTED_PROXY_HOPS": -1})
    assert refused.value.problems == (
        "DATABASE_PASSWORD_FILE cannot be read (No such file or directory)",
        "TRUSTED_PROXY_HOPS must be 0 or more, got -1",
    )


def test_an_unknown_log_level_does_not_stop_the_other_checks(monkeypatch, tmp_path):
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(StartupError) as refused:
        build_app("nope://", tmp_path)
    assert refused.value.problems == (
        "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        "DATABASE_URL names an unknown database driver 'nope'",
    )


def test_prestart_names_the_settings_and_what_building_the_app_refuses_in_one_line(tmp_path):
    env = isolated_environment(APP_ENV="staging", LOG_DIR=str(tmp_path), DATABASE_TIMEOUT="0",
                               DATABASE_URL="oracle+nosuch://user:s3cret@host/db",
                               RATE_LIMIT="lots")
    result = subprocess.run([sys.executable, "-m", "scripts.prestart"], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == EXIT_CONFIG
    assert result.stderr == (
        "prestart: configuration error: "
        "APP_ENV must be one of development, production, testing, got 'staging'; "
        "DATABASE_TIMEOUT must be a positive number of seconds, got 0; "
        "DATABASE_URL names an unknown database driver 'oracle+nosuch'; "
        "RATE_LIMIT must be a limit such as '600 per minute', got 'lots'\n")
