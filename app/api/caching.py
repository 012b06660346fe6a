"""Cached answers: the one place that decides how reads are cached, keyed and invalidated.

Read endpoints ask ``cached_value`` for a value by a kind and the request's
normalized parameters, or ``cached_response`` for their whole 200; the fetch
job calls ``clear_cached_answers`` after it stores changes, and
``clear_run_history_answers`` when a run starts or ends and after it records
a symbol that changed no rows.

- A stored response answers a repeated request before the resource runs:
  ``register_response_cache`` looks its bytes up by the path and the raw
  query string (parameters in any order), so a hit costs no parsing,
  validation or JSON encoding. It is stored only after the resource
  validated that query in full and answered 200, so a query that is refused
  never finds an entry. The entry holds the body, exactly as RESTX encoded
  it, with its headers and ETag, so a hit answers byte for byte as the miss did.

- Redis holds data only, never code: values are written and read as
  MessagePack (``lib.cache_codec``), not pickled as Flask-Caching's own
  serializer does, so whoever can write to that Redis cannot make the API
  run anything. A value it did not write (a pickle an older release stored,
  another program's, one cut short) reads as a miss and is overwritten.
- Keys start with CACHE_KEY_PREFIX and name the database (a digest of its
  URL without the password) and ``RESPONSE_FORMAT_VERSION``, so deployments
  sharing one Redis, or two releases, never read each other's entries.
- Invalidation costs one small write whatever the number of entries: every
  entry key holds the database's current *generation*, and clearing sets a
  new one. Old entries are never read again and expire on their TTL.
  Answers read from the run history (``RUN_HISTORY_KINDS``) also hold the
  history's own generation, so a symbol recorded without changing rows makes
  them stale and leaves every price answer cached.
- A hit costs one round trip: the generations and the entry under the last
  generations seen are read together (MGET); only a changed generation costs
  a second read. A miss stores the answer and its response in one more.
  A resource whose response is the same however its query is spelled
  (statistics) names its parameters: its response is also stored under the
  query spelled from the normalized values, so a request spelled so that
  missed its stored response before dispatch has no answer to look up either.
  A per-process cache (SimpleCache) keeps its generation in the process:
  nothing else reads it, and SimpleCache evicts never-expiring keys first.
- A cache that fails never fails a request, nor slows every request down: after
  a failure the cache is left alone for CACHE_RETRY_WAIT seconds (a circuit
  breaker) and answers are computed uncached. The outage is logged once when
  it starts and once when the cache is back, never per request. A read or
  write Redis answers in over SLOW_REPLY_SECONDS is a failure too (the answer
  a slow read brings is still served); a clear is not: made late, it is made.
- A cache that refuses writes but answers reads (a Redis out of memory that
  never evicts) keeps serving the answers it holds: only storing is left alone
  for CACHE_RETRY_WAIT seconds, by a breaker of its own, logged the same way.
  Its clears delete the generation, which it still allows.
- Nor does a cache that fails hold the fetch job for a timeout per symbol:
  clears have a breaker of their own, and a clear it refuses is put off, not
  lost. The next clear that tries makes it, and the last one of a run or
  command (``final``) always tries.
"""
import functools
import heapq
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from cachelib.redis_base import BaseRedisCache
from flask import Flask, current_app, g, request
from flask_caching.backends import SimpleCache
from redis.exceptions import ResponseError
from werkzeug.utils import import_string
from werkzeug.wrappers import Response

from app.api.responses import cacheable
from app.extensions import cache
from conf.settings import ConfigError
from lib.cache_codec import MessagePackRedisSerializer, UncacheableValue
from lib.circuit_breaker import CircuitBreaker
from lib.db import database_digest

logger = logging.getLogger(__name__)

Value = TypeVar("Value")

# Bump whenever a cached body changes shape (a field added, renamed, reformatted),
# a query that was answered becomes refused, or entries are stored another way,
# so a new release never serves what an old one cached (4: MessagePack, not pickle).
RESPONSE_FORMAT_VERSION = 4
# In the generations' keys: how values are stored. Releases that pickled them
# keep generations of their own, which this one never reads, nor they this one's:
# during a rolling upgrade or after a rollback neither takes the other's for
# garbage (each clears its own entries; the other's expire on their TTL).
STORAGE_FORMAT = "msgpack"
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0
# A call that Redis answers but slower than this counts as a failure, as a
# timeout does: a Redis that slow would cost every request its round trips, so
# answers are computed without it. Half the timeout: far above a healthy reply
# (under a millisecond) or a wait for the GIL among a worker's busy threads.
SLOW_REPLY_SECONDS = REDIS_SOCKET_TIMEOUT_SECONDS / 2
_STATE = "cached_answers"
# The type of each kind's value: a value of another type, which only someone
# else writing to the cache's Redis can leave, is a miss.
_VALUE_TYPES = {"count": int, "price_page": dict, "statistics": dict, "symbols": dict,
                "fetch_runs": dict}
# Kinds whose answers read fetch_runs / fetch_run_symbols: a run records a
# symbol's outcome (a failure, no change) without touching any price.
RUN_HISTORY_KINDS = frozenset({"fetch_runs", "symbols"})
# The request's answer that the response cache stores with its 200 (_Storable).
_STORABLE = "storable_response"
# The request's stored response missed before dispatch: its entry and the generation read.
_MISSED_RESPONSE = "missed_response"
# Redis answered a write with an error (out of memory with noeviction, a read-only
# replica, writes stopped after a failed save): its reads still work.
_REFUSED_WRITES = (ResponseError,)
# The share of CACHE_THRESHOLD a full per-process cache is pruned down to.
PRUNED_FILL = 0.9


class BatchPrunedSimpleCache(SimpleCache):
    """Flask-Caching's SimpleCache, pruned once per batch of writes rather than on every write.

    cachelib's own, once it holds CACHE_THRESHOLD entries, scans every entry
    for expired ones and sorts them all to drop the one expiring first, on
    each write: about 15 % of an uncached answer. This one, when full, drops
    the expired entries and then, if they were fewer, those expiring first
    down to PRUNED_FILL of the threshold, so the writes until it is full
    again prune nothing. It never holds more entries than cachelib's.
    """

    def _prune(self) -> None:
        if not self._over_threshold():
            return
        self._remove_expired(time.time())
        excess = len(self._cache) - int(self._threshold * PRUNED_FILL)
        entries = self._cache
        for key in heapq.nsmallest(excess, entries, key=lambda key: entries[key][0]):
            del entries[key]


def _backend_setting(cache_type: str) -> dict[str, Any]:
    """Return the settings to bind with: the batch-pruned class in place of SimpleCache,
    and for a Redis backend the serializer that stores values without pickle.

    A per-process cache keeps cachelib's own: only the process itself writes to it.
    """
    if cache_type == "SimpleCache":
        return {"CACHE_TYPE": f"{__name__}.{BatchPrunedSimpleCache.__name__}"}
    backend = import_string(cache_type if "." in cache_type
                            else f"flask_caching.backends.{cache_type}", silent=True)
    if isinstance(backend, type) and issubclass(backend, BaseRedisCache):
        return {"CACHE_SERIALIZER": MessagePackRedisSerializer}
    return {}


@dataclass
class _AnswerCache:
    """One app's view of the cache: its namespace, breaker and last generations seen.

    ``store_breaker`` leaves only writes alone, after one was refused.
    ``generations`` maps each generation's key to the value last seen ("":
    none yet; with SimpleCache, the current one). ``response_kinds`` maps the
    routes whose responses were stored to the kind of answer they give; only
    those routes are looked up before dispatch. ``put_off`` holds the
    generation keys whose clear failed or was refused, to renew on the next try.
    """

    namespace: str
    breaker: CircuitBreaker
    store_breaker: CircuitBreaker
    clear_breaker: CircuitBreaker
    is_local: bool
    generations: dict[str, str] = field(default_factory=dict)
    put_off: set[str] = field(default_factory=set)
    response_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def generation_key(self) -> str:
        return f"{self.namespace}:{STORAGE_FORMAT}:generation"

    @property
    def history_generation_key(self) -> str:
        return f"{self.namespace}:{STORAGE_FORMAT}:history-generation"

    def generation_keys(self, kind: str) -> tuple[str, ...]:
        """Return the keys of the generations that answers of ``kind`` depend on."""
        if kind in RUN_HISTORY_KINDS:
            return self.generation_key, self.history_generation_key
        return (self.generation_key,)

    def entry_key(self, generation: str, entry: str) -> str:
        return f"{self.namespace}:v{RESPONSE_FORMAT_VERSION}:{generation}:{entry}"


def bind_cache(app: Flask) -> None:
    """Bind the cache to ``app`` with the project's defaults; connect to nothing yet.

    Raises ConfigError for a backend that cannot work at all; the URL is not
    repeated: it may hold the Redis password.
    """
    if app.config["CACHE_TYPE"] == "RedisCache":
        # A cache outage must fail fast; the breaker then keeps requests off it.
        app.config.setdefault("CACHE_OPTIONS", {
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
            "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        })
    try:
        cache.init_app(app, _backend_setting(app.config["CACHE_TYPE"]))
    except ValueError:
        raise ConfigError("CACHE_REDIS_URL is not a Redis URL; expected e.g. "
                          "redis://host:6379/0") from None
    except (ImportError, TypeError, RuntimeError):  # unknown name, not a class, module missing
        raise ConfigError(f"CACHE_TYPE {app.config['CACHE_TYPE']!r} is no cache backend "
                          "installed here; expected e.g. SimpleCache or RedisCache") from None


def init_cached_answers(app: Flask) -> None:
    """Set up the answer cache of ``app``, whose cache ``bind_cache`` has bound."""
    is_local = isinstance(cache.cache, SimpleCache)
    retry_wait = app.config["CACHE_RETRY_WAIT"]
    state = _AnswerCache(
        namespace=database_digest(app.config["SQLALCHEMY_DATABASE_URI"]),
        breaker=CircuitBreaker("the answer cache", retry_wait, log=logger,
                               slow_after=SLOW_REPLY_SECONDS),
        store_breaker=CircuitBreaker(
            "storing answers", retry_wait, log=logger,
            opened="the answer cache refused to store an answer ({error}); the answers it "
                   "holds are served, new ones not stored, next try in {wait:g}s",
            closed="the answer cache stores answers again after {outage:.0f}s; answers not "
                   "stored meanwhile: {skipped}"),
        clear_breaker=CircuitBreaker(
            "clearing the cached answers", retry_wait, log=logger,
            opened="could not invalidate the cached answers ({error}); the API may serve "
                   f"answers up to CACHE_DEFAULT_TIMEOUT ({app.config['CACHE_DEFAULT_TIMEOUT']}s) "
                   "old",
            closed="the cached answers are invalidated again after {outage:.0f}s; clears put "
                   "off meanwhile: {skipped}"),
        is_local=is_local,
    )
    for key in (state.generation_key, state.history_generation_key):
        state.generations[key] = _new_generation() if is_local else ""
    app.extensions[_STATE] = state


def cache_key(kind: str, params: tuple[Any, ...]) -> str:
    """Return the entry of ``kind`` for normalized ``params`` (None, dates, ints, strings)."""
    return kind + ":" + "|".join("" if param is None else str(param) for param in params)


def cached_value(kind: str, params: tuple[Any, ...], compute: Callable[[], Value]) -> Value:
    """Return the cached value of ``kind`` for ``params``, computing and storing it on a miss.

    ``params`` must already be normalized (upper-cased symbol, parsed dates,
    defaults filled in), so equal requests share one entry. Exceptions from
    ``compute`` propagate and nothing is stored: errors are never cached.
    """
    looked_up = _look_up(kind, params)
    if looked_up is None:
        return compute()
    if looked_up.value is None:
        looked_up.value = compute()
        _write(looked_up.generation, {looked_up.entry: looked_up.value})
    return looked_up.value


def cached_response(kind: str, params: tuple[Any, ...], compute: Callable[[], dict], *,
                    query_names: tuple[str, ...] = ()) -> tuple[dict, int, dict]:
    """Return the 200 of ``kind`` for ``params`` (as ``cached_value``) and let its bytes be kept.

    Call it only once the request's whole query is validated: the response
    is then stored for that query string and answers it before dispatch
    (see ``register_response_cache``) until the cache is cleared. A value
    computed here is stored with that response, in the same write.

    ``query_names`` names ``params`` as the query does, for a response that
    is the same whatever the query's spelling (no Link header): it is also
    stored for the query spelled from ``params``, so a request spelled so
    whose stored response missed cannot find the value either, and skips
    that second lookup.
    """
    normalized = _normalized_response_entry(zip(query_names, params)) if query_names else ""
    looked_up = _missed_before_dispatch(kind, params, normalized) or _look_up(kind, params)
    if looked_up is None:
        return cacheable(compute())
    looked_up.normalized_response = normalized
    if looked_up.value is None:
        looked_up.value = compute()
        looked_up.is_new = True
    setattr(g, _STORABLE, looked_up)
    return cacheable(looked_up.value)


@dataclass
class _Storable:
    """An entry looked up for a request: its kind, key, value (None: missed) and generation.

    The generation (those of its kind, joined) is the one read before
    computing: an answer computed while the fetch job changes the data is
    stored under the old generation, which nobody reads once the job has
    cleared the cache.
    """

    kind: str
    entry: str
    generation: str
    value: Any
    is_new: bool = False
    # The response entry of the query spelled from the normalized values ("": none).
    normalized_response: str = ""


def _missed_before_dispatch(kind: str, params: tuple[Any, ...],
                            normalized: str) -> _Storable | None:
    """Return the miss of a request spelled from its normalized values; None to look the value up.

    Every value of such a request is stored with its response under the
    normalized query's entry, which the lookup before dispatch just missed
    (an entry evicted alone only costs a computed answer).
    """
    missed = g.pop(_MISSED_RESPONSE, None)
    if not normalized or missed is None or missed[0] != normalized:
        return None
    _count_lookup(kind, hit=False)
    return _Storable(kind, cache_key(kind, params), missed[1], None)


def _look_up(kind: str, params: tuple[Any, ...]) -> _Storable | None:
    """Read the entry of ``kind`` for ``params``; None when the cache is not to be used."""
    state: _AnswerCache = current_app.extensions[_STATE]
    if not state.breaker.allows():
        return None
    entry = cache_key(kind, params)
    started = time.monotonic()
    try:
        generation, value = _read(state, entry, state.generation_keys(kind))
    except Exception as exc:  # whatever the backend raises, answer uncached
        state.breaker.failed(exc)
        return None
    state.breaker.succeeded(time.monotonic() - started)  # a slow read's value is still good
    if value is not None and type(value) is not _VALUE_TYPES.get(kind, type(value)):
        value = None  # not written by the API (whoever else can write to its Redis): a miss
    _count_lookup(kind, hit=value is not None)
    return _Storable(kind, entry, generation, value)


def register_response_cache(app: Flask) -> None:
    """Answer repeated reads from their stored responses, before the resource runs.

    Register it after the hooks every request must pass first (the request's
    timer and ID, the rate limit): Flask runs before_request hooks in order
    until one answers. Its after_request hook, which stores a response, must
    see the resource's 200 before the conditional GET may turn it into a 304:
    registered later, it runs earlier. The hooks that add per-request headers
    (request ID, rate limit, security, CORS) run for hits as for misses.
    """
    app.before_request(_answer_from_stored_response)
    app.after_request(_store_response)


def _answer_from_stored_response() -> Response | None:
    """Return the stored response for this request, or None to dispatch it as usual."""
    rule = request.url_rule
    if rule is None or request.method not in ("GET", "HEAD"):
        return None
    state: _AnswerCache = current_app.extensions[_STATE]
    kind = state.response_kinds.get(rule.rule)
    # An open breaker is left to the resource's own lookup, which counts and retries.
    if kind is None or not state.breaker.is_closed:
        return None
    entry = _response_entry()
    started = time.monotonic()
    try:
        generation, stored = _read(state, entry, state.generation_keys(kind))
    except Exception as exc:
        state.breaker.failed(exc)
        return None
    state.breaker.succeeded(time.monotonic() - started)
    if not _is_stored_response(stored):  # missing, or not written by the API: a miss
        setattr(g, _MISSED_RESPONSE, (entry, generation))
        return None
    _count_lookup(kind, hit=True)
    body, headers = stored
    return current_app.response_class(body, status=200, headers=headers)


def _is_stored_response(stored: Any) -> bool:
    """Tell whether ``stored`` is what ``_store_response`` keeps: [body, [[name, value], ...]]."""
    return (type(stored) is list and len(stored) == 2 and type(stored[0]) is bytes
            and type(stored[1]) is list
            and all(type(header) is list and len(header) == 2 and type(header[0]) is str
                    and type(header[1]) is str for header in stored[1]))


def _store_response(response: Response) -> Response:
    """Keep the bytes and headers of a 200 that ``cached_response`` answered, with its ETag."""
    g.pop(_MISSED_RESPONSE, None)  # not left to a later request of the same app context
    storable: _Storable | None = g.pop(_STORABLE, None)
    if storable is None or response.status_code != 200 or response.is_streamed:
        return response
    state: _AnswerCache = current_app.extensions[_STATE]
    state.response_kinds[request.url_rule.rule] = storable.kind  # type: ignore[union-attr]
    # The tag app.conditional would add, computed once here for every later hit.
    response.add_etag(weak=True)
    # Lists, not tuples: the shared cache reads them back without a call per header.
    stored = [response.get_data(), [[name, value] for name, value in response.headers.items()]]
    entries = {_response_entry(): stored}
    if storable.normalized_response:
        entries[storable.normalized_response] = stored
    if storable.is_new:
        entries[storable.entry] = storable.value
    _write(storable.generation, entries)
    return response


def _response_entry() -> str:
    """Return the entry of this request's response: its path and its parameters, sorted.

    The order of parameters never changes an answer (a repeated one is
    refused whatever its place), so sorting them only lets more requests share one entry.
    """
    query = request.environ.get("QUERY_STRING", "")
    return _response_entry_of(query.split("&"))


def _normalized_response_entry(params: Iterable[tuple[str, Any]]) -> str:
    """Return the entry of this path's response to the query spelled from normalized ``params``."""
    return _response_entry_of(f"{quote(name, safe='')}={quote(str(value), safe='')}"
                              for name, value in params)


def _response_entry_of(parameters: Iterable[str]) -> str:
    return f"response:{request.path}?{'&'.join(sorted(parameters))}"


def clear_cached_answers(*, final: bool = False) -> bool:
    """Make every cached answer of this database stale at once; False if not done.

    One small write (a new generation), whatever the number of entries. With
    Redis every worker sees it on its next read; with SimpleCache only this
    process does: every other one (each API worker, when the fetch job clears)
    keeps its entries until they expire, within CACHE_DEFAULT_TIMEOUT.
    A cache that failed is left alone for CACHE_RETRY_WAIT seconds, as reads
    leave it; ``final`` (the last clear of a run or command) tries anyway.
    """
    state: _AnswerCache = current_app.extensions[_STATE]
    return _renew(state, state.generation_key, final)


def clear_run_history_answers(*, final: bool = False) -> bool:
    """Make the cached answers read from the run history stale; False if not done.

    As ``clear_cached_answers``, for ``RUN_HISTORY_KINDS`` only: a run that
    starts, ends or records a symbol without changing rows changes no other
    answer. A full clear put off before is made instead.
    """
    state: _AnswerCache = current_app.extensions[_STATE]
    return _renew(state, state.history_generation_key, final)


def _renew(state: _AnswerCache, key: str, final: bool) -> bool:
    """Set a new generation under ``key`` and those put off; False if failed or put off.

    The all-answers generation alone covers the run history's too. The
    breaker logs the outage (a warning) once when it starts and once when it ends.
    """
    if state.is_local:
        state.generations[key] = _new_generation()
        return True
    state.put_off.add(key)
    if not (final or state.clear_breaker.allows()):
        return False
    if state.generation_key in state.put_off:
        key = state.generation_key
    try:
        _set_generation(key)
    except Exception as exc:  # the caller's data is safe; stale entries expire on their own
        state.clear_breaker.failed(exc)
        return False
    state.put_off.clear()
    state.clear_breaker.succeeded()
    return True


def _set_generation(key: str) -> None:
    """Set a new generation under ``key``; raise what the cache raises if it cannot.

    A Redis out of memory that never evicts refuses the new generation but
    still deletes the old one: no entry stored under it is read again, and
    the next reader starts a new generation once there is room (until then
    answers are computed).
    """
    try:
        cache.set(key, _new_generation(), timeout=0)
    except _REFUSED_WRITES:
        cache.delete(key)


def is_cache_shared() -> bool:
    """Tell whether the cached answers live where every process sees them (Redis).

    A per-process cache (SimpleCache) is out of reach of another process:
    the fetch job's or a CLI command's clear changes only its own.
    """
    state: _AnswerCache = current_app.extensions[_STATE]
    return not state.is_local


def _read(state: _AnswerCache, entry: str, keys: tuple[str, ...]) -> tuple[str, Any]:
    """Return the current generation of ``keys`` (joined) and its entry (or None).

    One round trip while the generations seen last hold.
    """
    seen = [state.generations[key] for key in keys]
    generation = ".".join(seen)
    if state.is_local:
        return generation, cache.get(state.entry_key(generation, entry))
    *current, value = cache.get_many(*keys, state.entry_key(generation, entry))
    if current == seen:
        return generation, value
    # Joined from this read: another thread may store in state.generations
    # meanwhile what it read before a clear.
    current = [found if _is_generation(found) else _start_generation(state, key)
               for key, found in zip(keys, current)]
    for key, found in zip(keys, current):
        state.generations[key] = found
    generation = ".".join(current)
    return generation, cache.get(state.entry_key(generation, entry))


def _count_lookup(kind: str, hit: bool) -> None:
    """Count a lookup in the API's metrics.

    They are imported only here: the fetch job looks nothing up, and its
    start-up is part of every run.
    """
    from app.metrics import record_cache
    record_cache(kind, hit)


def _write(generation: str, entries: dict[str, Any]) -> None:
    """Store ``entries`` (entry -> value) under ``generation``, in one round trip.

    A write refused by a cache that still answers leaves reads alone: its
    hits are served while it is full.
    """
    state: _AnswerCache = current_app.extensions[_STATE]
    if not (state.breaker.is_closed and state.store_breaker.allows()):
        return
    started = time.monotonic()
    try:
        cache.set_many({state.entry_key(generation, entry): value
                        for entry, value in entries.items()})
    except _REFUSED_WRITES as exc:
        state.store_breaker.failed(_without_command(exc))
        return
    except UncacheableValue as exc:  # before anything is sent: the cache is fine
        _warn_once(f"an answer could not be cached ({exc}); it is computed each time")
        return
    except Exception as exc:
        state.breaker.failed(exc)
        return
    state.breaker.succeeded(time.monotonic() - started)
    state.store_breaker.succeeded()


@functools.lru_cache(maxsize=32)
def _warn_once(message: str) -> None:
    """Log ``message`` once per process: it would otherwise repeat with every request."""
    logger.warning(message)


def _start_generation(state: _AnswerCache, key: str) -> str:
    """Create the generation when there is none (first use, evicted, or cleared when full).

    A value that is no generation (a pickle an older release wrote, another
    program's) is replaced, as if there were none.
    A random one rather than a counter from zero, so that entries stored
    under an evicted generation can never come back. A cache that refuses
    the write (full) gets one kept nowhere: this lookup misses and its answer
    is not stored, while the answers under the other generations are still
    read; the next lookup tries again.
    """
    generation = _new_generation()
    try:
        if not cache.add(key, generation, timeout=0):
            found = cache.get(key)
            if _is_generation(found):
                generation = found
            else:  # unreadable (an older release's, or no value of ours): replaced
                cache.set(key, generation, timeout=0)
    except _REFUSED_WRITES as exc:
        state.store_breaker.failed(_without_command(exc))
    return generation


def _is_generation(found: Any) -> bool:
    """Tell whether ``found``, read under a generation's key, is a generation (None: missing)."""
    return type(found) is str and found != ""


def _without_command(exc: ResponseError) -> ResponseError:
    """Return ``exc`` with Redis's reply only: redis-py's note of the failed command quotes
    a cache key, which the log line has no use for."""
    return type(exc)(str(exc).rpartition(" caused error: ")[2])


def _new_generation() -> str:
    return secrets.token_hex(8)
