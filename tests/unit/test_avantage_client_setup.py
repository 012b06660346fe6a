"""AlphaVantageClient's constructor and input checks, before any request is sent."""
from typing import Any

import pytest

from lib.avantage_api import (
    TIME_SERIES_DAILY_ADJUSTED, AlphaVantageClient, InvalidApiKeyError, InvalidSymbolError,
)

URL = "http://127.0.0.1:9/query"


@pytest.mark.parametrize("api_key", ["", "   ", None])
def test_client_without_key_fails_fast(api_key: Any) -> None:
    with pytest.raises(InvalidApiKeyError, match="no AlphaVantage API key"):
        AlphaVantageClient(api_key, base_url=URL, function=TIME_SERIES_DAILY_ADJUSTED)


def test_client_rejects_unsupported_function() -> None:
    with pytest.raises(ValueError, match="TIME_SERIES_WEEKLY"):
        AlphaVantageClient("SECRETKEY123", base_url=URL, function="TIME_SERIES_WEEKLY")


def test_client_blank_symbol_is_invalid_without_a_request() -> None:
    client = AlphaVantageClient("SECRETKEY123", base_url=URL,
                                function=TIME_SERIES_DAILY_ADJUSTED)

    with pytest.raises(InvalidSymbolError, match="invalid symbol"):
        client.fetch_daily("  ")
    with pytest.raises(InvalidSymbolError, match="invalid symbol"):
        client.fetch_daily("IBM; DROP")
    client.close()
