"""Configuration classes, one per APP_ENV, filled from the environment.

Of the application, only this module reads ``os.environ``; outside it,
gunicorn's settings (conf/gunicorn.conf.py), the container's health check
(scripts/healthcheck.py) and the benchmark scripts read it too. Values are
read when ``read_config()`` builds the object, not at import, so entrypoints
can load ``.env`` first.
"""
import math
import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar, overload
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_PATH = PROJECT_ROOT / "data" / "streaming" / "financial.db"
ALPHAVANTAGE_QUERY_URL = "https://www.alphavantage.co/query"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Waits, intervals and counts for which a negative number means nothing.
NON_NEGATIVE_SETTINGS = (
    "FETCH_LOCK_TIMEOUT", "STALE_AFTER_SESSIONS", "ALPHAVANTAGE_RETRY_WAIT",
    "ALPHAVANTAGE_RATE_LIMIT_RETRIES", "ALPHAVANTAGE_BACKOFF_FACTOR",
    "ALPHAVANTAGE_REQUEST_INTERVAL",
)

_T = TypeVar("_T")
_Number = TypeVar("_Number", int, float)


class ConfigError(Exception):
    """Settings are missing or malformed; each of ``problems`` names its variable.

    The message joins them, for a caller that prints one line.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Problems:
    """The settings' problems, noted in the order they are read.

    A read that fails is noted and gives its default (valid, so no later check
    names the setting again): one start-up names every problem, not the first.
    """

    def __init__(self) -> None:
        self.found: list[str] = []

    def read(self, reader: Callable[[str, _T], _T], name: str, default: _T) -> _T:
        """Return ``reader(name, default)``, or ``default`` once its problem is noted."""
        return self.call(partial(reader, name, default), default)

    def call(self, reader: Callable[[], _T], placeholder: _T) -> _T:
        """Return ``reader()``, or ``placeholder`` once its problem is noted."""
        try:
            return reader()
        except ConfigError as exc:
            self.found.extend(exc.problems)
            return placeholder

    def note(self, problem: str) -> None:
        self.found.append(problem)


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...


def env_str(name: str, default: str | None = None) -> str | None:
    """Return the variable stripped, or ``default`` when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or default


def env_int(name: str, default: int) -> int:
    """Return the variable as an int; raise ConfigError naming it if malformed."""
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    """Return the variable as a finite float; raise ConfigError naming it if not.

    "1e999" reads as infinity; no wait, interval or factor is infinite.
    """
    value = _env_number(name, default, float, "a number")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a number, got {env_str(name)!r}")
    return value


def env_seconds(name: str, default: float) -> float:
    """Return the variable as a positive number of seconds; raise ConfigError naming it if not."""
    value = env_float(name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value:g}")
    return value


# Numbers as written in ASCII, as the API and --days read theirs: Python's int() and
# float() also take "1_0", other scripts' digits ("٣"), "nan" and "inf", which no setting means.
_ASCII_NUMBER = {int: re.compile(r"[+-]?[0-9]+"),
                 float: re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")}


def _env_number(name: str, default: _Number, kind: type[_Number], description: str) -> _Number:
    raw = env_str(name)
    if raw is None:
        return default
    try:
        if not _ASCII_NUMBER[kind].fullmatch(raw):
            raise ValueError(raw)
        return kind(raw)
    except ValueError:  # or more digits than int() converts (4,300)
        raise ConfigError(f"{name} must be {description}, got {raw!r}") from None


def env_list(name: str, default: str) -> list[str]:
    """Return a comma-separated variable as a list of non-empty items."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# An origin as a browser sends it in Origin: a scheme and a host, perhaps a port.
# Browsers take "_" in a host name (a compose service's, e.g. http://web_app:3000).
_ORIGIN = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


def cors_origins_problem(origins: list[str]) -> str | None:
    """Say why a CORS_ORIGINS entry cannot be used, if one cannot.

    Flask-CORS would read an entry with ``*``, ``?``, ``$`` or parentheses
    as a regular expression, which nginx's copy of the list for its own
    errors compares as text: the two would allow different origins (an IPv6
    host's brackets are given to Flask-CORS as text, app/serving.py). An
    entry with a path (``https://a.example/``) or its scheme's default port
    (``https://a.example:443``) matches no request at all.
    ``null`` is an origin browsers send, but for any sandboxed frame or
    local file, which every site can make: it would allow them all.
    """
    if "*" in origins and len(origins) > 1:
        return "CORS_ORIGINS: * allows every origin, so it takes no other entries"
    if any(origin.lower() == "null" for origin in origins):
        return ("CORS_ORIGINS: null is the Origin of every sandboxed frame and local file, "
                "which any site can make, so it is refused; use * to allow every origin")
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            return (f"CORS_ORIGINS entries must be * or origins written as scheme://host[:port], "
                    f"with no path or pattern; got {origin!r}")
        if _has_default_port(origin):
            return (f"CORS_ORIGINS: browsers leave the scheme's default port out of Origin, "
                    f"so write {origin.rpartition(':')[0]!r}; got {origin!r}")
    return None


def _has_default_port(origin: str) -> bool:
    """Tell whether ``origin`` names the port its scheme implies, which no Origin header does."""
    scheme, _, rest = origin.partition("://")
    return rest.rpartition(":")[2] == _DEFAULT_PORTS.get(scheme.lower())


def read_api_key() -> str | None:
    """Return the AlphaVantage key from ALPHAVANTAGE_API_KEY or the file it names.

    ``ALPHAVANTAGE_API_KEY_FILE`` serves Docker secrets, mounted as files.
    """
    return env_str("ALPHAVANTAGE_API_KEY") or read_secret_file("ALPHAVANTAGE_API_KEY_FILE")


def project_path(path: str) -> Path:
    """Return ``path``, a relative one taken from the project root, not the working directory.

    The API and the fetch job, started from anywhere, must find the same
    files: the log folder, an SQLite file, a secret file.
    """
    return PROJECT_ROOT / path


def read_secret_file(name: str) -> str | None:
    """Return the stripped content of the file the variable ``name`` points to.

    A relative path is taken from the project root (``project_path``).
    A UTF-8 byte order mark (Windows editors write one) is dropped, as it
    would otherwise become part of the secret.
    """
    path = env_str(name)
    if not path:
        return None
    try:
        return project_path(path).read_text(encoding="utf-8-sig").strip() or None
    except OSError as exc:
        raise ConfigError(f"{name} cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        # The decoder's text quotes a byte of the secret: name the file's problem only.
        raise ConfigError(f"{name} is not UTF-8 text (save it as UTF-8)") from None


def database_url(problems: Problems) -> str:
    """Return DATABASE_URL, defaulting to the SQLite file in data/streaming/.

    When DATABASE_PASSWORD_FILE is set (a Docker secret), its content becomes
    the password of a URL written without one. A file that cannot be read is
    noted in ``problems`` and the URL kept as written, so that the app's own
    check of the URL does not name DATABASE_URL for the file's fault.
    """
    url = anchored_sqlite_path(env_str("DATABASE_URL", f"sqlite:///{DEFAULT_SQLITE_PATH}"))
    password = problems.call(partial(read_secret_file, "DATABASE_PASSWORD_FILE"), None)
    return with_password(url, password) if password else url


def anchored_sqlite_path(url: str) -> str:
    """Return ``url`` with a relative SQLite file path taken from the project root.

    SQLAlchemy reads such a path from the working directory, Flask-SQLAlchemy
    from the app's instance folder (``project_path``). Other URLs (an absolute path, an
    in-memory or ``file:`` database, another backend, a malformed URL, which
    the start-up check names) are returned as they are.
    """
    parts = _split_or_none(url)
    if parts is None:
        return url
    database = parts.path[1:]  # sqlite:///relative has the path "/relative"
    if (parts.scheme.split("+")[0] != "sqlite" or parts.netloc or not database
            or database == ":memory:" or database.startswith(("/", "file:"))):
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}:///{project_path(database)}{query}"


def with_password(url: str, password: str) -> str:
    """Return ``url`` with ``password`` set for its user (URL-quoted).

    A malformed URL is returned as it is, for the start-up check to name.
    """
    parts = _split_or_none(url)
    if parts is None or parts.username is None or parts.password is not None:
        return url
    return _password_set(parts, password)


def with_redis_password(url: str | None, password: str | None) -> str | None:
    """Return a Redis ``url`` with ``password`` (URL-quoted) when it is written without one.

    Any other URL (``memory://``, a Unix socket's, a malformed one, one that
    holds a password) is returned as it is.
    """
    parts = _split_or_none(url) if url and password else None
    if (parts is None or not parts.scheme.startswith("redis") or not parts.hostname
            or parts.password):  # an empty one (redis://:@host) is as none
        return url
    return _password_set(parts, password or "")


def _password_set(parts: SplitResult, password: str) -> str:
    """Return the URL of ``parts`` with ``password`` (URL-quoted) for its user, if any."""
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def _split_or_none(url: str) -> SplitResult | None:
    """Return ``url``'s parts, None when urlsplit refuses it (a "[" that opens no IPv6 address)."""
    try:
        return urlsplit(url)
    except ValueError:
        return None


def _has_usable_port(parts: SplitResult) -> bool:
    """Tell whether the URL's port, if any, is a number 0-65535.

    requests refuses any other only when the fetch job sends its first
    request, as a network failure retried three times per symbol.
    """
    try:
        parts.port
    except ValueError:
        return False
    return True


class BaseConfig:
    """Settings shared by every environment."""

    ENV_NAME = "base"
    DEBUG = False
    TESTING = False

    def __init__(self) -> None:
        # What cannot be read is noted here; create_app() raises them all.
        self.problems = problems = Problems()
        read = problems.read
        self.SQLALCHEMY_DATABASE_URI = database_url(problems)
        # Seconds the API waits for the database: to connect, for each answer and
        # for a free pooled connection (rounded up to whole seconds, lib/db.py).
        # Past it a request answers 503 at once.
        self.DATABASE_TIMEOUT = read(env_seconds, "DATABASE_TIMEOUT", 2.0)
        # Seconds the fetch job and the start-up migration wait for one answer:
        # they wait on locks (the migration lock, up to 300 s) and run long
        # statements, which the API's short timeout would cut off.
        self.DATABASE_JOB_TIMEOUT = read(env_seconds, "DATABASE_JOB_TIMEOUT", 600.0)
        # The read/write timeout the engine gets: the API's own; the job and
        # scripts/prestart.py raise it to DATABASE_JOB_TIMEOUT (job_overrides).
        self.DATABASE_READ_TIMEOUT = self.DATABASE_TIMEOUT
        self.ALPHAVANTAGE_API_KEY = problems.call(read_api_key, None)
        # The only defaults of these two: the client takes them as arguments.
        self.ALPHAVANTAGE_BASE_URL = env_str("ALPHAVANTAGE_BASE_URL", ALPHAVANTAGE_QUERY_URL)
        self.ALPHAVANTAGE_FUNCTION = env_str(
            "ALPHAVANTAGE_FUNCTION", "TIME_SERIES_DAILY_ADJUSTED"
        )
        # Seconds to wait after AlphaVantage's short-term limit, and how often to retry.
        self.ALPHAVANTAGE_RETRY_WAIT = read(env_float, "ALPHAVANTAGE_RETRY_WAIT", 15.0)
        self.ALPHAVANTAGE_RATE_LIMIT_RETRIES = read(env_int, "ALPHAVANTAGE_RATE_LIMIT_RETRIES", 3)
        # Backoff of the retries of a network failure or HTTP 429/5xx (at most 3): the
        # first after ALPHAVANTAGE_REQUEST_INTERVAL, the next after 2x and 4x this (jittered).
        self.ALPHAVANTAGE_BACKOFF_FACTOR = read(env_float, "ALPHAVANTAGE_BACKOFF_FACTOR", 0.5)
        # Seconds between two requests of the fetch job (free keys allow about 1 a second).
        self.ALPHAVANTAGE_REQUEST_INTERVAL = read(env_float, "ALPHAVANTAGE_REQUEST_INTERVAL", 1.0)
        # Seconds the fetch job spends at most on one symbol (requests, retries and
        # rate-limit waits together), and on the whole run: a stalled AlphaVantage
        # costs that much, then the symbol fails (for the run: the symbol in progress
        # fails and every symbol left is recorded not_fetched).
        self.FETCH_SYMBOL_DEADLINE = read(env_seconds, "FETCH_SYMBOL_DEADLINE", 90.0)
        self.FETCH_RUN_DEADLINE = read(env_seconds, "FETCH_RUN_DEADLINE", 3600.0)
        self.SYMBOLS = env_list("SYMBOLS", "IBM,AAPL")
        self.CACHE_TYPE = env_str("CACHE_TYPE", "SimpleCache")
        # When REDIS_PASSWORD_FILE is set (a Docker secret), its content becomes the
        # password of the Redis URLs below written without one: the cache's and the
        # rate limit's.
        redis_password = problems.call(partial(read_secret_file, "REDIS_PASSWORD_FILE"), None)
        self.CACHE_REDIS_URL = with_redis_password(env_str("CACHE_REDIS_URL"), redis_password)
        # Every cache key starts with it. Keys also name the database by its
        # URL, so only deployments whose URLs read the same (a local
        # "localhost:3306/financial" each) need their own to share one Redis.
        # The fetch job must use the API's, or its clear misses the API's answers.
        self.CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "financial:")
        # SimpleCache lives in one process: the fetch job cannot clear the API's,
        # so the API may serve answers up to this many seconds old after a run.
        self.CACHE_DEFAULT_TIMEOUT = read(env_int, "CACHE_DEFAULT_TIMEOUT", 300)
        if self.CACHE_DEFAULT_TIMEOUT < 1:  # 0 would mean "never expires" to Flask-Caching
            problems.note(f"CACHE_DEFAULT_TIMEOUT must be 1 or more seconds, "
                          f"got {self.CACHE_DEFAULT_TIMEOUT}")
        # After a cache failure, seconds the API answers without the cache
        # before trying it again (a circuit breaker per worker).
        self.CACHE_RETRY_WAIT = read(env_seconds, "CACHE_RETRY_WAIT", 30.0)
        self.CORS_ORIGINS = env_list("CORS_ORIGINS", self.default_cors_origins())
        # The most rows one CSV export streams; more matching rows are a 400.
        self.EXPORT_MAX_ROWS = read(env_int, "EXPORT_MAX_ROWS", 1_000_000)
        if self.EXPORT_MAX_ROWS < 1:
            problems.note(f"EXPORT_MAX_ROWS must be 1 or more, got {self.EXPORT_MAX_ROWS}")
        # CSV exports one API process (a gunicorn worker) streams at once; one more
        # is a 503. Each holds a thread while it streams: fewer than GUNICORN_THREADS
        # leaves the other requests threads of their own.
        self.EXPORT_CONCURRENCY = read(env_int, "EXPORT_CONCURRENCY", 2)
        if self.EXPORT_CONCURRENCY < 1:
            problems.note(f"EXPORT_CONCURRENCY must be 1 or more, got {self.EXPORT_CONCURRENCY}")
        # A relative folder is taken from the project root (project_path).
        self.LOG_DIR = str(project_path(env_str("LOG_DIR", "data/log")))
        self.LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
        # When `get_raw_data.py --schedule` runs the job: 5-field cron in a time zone.
        self.FETCH_SCHEDULE = env_str("FETCH_SCHEDULE", "30 18 * * 1-5")
        self.FETCH_TIMEZONE = env_str("FETCH_TIMEZONE", "America/New_York")
        # Seconds a fetch run waits for the one in progress before it fails (the
        # only default: financial.fetch_run.RunSettings takes it as an argument).
        self.FETCH_LOCK_TIMEOUT = read(env_float, "FETCH_LOCK_TIMEOUT", 300.0)
        # Closed NYSE sessions a symbol may lag before /api/symbols calls it stale.
        self.STALE_AFTER_SESSIONS = read(env_int, "STALE_AFTER_SESSIONS", 1)
        # Requests one client may make (Flask-Limiter syntax, e.g. "600 per minute")
        # across the whole API; empty turns rate limiting off.
        self.RATE_LIMIT = env_str("RATE_LIMIT", "")
        # Where the counts live: memory:// is per process, redis://host:6379/1 is
        # shared by every worker and replica.
        self.RATELIMIT_STORAGE_URI = with_redis_password(
            env_str("RATELIMIT_STORAGE_URI", "memory://"), redis_password)
        # Reverse proxies in front of the app whose X-Forwarded-* headers are
        # trusted (1 behind the compose file's nginx); 0 trusts none.
        self.TRUSTED_PROXY_HOPS = read(env_int, "TRUSTED_PROXY_HOPS", 0)

    SQLALCHEMY_TRACK_MODIFICATIONS = False
    RESTX_ERROR_404_HELP = False
    RESTX_MASK_SWAGGER = False
    ERROR_INCLUDE_MESSAGE = False
    # RESTX re-raises errors it has no handler for; app/errors.py answers them.
    PROPAGATE_EXCEPTIONS = True
    # Cache-Control max-age (seconds) on successful read responses.
    HTTP_CACHE_MAX_AGE = 60
    # Seconds a browser may reuse a CORS preflight's answer (Access-Control-Max-Age):
    # Chromium's ceiling. It only says which methods and headers are allowed, which
    # change with a release; every answer is still checked against CORS_ORIGINS.
    CORS_MAX_AGE = 7200
    # Seconds the CSV export waits for each answer on MySQL (at least the API's
    # own): the server sorts every matching row before it sends the first, a
    # million in seconds. Below nginx's proxy_read_timeout (30 s, conf/nginx.conf).
    EXPORT_READ_TIMEOUT = 20.0
    # Seconds a MySQL server waits for the CSV export to take the rows it sends
    # (its net_write_timeout, 60 s by default): the export reads them only as
    # fast as its client reads the CSV, so a client that pauses longer would
    # have its body cut short.
    EXPORT_CLIENT_PAUSE = 3600

    def default_cors_origins(self) -> str:
        """Return the CORS origins used when CORS_ORIGINS is unset."""
        return "*"

    def job_overrides(self) -> dict:
        """Return the settings a batch program (fetch job, migration) changes for itself."""
        return {"DATABASE_READ_TIMEOUT": self.DATABASE_JOB_TIMEOUT}

    def validate(self) -> None:
        """Note the problems of settings this environment cannot run without."""
        for name in NON_NEGATIVE_SETTINGS:
            if getattr(self, name) < 0:
                self.problems.note(f"{name} must be 0 or more, got {getattr(self, name)}")
        if self.LOG_LEVEL not in LOG_LEVELS:
            self.problems.note(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                               f"got {self.LOG_LEVEL!r}")
            self.LOG_LEVEL = "INFO"  # create_app sets up logging to check LOG_DIR all the same
        if problem := cors_origins_problem(self.CORS_ORIGINS):
            self.problems.note(problem)
        base = _split_or_none(self.ALPHAVANTAGE_BASE_URL)
        if (base is None or base.scheme not in ("http", "https") or not base.hostname
                or not _has_usable_port(base)):
            # Not repeated: a proxy's address in it may carry a password.
            self.problems.note("ALPHAVANTAGE_BASE_URL must be an http:// or https:// URL, "
                               f"e.g. {ALPHAVANTAGE_QUERY_URL}")


class DevelopmentConfig(BaseConfig):
    """Local development: SQLite by default, permissive CORS."""

    ENV_NAME = "development"


class TestingConfig(BaseConfig):
    """Test runs: Flask's testing mode; tests steer the rest with overrides."""

    ENV_NAME = "testing"
    TESTING = True


class ProductionConfig(BaseConfig):
    """Production: no CORS origin unless CORS_ORIGINS names some.

    Start-up refuses it without DATABASE_URL (which may still name SQLite),
    and with CACHE_TYPE=RedisCache but no CACHE_REDIS_URL; it checks neither
    that the database is MySQL nor that the cache is Redis.
    """

    ENV_NAME = "production"

    def default_cors_origins(self) -> str:
        return ""

    def validate(self) -> None:
        super().validate()
        if env_str("DATABASE_URL") is None:
            self.problems.note("DATABASE_URL must be set in production")
        if self.CACHE_TYPE == "RedisCache" and not self.CACHE_REDIS_URL:
            self.problems.note("CACHE_REDIS_URL must be set when CACHE_TYPE is RedisCache")


CONFIGS = {
    cls.ENV_NAME: cls for cls in (DevelopmentConfig, TestingConfig, ProductionConfig)
}


def read_config(env_name: str | None = None) -> BaseConfig:
    """Build the config object for ``env_name``, noting its problems in ``config.problems``.

    For create_app, which adds the problems of the settings only building the
    app can check, and names them all at once. An unknown APP_ENV is noted
    first and gives development's settings, whose problems are noted too.
    """
    name = env_name or env_str("APP_ENV", "development")
    config = CONFIGS.get(name, DevelopmentConfig)()
    if name not in CONFIGS:
        config.problems.found.insert(
            0, f"APP_ENV must be one of {', '.join(sorted(CONFIGS))}, got {name!r}")
    config.validate()
    return config
