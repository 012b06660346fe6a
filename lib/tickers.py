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
    """Return ``text`` stripped and upper-cased if it is a ticker, else None.

    Checked as written, then upper-cased: Unicode upper-cases some letters
    into ASCII ones (``ıbm`` to IBM, ``ﬀ`` to FF), which would pass for tickers.
    """
    cleaned = text.strip() if isinstance(text, str) else ""
    return cleaned.upper() if is_valid_symbol(cleaned) else None


def distinct_tickers(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Return the distinct tickers, stripped and upper-cased, in order, and the names that are none.

    Blank names are skipped, so ``IBM,,AAPL`` and a trailing comma name two
    tickers. A name that is no ticker is returned stripped, as written.
    """
    tickers: dict[str, None] = {}
    refused: dict[str, None] = {}
    for name in map(str.strip, names):
        if is_valid_symbol(name):
            tickers[name.upper()] = None
        elif name:
            refused[name] = None
    return list(tickers), list(refused)
