"""Per-client rate limit (Flask-Limiter): RATE_LIMIT requests across the API, then 429."""
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial, wraps
from typing import Any, cast

from flask import Flask, Response, g, has_request_context, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, Storage, storage_from_string

from app.envelope import RETRY_AFTER_SECONDS
from app.routes import API_PREFIX, DASHBOARD_PATH, DOCS_PATH, HEALTH_PATH, METRICS_PATH
from conf.settings import ConfigError
from lib.db import database_digest
from lib.log_setup import add_filter_once

# Load balancers and the operator's scraper poll the first two. The HTML pages
# (dashboard, Swagger UI) cost what a static file does, and their own requests
# are counted: a reload over the limit shows the page saying so, not a bare JSON 429.
EXEMPT_ROUTES = frozenset({API_PREFIX + HEALTH_PATH, METRICS_PATH, DASHBOARD_PATH,
                           API_PREFIX + DOCS_PATH})
# A Redis outage must not stall requests: give up on it quickly, then count in memory.
STORAGE_TIMEOUT_SECONDS = 1
# A count the storage answers slower than this fails as a timeout does, so the
# limit is counted in memory: a Redis that slow would hold every request for
# its three round trips. Half the timeout: far above a healthy reply (under a
# millisecond) or a wait for the GIL among a worker's busy threads.
SLOW_REPLY_SECONDS = STORAGE_TIMEOUT_SECONDS / 2
# The count the storage's health check makes: a write, as every request's is.
_PROBE_KEY = "rate-limit-storage-probe"
_UNKNOWN_STORAGE = ("RATELIMIT_STORAGE_URI names an unknown storage; expected e.g. "
                    "memory:// or redis://host:6379/1")


def register_rate_limits(app: Flask) -> None:
    """Limit each client (its address, as trust_proxy_hops resolves it) to RATE_LIMIT.

    One budget per client for the whole API, shared by every worker and
    replica through RATELIMIT_STORAGE_URI. Every counted response carries
    X-RateLimit-Limit, -Remaining and -Reset. Over the limit the client gets
    429 in the JSON envelope (app/errors.py) with Retry-After, the seconds
    until the window ends, rounded up; no other answer carries Retry-After but a 503,
    its own. While the storage is unreachable, or slow (a count answered in
    over SLOW_REPLY_SECONDS), each worker counts the same limit in memory, so
    the API keeps answering. Empty RATE_LIMIT: no limit, no hooks. A limiter
    per app, because Flask-Limiter keeps the limits and storage of its first
    init_app.

    Register it before the response cache: Flask-Limiter's init_app adds its
    before_request hook, which must count a request before a stored response
    answers it.

    Raises ConfigError as check_rate_limit does.
    """
    rate_limit = app.config["RATE_LIMIT"]
    if not rate_limit:
        return
    check_rate_limit(app.config)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", _storage_options(app.config))
    # Replicas of one deployment share its database and count together; deployments
    # sharing one Redis (staging beside production) count apart, as their cached answers do.
    # (The benchmark's ceiling app has no database.)
    if "SQLALCHEMY_DATABASE_URI" in app.config:
        app.config.setdefault("RATELIMIT_KEY_PREFIX",
                              database_digest(app.config["SQLALCHEMY_DATABASE_URI"]))
    message = rate_limit_message(rate_limit)
    limiter = _Limiter(
        get_remote_address,
        application_limits=[ApplicationLimit(rate_limit, error_message=message)],
        # The application limit itself, counted in memory while the storage
        # fails: in_memory_fallback=[...] would count per endpoint, with
        # Flask-Limiter's own 429 message.
        in_memory_fallback_enabled=True,
        # Flask-Limiter skips requests matching no route; unknown paths and
        # wrong methods are counted like the rest.
        request_identifier=lambda: request.endpoint or "unmatched",
    )
    limiter.request_filter(_is_exempt)
    # Registered before Flask-Limiter's own after_request hook, so it runs after it.
    app.after_request(_retry_after_only_on_429_and_503)
    limiter.init_app(app)
    _check_by_counting(limiter.storage)
    if not isinstance(limiter.storage, MemoryStorage):
        # A slow count in memory is a stalled process, no slow storage: falling
        # back would only start every client's budget afresh.
        _watch_counts(limiter.storage)
    add_filter_once("flask-limiter", _DropRefusals)


class _Limiter(Limiter):
    """Flask-Limiter, counting in memory every request the storage fails, not only the first.

    Its fallback is taken by the request whose failure finds the storage
    still in use: that one marks it gone and counts in memory. A request of
    another thread, waiting on the stalled storage meanwhile (for its count,
    or for the headers' budget after its answer), fails after that, and
    Flask-Limiter raised its error: a 500. Here it is counted, or its headers
    read, in memory too, as the storage is known to be gone.
    """

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        self.logger = cast(logging.Logger, _OneLinePerOutage(self.logger))
        # Flask-Limiter's own header hook, a partial of its class's method on this limiter.
        hooks = app.after_request_funcs[None]
        [index] = [index for index, hook in enumerate(hooks)
                   if isinstance(hook, partial) and hook.args == (self,)]
        hooks[index] = partial(self._headers_in_memory_once_gone,
                               cast(Callable[[Response], Response], hooks[index]))

    def _check_request_limit(self, callable_name: str | None = None,
                             in_middleware: bool = True) -> None:
        try:
            super()._check_request_limit(callable_name, in_middleware)
        except RateLimitExceeded:
            raise
        except Exception:
            if not self._storage_dead:
                raise
            self.context.seen_limits.clear()
            super()._check_request_limit(callable_name, in_middleware)

    def _headers_in_memory_once_gone(self, add_headers: Callable[[Response], Response],
                                     response: Response) -> Response:
        try:
            return add_headers(response)
        except Exception:
            if not self._storage_dead:
                raise
            return add_headers(response)


class _OneLinePerOutage(logging.LoggerAdapter):
    """Flask-Limiter's logger for one limiter, saying once per outage that the storage is gone.

    Flask-Limiter says so when a failed request finds the storage still in
    use, then marks it gone: the threads of a worker failing on a stalled
    storage at once each find it still in use, and each said so.
    """

    _GONE = "Rate limit storage unreachable"
    _BACK = "Rate limit storage recovered"

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self._lock = threading.Lock()
        self._gone_said = False

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if str(msg).startswith(self._GONE):
            with self._lock:
                if self._gone_said:
                    return
                self._gone_said = True
        super().warning(msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if str(msg).startswith(self._BACK):
            with self._lock:
                self._gone_said = False
        super().info(msg, *args, **kwargs)


def check_rate_limit(config: Mapping) -> None:
    """Raise ConfigError naming RATE_LIMIT's problems (none when it is empty).

    Its syntax, and a RATELIMIT_STORAGE_URI the limiter cannot load: an
    unknown scheme, a storage no WSGI app can use (asyncio's ``async+``) or
    whose library is not installed, a URL the storage refuses. The storage
    is loaded as the limiter loads it, which connects to nothing (but for a
    Redis cluster, which asks its nodes for the cluster's layout).
    """
    rate_limit = config["RATE_LIMIT"]
    if not rate_limit:
        return
    problems = []
    try:
        parsed = parse_many(rate_limit)
    except ValueError:
        problems.append(f"RATE_LIMIT must be a limit such as '600 per minute', "
                        f"got {rate_limit!r}")
    else:
        # A limit of 0 would refuse every request: the API shut, not limited.
        if any(limit.amount == 0 for limit in parsed):
            problems.append(f"RATE_LIMIT must allow at least 1 request, got {rate_limit!r}; "
                            "leave it empty for no limit")
    storage_problem = _storage_problem(config)
    if storage_problem:
        problems.append(storage_problem)
    if problems:
        raise ConfigError(*problems)


def _storage_problem(config: Mapping) -> str | None:
    """Return why the limiter cannot load RATELIMIT_STORAGE_URI, or None; the URI is not repeated.

    It may hold a password: the messages of limits and redis-py repeat it.
    """
    uri = config["RATELIMIT_STORAGE_URI"]
    if not uri:  # Flask-Limiter's default, memory://, always loads
        return None
    if uri.startswith("async+"):  # asyncio storages, unusable here
        return _UNKNOWN_STORAGE
    try:
        storage_from_string(uri, **_storage_options(config))
    except ConfigurationError:
        return _UNKNOWN_STORAGE
    except ValueError:  # redis-py refusing the URL, e.g. a port that is no number
        return ("RATELIMIT_STORAGE_URI is not a URL its storage can use; "
                "expected e.g. redis://host:6379/1")
    return None


class _DropRefusals(logging.Filter):
    """Drop Flask-Limiter's line per refused request: the request's own line says 429.

    Its other lines stay: the storage going away (WARNING) and coming back (INFO).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("ratelimit "))


def _retry_after_only_on_429_and_503(response: Response) -> Response:
    """Keep Retry-After where it tells a client when to retry: a 429 and a 503 (RFC 9110 10.2.3).

    Flask-Limiter gives every counted response its window's end as
    Retry-After, replacing any by the later of the two. A 429 keeps it,
    rounded up (``_round_retry_after_up``); a 503 says when the database
    may be back (a client told to wait a minute for an outage of seconds
    would wait for nothing); any other answer, a 200 or a 304, has nothing
    to retry and loses it.
    """
    if response.status_code == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    elif response.status_code == 429:
        _round_retry_after_up(response)
    else:
        response.headers.remove("Retry-After")
    return response


def _round_retry_after_up(response: Response) -> None:
    """Make a 429's Retry-After the whole seconds until X-RateLimit-Reset, rounded up, at least 1.

    X-RateLimit-Reset is the whole second after the window's end, as the
    storage tells it: exact in memory; Redis rounds a key's time to live to
    the nearest second, so a retry may rarely come up to half a second early.
    Flask-Limiter cut those seconds down: in a window's last second it said
    0, and a client retrying at once was refused again.
    """
    reset_at = response.headers.get("X-RateLimit-Reset", "")
    if reset_at.isdigit():
        response.headers["Retry-After"] = str(max(1, math.ceil(int(reset_at) - time.time())))


def _check_by_counting(storage: Storage) -> None:
    """Let the storage count as healthy when it takes a count, not when it answers a PING.

    While counting in memory, Flask-Limiter asks the storage's ``check``
    whether to use it again. A Redis out of memory that never evicts
    (``noeviction``, as ratelimit-redis) answers PING but refuses every count:
    each check would log the storage back and the next request gone again,
    two lines a second per worker. A count of the check's own fails as the
    requests' would, so the storage stays left alone until it has room.

    A request whose count the storage failed does not try it again
    (``_note_failed_count`` says why).
    """
    def check() -> bool:
        if _has_failed_a_count():
            return False
        try:
            storage.incr(_PROBE_KEY, 1)
        except Exception:  # whatever the storage raises, it cannot count now
            return False
        return True

    storage.check = check  # type: ignore[method-assign]


class _SlowReply(Exception):
    """The storage answered, but too slowly to be waited on by every request."""


def _watch_counts(storage: Storage) -> None:
    """Make a count answered in over SLOW_REPLY_SECONDS raise _SlowReply; note every failed count.

    Flask-Limiter then takes the storage for unreachable, as after a timeout:
    it counts the request in memory and logs its one warning; the headers are
    read from memory too. Its tries of the storage meanwhile (a count, see
    ``_check_by_counting``) fail the same way while the storage stays slow.
    A count is the first call of every request (the fixed-window strategy,
    Flask-Limiter's default, which the settings keep), so its reads for the
    headers, after it, are left untimed.

    A count that fails, slow or raising, is noted in the request, so its
    fallback does not try the storage again (``_note_failed_count``).
    """
    count = storage.incr

    @wraps(count)
    def watched_count(*args: Any, **kwargs: Any) -> int:
        started = time.monotonic()
        try:
            counted = count(*args, **kwargs)
            took = time.monotonic() - started
            if took > SLOW_REPLY_SECONDS:
                raise _SlowReply(f"a reply took {took:.1f}s")
        except Exception:
            _note_failed_count()
            raise
        return counted

    storage.incr = watched_count  # type: ignore[method-assign]


def _note_failed_count() -> None:
    """Remember, for the rest of the current request, that the storage failed a count.

    Flask-Limiter, falling back to memory after a failed count, counts the
    request again, and that round first tries the storage if its backoff
    allows (1 s after each recovery). Were the try to succeed and the
    request's own count to fail again (a Redis Cluster whose node holding
    the client's key is down, an ACL refusing the client's keys, a count
    that times out), the rounds would repeat while each took over 1 s,
    holding the request until RecursionError or gunicorn's worker timeout.
    Once is enough: the storage's next try is left to a later request.
    """
    if has_request_context():
        g.rate_limit_storage_failed = True


def _has_failed_a_count() -> bool:
    """Tell whether the storage failed a count of the current request (False outside one)."""
    return has_request_context() and bool(g.get("rate_limit_storage_failed", False))


def _storage_options(config: Mapping) -> dict:
    """Return RATELIMIT_STORAGE_OPTIONS; by default, give up on Redis after STORAGE_TIMEOUT_SECONDS.

    redis-py waits forever by default: a stalled Redis would hold every
    request until gunicorn kills the worker.
    """
    if "RATELIMIT_STORAGE_OPTIONS" in config:
        return config["RATELIMIT_STORAGE_OPTIONS"]
    if config["RATELIMIT_STORAGE_URI"].startswith(("redis://", "rediss://")):
        return {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS,
                "socket_timeout": STORAGE_TIMEOUT_SECONDS}
    return {}


def rate_limit_message(rate_limit: str) -> str:
    """Return what a 429 says when the limit is ``rate_limit``."""
    return (f"too many requests: at most {rate_limit} per client; "
            "retry after the number of seconds in the Retry-After header")


def _is_exempt() -> bool:
    """EXEMPT_ROUTES and CORS preflights (a browser's, not the client's own request).

    Static files (a dozen per dashboard view) Flask-Limiter exempts itself.
    """
    if request.method == "OPTIONS":
        return True
    return request.url_rule is not None and request.url_rule.rule in EXEMPT_ROUTES
