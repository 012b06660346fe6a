"""AlphaVantage daily prices: the client, its typed series and its one exception tree.

AlphaVantage reports most failures inside HTTP 200 bodies (``Error Message``,
``Information``, ``Note``), so a status code alone says little; every answer
becomes either a :class:`DailySeries` or one named :class:`AlphaVantageError`.
Framework-free (stdlib, requests, urllib3), so the fetch job and the tests use
it without an application. The parts live in ``lib.alphavantage``: ``payload``
(parsing and classification, no HTTP), ``client`` (HTTP), ``errors``,
``series`` (the data types), ``redaction`` (keys out of urllib3's logs) and
``repeated_keys`` (JSON decoding that tells a key named twice).
The client is loaded on first use: requests and urllib3 take a tenth of the
fetch job's start-up, which a run from saved files does not need.
"""
from typing import TYPE_CHECKING, Any

from lib.alphavantage.errors import (
    AlphaVantageError, AlphaVantageTransportError, DeadlineExceededError, InvalidApiKeyError,
    InvalidSymbolError, MalformedResponseError, PremiumOnlyError, RateLimitError,
    UnsupportedFunctionError,
)
from lib.alphavantage.payload import (
    classify_error_payload, parse_daily_series, read_saved_response,
)
from lib.alphavantage.series import (
    FUNCTIONS, TIME_SERIES_DAILY, TIME_SERIES_DAILY_ADJUSTED, DailyBar, DailySeries,
)

if TYPE_CHECKING:
    from lib.alphavantage.client import AlphaVantageClient

_CLIENT_NAMES = ("AlphaVantageClient",)

__all__ = [
    "FUNCTIONS", "TIME_SERIES_DAILY", "TIME_SERIES_DAILY_ADJUSTED",
    "AlphaVantageClient", "AlphaVantageError", "AlphaVantageTransportError", "DailyBar",
    "DeadlineExceededError",
    "DailySeries", "InvalidApiKeyError", "InvalidSymbolError", "MalformedResponseError",
    "PremiumOnlyError", "RateLimitError", "classify_error_payload", "parse_daily_series",
    "UnsupportedFunctionError", "read_saved_response",
]


def __getattr__(name: str) -> Any:
    """Load the HTTP client's names when first asked for (PEP 562)."""
    if name in _CLIENT_NAMES:
        from lib.alphavantage import client
        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
