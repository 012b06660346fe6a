"""The HTTP side of AlphaVantage: one session, timeouts, polite retries, no leaked key.

The API key travels as a query parameter, which puts it into every request
URL. That is why no URL, ``response.url`` or raw requests exception text is
ever logged or chained here, and why urllib3's own URL-bearing log records
are masked (``lib.alphavantage.redaction``).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from urllib3.util.retry import Retry

from lib.alphavantage.errors import (
    AlphaVantageError, AlphaVantageTransportError, DeadlineExceededError, InvalidApiKeyError,
    InvalidSymbolError, MalformedResponseError, PremiumOnlyError, RateLimitError,
    UnsupportedFunctionError,
)
from lib.alphavantage.payload import (
    MAX_ANSWER_BYTES, classify_error_payload, is_short_term_limit, parse_daily_series, show,
)
from lib.alphavantage.redaction import (
    hide_from_urllib3_logs, load_json_masked, mask_secret,
)
from lib.alphavantage.series import (
    FUNCTIONS, TIME_SERIES_DAILY, TIME_SERIES_DAILY_ADJUSTED, DailySeries,
)
from lib.alphavantage.watchdog import WatchedAdapter, deadline_watched
from lib.tickers import SYMBOL_RULE, normalize_symbol

logger = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_BACKOFF_MAX_SECONDS = 30.0
# A failure this close to the deadline is the deadline's doing: socket
# timeouts may fire a hair early, and a retry then would overrun it.
_DEADLINE_SLACK_SECONDS = 0.05
# The most bytes read from the socket at a time while the deadline is watched.
_READ_CHUNK_BYTES = 64 * 1024


class AlphaVantageClient:
    """Fetches daily series over one ``requests.Session`` with bounded, polite retries.

    Transport failures (connect/read errors, 429/5xx) are retried by urllib3
    with capped, jittered backoff. AlphaVantage's in-body short-term limit is
    waited out ``rate_limit_retries`` times. When the adjusted series turns out
    to be premium-only, the client switches to TIME_SERIES_DAILY for good, so
    later symbols spend no request on the refusal (25 requests a day is little).

    A stalled AlphaVantage costs at most ``symbol_deadline`` seconds per symbol
    (all attempts, backoffs and waits together), and nothing is fetched once
    ``run_deadline`` seconds have passed since the first fetch (a client
    serves one run): both raise DeadlineExceededError. Each request's timeout
    is cut to the time left, so a stalled server cannot hold a fetch much
    past its deadline.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        function: str,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.05, 30),
        max_retries: int = 3,
        backoff_factor: float = 0.5,
        rate_limit_retries: int = 3,
        rate_limit_wait: float = 15.0,
        symbol_deadline: float | None = None,
        run_deadline: float | None = None,
        request_interval: float = 0.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        """Fail fast on an unsupported function or a missing key, before any request.

        ``base_url`` and ``function`` have no default here: the caller's
        settings hold them (ALPHAVANTAGE_BASE_URL, ALPHAVANTAGE_FUNCTION).
        An injected session gets the retrying adapter mounted for ``base_url``'s
        host only, so its other traffic is untouched. Transport retries follow
        urllib3, never sooner than ``request_interval``: the first goes after
        that interval, the next after 2x, 4x ``backoff_factor`` seconds
        (jittered, capped). ``request_interval`` spaces this client's
        requests (seconds from one to the next, transport retries, fallback and
        rate-limit retries included): free keys get about one a second.
        """
        if function not in FUNCTIONS:  # first: a caller short of a key may still check it
            raise UnsupportedFunctionError(
                f"unsupported AlphaVantage function {function!r}; use one of {sorted(FUNCTIONS)}"
            )
        if not isinstance(api_key, str) or not api_key.strip():
            raise InvalidApiKeyError("no AlphaVantage API key given")
        self._api_key = api_key.strip()
        hide_from_urllib3_logs(self._api_key)
        self._base_url = base_url
        self._function = function
        self._timeout = timeout
        self._max_retries = max_retries
        self._rate_limit_retries = rate_limit_retries
        self._rate_limit_wait = rate_limit_wait
        self._sleep = sleep
        self._request_interval = request_interval
        self._last_request: float | None = None
        self._symbol_deadline = symbol_deadline
        self._run_deadline = run_deadline
        self._run_ends: float | None = None
        self._deadline: float | None = None
        self._owns_session = session is None
        self._session = requests.Session() if session is None else session
        self._retry = _transport_retry(max_retries, backoff_factor)
        self._retry.least_pause = request_interval
        self._session.mount(_mount_prefix(base_url), WatchedAdapter(max_retries=self._retry))

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
            DeadlineExceededError: the symbol's or the run's deadline passed.
            InvalidSymbolError, InvalidApiKeyError, PremiumOnlyError,
            MalformedResponseError, AlphaVantageTransportError, AlphaVantageError.
        """
        ticker = normalize_symbol(symbol)
        if ticker is None:
            raise InvalidSymbolError(f"invalid symbol {show(symbol)}: use {SYMBOL_RULE}")
        self._start_deadline()
        self._check_deadline(ticker)
        try:
            return self._fetch_series(ticker, "full" if full else "compact")
        except AlphaVantageError as error:
            # Messages quote what the answer holds (a day, a value, its
            # Content-Type): an answer echoing the key must not carry it on.
            error.message = mask_secret(error.message, self._api_key)
            error.args = (error.message,)
            raise

    def _fetch_series(self, ticker: str, outputsize: str) -> DailySeries:
        """Ask until an answer holds the series, waiting out short-term limits and falling back."""
        waits = 0
        while True:
            payload = self._get_payload(ticker, outputsize)
            error = classify_error_payload(payload, ticker)
            if error is None:
                return parse_daily_series(payload, ticker)
            if is_short_term_limit(error):
                if waits >= self._rate_limit_retries:
                    raise RateLimitError(
                        f"AlphaVantage short-term rate limit for {ticker} persisted "
                        f"after {waits} wait{'' if waits == 1 else 's'}",
                        ticker,
                    )
                waits += 1
                self._wait_out_limit(ticker, waits)
            elif self._can_fall_back(error):
                self._fall_back_to_daily(ticker)
            else:
                raise error

    def _start_deadline(self) -> None:
        """Set this fetch's deadline: the symbol's own or the run's, whichever comes first."""
        now = time.monotonic()
        if self._run_ends is None and self._run_deadline is not None:
            self._run_ends = now + self._run_deadline
        ends = [self._run_ends]
        if self._symbol_deadline is not None:
            ends.append(now + self._symbol_deadline)
        self._deadline = min((end for end in ends if end is not None), default=None)
        self._retry.deadline = self._deadline

    def _time_left(self) -> float:
        return float("inf") if self._deadline is None else self._deadline - time.monotonic()

    def _check_deadline(self, symbol: str, needed: float = 0.0) -> None:
        """Raise DeadlineExceededError unless ``needed`` more seconds fit before the deadline."""
        if self._time_left() > needed:
            return
        if self._deadline == self._run_ends:
            raise DeadlineExceededError(f"the run's deadline of {self._run_deadline:g}s passed",
                                        symbol, ends_the_run=True)
        raise DeadlineExceededError(f"no complete answer from AlphaVantage for {symbol} within "
                                    f"{self._symbol_deadline:g}s, the deadline per symbol", symbol)

    def _attempt_timeout(self) -> float | tuple[float, float]:
        """Return the request timeout, cut to the time left before the deadline."""
        left = self._time_left()
        if left == float("inf"):
            return self._timeout
        connect, read = (self._timeout if isinstance(self._timeout, tuple)
                         else (self._timeout, self._timeout))
        return min(connect, left), min(read, left)

    def _wait_out_limit(self, symbol: str, attempt: int) -> None:
        """Sleep through a burst/per-minute refusal; the injected ``sleep`` keeps tests instant."""
        self._check_deadline(symbol, needed=self._rate_limit_wait)
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

    def _pace(self) -> None:
        """Keep this client's requests at least ``request_interval`` seconds apart."""
        if self._last_request is not None:
            wait = min(self._last_request + self._request_interval - time.monotonic(),
                       self._time_left())  # the deadline's check then says it passed
            if wait > 0:
                self._sleep(wait)
        self._last_request = time.monotonic()

    def _get_payload(self, symbol: str, outputsize: str) -> Any:
        """GET the query and decode the JSON body, mapping HTTP trouble to our exceptions."""
        self._pace()
        with self._send(symbol, outputsize) as response:
            if response.is_redirect:
                # Not followed: the next URL is the server's to choose, and it may carry the key.
                raise AlphaVantageTransportError(
                    f"HTTP {response.status_code} from AlphaVantage for {symbol}: a redirect, "
                    f"which the client does not follow (check ALPHAVANTAGE_BASE_URL)", symbol)
            if not response.ok:
                self._check_deadline(symbol, needed=_DEADLINE_SLACK_SECONDS)
                retried = ""
                if response.status_code in _RETRY_STATUSES:
                    retried = f" after {self._max_retries} retries"
                raise AlphaVantageTransportError(
                    f"HTTP {response.status_code} from AlphaVantage for {symbol}{retried}", symbol
                )
            body = self._read_body(response, symbol)
        try:
            # Masked once decoded: a message may quote any string of it, cut short.
            return load_json_masked(body, self._api_key)
        except (ValueError, RecursionError):  # RecursionError: nested too deep to decode
            pass
        # Raised outside the except block so no decoder error is chained.
        content_type = response.headers.get("Content-Type", "no content type")
        raise MalformedResponseError(
            f"AlphaVantage answered {symbol} with a body that is not JSON "
            f"({content_type}, {len(body)} bytes)",
            symbol,
        )

    def _read_body(self, response: requests.Response, symbol: str) -> bytes:
        """Read the body as it arrives, giving up at the deadline.

        The read timeout bounds each wait for a byte, not the whole body: a
        server that trickles a byte at a time would hold the job for ever.
        """
        chunks = []
        size = 0
        failure = ""
        try:
            while chunk := response.raw.read1(_READ_CHUNK_BYTES, decode_content=True):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise MalformedResponseError(
                        f"AlphaVantage answered {symbol} with more than "
                        f"{MAX_ANSWER_BYTES // 2**20} MiB, far more than any price series",
                        symbol)
                if self._time_left() <= 0:
                    break
        except urllib3.exceptions.HTTPError as exc:
            failure = _failure_name(exc)
        self._check_deadline(symbol)
        if not failure:
            return b"".join(chunks)
        # Raised outside the except block: urllib3's text may hold the URL.
        raise AlphaVantageTransportError(
            f"network failure for {symbol} while reading the answer ({failure})", symbol)

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
            with deadline_watched(self._deadline):
                return self._session.get(self._base_url, params=params, allow_redirects=False,
                                         timeout=self._attempt_timeout(), stream=True)
        except requests.RequestException as exc:
            failure = _failure_name(exc)
        # Raised outside the except block so neither __cause__ nor __context__ carries the URL.
        self._check_deadline(symbol, needed=_DEADLINE_SLACK_SECONDS)
        raise AlphaVantageTransportError(
            f"network failure for {symbol} after {self._max_retries} retries ({failure})", symbol
        )


class _DeadlineRetry(Retry):
    """urllib3's Retry that also gives up once ``deadline`` (a monotonic instant) has passed.

    The client sets ``deadline`` before each fetch; every copy urllib3 makes
    while retrying keeps it, and no backoff sleeps past it.
    """

    deadline: float | None = None
    # The least pause before a retry: the client's request interval (urllib3
    # sends its first retry at once, which a rate-limited server refuses again).
    least_pause: float = 0.0

    def new(self, **kwargs: Any) -> _DeadlineRetry:
        retry = super().new(**kwargs)
        retry.deadline = self.deadline
        retry.least_pause = self.least_pause
        return retry

    def is_exhausted(self) -> bool:
        return super().is_exhausted() or (
            self.deadline is not None
            and time.monotonic() >= self.deadline - _DEADLINE_SLACK_SECONDS)

    def get_backoff_time(self) -> float:
        backoff = max(super().get_backoff_time(), self.least_pause)
        if self.deadline is None:
            return backoff
        return max(0.0, min(backoff, self.deadline - time.monotonic()))


def _transport_retry(max_retries: int, backoff_factor: float) -> _DeadlineRetry:
    """Build urllib3's policy: GET only, transport errors and 429/5xx, capped jittered backoff.

    Retry-After is not honoured: a proxy asking for an hour would stall the
    job; AlphaVantage itself signals limits in the body, handled separately.
    A final 5xx is returned, not raised, so its status can be reported.
    """
    return _DeadlineRetry(
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


def _failure_name(exc: Exception) -> str:
    """Name the root cause (e.g. ReadTimeoutError) without its text, which holds the URL."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return type(reason if isinstance(reason, Exception) else exc).__name__
