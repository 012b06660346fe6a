"""Keep API keys out of urllib3's log records, which carry whole request URLs."""
import logging
from urllib.parse import quote_plus

MASK = "[redacted]"


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
                message = message.replace(secret, MASK)
            record.msg, record.args = message, None
        return True


_SECRET_MASKING_FILTER = _SecretMaskingFilter()


def hide_from_urllib3_logs(secret: str) -> None:
    """Register ``secret`` (raw and URL-encoded) and filter every urllib3 logger; idempotent.

    A logger's filter sees only records logged to that very logger, so each
    urllib3 module's logger gets it (connection, connectionpool, retry, ...).
    """
    _SECRET_MASKING_FILTER.add(secret)
    _SECRET_MASKING_FILTER.add(quote_plus(secret))
    names = [name for name in logging.root.manager.loggerDict
             if name == "urllib3" or name.startswith("urllib3.")]
    for name in names:
        logging.getLogger(name).addFilter(_SECRET_MASKING_FILTER)
