"""Per-client rate limit: RATE_LIMIT requests across the API, then 429.

The counting is the ``limits`` library's fixed window, in RATELIMIT_STORAGE_URI
(Redis, shared by every worker and replica, or memory). This module is only
the Flask glue, kept to one storage round trip per request: Flask-Limiter,
which it replaces, costs three with Redis (the hit, then the count and the
window's end again for the headers) and about 0.15 ms of Python besides.
"""
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError
from limits.storage import Storage, storage_from_string
from werkzeug.exceptions import TooManyRequests

from app.routes import API_PREFIX, HEALTH_PATH, METRICS_PATH
from conf.settings import ConfigError
from lib.circuit_breaker import CircuitBreaker

logger = logging.getLogger(__name__)

# Load balancers and the operator's scraper poll these; they are never limited.
EXEMPT_ROUTES = frozenset({API_PREFIX + HEALTH_PATH, METRICS_PATH})
# A Redis outage must not stall requests: give up on it quickly, then count in memory.
STORAGE_TIMEOUT_SECONDS = 1
# After a storage failure, each worker counts in memory this long before trying it again.
STORAGE_RETRY_WAIT_SECONDS = 30
# Windows a worker keeps in memory (one per client and limit); past it, ended ones are dropped.
MAX_KNOWN_WINDOWS = 10_000
_STATE = "rate_limit"
_COUNTED = "rate_limit_count"


@dataclass(frozen=True)
class Count:
    """Where a client stands against one limit after this request."""

    limit: RateLimitItem
    count: int
    window_end: float

    @property
    def is_over(self) -> bool:
        return self.count > self.limit.amount


class MemoryWindows:
    """Fixed windows counted in this process: for memory://, and while the storage fails.

    The same counting as the limits library's MemoryStorage, without its
    expiry timer, which starts a thread every 10 ms under load.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, float]] = {}

    def hit(self, key: str, seconds: int) -> tuple[int, float]:
        """Count one hit of ``key``; return the count and the end of its window."""
        now = self._clock()
        with self._lock:
            count, end = self._windows.get(key, (0, 0.0))
            if end <= now:
                if len(self._windows) >= MAX_KNOWN_WINDOWS:
                    self._windows = {name: window for name, window in self._windows.items()
                                     if window[1] > now}
                count, end = 0, now + seconds
            self._windows[key] = (count + 1, end)
        return count + 1, end


class RateLimit:
    """The app's limits, counted per client in the storage, or in memory while it fails.

    Each request costs one increment in the storage. The end of the client's
    window, which the headers report, is learnt once per window: from the
    increment that opened it, or else by asking the storage.
    """

    def __init__(self, limits: list[RateLimitItem], storage: Storage | None,
                 message: str) -> None:
        self.limits = sorted(limits)  # the shortest window first, as Flask-Limiter orders them
        self.storage = storage
        self.memory = MemoryWindows()
        self.message = message
        self.breaker = CircuitBreaker("the rate limit storage", STORAGE_RETRY_WAIT_SECONDS,
                                      log=logger)
        self._window_ends: dict[str, float] = {}

    def count(self, client: str) -> Count:
        """Count one request of ``client``; return the first limit it is over, else the first."""
        counts = []
        for limit in self.limits:
            count = self._hit(limit, limit.key_for("api", client))
            if count.is_over:
                return count
            counts.append(count)
        return counts[0]

    def _hit(self, limit: RateLimitItem, key: str) -> Count:
        if self.storage is not None and self.breaker.allows():
            try:
                count = self.storage.incr(key, limit.get_expiry())
                window_end = self._window_end(self.storage, key, limit, count)
            except Exception as exc:  # whatever the storage raises, count in memory
                self.breaker.failed(exc)
            else:
                self.breaker.succeeded()
                return Count(limit, count, window_end)
        return Count(limit, *self.memory.hit(key, limit.get_expiry()))

    def _window_end(self, storage: Storage, key: str, limit: RateLimitItem, count: int) -> float:
        now = time.time()
        if count == 1:  # this increment opened the window, and set its expiry just now
            window_end = now + limit.get_expiry()
        else:
            window_end = self._window_ends.get(key, 0.0)
            if window_end > now:
                return window_end
            window_end = storage.get_expiry(key)
        if len(self._window_ends) >= MAX_KNOWN_WINDOWS:
            self._window_ends = {name: end for name, end in self._window_ends.items()
                                 if end > now}
        self._window_ends[key] = window_end
        return window_end


def register_rate_limits(app: Flask) -> None:
    """Limit each client (its address, as trust_proxy_hops resolves it) to RATE_LIMIT.

    One budget per client for the whole API, shared by every worker and
    replica through RATELIMIT_STORAGE_URI. Over it the client gets 429 in
    the JSON envelope (app/errors.py) with Retry-After; every counted
    response carries X-RateLimit-Limit, -Remaining and -Reset and
    Retry-After, as Flask-Limiter sends them. While the storage is
    unreachable each worker counts in memory, so the API keeps answering.
    Empty RATE_LIMIT: no limit, no hooks.

    Raises ConfigError when RATE_LIMIT is not in the limits library's syntax
    or RATELIMIT_STORAGE_URI names no storage it knows.
    """
    rate_limit = app.config["RATE_LIMIT"]
    if not rate_limit:
        return
    try:
        limits = parse_many(rate_limit)
    except ValueError:
        raise ConfigError(f"RATE_LIMIT must be a limit such as '600 per minute', "
                          f"got {rate_limit!r}") from None
    app.extensions[_STATE] = RateLimit(limits, _storage(app.config["RATELIMIT_STORAGE_URI"]),
                                       rate_limit_message(rate_limit))
    app.before_request(_count_request)
    app.after_request(_add_headers)


def _storage(uri: str) -> Storage | None:
    """Return the shared storage of ``uri``, or None to count in memory (memory://)."""
    if uri.startswith("memory://"):
        return None
    options = {}
    if uri.startswith(("redis://", "rediss://")):
        options = {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS,
                   "socket_timeout": STORAGE_TIMEOUT_SECONDS}
    try:
        storage = storage_from_string(uri, **options)
    except ConfigurationError:  # its message repeats the URI, which may hold a password
        storage = None
    if not isinstance(storage, Storage):  # unknown, or asynchronous (async+redis://)
        raise ConfigError("RATELIMIT_STORAGE_URI names an unknown storage; expected e.g. "
                          "memory:// or redis://host:6379/1")
    return storage


def rate_limit_message(rate_limit: str) -> str:
    """Return what a 429 says when the limit is ``rate_limit``."""
    return (f"too many requests: at most {rate_limit} per client; "
            "retry after the number of seconds in the Retry-After header")


def _is_exempt() -> bool:
    """Health, metrics, static files and CORS preflights (a browser's, not the client's request).

    Static files are a dozen per dashboard view; Flask-Limiter exempted them too.
    """
    if request.method == "OPTIONS":
        return True
    endpoint = request.endpoint or ""
    if endpoint == "static" or endpoint.endswith(".static"):
        return True
    return request.url_rule is not None and request.url_rule.rule in EXEMPT_ROUTES


def _count_request() -> None:
    """Count the request (unknown paths and wrong methods too); refuse it with 429 when over."""
    if _is_exempt():
        return
    state: RateLimit = current_app.extensions[_STATE]
    count = state.count(request.remote_addr or "127.0.0.1")
    setattr(g, _COUNTED, count)
    if count.is_over:
        raise TooManyRequests(state.message)


def _add_headers(response: Response) -> Response:
    count: Count | None = g.get(_COUNTED)
    if count is None:
        return response
    reset = int(count.window_end + 1)
    headers = response.headers
    headers.add("X-RateLimit-Limit", str(count.limit.amount))
    headers.add("X-RateLimit-Remaining", str(max(0, count.limit.amount - count.count)))
    headers.add("X-RateLimit-Reset", str(reset))
    now = time.time()
    retry_after = headers.get("Retry-After")
    if retry_after is not None and retry_after.isdigit():  # e.g. a 503's own: the later one wins
        reset = max(int(now + int(retry_after)), reset)
    headers["Retry-After"] = str(int(reset - now))
    return response
