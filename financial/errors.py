"""Domain errors: each carries the HTTP status and a message safe for clients."""


class FinancialError(Exception):
    """Base of errors whose message may be shown to an API client."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameterError(FinancialError):
    """A query parameter is missing or invalid; the message names it."""

    status_code = 400


class NoDataError(FinancialError):
    """Nothing is stored for the requested symbol and range."""

    status_code = 404
