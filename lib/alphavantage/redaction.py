"""Keep API keys out of messages quoting an answer, and out of urllib3's URL-bearing log records."""
import json
import logging
from typing import Any
from urllib.parse import quote, quote_plus

from lib.alphavantage.repeated_keys import RepeatedKeys, loads_noting_repeats

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
    return _masked(text, secret_forms(secret))


def _masked(text: str, forms: tuple[str, ...]) -> str:
    for form in forms:
        text = text.replace(form, MASK)
    return text


def mask_secret_in_payload(payload: Any, secret: str) -> Any:
    """Return decoded JSON with ``secret``, raw or URL-encoded, masked in every string and key.

    Masked after decoding, not in the body's bytes: JSON may write any
    character escaped (``\\u0053``) and the body may be UTF-16, so its bytes
    need not hold the key as written. Masked before anything quotes a value:
    a message shortens what it quotes, and half a key left by the cut would
    no longer be recognised.
    """
    forms = secret_forms(secret)

    def masked(value: Any) -> Any:
        if isinstance(value, str):
            return _masked(value, forms)
        if isinstance(value, RepeatedKeys):
            return RepeatedKeys(masked(dict(value)), tuple(map(masked, value.repeated)))
        if isinstance(value, dict):
            return {masked(key): masked(item) for key, item in value.items()}
        if isinstance(value, list):
            return [masked(item) for item in value]
        return value

    return masked(payload)


def load_json_masked(body: str | bytes, secret: str | None) -> Any:
    """Decode the JSON ``body`` with ``secret`` masked as ``mask_secret_in_payload`` does.

    The one way both a live answer and a saved one are read. The walk over
    every string runs only when the decoded text may hold the key: a whole
    history holds hundreds of thousands of strings, and without an escape
    each string reads in the text as it decodes. An object naming a key
    more than once is a RepeatedKeys (``loads_noting_repeats``). Raises
    ValueError (a UnicodeDecodeError for bytes in no JSON encoding) or
    RecursionError (nested too deep) as ``json.loads`` does.
    """
    if isinstance(body, bytes):
        # As json.loads decodes bytes (UTF-8, -16 or -32), so the check reads the same text.
        body = body.decode(json.detect_encoding(body), "surrogatepass")
    payload = loads_noting_repeats(body)
    if secret and ("\\" in body or any(form in body for form in secret_forms(secret))):
        payload = mask_secret_in_payload(payload, secret)
    return payload


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
