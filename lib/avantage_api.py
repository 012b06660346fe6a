"""AlphaVantage daily prices: the client, its typed series and its one exception tree.

AlphaVantage reports most failures inside HTTP 200 bodies (``Error Message``,
``Information``, ``Note``), so a status code alone says little; every answer
becomes either a :class:`DailySeries` or one named :class:`AlphaVantageError`.
Framework-free (stdlib, requests, urllib3), so the fetch job and the tests use
it without an application. The parts live in ``lib.alphavantage``: ``payload``
(parsing and classification, no HTTP), ``client`` (HTTP), ``errors``,
``series`` (the data types) and ``redaction`` (keys out of urllib3's logs).
"""
from lib.alphavantage.client import DEFAULT_BASE_URL, AlphaVantageClient
from lib.alphavantage.errors import (
    AlphaVantageError, AlphaVantageTransportError, DeadlineExceededError, InvalidApiKeyError,
    InvalidSymbolError, MalformedResponseError, PremiumOnlyError, RateLimitError,
)
from lib.alphavantage.payload import (
    classify_error_payload, parse_daily_series, read_saved_response,
)
from lib.alphavantage.series import (
    FUNCTIONS, TIME_SERIES_DAILY, TIME_SERIES_DAILY_ADJUSTED, DailyBar, DailySeries,
)

__all__ = [
    "DEFAULT_BASE_URL", "FUNCTIONS", "TIME_SERIES_DAILY", "TIME_SERIES_DAILY_ADJUSTED",
    "AlphaVantageClient", "AlphaVantageError", "AlphaVantageTransportError", "DailyBar",
    "DeadlineExceededError",
    "DailySeries", "InvalidApiKeyError", "InvalidSymbolError", "MalformedResponseError",
    "PremiumOnlyError", "RateLimitError", "classify_error_payload", "parse_daily_series",
    "read_saved_response",
]
