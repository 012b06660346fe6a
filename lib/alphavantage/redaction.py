"""Keep API keys out of urllib3's log records, which carry whole request URLs."""
import logging
from urllib.parse import quote, quote_plus

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


def secret_forms(secret: str) -> tuple[str, ...]:
    """Return ``secret`` as written and as a URL carries it, longest first.

    requests encodes the key's query value like a form (``+`` for a space);
    a server quoting the URL back may percent-encode it instead.
    """
    forms = {secret, quote_plus(secret), quote(secret, safe="")}
    return tuple(sorted(forms, key=len, reverse=True))


def mask_secret(text: str, secret: str) -> str:
    """Return ``text`` with ``secret``, raw or URL-encoded, replaced by MASK."""
    for form in secret_forms(secret):
        text = text.replace(form, MASK)
    return text


def mask_secret_in_body(body: bytes, secret: str) -> bytes:
    """Return a UTF-8 ``body`` with ``secret``, raw or URL-encoded, replaced by MASK.

    Masked before anything quotes the body: a message shortens what it
    quotes, and half a key left by the cut would no longer be recognised.
    """
    for form in secret_forms(secret):
        body = body.replace(form.encode("utf-8"), MASK.encode("utf-8"))
    return body


def hide_from_urllib3_logs(secret: str) -> None:
    """Register ``secret`` in its ``secret_forms`` and filter every urllib3 logger; idempotent.

    A logger's filter sees only records logged to that very logger, so each
    urllib3 module's logger gets it (connection, connectionpool, retry, ...).
    """
    for form in secret_forms(secret):
        _SECRET_MASKING_FILTER.add(form)
    names = [name for name in logging.root.manager.loggerDict
             if name == "urllib3" or name.startswith("urllib3.")]
    for name in names:
        logging.getLogger(name).addFilter(_SECRET_MASKING_FILTER)
