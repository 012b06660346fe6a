"""Cached answers: the one place that decides how reads are cached, keyed and invalidated.

Read endpoints ask ``cached_value`` for a value by a kind and the request's
normalized parameters; the fetch job calls ``clear_cached_answers`` after it
stores changes. A cache that fails never fails a request: the value is
computed as if nothing was cached.
"""
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from app.extensions import cache
from app.metrics import record_cache

logger = logging.getLogger(__name__)

Value = TypeVar("Value")


def cache_key(kind: str, params: tuple[Any, ...]) -> str:
    """Return the key of ``kind`` for normalized ``params`` (None, dates, ints, strings)."""
    return kind + ":" + "|".join("" if param is None else str(param) for param in params)


def cached_value(kind: str, params: tuple[Any, ...], compute: Callable[[], Value]) -> Value:
    """Return the cached value of ``kind`` for ``params``, computing and storing it on a miss.

    ``params`` must already be normalized (upper-cased symbol, parsed dates,
    defaults filled in), so equal requests share one entry. Exceptions from
    ``compute`` propagate and nothing is stored: errors are never cached.
    """
    key = cache_key(kind, params)
    value = _read(key)
    record_cache(kind, hit=value is not None)
    if value is None:
        value = compute()
        _write(key, value)
    return value


def clear_cached_answers() -> bool:
    """Forget every cached answer; return False if the cache could not be reached.

    With Redis every worker sees this at once; with SimpleCache only the
    calling process's cache is cleared and workers expire theirs within
    CACHE_DEFAULT_TIMEOUT seconds.
    """
    try:
        cache.clear()
    except Exception as exc:  # the caller's data is safe; stale entries expire on their own
        logger.warning("could not clear cached answers (%s); they expire within "
                       "CACHE_DEFAULT_TIMEOUT seconds", exc.__class__.__name__)
        return False
    return True


def _read(key: str) -> Any:
    try:
        return cache.get(key)
    except Exception as exc:
        logger.warning("cache backend failed on read (%s); answering uncached",
                       exc.__class__.__name__)
        return None


def _write(key: str, value: Any) -> None:
    try:
        cache.set(key, value)
    except Exception as exc:
        logger.warning("cache backend failed on write (%s)", exc.__class__.__name__)
