"""What counts as a stock symbol: one pattern for the API, the fetch job and saved files.

The pattern and its rule in words are shared; how a list of tickers is read
is not. The fetch job's lists (``SYMBOLS``, ``--symbols``) and the
``forget-symbols`` command go through ``distinct_tickers``, and the client
and saved answers through ``normalize_symbol``: both strip white space, and
the former skips blank names. The API's parameters (app/api/params.py) are
stricter: they test each ticker as written, so ``IBM,,AAPL`` and
``IBM, AAPL`` are refused there.
"""
import re
from collections.abc import Iterable

# A ticker such as IBM, BRK.B or TSCO.LON.
SYMBOL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9.\-]{0,15}"
# The rule in words, for every message that refuses a symbol.
SYMBOL_RULE = "1 to 16 letters, digits, '.' or '-', starting with a letter or digit"

_SYMBOL = re.compile(SYMBOL_PATTERN)


def is_valid_symbol(text: str) -> bool:
    """Tell whether the whole of ``text`` is a ticker (no trailing newline slips through)."""
    return _SYMBOL.fullmatch(text) is not None


def normalize_symbol(text: object) -> str | None:
    """Return ``text`` stripped and upper-cased if it is a ticker, else None."""
    cleaned = text.strip().upper() if isinstance(text, str) else ""
    return cleaned if is_valid_symbol(cleaned) else None


def distinct_tickers(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Return the distinct names, stripped and upper-cased, in order, and those that are no ticker.

    Blank names are skipped, so ``IBM,,AAPL`` and a trailing comma name two tickers.
    """
    cleaned = list(dict.fromkeys(name.strip().upper() for name in names if name.strip()))
    return cleaned, [name for name in cleaned if not is_valid_symbol(name)]
