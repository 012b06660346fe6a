"""Cached answers: the one place that decides how reads are cached, keyed and invalidated.

Read endpoints ask ``cached_value`` for a value by a kind and the request's
normalized parameters; the fetch job calls ``clear_cached_answers`` after it
stores changes.

- Keys name the database (a digest of its URL without the password) and
  ``RESPONSE_FORMAT_VERSION``, so deployments sharing one Redis, or two
  releases, never read each other's entries.
- Invalidation costs one small write whatever the number of entries: every
  entry key holds the database's current *generation*, and clearing sets a
  new one. Old entries are never read again and expire on their TTL.
- A hit costs one round trip: the generation and the entry under the last
  generation seen are read together (MGET); only a changed generation costs
  a second read.
- A cache that fails never fails a request, nor slows every request down: after
  a failure the cache is left alone for CACHE_RETRY_WAIT seconds (a circuit
  breaker) and answers are computed uncached. The outage is logged once when
  it starts and once when the cache is back, never per request.
"""
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask, current_app
from sqlalchemy.engine import make_url

from app.extensions import cache
from app.metrics import record_cache

logger = logging.getLogger(__name__)

Value = TypeVar("Value")

# Bump whenever a cached body changes shape (a field added, renamed, reformatted),
# so a new release never serves what an old one cached.
RESPONSE_FORMAT_VERSION = 1
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0
_STATE = "cached_answers"


class CircuitBreaker:
    """After a failure, refuse calls for ``retry_wait`` seconds, then let one trial through.

    A successful trial closes it again; a failed one waits another period.
    ``allows`` is a lock-free attribute read while closed, so the usual path
    costs nothing; the lock only guards the changes of state. (pybreaker holds
    its lock during the guarded call, which would serialize every cache round
    trip of a threaded worker.)
    """

    def __init__(self, name: str, retry_wait: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.retry_wait = retry_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None
        self._opened_at = 0.0
        self._skipped = 0

    @property
    def is_closed(self) -> bool:
        return self._open_until is None

    def allows(self) -> bool:
        """Tell whether to call now: closed, or open with a trial due. Counts refusals."""
        if self._open_until is None:
            return True
        with self._lock:
            if self._open_until is None:
                return True
            now = self._clock()
            if now >= self._open_until:
                # One trial per period: concurrent callers keep skipping meanwhile.
                self._open_until = now + self.retry_wait
                return True
            self._skipped += 1
            return False

    def failed(self, exc: Exception) -> None:
        """Record a failed call: open (and say so, once per outage) or stay open."""
        with self._lock:
            now = self._clock()
            if self._open_until is None:
                self._opened_at, self._skipped = now, 0
                logger.warning("%s failed (%s: %s); answering without it, next try in %gs",
                               self.name, exc.__class__.__name__, exc, self.retry_wait)
            self._open_until = now + self.retry_wait

    def succeeded(self) -> None:
        """Record a successful call: close, and say so if it was open."""
        if self._open_until is None:
            return
        with self._lock:
            if self._open_until is None:
                return
            self._open_until = None
            logger.warning("%s is back after %.0fs; %d answers were computed without it",
                           self.name, self._clock() - self._opened_at, self._skipped)


@dataclass
class _AnswerCache:
    """One app's view of the cache: its namespace, breaker and last generation seen."""

    namespace: str
    breaker: CircuitBreaker
    generation: str = field(default="")

    @property
    def generation_key(self) -> str:
        return f"{self.namespace}:generation"

    def entry_key(self, generation: str, entry: str) -> str:
        return f"{self.namespace}:v{RESPONSE_FORMAT_VERSION}:{generation}:{entry}"


def init_cached_answers(app: Flask) -> None:
    """Bind the cache to ``app`` with the project's defaults and set up its answer cache."""
    app.config.setdefault("CACHE_KEY_PREFIX", "financial:")
    if app.config["CACHE_TYPE"] == "RedisCache":
        # A cache outage must fail fast; the breaker then keeps requests off it.
        app.config.setdefault("CACHE_OPTIONS", {
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        })
    cache.init_app(app)
    app.extensions[_STATE] = _AnswerCache(
        namespace=database_digest(app.config["SQLALCHEMY_DATABASE_URI"]),
        breaker=CircuitBreaker("the answer cache", app.config["CACHE_RETRY_WAIT"]),
    )


def database_digest(url: str) -> str:
    """Return a short digest naming the database: its URL without the password.

    The API and the fetch job get the same URL (the password may come from a
    file), so they agree on it; another database never does.
    """
    identity = make_url(url).set(password=None).render_as_string(hide_password=False)
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]


def cache_key(kind: str, params: tuple[Any, ...]) -> str:
    """Return the entry of ``kind`` for normalized ``params`` (None, dates, ints, strings)."""
    return kind + ":" + "|".join("" if param is None else str(param) for param in params)


def cached_value(kind: str, params: tuple[Any, ...], compute: Callable[[], Value]) -> Value:
    """Return the cached value of ``kind`` for ``params``, computing and storing it on a miss.

    ``params`` must already be normalized (upper-cased symbol, parsed dates,
    defaults filled in), so equal requests share one entry. Exceptions from
    ``compute`` propagate and nothing is stored: errors are never cached.
    """
    state: _AnswerCache = current_app.extensions[_STATE]
    if not state.breaker.allows():
        return compute()
    entry = cache_key(kind, params)
    try:
        generation, value = _read(state, entry)
    except Exception as exc:  # whatever the backend raises, answer uncached
        state.breaker.failed(exc)
        return compute()
    state.breaker.succeeded()
    record_cache(kind, hit=value is not None)
    if value is None:
        value = compute()
        # Under the generation read before computing: if a fetch invalidated
        # the cache meanwhile, this answer may predate it and must not be
        # stored as current.
        _write(state, state.entry_key(generation, entry), value)
    return value


def clear_cached_answers() -> bool:
    """Make every cached answer of this database stale at once; False if the cache failed.

    One small write (a new generation), whatever the number of entries. With
    Redis every worker sees it on its next read; with SimpleCache only this
    process does, and other workers' entries expire within CACHE_DEFAULT_TIMEOUT.
    """
    state: _AnswerCache = current_app.extensions[_STATE]
    try:
        cache.set(state.generation_key, _new_generation(), timeout=0)
    except Exception as exc:  # the caller's data is safe; stale entries expire on their own
        logger.warning("could not invalidate the cached answers (%s: %s); the API may serve "
                       "answers up to CACHE_DEFAULT_TIMEOUT (%ss) old", exc.__class__.__name__,
                       exc, current_app.config["CACHE_DEFAULT_TIMEOUT"])
        return False
    return True


def _read(state: _AnswerCache, entry: str) -> tuple[str, Any]:
    """Return the current generation and the entry under it (or None).

    One round trip while the generation holds; a changed one costs a second.
    """
    generation, value = cache.get_many(state.generation_key,
                                       state.entry_key(state.generation, entry))
    if generation is not None and generation == state.generation:
        return generation, value
    generation = generation or _start_generation(state.generation_key)
    state.generation = generation
    return generation, cache.get(state.entry_key(generation, entry))


def _write(state: _AnswerCache, key: str, value: Any) -> None:
    if not state.breaker.is_closed:
        return
    try:
        cache.set(key, value)
    except Exception as exc:
        state.breaker.failed(exc)


def _start_generation(key: str) -> str:
    """Create the generation when there is none (first use, or evicted).

    A random one rather than a counter from zero, so that entries stored
    under an evicted generation can never come back.
    """
    generation = _new_generation()
    if not cache.add(key, generation, timeout=0):
        generation = cache.get(key) or generation
    return generation


def _new_generation() -> str:
    return secrets.token_hex(8)
