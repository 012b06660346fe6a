"""One named exception per way of not getting a symbol's prices; messages never hold the key."""


class UnsupportedFunctionError(ValueError):
    """The client was asked for a function it does not read: a setting to correct, no request."""


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


class DeadlineExceededError(AlphaVantageError):
    """No complete answer in time: the symbol's deadline, or the whole run's, passed.

    ``ends_the_run`` tells the caller that the run's deadline passed, so no
    later symbol may be fetched either.
    """

    def __init__(self, message: str, symbol: str | None = None, *,
                 ends_the_run: bool = False) -> None:
        super().__init__(message, symbol)
        self.ends_the_run = ends_the_run
