"""AlphaVantage daily-price client: typed bars, one exception tree, no leaked key.

AlphaVantage reports most failures inside HTTP 200 bodies (``Error Message``,
``Information``, ``Note``), so a status code alone says little; this module
turns every answer into either a :class:`DailySeries` or one named
:class:`AlphaVantageError`. It is framework-free (stdlib, requests, urllib3) so
the fetch job and the tests can use it without an application.

The API key travels as a query parameter, which puts it into every request URL.
That is why no URL, ``response.url`` or raw requests exception text is ever
logged or chained here, and why urllib3's own URL-bearing log records are
masked (see :class:`_SecretMaskingFilter`).
"""

from __future__ import annotations

import datetime
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from operator import attrgetter
from typing import Any
from urllib.parse import quote_plus, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from lib.tickers import is_valid_symbol

logger = logging.getLogger(__name__)

TIME_SERIES_DAILY = "TIME_SERIES_DAILY"
TIME_SERIES_DAILY_ADJUSTED = "TIME_SERIES_DAILY_ADJUSTED"
DEFAULT_BASE_URL = "https://www.alphavantage.co/query"

_SERIES_KEY = "Time Series (Daily)"
_META_KEY = "Meta Data"
_OPEN_KEY = "1. open"
_CLOSE_KEY = "4. close"
_VOLUME_KEYS = {TIME_SERIES_DAILY: "5. volume", TIME_SERIES_DAILY_ADJUSTED: "6. volume"}
_ADJUSTED_ONLY_KEYS = ("5. adjusted close", "6. volume")
_ERROR_KEYS = ("Error Message", "Information", "Note")

# Prices are stored as DECIMAL(18,4). Prices stay below 10**9 and volumes below
# 10**14, far above any real stock, so that the sums behind statistics fit the
# 64-bit integers SQLite adds exactly, even over a century of days.
_MAX_DECIMAL_PLACES = 4
_MAX_INTEGER_DIGITS = 9
_MAX_VOLUME = 10**14 - 1
_DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PLAIN_DECIMAL_PATTERN = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_VOLUME_PATTERN = re.compile(r"[0-9]+")

# Order matters: the burst text also mentions "premium endpoints" and
# "25 requests per day", so burst markers are tested first, premium next.
_SHORT_TERM_MARKERS = ("per second", "sparingly", "per minute")
_PREMIUM_MARKERS = ("premium endpoint", "premium feature")
_DAILY_QUOTA_MARKERS = ("per day",)
_BAD_KEY_MARKERS = ("apikey", "api key")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_BACKOFF_MAX_SECONDS = 30.0
_MASK = "[redacted]"


class AlphaVantageError(Exception):
    """Any failure to get a symbol's prices; the message is safe to show, never holds the key."""

    def __init__(self, message: str, symbol: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.symbol = symbol


class RateLimitError(AlphaVantageError):
    """AlphaVantage refused for volume: a short burst/per-minute limit, or the spent daily quota.

    ``is_daily_quota`` tells the caller whether waiting a few seconds can help.
    """

    def __init__(
        self, message: str, symbol: str | None = None, *, is_daily_quota: bool = False
    ) -> None:
        super().__init__(message, symbol)
        self.is_daily_quota = is_daily_quota


class InvalidSymbolError(AlphaVantageError):
    """AlphaVantage does not know the symbol (its "Invalid API call" answer)."""


class InvalidApiKeyError(AlphaVantageError):
    """The key is missing, rejected, or the public demo key."""


class PremiumOnlyError(AlphaVantageError):
    """The function or parameter asked for needs a paid plan."""


class MalformedResponseError(AlphaVantageError):
    """The answer is not JSON or does not hold a usable daily series."""


class AlphaVantageTransportError(AlphaVantageError):
    """The network failed, or HTTP kept failing, after the transport retries."""


@dataclass(frozen=True)
class DailyBar:
    """One trading day; prices keep AlphaVantage's digits (``Decimal("170.0000")``)."""

    date: datetime.date
    open_price: Decimal
    close_price: Decimal
    volume: int


@dataclass(frozen=True)
class DailySeries:
    """A symbol's daily bars, newest first (sorted by date, whatever the payload's order).

    ``function`` is the AlphaVantage function the payload came from; the close
    is always the raw ``4. close``, also for ``TIME_SERIES_DAILY_ADJUSTED``.
    """

    symbol: str
    function: str
    bars: tuple[DailyBar, ...]


def parse_daily_series(payload: Mapping[str, Any], symbol: str | None = None) -> DailySeries:
    """Turn a TIME_SERIES_DAILY(_ADJUSTED) JSON payload into a validated series.

    ``symbol`` wins when given (the client passes the one it asked for); saved
    files (``--from-file``) omit it and the payload's ``Meta Data`` /
    ``2. Symbol`` is used. Every value is checked against the database columns
    here, so nothing half-valid reaches a transaction.

    Raises:
        MalformedResponseError: naming the symbol and the day at fault.
    """
    if not isinstance(payload, Mapping):
        raise MalformedResponseError(
            f"{symbol or 'payload'}: the response is not a JSON object", symbol
        )
    name = _series_symbol(payload, symbol)
    series = payload.get(_SERIES_KEY)
    if not isinstance(series, Mapping):
        raise MalformedResponseError(f"{name}: the response has no {_SERIES_KEY!r} object", name)
    if not series:
        raise MalformedResponseError(f"{name}: {_SERIES_KEY!r} holds no days", name)
    function = _series_function(payload, series)
    volume_key = _VOLUME_KEYS[function]
    bars = [_parse_bar(name, day, fields, volume_key) for day, fields in series.items()]
    bars.sort(key=attrgetter("date"), reverse=True)
    return DailySeries(symbol=name, function=function, bars=tuple(bars))


def classify_error_payload(payload: Any, symbol: str) -> AlphaVantageError | None:
    """Return the exception an AlphaVantage error body stands for, or None if it is none.

    A body holding the daily series is never an error, whatever else it holds.
    Keys are read in the order ``Error Message``, ``Information``, ``Note``.
    """
    if not isinstance(payload, Mapping) or _SERIES_KEY in payload:
        return None
    for key in _ERROR_KEYS:
        if key in payload:
            text = str(payload[key])
            if key == "Error Message":
                return _classify_error_message(text, symbol)
            return _classify_notice(text, symbol)
    return None


class AlphaVantageClient:
    """Fetches daily series over one ``requests.Session`` with bounded, polite retries.

    Transport failures (connect/read errors, 429/5xx) are retried by urllib3
    with capped, jittered backoff. AlphaVantage's in-body short-term limit is
    waited out ``rate_limit_retries`` times. When the adjusted series turns out
    to be premium-only, the client switches to TIME_SERIES_DAILY for good, so
    later symbols spend no request on the refusal (25 requests a day is little).
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        function: str = TIME_SERIES_DAILY_ADJUSTED,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.05, 30),
        max_retries: int = 3,
        backoff_factor: float = 0.5,
        rate_limit_retries: int = 3,
        rate_limit_wait: float = 15.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        """Fail fast on a missing key or an unsupported function, before any request.

        An injected session gets the retrying adapter mounted for ``base_url``'s
        host only, so its other traffic is untouched.
        """
        if not isinstance(api_key, str) or not api_key.strip():
            raise InvalidApiKeyError("no AlphaVantage API key given")
        if function not in _VOLUME_KEYS:
            raise ValueError(
                f"unsupported AlphaVantage function {function!r}; use one of {sorted(_VOLUME_KEYS)}"
            )
        self._api_key = api_key.strip()
        _hide_from_urllib3_logs(self._api_key)
        self._base_url = base_url
        self._function = function
        self._timeout = timeout
        self._max_retries = max_retries
        self._rate_limit_retries = rate_limit_retries
        self._rate_limit_wait = rate_limit_wait
        self._sleep = sleep
        self._owns_session = session is None
        self._session = requests.Session() if session is None else session
        adapter = HTTPAdapter(max_retries=_transport_retry(max_retries, backoff_factor))
        self._session.mount(_mount_prefix(base_url), adapter)

    @property
    def function(self) -> str:
        """The function the next request asks for (TIME_SERIES_DAILY after a premium fallback)."""
        return self._function

    def close(self) -> None:
        """Close the session if this client created it; an injected one stays the caller's."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> AlphaVantageClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fetch_daily(self, symbol: str, *, full: bool = False) -> DailySeries:
        """Fetch one symbol's daily series: the newest 100 days, or all of them with ``full``.

        Raises:
            RateLimitError: the daily quota is spent (no retry), or the
                short-term limit outlasted ``rate_limit_retries`` waits.
            InvalidSymbolError, InvalidApiKeyError, PremiumOnlyError,
            MalformedResponseError, AlphaVantageTransportError, AlphaVantageError.
        """
        symbol = _normalise_symbol(symbol)
        outputsize = "full" if full else "compact"
        waits = 0
        while True:
            payload = self._get_payload(symbol, outputsize)
            error = self._error_in(payload, symbol)
            if error is None:
                return parse_daily_series(payload, symbol)
            if _is_short_term_limit(error):
                if waits >= self._rate_limit_retries:
                    raise RateLimitError(
                        f"AlphaVantage short-term rate limit for {symbol} persisted "
                        f"after {waits} waits",
                        symbol,
                    )
                waits += 1
                self._wait_out_limit(symbol, waits)
            elif self._can_fall_back(error):
                self._fall_back_to_daily(symbol)
            else:
                raise error

    def _wait_out_limit(self, symbol: str, attempt: int) -> None:
        """Sleep through a burst/per-minute refusal; the injected ``sleep`` keeps tests instant."""
        logger.warning(
            "AlphaVantage short-term rate limit for %s; waiting %.1f s before retry %d of %d",
            symbol, self._rate_limit_wait, attempt, self._rate_limit_retries,
        )
        self._sleep(self._rate_limit_wait)

    def _can_fall_back(self, error: AlphaVantageError) -> bool:
        """Only the adjusted series has a free sibling; other premium answers are final."""
        return isinstance(error, PremiumOnlyError) and self._function == TIME_SERIES_DAILY_ADJUSTED

    def _fall_back_to_daily(self, symbol: str) -> None:
        """Switch to TIME_SERIES_DAILY for the rest of this client's life and say so once."""
        logger.warning(
            "%s is premium-only for this API key; this run falls back to %s from %s on",
            TIME_SERIES_DAILY_ADJUSTED, TIME_SERIES_DAILY, symbol,
        )
        self._function = TIME_SERIES_DAILY

    def _get_payload(self, symbol: str, outputsize: str) -> Any:
        """GET the query and decode the JSON body, mapping HTTP trouble to our exceptions."""
        response = self._send(symbol, outputsize)
        if not response.ok:
            retried = ""
            if response.status_code in _RETRY_STATUSES:
                retried = f" after {self._max_retries} retries"
            raise AlphaVantageTransportError(
                f"HTTP {response.status_code} from AlphaVantage for {symbol}{retried}", symbol
            )
        try:
            return response.json()
        except ValueError:
            pass
        # Raised outside the except block so no decoder error is chained.
        content_type = response.headers.get("Content-Type", "no content type")
        raise MalformedResponseError(
            f"AlphaVantage answered {symbol} with a body that is not JSON "
            f"({content_type}, {len(response.content)} bytes)",
            symbol,
        )

    def _send(self, symbol: str, outputsize: str) -> requests.Response:
        """Send the GET; a requests exception is replaced, not chained: its text holds the URL."""
        params = {
            "function": self._function,
            "symbol": symbol,
            "outputsize": outputsize,
            "apikey": self._api_key,
            "datatype": "json",
        }
        try:
            return self._session.get(self._base_url, params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            failure = _failure_name(exc)
        # Raised outside the except block so neither __cause__ nor __context__ carries the URL.
        raise AlphaVantageTransportError(
            f"network failure for {symbol} after {self._max_retries} retries ({failure})", symbol
        )

    def _error_in(self, payload: Any, symbol: str) -> AlphaVantageError | None:
        """Classify an error body after masking the key, in case AlphaVantage echoes it."""
        if not isinstance(payload, Mapping) or _SERIES_KEY in payload:
            return None
        masked = {key: self._redact(str(payload[key])) for key in _ERROR_KEYS if key in payload}
        return classify_error_payload(masked, symbol)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, _MASK)


class _SecretMaskingFilter(logging.Filter):
    """Masks API keys in urllib3's log records.

    urllib3 logs the request URL, query string and so the key included, at
    DEBUG for every request and at WARNING when it retries a broken
    connection. A filter on those loggers is the only place to stop that.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: tuple[str, ...] = ()

    def add(self, secret: str) -> None:
        # A new tuple, never an in-place change, so a logging thread never sees a half update.
        if secret and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True  # a record that cannot be formatted cannot print the key either
        if any(secret in message for secret in secrets):
            for secret in secrets:
                message = message.replace(secret, _MASK)
            record.msg, record.args = message, None
        return True


_SECRET_MASKING_FILTER = _SecretMaskingFilter()


def _hide_from_urllib3_logs(api_key: str) -> None:
    """Register the key (raw and URL-encoded) and filter every urllib3 logger; idempotent.

    A logger's filter sees only records logged to that very logger, so each
    urllib3 module's logger gets it (connection, connectionpool, retry, ...).
    """
    _SECRET_MASKING_FILTER.add(api_key)
    _SECRET_MASKING_FILTER.add(quote_plus(api_key))
    names = [name for name in logging.root.manager.loggerDict
             if name == "urllib3" or name.startswith("urllib3.")]
    for name in names:
        logging.getLogger(name).addFilter(_SECRET_MASKING_FILTER)


def _transport_retry(max_retries: int, backoff_factor: float) -> Retry:
    """Build urllib3's policy: GET only, transport errors and 429/5xx, capped jittered backoff.

    Retry-After is not honoured: a proxy asking for an hour would stall the
    job; AlphaVantage itself signals limits in the body, handled separately.
    A final 5xx is returned, not raised, so its status can be reported.
    """
    return Retry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        allowed_methods=frozenset({"GET"}),
        status_forcelist=_RETRY_STATUSES,
        backoff_factor=backoff_factor,
        backoff_jitter=backoff_factor,
        backoff_max=_BACKOFF_MAX_SECONDS,
        respect_retry_after_header=False,
        raise_on_status=False,
    )


def _mount_prefix(base_url: str) -> str:
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}/"


def _failure_name(exc: requests.RequestException) -> str:
    """Name the root cause (e.g. ReadTimeoutError) without its text, which holds the URL."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason if isinstance(reason, Exception) else exc).__name__


def _normalise_symbol(symbol: str) -> str:
    cleaned = symbol.strip().upper() if isinstance(symbol, str) else ""
    if not is_valid_symbol(cleaned):
        raise InvalidSymbolError(f"invalid symbol {_show(symbol)}: use 1 to 16 letters, "
                                 "digits, '.' or '-'")
    return cleaned


def _is_short_term_limit(error: AlphaVantageError) -> bool:
    return isinstance(error, RateLimitError) and not error.is_daily_quota


def _has_marker(text: str, markers: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in markers)


def _bad_key(text: str, symbol: str) -> InvalidApiKeyError:
    return InvalidApiKeyError(
        f"AlphaVantage rejected the API key (asked for {symbol}): {text}", symbol
    )


def _classify_error_message(text: str, symbol: str) -> AlphaVantageError:
    if _has_marker(text, _BAD_KEY_MARKERS):
        return _bad_key(text, symbol)
    if _has_marker(text, ("invalid api call",)):
        return InvalidSymbolError(f"invalid symbol {symbol}: AlphaVantage says: {text}", symbol)
    return AlphaVantageError(f"AlphaVantage error for {symbol}: {text}", symbol)


def _classify_notice(text: str, symbol: str) -> AlphaVantageError:
    """Classify an ``Information``/``Note`` text; marker order is what keeps them apart."""
    if _has_marker(text, _SHORT_TERM_MARKERS):
        return RateLimitError(f"AlphaVantage short-term rate limit for {symbol}: {text}", symbol)
    if _has_marker(text, _PREMIUM_MARKERS):
        return PremiumOnlyError(f"premium-only AlphaVantage request for {symbol}: {text}", symbol)
    if _has_marker(text, _DAILY_QUOTA_MARKERS):
        return RateLimitError(
            f"the AlphaVantage daily quota is spent; {symbol} not fetched, try tomorrow: {text}",
            symbol,
            is_daily_quota=True,
        )
    if _has_marker(text, ("demo",) + _BAD_KEY_MARKERS):
        return _bad_key(text, symbol)
    return AlphaVantageError(f"AlphaVantage notice for {symbol}: {text}", symbol)


def _series_symbol(payload: Mapping[str, Any], symbol: str | None) -> str:
    """Prefer the caller's symbol; saved files carry theirs in ``Meta Data`` / ``2. Symbol``."""
    if symbol is None:
        meta = payload.get(_META_KEY)
        symbol = meta.get("2. Symbol") if isinstance(meta, Mapping) else None
        if isinstance(symbol, str) and symbol.strip() and not is_valid_symbol(symbol.strip()):
            raise MalformedResponseError(f"the payload's symbol {_show(symbol)} is not a ticker")
    cleaned = symbol.strip().upper() if isinstance(symbol, str) else ""
    if not cleaned:
        raise MalformedResponseError(
            f"no symbol: none given and no {_META_KEY!r} / '2. Symbol' in the payload"
        )
    return cleaned


def _series_function(payload: Mapping[str, Any], series: Mapping[str, Any]) -> str:
    """Tell the two layouts apart by the meta description, else by the adjusted-only fields."""
    meta = payload.get(_META_KEY)
    info = meta.get("1. Information") if isinstance(meta, Mapping) else None
    if isinstance(info, str) and _has_marker(info, ("adjusted", "dividend")):
        return TIME_SERIES_DAILY_ADJUSTED
    for fields in series.values():
        if isinstance(fields, Mapping) and any(key in fields for key in _ADJUSTED_ONLY_KEYS):
            return TIME_SERIES_DAILY_ADJUSTED
    return TIME_SERIES_DAILY


def _parse_bar(symbol: str, day: Any, fields: Any, volume_key: str) -> DailyBar:
    date = _parse_date(symbol, day)
    where = f"{symbol} {day}"
    if not isinstance(fields, Mapping):
        raise MalformedResponseError(f"{where}: the day's entry is not a JSON object", symbol)
    open_raw = _field(symbol, where, fields, _OPEN_KEY)
    close_raw = _field(symbol, where, fields, _CLOSE_KEY)
    volume_raw = _field(symbol, where, fields, volume_key)
    return DailyBar(
        date=date,
        open_price=_parse_price(symbol, where, _OPEN_KEY, open_raw),
        close_price=_parse_price(symbol, where, _CLOSE_KEY, close_raw),
        volume=_parse_volume(symbol, where, volume_key, volume_raw),
    )


def _parse_date(symbol: str, day: Any) -> datetime.date:
    """Accept only ``YYYY-MM-DD``; ``date.fromisoformat`` alone also takes ``20230324``."""
    if isinstance(day, str) and _DATE_PATTERN.fullmatch(day):
        try:
            return datetime.date.fromisoformat(day)
        except ValueError:
            pass
    raise MalformedResponseError(
        f"{symbol}: day {_show(day)} is not a valid YYYY-MM-DD date", symbol
    )


def _field(symbol: str, where: str, fields: Mapping[str, Any], key: str) -> Any:
    if key not in fields:
        raise MalformedResponseError(f"{where}: field {key!r} is missing", symbol)
    return fields[key]


def _parse_price(symbol: str, where: str, key: str, raw: Any) -> Decimal:
    """Parse from the string with Decimal (never float) and check it fits DECIMAL(18,4)."""
    if not isinstance(raw, str):
        raise MalformedResponseError(f"{where}: {key!r} is {_show(raw)}, not a string", symbol)
    value = _to_decimal(raw)
    problem = _price_problem(raw, value)
    if value is None or problem:
        raise MalformedResponseError(f"{where}: {key!r} is {_show(raw)}, {problem}", symbol)
    return value


def _to_decimal(raw: str) -> Decimal | None:
    try:
        return Decimal(raw)
    except InvalidOperation:
        return None


def _price_problem(raw: str, value: Decimal | None) -> str | None:
    if value is None:
        return "not a number"
    if value.is_nan():
        return "not a number (NaN)"
    if value.is_infinite():
        return "infinite"
    if value.is_signed():
        return "negative"
    if not _PLAIN_DECIMAL_PATTERN.fullmatch(raw):
        return "not a plain decimal number"
    if value.as_tuple().exponent < -_MAX_DECIMAL_PLACES:
        return f"more than {_MAX_DECIMAL_PLACES} decimal places (column is DECIMAL(18,4))"
    if value.adjusted() >= _MAX_INTEGER_DIGITS:
        return f"{10**_MAX_INTEGER_DIGITS:,} or more, beyond any real price"
    return None


def _parse_volume(symbol: str, where: str, key: str, raw: Any) -> int:
    if not (isinstance(raw, str) and _VOLUME_PATTERN.fullmatch(raw)):
        raise MalformedResponseError(
            f"{where}: {key!r} is {_show(raw)}, not a non-negative integer", symbol
        )
    digits = raw.lstrip("0") or "0"
    # Length first: int() refuses strings over 4300 digits, and nothing that long fits anyway.
    if len(digits) > len(str(_MAX_VOLUME)) or int(digits) > _MAX_VOLUME:
        raise MalformedResponseError(
            f"{where}: {key!r} is {_show(raw)}, beyond any real volume (max {_MAX_VOLUME:,})",
            symbol,
        )
    return int(digits)


def _show(raw: Any) -> str:
    """Quote a bad value for a message, cut short so a huge field cannot flood a log line."""
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:37]}..."
